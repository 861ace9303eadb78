//! Copy-up: bringing a lower object into the session's upper.
//!
//! Files are built in the work directory (data by reflink or
//! `copy_file_range`, then xattrs, owner, mode, times and the origin marker)
//! without holding the namespace lock, and renamed into place under it.
//! Directories are copied (metadata only) under the exclusive lock.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;

use super::markers;
use super::meta::SETTABLE_FLAGS;
use super::node::{FileBacking, NodeData, UpperFile};
use super::{Ino, Kind, Overlay};
use crate::error::Errno;
use crate::sys::{self, OFlags, RenameFlags, Stat, copy};

impl Overlay {
    /// Makes sure `ino` has an upper copy (a no-op for upper objects).
    pub(super) fn copy_up(&self, ino: Ino) -> Result<(), Errno> {
        if ino == super::VERSION_INO {
            return Err(Errno::EPERM);
        }
        let _one_at_a_time = self.copyup_locks[(ino % self.copyup_locks.len() as u64) as usize].lock();
        let (layer, path) = {
            let _ns = self.ns.read();
            let nodes = self.nodes.read();
            let node = nodes.get(ino)?;
            match &node.data {
                NodeData::File(FileBacking::Upper(_)) => return Ok(()),
                NodeData::File(FileBacking::Lower { layer, path }) => (*layer, path.clone()),
                NodeData::Dir(d) if d.upper => return Ok(()),
                NodeData::Dir(_) => {
                    drop(nodes);
                    drop(_ns);
                    let _ns = self.ns.write();
                    self.ensure_upper_dir(ino)?;
                    return Ok(());
                }
            }
        };

        // Build the copy in the work dir, no namespace lock held.
        let src = self.open_lower(layer, &path, OFlags::PATH)?;
        let st = sys::fstat(src.as_fd())?;
        let tmp = self.tmp_name("copyup");
        let built = self.build_copy(src.as_fd(), &st, &tmp, Some(ino));
        let made = match built.and_then(|fd| {
            let ino = sys::fstat(fd.as_fd())?.st_ino;
            Ok(UpperFile::from_fd(fd, ino))
        }) {
            Ok(made) => made,
            Err(e) => {
                let _ = sys::unlink_at(self.layers.work.as_fd(), &tmp);
                return Err(e);
            }
        };

        // Other names of a multiply-linked lower file are linked to the copy.
        let aliases = self.find_aliases(layer, &path, &st);

        // The node will hold it by handle (the handle survives the rename).
        let made = made.compact();
        // Publish it under the exclusive lock.
        let ns = self.ns.write();
        // Ok(true): the copy is in place; Ok(false): nothing to do (already upper).
        let publish = || -> Result<bool, Errno> {
            let own = {
                let nodes = self.nodes.read();
                let node = nodes.get(ino)?;
                if node.unlinked {
                    None
                } else if matches!(node.data, NodeData::File(FileBacking::Upper(_))) {
                    return Ok(false);
                } else {
                    Some((node.parent, node.name.clone()))
                }
            };
            // The node's name was removed, but the file may have other names:
            // publish at one the view still shows it at.
            let relinked = own.is_none();
            let (parent, name) = match own {
                Some(own) => own,
                None => self.alias_showing(&aliases, layer, st.st_ino).ok_or(Errno::ENOENT)?,
            };
            let pfd = self.ensure_upper_dir(parent)?;
            crate::fault::point("copyup:before-rename").map_err(|e| e.errno())?;
            sys::rename_at(
                self.layers.work.as_fd(),
                &tmp,
                pfd.as_fd(),
                &name,
                RenameFlags::NOREPLACE,
            )?;
            self.link_aliases(&aliases, layer, st.st_ino, pfd.as_fd(), &name);
            let mut nodes = self.nodes.write();
            if relinked {
                nodes.relink(ino, parent, &name);
            }
            // Under the namespace lock, so no unlink can come between.
            if let Ok(node) = nodes.get_mut(ino) {
                node.data = NodeData::File(FileBacking::Upper(made.clone()));
            }
            Ok(true)
        };
        let published = publish();
        drop(ns);
        self.release_aliases(aliases);
        match published {
            Ok(true) => {
                self.counters.copy_ups.fetch_add(1, Ordering::Relaxed);
                if Kind::from_mode(st.st_mode) == Kind::File {
                    let bytes = st.st_size as u64;
                    self.counters.copy_up_bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                Ok(())
            }
            Ok(false) => {
                let _ = sys::unlink_at(self.layers.work.as_fd(), &tmp);
                Ok(())
            }
            Err(e) => {
                let _ = sys::unlink_at(self.layers.work.as_fd(), &tmp);
                Err(e)
            }
        }
    }

    /// Creates in the work dir, as `tmp`, a copy of the non-directory `src`
    /// (described by `st`), with `origin` recorded. Returns an `O_PATH` fd.
    pub(super) fn build_copy(
        &self,
        src: BorrowedFd<'_>,
        st: &Stat,
        tmp: &OsStr,
        origin: Option<Ino>,
    ) -> Result<OwnedFd, Errno> {
        let work = self.layers.work.as_fd();
        let kind = Kind::from_mode(st.st_mode);
        match kind {
            Kind::File => {
                let from = sys::with_noatime(OFlags::RDONLY, |f| sys::reopen(src, f))?;
                let to = sys::open_at(work, tmp, OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY, 0o600)?;
                copy::clone_or_copy_data(from.as_fd(), to.as_fd(), st.st_size as u64)?;
                copy_inode_flags(from.as_fd(), to.as_fd())?;
                // As overlayfs does: the data is on disk before the rename
                // publishes the copy, so a machine crash cannot leave an
                // empty or partial copy hiding the intact lower file.
                sys::fsync(to.as_fd(), true)?;
            }
            Kind::Symlink => {
                let target = sys::readlink_at(src, OsStr::new(""))?;
                sys::symlink_at(std::os::unix::ffi::OsStrExt::from_bytes(target.as_slice()), work, tmp)?;
            }
            Kind::Dir => return Err(Errno::EISDIR),
            _ => sys::mknod_at(work, tmp, st.st_mode & libc::S_IFMT | 0o600, st.st_rdev)?,
        }
        let made = markers::open_entry(work, tmp)?;
        copy_metadata(src, made.as_fd(), st)?;
        if let Some(o) = origin {
            markers::set_origin(made.as_fd(), o)?;
        }
        Ok(made)
    }

    /// Gives directory `ino` an upper copy (metadata only), creating its
    /// ancestors first. Needs the exclusive namespace lock. Returns an
    /// `O_PATH` fd on the upper directory.
    pub(super) fn ensure_upper_dir(&self, ino: Ino) -> Result<OwnedFd, Errno> {
        let (path, upper, parent, name, top) = {
            let nodes = self.nodes.read();
            let node = nodes.get(ino)?;
            let d = node.dir()?;
            (
                nodes.path_of(ino)?,
                d.upper,
                node.parent,
                node.name.clone(),
                d.lower.first().cloned(),
            )
        };
        if upper {
            return Ok(sys::open_dir_path(self.layers.upper.as_fd(), &path)?);
        }
        let top = top.ok_or(Errno::ENOENT)?;
        let pfd = self.ensure_upper_dir(parent)?;
        let src = self.open_lower(top.layer, &top.path, OFlags::PATH | OFlags::DIRECTORY)?;
        let st = sys::fstat(src.as_fd())?;
        let tmp = self.tmp_name("dir");
        let work = self.layers.work.as_fd();
        sys::mkdir_at(work, &tmp, 0o700)?;
        let made = (|| -> Result<OwnedFd, Errno> {
            let made = sys::open_at(work, &tmp, OFlags::PATH | OFlags::DIRECTORY, 0)?;
            copy_metadata(src.as_fd(), made.as_fd(), &st)?;
            sys::rename_at(work, &tmp, pfd.as_fd(), &name, RenameFlags::NOREPLACE)?;
            Ok(made)
        })();
        let made = match made {
            Ok(m) => m,
            Err(e) => {
                let _ = sys::rmdir_at(work, &tmp);
                return Err(e);
            }
        };
        self.nodes.write().mark_dir_upper(ino);
        Ok(made)
    }
}

/// Copies owner, mode, user-visible xattrs and times from `src` to `dst`
/// (both may be `O_PATH`). The order matters: chown clears setuid/setgid
/// (so mode comes after it) and drops `security.capability` (so xattrs come
/// after it); times come last, as everything else bumps them.
pub(super) fn copy_metadata(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, st: &Stat) -> Result<(), Errno> {
    sys::chown_fd(dst, Some(st.st_uid), Some(st.st_gid))?;
    if Kind::from_mode(st.st_mode) != Kind::Symlink {
        sys::chmod_fd(dst, st.st_mode)?;
    }
    copy::copy_xattrs(src, dst, |n| !markers::is_private(n))?;
    // A file's flags are copied with its data (`build_copy`), on the fds
    // already open there; flags need a real fd, not an `O_PATH` one.
    if Kind::from_mode(st.st_mode) == Kind::Dir {
        let open = OFlags::RDONLY | OFlags::DIRECTORY;
        copy_inode_flags(sys::reopen(src, open)?.as_fd(), sys::reopen(dst, open)?.as_fd())?;
    }
    sys::utimes_fd(
        dst,
        Some(Some((st.st_atime, st.st_atime_nsec as i64))),
        Some(Some((st.st_mtime, st.st_mtime_nsec as i64))),
    )?;
    Ok(())
}

/// Carries the harmless inode flags (noatime, sync, ...) of `from` over to
/// `to` (both opened, not `O_PATH`), as overlayfs does, so `lsattr` does not
/// change on copy-up. Skipped where the filesystem has no flags.
fn copy_inode_flags(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), Errno> {
    let Ok(want) = sys::get_inode_flags(from) else {
        return Ok(());
    };
    let Ok(have) = sys::get_inode_flags(to) else {
        return Ok(());
    };
    let flags = (have & !SETTABLE_FLAGS) | (want & SETTABLE_FLAGS);
    if flags != have {
        sys::set_inode_flags(to, flags)?;
    }
    Ok(())
}
