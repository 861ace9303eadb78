//! rename(2) in all its forms, O(1) for directories.
//!
//! A directory with lower content is moved by renaming (or creating) its
//! upper copy at the new name with a redirect marker pointing at its lower
//! origin, and leaving a whiteout at the old name, as overlayfs does with
//! `redirect_dir=on`. Files are copied up first (outside the namespace lock).

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::copyup::copy_metadata;
use super::markers;
use super::resolve::Found;
use super::{DirView, Ino, Kind, Overlay};
use crate::error::Errno;
use crate::sys::{self, OFlags, RenameFlags};

impl Overlay {
    /// Copies up a lower non-directory named `parent/name` (no-op otherwise).
    fn copy_up_name(&self, parent: Ino, name: &OsStr) -> Result<(), Errno> {
        let a = match self.lookup(parent, name) {
            Ok(a) => a,
            Err(Errno::ENOENT) => return Ok(()), // reported by the locked phase
            Err(e) => return Err(e),
        };
        let r = if a.kind != Kind::Dir {
            self.copy_up(a.ino)
        } else {
            Ok(())
        };
        self.forget(a.ino, 1);
        r
    }

    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: u32,
    ) -> Result<(), Errno> {
        let known = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT;
        if flags & !known != 0 {
            return Err(Errno::EINVAL);
        }
        if self.is_version(parent, name) || self.is_version(new_parent, new_name) {
            return Err(Errno::EPERM);
        }
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if exchange && flags & (libc::RENAME_NOREPLACE | libc::RENAME_WHITEOUT) != 0 {
            return Err(Errno::EINVAL);
        }
        self.copy_up_name(parent, name)?;
        if exchange {
            self.copy_up_name(new_parent, new_name)?;
        }

        let _ns = self.ns.write();
        let sdir = self.dir_view(parent)?;
        let src = self.resolve_in(&sdir, name)?.found.ok_or(Errno::ENOENT)?;
        let ddir = self.dir_view(new_parent)?;
        let dres = self.resolve_in(&ddir, new_name)?;
        if let (
            Found::File {
                ino: a, backing: sb, ..
            },
            Some(Found::File {
                ino: b, backing: db, ..
            }),
        ) = (&src, &dres.found)
            && a == b
            && sb.same_upper(db)
        {
            return Ok(()); // two names of one file: POSIX says do nothing
        }
        if parent == new_parent && name == new_name {
            return Ok(());
        }
        if exchange {
            let dst = dres.found.ok_or(Errno::ENOENT)?;
            return self.exchange(&sdir, name, &src, &ddir, new_name, &dst);
        }
        let mut replaced = None;
        if let Some(dst) = &dres.found {
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(Errno::EEXIST);
            }
            match (src.is_dir(), dst.is_dir()) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) => {
                    let view = self.child_view(&ddir, new_name, dst)?;
                    if !self.merged_names(&view)?.is_empty() {
                        return Err(Errno::ENOTEMPTY);
                    }
                    // A replaced directory the kernel still holds keeps its
                    // backing inode allocated (as rmdir does): its number is
                    // the node id and must not be reused by a new object.
                    replaced = view.upper;
                }
                (false, false) => {}
            }
        }
        let dst_upper_entry = dres.upper_whiteout || dres.found.as_ref().is_some_and(|d| d.in_upper());
        let src_in_lower = self.name_in_lower(&sdir, name)?;
        let dst_in_lower = self.name_in_lower(&ddir, new_name)?;
        let spfd = self.upper_of(&sdir)?;
        let dpfd = self.upper_of(&ddir)?;
        let work = self.layers.work.as_fd();

        // The thing to move, as an upper entry: (dir fd, name) of where it is now.
        let (from_dir, from_name, built_in_work): (BorrowedFd<'_>, std::ffi::OsString, bool) = match &src {
            Found::File { .. } if !src.in_upper() => return Err(Errno::EIO), // copy-up raced
            Found::File { .. } => (spfd.as_fd(), name.to_os_string(), false),
            Found::Dir {
                upper, lower, origin, ..
            } => {
                if !upper {
                    // Lower-only directory: build its upper copy in work/, redirected.
                    let top = lower.first().ok_or(Errno::ENOENT)?;
                    let srcfd = self.open_lower(top.layer, &top.path, OFlags::PATH | OFlags::DIRECTORY)?;
                    let st = sys::fstat(srcfd.as_fd())?;
                    let tmp = self.tmp_name("mv");
                    sys::mkdir_at(work, &tmp, 0o700)?;
                    let built = (|| -> Result<(), Errno> {
                        let made = markers::open_entry(work, &tmp)?;
                        copy_metadata(srcfd.as_fd(), made.as_fd(), &st)?;
                        Ok(markers::set_redirect(
                            made.as_fd(),
                            origin.as_deref().ok_or(Errno::EIO)?,
                        )?)
                    })();
                    if let Err(e) = built {
                        let _ = sys::rmdir_at(work, &tmp);
                        return Err(e);
                    }
                    (work, tmp, true)
                } else {
                    let fd = markers::open_entry(spfd.as_fd(), name)?;
                    if !lower.is_empty() {
                        markers::set_redirect(fd.as_fd(), origin.as_deref().ok_or(Errno::EIO)?)?;
                    } else if dst_in_lower {
                        markers::set_opaque(fd.as_fd())?;
                    }
                    (spfd.as_fd(), name.to_os_string(), false)
                }
            }
        };

        // Move it into place. A directory cannot replace a (merged-empty)
        // upper dir or a whiteout by plain rename: swap them instead, then
        // deal with what landed at the source.
        let swapped = dst_upper_entry && src.is_dir();
        let how = if swapped {
            RenameFlags::EXCHANGE
        } else if dst_upper_entry {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        if let Err(e) = sys::rename_at(from_dir, &from_name, dpfd.as_fd(), new_name, how) {
            if built_in_work {
                let _ = sys::rmdir_at(work, &from_name);
            }
            return Err(e.into());
        }
        let wants_marker = src_in_lower || flags & libc::RENAME_WHITEOUT != 0;
        if swapped {
            // An old whiteout now at the source is exactly what is needed there.
            let keep = !built_in_work && src_in_lower && dres.upper_whiteout && flags & libc::RENAME_WHITEOUT == 0;
            if !keep {
                if built_in_work {
                    super::remove_tree_at(work, &from_name)?;
                } else {
                    let tmp = self.tmp_name("old");
                    sys::rename_at(from_dir, &from_name, work, &tmp, RenameFlags::NOREPLACE)?;
                    super::remove_tree_at(work, &tmp)?;
                }
                if wants_marker {
                    self.source_marker(spfd.as_fd(), name, flags)?;
                }
            }
        } else if wants_marker {
            self.source_marker(spfd.as_fd(), name, flags)?;
        }
        // A file replaced by its last link stays reachable for the kernel's node.
        let deleted = dres.found.as_ref().and_then(Found::deleted_upper);
        let mut nodes = self.nodes.write();
        if deleted.is_some() {
            nodes.unlink_upper_name(new_parent, new_name, deleted);
        }
        nodes.unlink_name_keeping(new_parent, new_name, replaced);
        nodes.rename(parent, name, new_parent, new_name);
        // A moved directory now has an upper copy (it may not have had one).
        if let Some(ino) = nodes.child(new_parent, new_name) {
            nodes.mark_dir_upper(ino);
        }
        Ok(())
    }

    /// What stays at a rename's source: the caller's char 0/0 device for
    /// `RENAME_WHITEOUT` (user data to us), else a goldenfs whiteout.
    fn source_marker(&self, dir: BorrowedFd<'_>, name: &OsStr, flags: u32) -> Result<(), Errno> {
        if flags & libc::RENAME_WHITEOUT != 0 {
            sys::mknod_at(dir, name, libc::S_IFCHR | 0o600, 0)?;
            Ok(())
        } else {
            self.put_whiteout(dir, name)
        }
    }

    /// `RENAME_EXCHANGE`: both sides get self-contained upper copies, then swap.
    fn exchange(
        &self,
        sdir: &DirView,
        name: &OsStr,
        src: &Found,
        ddir: &DirView,
        new_name: &OsStr,
        dst: &Found,
    ) -> Result<(), Errno> {
        let spfd = self.upper_of(sdir)?;
        let dpfd = self.upper_of(ddir)?;
        // Each side lands at the other's name: a directory without lower
        // content of its own must not merge with lower content found there.
        let sides = [
            (sdir, name, src, self.name_in_lower(ddir, new_name)?),
            (ddir, new_name, dst, self.name_in_lower(sdir, name)?),
        ];
        for (view, n, f, other_in_lower) in sides {
            if let Found::Dir { lower, origin, .. } = f {
                let ino = self.nodes.read().child(view.ino, n).ok_or(Errno::ENOENT)?;
                let fd = self.ensure_upper_dir(ino)?;
                if !lower.is_empty() {
                    markers::set_redirect(fd.as_fd(), origin.as_deref().ok_or(Errno::EIO)?)?;
                } else if other_in_lower {
                    markers::set_opaque(fd.as_fd())?;
                }
            } else if !f.in_upper() {
                return Err(Errno::EIO); // copy-up raced
            }
        }
        sys::rename_at(spfd.as_fd(), name, dpfd.as_fd(), new_name, RenameFlags::EXCHANGE)?;
        self.nodes.write().exchange((sdir.ino, name), (ddir.ino, new_name));
        Ok(())
    }

    /// The upper copy of a directory view, created if needed.
    fn upper_of(&self, dir: &DirView) -> Result<OwnedFd, Errno> {
        match &dir.upper {
            Some(fd) => Ok(fd.try_clone()?),
            None => self.ensure_upper_dir(dir.ino),
        }
    }

    /// A view of the directory `name` found in `dir`.
    pub(super) fn child_view(&self, dir: &DirView, name: &OsStr, found: &Found) -> Result<DirView, Errno> {
        let Found::Dir {
            upper, lower, origin, ..
        } = found
        else {
            return Err(Errno::ENOTDIR);
        };
        let upper_fd = match (upper, &dir.upper) {
            (true, Some(p)) => Some(markers::open_entry(p.as_fd(), name)?),
            _ => None,
        };
        Ok(DirView::new(
            0,
            dir.path.join(name),
            upper_fd,
            lower.clone().into(),
            origin.clone().map(std::sync::Arc::from),
        ))
    }
}
