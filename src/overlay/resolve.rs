//! Finding a name through the layer stack.
//!
//! Upper first, then the parent's lower directories top-down: a whiteout
//! ends the search, a non-directory wins if nothing was found above it, and
//! directories merge until an opaque one, a redirect (which continues the
//! search at another path in the layers below) or a non-directory.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::markers;
use super::node::{DirInfo, FileBacking, LowerDir, NodeData, UpperFile};
use super::{Attr, DirEntry, DirView, Ino, Kind, LowerHint, Overlay, cached_fd};
use crate::error::Errno;
use crate::sys::{self, OFlags, Stat};

fn is_dir(st: &Stat) -> bool {
    (st.st_mode & libc::S_IFMT) == libc::S_IFDIR
}

/// A name found in the view.
pub(super) enum Found {
    Dir {
        upper: bool,
        lower: Vec<LowerDir>,
        origin: Option<PathBuf>,
        stat: Stat,
    },
    File {
        backing: FileBacking,
        stat: Stat,
        ino: Ino,
    },
}

impl Found {
    pub fn in_upper(&self) -> bool {
        match self {
            Found::Dir { upper, .. } => *upper,
            Found::File { backing, .. } => matches!(backing, FileBacking::Upper(_)),
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self, Found::Dir { .. })
    }

    /// An upper file whose name was just removed, if that was its last
    /// link (see [`UpperFile::if_deleted`]).
    pub fn deleted_upper(&self) -> Option<UpperFile> {
        match self {
            Found::File {
                backing: FileBacking::Upper(u),
                ..
            } => u.if_deleted(),
            _ => None,
        }
    }

    pub fn attr(&self) -> Attr {
        match self {
            Found::Dir { upper, lower, stat, .. } => dir_attr(*upper, lower, stat),
            Found::File { stat, ino, .. } => Attr::from_stat(*ino, stat),
        }
    }

    /// What a node keeps of it (an upper file by handle, not by fd).
    pub fn into_data(self) -> NodeData {
        match self {
            Found::Dir {
                upper, lower, origin, ..
            } => NodeData::Dir(DirInfo {
                upper,
                lower: lower.into(),
                origin: origin.map(Arc::from),
            }),
            Found::File {
                backing: FileBacking::Upper(u),
                ..
            } => NodeData::File(FileBacking::Upper(u.compact())),
            Found::File { backing, .. } => NodeData::File(backing),
        }
    }
}

/// A merged directory reports its origin's inode and, like overlayfs, a link
/// count of 1 ("unknown") so that `find` does not use the leaf optimisation.
pub(super) fn dir_attr(upper: bool, lower: &[LowerDir], top: &Stat) -> Attr {
    let ino = lower.last().map(|l| l.ino).unwrap_or(top.st_ino);
    let mut a = Attr::from_stat(ino, top);
    if usize::from(upper) + lower.len() > 1 {
        a.nlink = 1;
    }
    a
}

/// What resolving one name found.
pub(super) struct Resolved {
    pub found: Option<Found>,
    /// The upper holds a goldenfs whiteout at the name.
    pub upper_whiteout: bool,
}

enum LowerFound {
    Dir(Vec<LowerDir>, Stat),
    File {
        layer: usize,
        path: PathBuf,
        stat: Stat,
        ino: Ino,
    },
}

impl Overlay {
    /// Layers that can hold markers: all but the bottom one (an import, which
    /// is stripped of them), unless that is a compacted layer.
    fn has_markers(&self, layer: usize) -> bool {
        layer + 1 < self.layers.lowers.len() || self.is_compacted(layer)
    }

    /// Snapshot of a directory node for name lookups in it.
    pub(super) fn dir_view(&self, ino: Ino) -> Result<DirView, Errno> {
        let (path, info) = {
            let nodes = self.nodes.read();
            let node = nodes.get(ino)?;
            let info = node.dir()?.clone();
            (nodes.path_of(ino)?, info)
        };
        let upper = if info.upper {
            Some(sys::open_dir_path(self.layers.upper.as_fd(), &path).map_err(stale)?)
        } else {
            None
        };
        Ok(DirView::new(ino, path, upper, info.lower, info.origin))
    }

    /// Flushes the directory `ino` of the upper to disk (FSYNCDIR), so that
    /// entries created, renamed or removed in it survive a machine crash.
    /// A directory only in the lower layers has nothing to flush.
    pub fn fsync_dir(&self, ino: Ino, datasync: bool) -> Result<(), Errno> {
        let path = {
            let nodes = self.nodes.read();
            if !nodes.get(ino)?.dir()?.upper {
                return Ok(());
            }
            nodes.path_of(ino)?
        };
        let fd = sys::open_dir_read(self.layers.upper.as_fd(), &path).map_err(stale)?;
        Ok(sys::fsync(fd.as_fd(), datasync)?)
    }

    /// Resolves `name` in the directory `dir`.
    pub(super) fn resolve_in(&self, dir: &DirView, name: &OsStr) -> Result<Resolved, Errno> {
        self.resolve_in_from(dir, name, None)
    }

    /// `resolve_in`, told by a listing of `dir` which of its lower
    /// directories first held `name`: the lower directories above that one
    /// are not probed (they are immutable, and did not hold it). Deep stacks
    /// of promoted layers would otherwise cost one probe per layer per name.
    /// The hint is ignored unless `dir`'s lower stack down to that point is
    /// still the one listed.
    pub(super) fn resolve_in_from(
        &self,
        dir: &DirView,
        name: &OsStr,
        hint: Option<&LowerHint>,
    ) -> Result<Resolved, Errno> {
        check_name(name)?;
        if let Some(up) = &dir.upper {
            match sys::stat_at(up.as_fd(), name) {
                Ok(st) => return self.resolve_upper_entry(dir, up, name, st),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let start = hint.map_or(0, |h| dir.hint_start(h));
        let found = match self.walk_lower(&dir.lower[start..], Some(&dir.lower_fds[start..]), name)? {
            Some(LowerFound::Dir(lower, stat)) => Some(Found::Dir {
                upper: false,
                lower,
                origin: dir.origin.as_ref().map(|o| o.join(name)),
                stat,
            }),
            Some(LowerFound::File { layer, path, stat, ino }) => Some(Found::File {
                backing: FileBacking::Lower {
                    layer,
                    path: path.into(),
                },
                stat,
                ino,
            }),
            None => None,
        };
        Ok(Resolved {
            found,
            upper_whiteout: false,
        })
    }

    fn resolve_upper_entry(&self, dir: &DirView, up: &OwnedFd, name: &OsStr, st: Stat) -> Result<Resolved, Errno> {
        if markers::looks_like_whiteout(&st) && markers::is_whiteout(up.as_fd(), name)? {
            return Ok(Resolved {
                found: None,
                upper_whiteout: true,
            });
        }
        let fd = markers::open_entry(up.as_fd(), name)?;
        let found = if is_dir(&st) {
            let m = markers::dir_markers(fd.as_fd())?;
            let (lower, origin) = if m.opaque {
                (Vec::new(), None)
            } else if let Some(r) = m.redirect {
                (self.resolve_lower_path(&r, 0)?, Some(r))
            } else {
                match self.walk_lower(&dir.lower, Some(&dir.lower_fds), name)? {
                    Some(LowerFound::Dir(lower, _)) => (lower, dir.origin.as_ref().map(|o| o.join(name))),
                    _ => (Vec::new(), None),
                }
            };
            Found::Dir {
                upper: true,
                lower,
                origin,
                stat: st,
            }
        } else {
            let ino = markers::origin(fd.as_fd())?.unwrap_or(st.st_ino);
            Found::File {
                backing: FileBacking::Upper(UpperFile::from_fd(fd, st.st_ino)),
                stat: st,
                ino,
            }
        };
        Ok(Resolved {
            found: Some(found),
            upper_whiteout: false,
        })
    }

    /// Does `name` exist in the lower layers of `dir` (ignoring the upper)?
    pub(super) fn name_in_lower(&self, dir: &DirView, name: &OsStr) -> Result<bool, Errno> {
        Ok(self.walk_lower(&dir.lower, Some(&dir.lower_fds), name)?.is_some())
    }

    /// Looks `name` up in the lower directories `stack`, top-down. `fds`, if
    /// given, caches an `O_PATH` fd per entry of `stack` for further names.
    fn walk_lower(
        &self,
        stack: &[LowerDir],
        fds: Option<&[OnceLock<OwnedFd>]>,
        name: &OsStr,
    ) -> Result<Option<LowerFound>, Errno> {
        let mut dirs: Vec<LowerDir> = Vec::new();
        let mut top: Option<Stat> = None;
        for (i, e) in stack.iter().enumerate() {
            let open = || sys::open_dir_path(self.layers.lowers[e.layer].as_fd(), &e.path).map_err(stale);
            let opened;
            let dirfd = match fds.and_then(|f| f.get(i)) {
                Some(cell) => cached_fd(cell, open)?,
                None => {
                    opened = open()?;
                    &opened
                }
            };
            let st = match sys::stat_at(dirfd.as_fd(), name) {
                Ok(st) => st,
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(err) => return Err(err.into()),
            };
            let markers_here = self.has_markers(e.layer);
            if markers_here && markers::looks_like_whiteout(&st) && markers::is_whiteout(dirfd.as_fd(), name)? {
                break;
            }
            let path = e.path.join(name);
            if is_dir(&st) {
                top.get_or_insert(st);
                let entry = markers_here
                    .then(|| markers::open_entry(dirfd.as_fd(), name))
                    .transpose()?;
                // A compacted layer's directories record the number a view showed.
                let ino = match (&entry, self.is_compacted(e.layer)) {
                    (Some(fd), true) => markers::origin(fd.as_fd())?,
                    _ => None,
                };
                dirs.push(LowerDir {
                    layer: e.layer,
                    path,
                    ino: ino.unwrap_or(st.st_ino),
                });
                if let Some(fd) = entry {
                    let m = markers::dir_markers(fd.as_fd())?;
                    if m.opaque {
                        break;
                    }
                    if let Some(r) = m.redirect {
                        dirs.extend(self.resolve_lower_path(&r, e.layer + 1)?);
                        break;
                    }
                }
            } else {
                if top.is_some() {
                    break;
                }
                let ino = if markers_here {
                    let fd = markers::open_entry(dirfd.as_fd(), name)?;
                    markers::origin(fd.as_fd())?.unwrap_or(st.st_ino)
                } else {
                    st.st_ino
                };
                let mut st = st;
                self.fix_lower_nlink(e.layer, &path, &mut st);
                return Ok(Some(LowerFound::File {
                    layer: e.layer,
                    path,
                    stat: st,
                    ino,
                }));
            }
        }
        Ok(top.map(|st| LowerFound::Dir(dirs, st)))
    }

    /// The lower directories of the merged-lower path `path`, looking only at
    /// layers `from..` (a redirect found in layer L continues below L).
    pub(super) fn resolve_lower_path(&self, path: &Path, from: usize) -> Result<Vec<LowerDir>, Errno> {
        let mut stack: Vec<LowerDir> = self.root_lower.get(from..).unwrap_or_default().to_vec();
        for c in path.components() {
            let Component::Normal(name) = c else { continue };
            match self.walk_lower(&stack, None, name)? {
                Some(LowerFound::Dir(d, _)) => stack = d,
                _ => return Ok(Vec::new()),
            }
        }
        Ok(stack)
    }

    /// Opens a lower file at a fixed path (never following a symlink).
    pub(super) fn open_lower(&self, layer: usize, path: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
        Ok(sys::open_beneath(
            self.layers.lowers[layer].as_fd(),
            path,
            flags | OFlags::NOFOLLOW,
            0,
        )?)
    }

    /// Looks `name` up in directory `parent` and records it for the kernel.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr, Errno> {
        if self.is_version(parent, name) {
            return Ok(self.version_attr());
        }
        let _ns = self.ns.read();
        let dir = self.dir_view(parent)?;
        let found = self.resolve_in(&dir, name)?.found.ok_or(Errno::ENOENT)?;
        let attr = found.attr();
        let data = found.into_data();
        self.nodes.write().remember(attr.ino, parent, name, attr.kind, data);
        Ok(attr)
    }

    /// Looks listed merged names of `parent` up as `lookup` does, sharing
    /// one view of the directory (readdirplus). Entries that vanished since
    /// the listing give ENOENT.
    pub fn lookup_listed(&self, parent: Ino, entries: &[&DirEntry]) -> Vec<Result<Attr, Errno>> {
        self.resolve_listed(parent, entries, true)
    }

    /// Attributes of listed merged names of `parent`, not recorded for the
    /// kernel (a plain readdir needs only their inode numbers and kinds).
    pub fn stat_listed(&self, parent: Ino, entries: &[&DirEntry]) -> Vec<Result<Attr, Errno>> {
        self.resolve_listed(parent, entries, false)
    }

    fn resolve_listed(&self, parent: Ino, entries: &[&DirEntry], remember: bool) -> Vec<Result<Attr, Errno>> {
        let _ns = self.ns.read();
        let dir = match self.dir_view(parent) {
            Ok(d) => d,
            Err(e) => return entries.iter().map(|_| Err(e)).collect(),
        };
        entries
            .iter()
            .map(|e| {
                let found = self
                    .resolve_in_from(&dir, &e.name, e.hint.as_ref())?
                    .found
                    .ok_or(Errno::ENOENT)?;
                let attr = found.attr();
                if remember {
                    let data = found.into_data();
                    self.nodes.write().remember(attr.ino, parent, &e.name, attr.kind, data);
                }
                Ok(attr)
            })
            .collect()
    }

    /// Attributes of `ino`.
    pub fn getattr(&self, ino: Ino) -> Result<Attr, Errno> {
        if ino == super::VERSION_INO {
            return Ok(self.version_attr());
        }
        let _ns = self.ns.read();
        self.attr_locked(ino)
    }

    /// `getattr` with the namespace lock held by the caller.
    pub(super) fn attr_locked(&self, ino: Ino) -> Result<Attr, Errno> {
        let (data, fd) = self.top_copy(ino)?;
        let mut st = sys::fstat(fd.as_fd())?;
        Ok(match data {
            NodeData::File(FileBacking::Lower { layer, path }) => {
                self.fix_lower_nlink(layer, &path, &mut st);
                Attr::from_stat(ino, &st)
            }
            NodeData::File(_) => Attr::from_stat(ino, &st),
            NodeData::Dir(info) => Attr {
                ino,
                ..dir_attr(info.upper, &info.lower, &st)
            },
        })
    }

    /// A node's data and an `O_PATH` handle on its current top copy (upper
    /// if it has one, else its topmost lower copy).
    pub(super) fn top_copy(&self, ino: Ino) -> Result<(NodeData, Arc<OwnedFd>), Errno> {
        let (data, path) = {
            let nodes = self.nodes.read();
            let node = nodes.get(ino)?;
            let path = if node.kind == Kind::Dir {
                Some(nodes.path_of(ino)?)
            } else {
                None
            };
            (node.data.clone(), path)
        };
        let fd = match &data {
            NodeData::File(FileBacking::Upper(u)) => u.path_fd(self.layers.upper.as_fd())?,
            NodeData::File(FileBacking::Lower { layer, path }) => {
                Arc::new(self.open_lower(*layer, path, OFlags::PATH)?)
            }
            NodeData::Dir(d) if d.upper => {
                Arc::new(sys::open_dir_path(self.layers.upper.as_fd(), &path.unwrap_or_default()).map_err(stale)?)
            }
            NodeData::Dir(d) => {
                let top = d.lower.first().ok_or(Errno::ENOENT)?;
                Arc::new(self.open_lower(top.layer, &top.path, OFlags::PATH | OFlags::DIRECTORY)?)
            }
        };
        Ok((data, fd))
    }
}

/// Every name the core acts on is resolved here first, so this is where a
/// name that is not one component is refused. The kernel never sends one,
/// but resolved relative to a directory fd, `a/b` would follow a symlink a
/// session planted at `a` (only the last component is taken with
/// `O_NOFOLLOW`), and `..` would leave the layer.
fn check_name(name: &OsStr) -> Result<(), Errno> {
    use std::os::unix::ffi::OsStrExt;
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// A directory that vanished under a cached path: report it as gone.
fn stale(e: std::io::Error) -> Errno {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::EXDEV) => Errno::ENOENT,
        _ => e.into(),
    }
}
