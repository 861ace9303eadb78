//! Creating a project: generation 1 from an empty layer, a copy of a
//! directory, or a directory moved into the store.
//!
//! The copy preserves file types (devices, fifos, sockets included),
//! symlinks, hard links (by (dev, ino)), modes including setuid, owners,
//! every xattr (`trusted.*`, `security.capability`), atime and mtime. Any
//! `trusted.goldenfs.*` xattr is stripped: that namespace holds goldenfs's
//! private markers.

use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::atomic;
use super::layout::{self, GenerationManifest, ProjectMeta};
use super::progress::{OperationKind, Progress};
use super::{Project, ProjectState, Store};
use crate::error::{Error, ErrorCode, Result};
use crate::fault;
use crate::sys::{self, FileType, OFlags};

/// The private xattr namespace stripped from imported content.
pub const PRIVATE_XATTR_PREFIX: &[u8] = b"trusted.goldenfs.";

/// Where generation 1 comes from.
#[derive(Clone, Debug)]
pub enum ImportSource {
    Empty,
    /// Copy this absolute directory (reflinks where possible).
    Copy(PathBuf),
    /// Rename this absolute directory into the store (same filesystem only).
    Move(PathBuf),
}

/// What `project create` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    pub project: String,
    pub generation: u64,
    pub layer: String,
    /// True when the source directory was moved instead of copied.
    pub moved: bool,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    /// Devices, fifos and sockets.
    pub special_files: u64,
    /// Extra names of already-imported inodes.
    pub hard_links: u64,
    /// Bytes of regular file data.
    pub bytes: u64,
    /// `trusted.goldenfs.*` xattrs removed from the imported content.
    pub stripped_xattrs: u64,
}

/// Removes `P` from the set of projects being created when dropped.
struct Reservation<'a>(&'a Store, String);
impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.0.creating.lock().remove(&self.1);
    }
}

impl Store {
    /// Creates project `name` with generation 1 from `source`. A crash leaves
    /// either no project or a complete one.
    pub fn create_project(&self, name: &str, source: ImportSource) -> Result<ImportReport> {
        crate::names::validate("project", name)?;
        let exists = || {
            Error::exists(format!(
                "project {name} already exists; pick another name or delete it with 'goldenfs project delete {name}'"
            ))
        };
        if self.projects.lock().contains_key(name) || !self.creating.lock().insert(name.to_string()) {
            return Err(exists());
        }
        let _reservation = Reservation(self, name.to_string());
        let layer_id = layout::new_layer_id(name, 1);
        let mut report = ImportReport {
            project: name.to_string(),
            generation: 1,
            layer: layer_id.clone(),
            ..Default::default()
        };
        let work = self.layout.work();
        let build_layer = work.join(atomic::unique_name(&format!("import-{name}")));
        let build_project = work.join(atomic::unique_name(&format!("project-{name}")));
        let cleanup = |paths: &[&Path]| {
            for p in paths {
                let _ = atomic::remove_tree(p);
            }
        };
        let source_dir = match &source {
            ImportSource::Empty => None,
            ImportSource::Copy(d) | ImportSource::Move(d) => Some(self.check_source(d)?),
        };
        let res = (|| {
            match &source {
                ImportSource::Empty => {
                    fs::create_dir(&build_layer)
                        .map_err(|e| Error::io(format!("creating {}", build_layer.display()), e))?;
                }
                ImportSource::Copy(dir) => {
                    log::info!("importing {} into project {name}", dir.display());
                    let progress = self.operations.start(OperationKind::Import, Some(name), "copying");
                    copy_tree_counted(dir, &build_layer, &mut report, &progress)?;
                }
                ImportSource::Move(dir) => {
                    let src = source_dir.as_ref().ok_or_else(|| Error::internal("no source fd"))?;
                    if fs::symlink_metadata(dir)
                        .map(|m| m.file_type().is_symlink())
                        .unwrap_or(false)
                    {
                        return Err(Error::invalid(format!(
                            "{} is a symlink; --move needs the directory itself — pass its real path",
                            dir.display()
                        )));
                    }
                    let store_dev = sys::device_of(self.root_fd.as_fd())?;
                    if sys::device_of(src.as_fd())? != store_dev {
                        return Err(Error::invalid(format!(
                            "{} is not on the store's filesystem ({}); --move only works within one filesystem — drop --move to copy it",
                            dir.display(),
                            self.root().display()
                        )));
                    }
                    report.moved = true;
                    strip_private_xattrs(src.as_fd(), dir, &mut report)?;
                }
            }
            self.build_project_dir(&build_project, name, &layer_id)
        })();
        if let Err(e) = res {
            cleanup(&[&build_layer, &build_project]);
            return Err(e);
        }
        self.sync_fs()?;
        {
            let _m = self.maintenance.read();
            let project_dir = self.layout.project(name);
            let layer_dir = self.layout.layer(&layer_id);
            let published = match &source {
                ImportSource::Move(dir) => {
                    // The project goes in first, so a crash never loses the
                    // moved directory: recovery removes a project whose only
                    // layer is missing, and the directory is still in place.
                    atomic::rename_noreplace(&build_project, &project_dir)
                        .and_then(|()| fault::point("import:before-move-rename"))
                        .and_then(|()| {
                            atomic::rename_noreplace(dir, &layer_dir).map_err(|e| {
                                let _ = atomic::move_to_work(&project_dir, &work, "project")
                                    .and_then(|t| atomic::remove_tree(&t));
                                Error::new(e.code, format!("{e} — the directory was left in place"))
                            })
                        })
                }
                _ => atomic::rename_noreplace(&build_layer, &layer_dir)
                    .and_then(|()| fault::point("import:before-project-rename"))
                    .and_then(|()| atomic::rename_noreplace(&build_project, &project_dir)),
            };
            if let Err(e) = published {
                if e.code == ErrorCode::AlreadyExists && project_dir.exists() {
                    cleanup(&[&build_project, &build_layer]);
                    return Err(exists());
                }
                return Err(e);
            }
            let meta: ProjectMeta = atomic::read_json(&project_dir.join(layout::PROJECT_JSON))?;
            self.projects.lock().insert(
                name.to_string(),
                Arc::new(Project {
                    meta,
                    state: parking_lot::RwLock::new(ProjectState {
                        current: 1,
                        deleted: false,
                    }),
                    promote_lock: parking_lot::Mutex::new(()),
                }),
            );
        }
        if report.stripped_xattrs > 0 {
            log::warn!(
                "project {name}: stripped {} trusted.goldenfs.* xattrs from the imported tree (that namespace is private to goldenfs)",
                report.stripped_xattrs
            );
        }
        log::info!(
            "created project {name}: generation 1 = layer {layer_id} ({} files, {} dirs, {} bytes)",
            report.files,
            report.directories,
            report.bytes
        );
        Ok(report)
    }

    /// Checks an import source: absolute, a directory, not overlapping the store.
    fn check_source(&self, dir: &Path) -> Result<OwnedFd> {
        if !dir.is_absolute() {
            return Err(Error::invalid(format!(
                "source directory {} is not an absolute path; the client sends absolute paths — upgrade the client",
                dir.display()
            )));
        }
        if self.overlaps(dir) {
            return Err(Error::invalid(format!(
                "{} overlaps the store {}; import a directory outside the state directory",
                dir.display(),
                self.root().display()
            )));
        }
        let fd = sys::open_dir_abs(dir)
            .map_err(|e| Error::io(format!("cannot open source directory {}", dir.display()), e))?;
        Ok(fd)
    }

    fn build_project_dir(&self, build: &Path, name: &str, layer_id: &str) -> Result<()> {
        let io = |e| Error::io(format!("creating {}", build.display()), e);
        fs::create_dir(build).map_err(io)?;
        fs::create_dir(build.join("generations")).map_err(io)?;
        let now = atomic::now_rfc3339();
        atomic::write_json_atomic(
            build,
            layout::PROJECT_JSON,
            &ProjectMeta {
                name: name.to_string(),
                created_at: now.clone(),
            },
        )?;
        atomic::write_json_atomic(
            &build.join("generations"),
            &layout::generation_file_name(1),
            &GenerationManifest {
                generation: 1,
                created_at: now,
                session_id: None,
                project_id: name.to_string(),
                parent: None,
                layers: vec![layer_id.to_string()],
                compacted_from: None,
            },
        )?;
        atomic::write_atomic(build, layout::CURRENT, b"1\n")
    }
}

fn is_private(name: &OsStr) -> bool {
    name.as_bytes().starts_with(PRIVATE_XATTR_PREFIX)
}

struct Copier<'a> {
    report: &'a mut ImportReport,
    progress: &'a Progress,
    /// (dev, ino) of a multiply-linked source inode → its path in the copy.
    links: HashMap<(u64, u64), PathBuf>,
    dst_root: OwnedFd,
}

/// Copies the tree at `src` into the new directory `dst`.
/// [`copy_tree`], while a second thread counts the source so `progress`
/// gets its totals (the count also warms the caches the copy reads).
fn copy_tree_counted(src: &Path, dst: &Path, report: &mut ImportReport, progress: &Progress) -> Result<()> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| match count_tree(src, &stop) {
            Ok(Some((entries, bytes))) => progress.set_total(entries, bytes),
            Ok(None) => {}
            Err(e) => log::debug!("counting {} for the progress report: {e}", src.display()),
        });
        let res = copy_tree(src, dst, report, progress);
        stop.store(true, Ordering::Relaxed);
        res
    })
}

/// Names and data bytes (each inode's once) under `root`, like the copy
/// counts them; `None` if `stop` was set first.
fn count_tree(root: &Path, stop: &AtomicBool) -> std::io::Result<Option<(u64, u64)>> {
    fn walk(
        dir: BorrowedFd<'_>,
        stop: &AtomicBool,
        seen: &mut HashSet<(u64, u64)>,
        n: &mut (u64, u64),
    ) -> std::io::Result<bool> {
        for ent in sys::read_dir_entries(dir)? {
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let name = ent.name.as_os_str();
            let st = sys::stat_at(dir, name)?;
            n.0 += 1;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    let sub = sys::open_at(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW, 0)?;
                    if !walk(sub.as_fd(), stop, seen, n)? {
                        return Ok(false);
                    }
                }
                FileType::RegularFile if st.st_nlink <= 1 || seen.insert((st.st_dev, st.st_ino)) => {
                    n.1 += st.st_size as u64;
                }
                _ => {}
            }
        }
        Ok(true)
    }
    let fd = sys::open_dir_abs(root)?;
    let mut n = (1, 0); // the root directory
    Ok(walk(fd.as_fd(), stop, &mut HashSet::new(), &mut n)?.then_some(n))
}

pub(super) fn copy_tree(src: &Path, dst: &Path, report: &mut ImportReport, progress: &Progress) -> Result<()> {
    let ctx = |what: &str, p: &Path| format!("importing {}: {what} {}", src.display(), p.display());
    let src_fd = sys::open_dir_abs(src).map_err(|e| Error::io(ctx("opening", src), e))?;
    let st = sys::fstat(src_fd.as_fd()).map_err(|e| Error::io(ctx("stat", src), e))?;
    fs::create_dir(dst).map_err(|e| Error::io(ctx("creating", dst), e))?;
    let dst_fd = sys::open_dir_abs(dst).map_err(|e| Error::io(ctx("opening", dst), e))?;
    let mut c = Copier {
        report,
        progress,
        links: HashMap::new(),
        dst_root: sys::open_dir_abs(dst).map_err(|e| Error::io(ctx("opening", dst), e))?,
    };
    c.copy_dir(src_fd.as_fd(), dst_fd.as_fd(), Path::new(""))
        .map_err(|(p, e)| Error::io(ctx("copying", &src.join(p)), e))?;
    // The root's own metadata, applied through its parent-less fd.
    c.apply_meta(src_fd.as_fd(), dst_fd.as_fd(), OsStr::new(""), &st, false)
        .map_err(|e| Error::io(ctx("setting metadata of", dst), e))?;
    c.report.directories += 1;
    c.progress.add(1, 0);
    Ok(())
}

type CopyResult<T> = std::result::Result<T, (PathBuf, std::io::Error)>;

impl Copier<'_> {
    fn copy_dir(&mut self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, rel: &Path) -> CopyResult<()> {
        let at = |p: &Path| {
            let p = p.to_path_buf();
            move |e: std::io::Error| (p, e)
        };
        for ent in sys::read_dir_entries(src).map_err(at(rel))? {
            let name = ent.name.as_os_str();
            let path = rel.join(name);
            let st = sys::stat_at(src, name).map_err(at(&path))?;
            let ft = FileType::from_raw_mode(st.st_mode);
            if ft != FileType::Directory && st.st_nlink > 1 {
                let key = (st.st_dev, st.st_ino);
                if let Some(first) = self.links.get(&key) {
                    sys::link_at(self.dst_root.as_fd(), first.as_os_str(), dst, name).map_err(at(&path))?;
                    self.report.hard_links += 1;
                    self.progress.add(1, 0);
                    continue;
                }
                self.links.insert(key, path.clone());
            }
            fault::pause("import:entry");
            // Counted when reached (a directory before its content).
            self.progress.add(
                1,
                if ft == FileType::RegularFile {
                    st.st_size as u64
                } else {
                    0
                },
            );
            match ft {
                FileType::Directory => {
                    sys::mkdir_at(dst, name, 0o700).map_err(at(&path))?;
                    let s = sys::open_at(src, name, OFlags::RDONLY | OFlags::DIRECTORY, 0).map_err(at(&path))?;
                    let d = sys::open_at(dst, name, OFlags::RDONLY | OFlags::DIRECTORY, 0).map_err(at(&path))?;
                    self.copy_dir(s.as_fd(), d.as_fd(), &path)?;
                    self.apply_meta(s.as_fd(), dst, name, &st, false).map_err(at(&path))?;
                    self.report.directories += 1;
                }
                FileType::RegularFile => {
                    let s = sys::open_at(src, name, OFlags::RDONLY, 0).map_err(at(&path))?;
                    let d = sys::open_at(dst, name, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL, 0o600)
                        .map_err(at(&path))?;
                    sys::copy::clone_or_copy_data(s.as_fd(), d.as_fd(), st.st_size as u64).map_err(at(&path))?;
                    drop(d);
                    self.apply_meta(s.as_fd(), dst, name, &st, false).map_err(at(&path))?;
                    self.report.files += 1;
                    self.report.bytes += st.st_size as u64;
                }
                FileType::Symlink => {
                    let target = sys::readlink_at(src, name).map_err(at(&path))?;
                    sys::symlink_at(OsStr::from_bytes(&target), dst, name).map_err(at(&path))?;
                    let s = sys::open_at(src, name, OFlags::PATH, 0).map_err(at(&path))?;
                    self.apply_meta(s.as_fd(), dst, name, &st, true).map_err(at(&path))?;
                    self.report.symlinks += 1;
                }
                _ => {
                    sys::mknod_at(dst, name, st.st_mode, st.st_rdev).map_err(at(&path))?;
                    let s = sys::open_at(src, name, OFlags::PATH, 0).map_err(at(&path))?;
                    self.apply_meta(s.as_fd(), dst, name, &st, false).map_err(at(&path))?;
                    self.report.special_files += 1;
                }
            }
        }
        Ok(())
    }

    /// Owner, then mode (chown clears setuid), then xattrs (chown would clear
    /// `security.capability`), then times (last, as anything else bumps them).
    /// `name` empty means `dir` itself.
    fn apply_meta(
        &mut self,
        src: BorrowedFd<'_>,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        st: &sys::Stat,
        symlink: bool,
    ) -> std::io::Result<()> {
        sys::chown_at(dir, name, Some(st.st_uid), Some(st.st_gid))?;
        let dst = if name.is_empty() {
            sys::open_beneath(dir, Path::new(""), OFlags::PATH, 0)?
        } else {
            sys::open_at(dir, name, OFlags::PATH, 0)?
        };
        if !symlink {
            let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dst));
            fs::set_permissions(&proc, std::os::unix::fs::PermissionsExt::from_mode(st.st_mode & 0o7777))?;
        }
        let stripped = Cell::new(0u64);
        sys::copy::copy_xattrs(src, dst.as_fd(), |n| {
            if is_private(n) {
                stripped.set(stripped.get() + 1);
                false
            } else {
                true
            }
        })?;
        self.report.stripped_xattrs += stripped.get();
        sys::utimes_at(
            dir,
            name,
            Some(Some((st.st_atime, st.st_atime_nsec as i64))),
            Some(Some((st.st_mtime, st.st_mtime_nsec as i64))),
        )
    }
}

/// Removes every `trusted.goldenfs.*` xattr in the tree below `dir` (for `--move`).
fn strip_private_xattrs(dir: BorrowedFd<'_>, root: &Path, report: &mut ImportReport) -> Result<()> {
    fn walk(dir: BorrowedFd<'_>, rel: &Path, report: &mut ImportReport) -> std::io::Result<()> {
        strip_one(dir, report)?;
        for ent in sys::read_dir_entries(dir)? {
            let name = ent.name.as_os_str();
            let st = sys::stat_at(dir, name)?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let d = sys::open_at(dir, name, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
                walk(d.as_fd(), &rel.join(name), report)?;
                report.directories += 1;
            } else {
                let f = sys::open_at(dir, name, OFlags::PATH, 0)?;
                strip_one(f.as_fd(), report)?;
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::RegularFile => {
                        report.files += 1;
                        report.bytes += st.st_size as u64;
                    }
                    FileType::Symlink => report.symlinks += 1,
                    _ => report.special_files += 1,
                }
            }
        }
        Ok(())
    }
    fn strip_one(fd: BorrowedFd<'_>, report: &mut ImportReport) -> std::io::Result<()> {
        for n in sys::xattr::list(fd)? {
            if is_private(&n) {
                sys::xattr::remove(fd, &n)?;
                report.stripped_xattrs += 1;
            }
        }
        Ok(())
    }
    walk(dir, Path::new(""), report).map_err(|e| {
        Error::io(
            format!("removing trusted.goldenfs.* xattrs below {}", root.display()),
            e,
        )
    })?;
    report.directories += 1;
    Ok(())
}
