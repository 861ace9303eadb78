//! Flattening a view into one self-contained layer (compaction).
//!
//! The walk uses the view's own lookup rules (`merged_names`, `resolve_in`),
//! so the new layer shows exactly what the view shows: whiteouts, opaque
//! directories and redirects are resolved, and nothing of the view's node
//! table is used (nothing is remembered, so memory stays flat).
//!
//! - Directories are created anew with the metadata and user-visible xattrs
//!   of their top copy, and an origin marker holding the inode number the
//!   view reported for them (the new directory's own number differs).
//! - Every non-directory is hard-linked from its topmost copy: no data is
//!   copied, and `st_ino`, xattrs (the origin marker included) and times stay.
//!   A source at the filesystem's link limit (`EMLINK`) is copied instead,
//!   with its view inode number as origin; the other names of that file
//!   link to the copy.
//! - The hard-link groups of the result are returned so the caller can
//!   persist them: the new inodes also have names in the source layers, so
//!   their link counts say nothing about the new layer.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::copyup::copy_metadata;
use super::markers;
use super::node::FileBacking;
use super::resolve::Found;
use super::{DirView, Overlay, ROOT_INO};
use crate::error::Errno;
use crate::sys::{self, OFlags, RenameFlags, Stat};

/// What [`Overlay::flatten_into`] built.
#[derive(Debug, Default)]
pub struct Flattened {
    /// Directories and non-directories created (the root not counted).
    pub entries: u64,
    /// Hard-link groups of the new layer (paths relative to its root), each
    /// with at least two names.
    pub links: Vec<Vec<PathBuf>>,
}

struct Walk<'a> {
    ov: &'a Overlay,
    done: &'a AtomicU64,
    dest_root: BorrowedFd<'a>,
    out: Flattened,
    /// Backing inode of a source that had to be copied → path and inode
    /// of its copy.
    copies: HashMap<u64, (PathBuf, u64)>,
    /// Inode in the new layer → its names there (only multiply-linked sources).
    groups: HashMap<u64, Vec<PathBuf>>,
}

impl Overlay {
    /// Writes what this view shows into the empty directory `dest` (which
    /// must be on the store's filesystem). The view's upper must be empty:
    /// only its lower layers are read. `dest` gets the metadata of the top
    /// lower layer's root.
    /// `done` counts the entries created, for progress reports.
    pub fn flatten_into(&self, dest: BorrowedFd<'_>, done: &AtomicU64) -> Result<Flattened, Errno> {
        let root = DirView::new(
            ROOT_INO,
            PathBuf::new(),
            None,
            self.root_lower.clone(),
            Some(Path::new("").into()),
        );
        let mut w = Walk {
            ov: self,
            done,
            dest_root: dest,
            out: Flattened::default(),
            copies: HashMap::new(),
            groups: HashMap::new(),
        };
        w.dir(&root, dest)?;
        if let Some(top) = self.layers.lowers.first() {
            let st = sys::fstat(top.as_fd())?;
            copy_metadata(top.as_fd(), dest, &st)?;
        }
        let mut out = w.out;
        out.links = super::hardlinks::sorted_groups(w.groups.into_values());
        Ok(out)
    }
}

impl Walk<'_> {
    /// Fills the new directory `dest` with the content of the view's
    /// directory `view` (the same path in the new layer).
    fn dir(&mut self, view: &DirView, dest: BorrowedFd<'_>) -> Result<(), Errno> {
        for (name, index) in self.ov.merged_names(view)? {
            let hint = index.map(|i| view.hint(i));
            let Some(found) = self.ov.resolve_in_from(view, &name, hint.as_ref())?.found else {
                continue;
            };
            let ino = found.attr().ino;
            let rel = view.path.join(&name);
            match found {
                Found::Dir {
                    lower, origin, stat, ..
                } => {
                    if lower.is_empty() {
                        return Err(Errno::EIO); // the view's upper is empty: a directory comes from below
                    }
                    sys::mkdir_at(dest, &name, 0o700)?;
                    let sub = sys::open_at(dest, &name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW, 0)?;
                    let child = DirView::new(ino, rel, None, lower.into(), origin.map(Arc::from));
                    self.dir(&child, sub.as_fd())?;
                    // After the children: creating them moved the times.
                    let top = child.lower_fd(&self.ov.layers, 0)?;
                    copy_metadata(top.as_fd(), sub.as_fd(), &stat)?;
                    markers::set_origin(sub.as_fd(), ino)?;
                }
                Found::File {
                    backing: FileBacking::Lower { layer, path },
                    stat,
                    ino,
                } => self.file(view, dest, &name, &rel, (layer, &path), &stat, ino)?,
                // The view's upper is empty: nothing can be found there.
                Found::File { .. } => return Err(Errno::EIO),
            }
            self.out.entries += 1;
            self.done.fetch_add(1, Ordering::Relaxed);
            crate::fault::pause("compact:entry");
            if self.out.entries == 1 {
                crate::fault::point("compact:mid-build").map_err(|e| e.errno())?;
            }
        }
        Ok(())
    }

    /// Links (or, at the link limit, copies) the non-directory `layer`/`path`
    /// as `dest`/`name`.
    #[allow(clippy::too_many_arguments)]
    fn file(
        &mut self,
        view: &DirView,
        dest: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
        (layer, path): (usize, &Path),
        stat: &Stat,
        ino: u64,
    ) -> Result<(), Errno> {
        let inode = if let Some((copy, copy_ino)) = self.copies.get(&stat.st_ino) {
            let (dir, base) = split(copy)?;
            let dir = sys::open_dir_path(self.dest_root, dir)?;
            sys::link_at(dir.as_fd(), base, dest, name)?;
            *copy_ino
        } else {
            let (dir, base) = split(path)?;
            // Resolving the name opened its directory, one of `view`'s lower
            // directories.
            let i = view
                .lower
                .iter()
                .position(|l| l.layer == layer && l.path == dir)
                .ok_or(Errno::EIO)?;
            match sys::link_at(view.lower_fd(&self.ov.layers, i)?.as_fd(), base, dest, name) {
                Ok(()) => stat.st_ino,
                Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {
                    let made = self.copy(layer, path, stat, dest, name, ino)?;
                    let made_ino = sys::fstat(made.as_fd())?.st_ino;
                    self.copies.insert(stat.st_ino, (rel.to_path_buf(), made_ino));
                    made_ino
                }
                Err(e) => return Err(e.into()),
            }
        };
        // `stat` reports the view's link count (the source layer's own
        // names): only those with several can form a group.
        if stat.st_nlink > 1 {
            self.groups.entry(inode).or_default().push(rel.to_path_buf());
        }
        Ok(())
    }

    /// Copies lower file `layer`/`path` (whose stat is `st`) to
    /// `dest`/`name` with origin `ino`.
    fn copy(
        &self,
        layer: usize,
        path: &Path,
        st: &Stat,
        dest: BorrowedFd<'_>,
        name: &OsStr,
        ino: u64,
    ) -> Result<OwnedFd, Errno> {
        let src = self.ov.open_lower(layer, path, OFlags::PATH)?;
        let tmp = self.ov.tmp_name("compact");
        let work = self.ov.layers.work.as_fd();
        let made = self
            .ov
            .build_copy(src.as_fd(), st, &tmp, Some(ino))
            .and_then(|made| Ok(sys::rename_at(work, &tmp, dest, name, RenameFlags::NOREPLACE).map(|()| made)?));
        match &made {
            Ok(_) => log::warn!("compaction: {path:?} is at the link limit; copied it"),
            Err(_) => {
                let _ = sys::unlink_at(work, &tmp);
            }
        }
        made
    }
}

fn split(p: &Path) -> Result<(&Path, &OsStr), Errno> {
    Ok((p.parent().unwrap_or(Path::new("")), p.file_name().ok_or(Errno::EIO)?))
}
