//! Opening files and reading or changing attributes and xattrs.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use super::markers;
use super::namespace::{data_flags, open_access};
use super::node::{FileBacking, NodeData};
use super::{Attr, Ino, Kind, Opened, Overlay, SetAttr, VERSION_INO};
use crate::error::Errno;
use crate::sys::{self, OFlags, xattr};

/// The file-attribute ioctls (`chattr`, `xfs_io`). Kernel overlayfs asks a
/// FUSE lower for them on copy-up, and sets the result on its upper.
pub const FS_IOC_GETFLAGS: u32 = 0x8008_6601;
pub const FS_IOC_SETFLAGS: u32 = 0x4008_6602;
pub const FS_IOC_FSGETXATTR: u32 = 0x801c_581f;
pub const FS_IOC_FSSETXATTR: u32 = 0x401c_5820;

const FS_SYNC_FL: u32 = 0x8;
const FS_NODUMP_FL: u32 = 0x40;
const FS_NOATIME_FL: u32 = 0x80;
const FS_DIRSYNC_FL: u32 = 0x1_0000;
const FS_XFLAG_SYNC: u32 = 0x20;
const FS_XFLAG_NOATIME: u32 = 0x40;
const FS_XFLAG_NODUMP: u32 = 0x80;

/// The inode flags a view lets its clients change: those overlayfs copies up
/// (sync, noatime) and other harmless ones. Never immutable or append-only:
/// the daemon must stay able to rename, link and remove the session's files.
pub(super) const SETTABLE_FLAGS: u32 = FS_SYNC_FL | FS_NODUMP_FL | FS_NOATIME_FL | FS_DIRSYNC_FL;
const SETTABLE_XFLAGS: u32 = FS_XFLAG_SYNC | FS_XFLAG_NOATIME | FS_XFLAG_NODUMP;

/// The flag word of a `FS_IOC_GETFLAGS` answer or a `struct fsxattr` (its first field).
fn flag_word(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

impl Overlay {
    /// An `O_PATH` handle on the current top copy of `ino` (for xattrs).
    fn object_fd(&self, ino: Ino) -> Result<Arc<OwnedFd>, Errno> {
        Ok(self.top_copy(ino)?.1)
    }

    /// Opens a regular file. Writing (or truncating) opens copy it up first.
    pub fn open(&self, ino: Ino, flags: i32) -> Result<Opened, Errno> {
        if ino == VERSION_INO {
            return Err(Errno::EINVAL);
        }
        let acc = open_access(flags);
        if acc != OFlags::RDONLY || flags & libc::O_TRUNC != 0 {
            self.copy_up(ino)?;
        }
        let _ns = self.ns.read();
        let data = self.nodes.read().get(ino)?.data.clone();
        let (fd, upper) = match data {
            NodeData::File(FileBacking::Upper(u)) => {
                (u.open(self.layers.upper.as_fd(), acc | data_flags(flags))?, true)
            }
            NodeData::File(FileBacking::Lower { layer, path }) => {
                let fd = sys::with_noatime(acc | data_flags(flags), |f| Ok(self.open_lower(layer, &path, f)?))?;
                (fd, false)
            }
            NodeData::Dir(_) => return Err(Errno::EISDIR),
        };
        let st = sys::fstat(fd.as_fd())?;
        Ok(Opened {
            fd,
            key: (st.st_dev, st.st_ino),
            upper,
        })
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Errno> {
        let _ns = self.ns.read();
        let fd = self.object_fd(ino)?;
        Ok(sys::readlink_at(fd.as_fd(), OsStr::new(""))?)
    }

    /// Changes attributes (copying the object up first).
    pub fn setattr(&self, ino: Ino, s: SetAttr) -> Result<Attr, Errno> {
        if ino == VERSION_INO {
            return Err(Errno::EPERM);
        }
        self.copy_up(ino)?;
        let _ns = self.ns.read();
        let fd = self.object_fd(ino)?;
        let kind = self.nodes.read().get(ino)?.kind;
        if s.uid.is_some() || s.gid.is_some() {
            sys::chown_fd(fd.as_fd(), s.uid, s.gid)?;
        }
        if let Some(mode) = s.mode
            && kind != Kind::Symlink
        {
            sys::chmod_fd(fd.as_fd(), mode)?;
        }
        if let Some(size) = s.size {
            match kind {
                Kind::Dir => return Err(Errno::EISDIR),
                Kind::File => sys::ftruncate(sys::reopen(fd.as_fd(), OFlags::WRONLY)?.as_fd(), size)?,
                _ => return Err(Errno::EINVAL),
            }
        }
        if s.atime.is_some() || s.mtime.is_some() {
            sys::utimes_fd(fd.as_fd(), s.atime, s.mtime)?;
        }
        self.attr_locked(ino)
    }

    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>, Errno> {
        if ino == VERSION_INO || markers::is_private(name) {
            return Err(Errno::ENODATA);
        }
        let _ns = self.ns.read();
        let fd = self.object_fd(ino)?;
        xattr::get(fd.as_fd(), name)?.ok_or(Errno::ENODATA)
    }

    /// The NUL-separated list of xattr names, private ones left out.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, Errno> {
        if ino == VERSION_INO {
            return Ok(Vec::new());
        }
        let _ns = self.ns.read();
        let fd = self.object_fd(ino)?;
        let raw = xattr::list_raw(fd.as_fd())?;
        let mut out = Vec::with_capacity(raw.len());
        for n in raw.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            if !n.starts_with(markers::PREFIX) {
                out.extend_from_slice(n);
                out.push(0);
            }
        }
        Ok(out)
    }

    pub fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: i32) -> Result<(), Errno> {
        if ino == VERSION_INO || markers::is_private(name) {
            return Err(Errno::EPERM);
        }
        self.copy_up(ino)?;
        let _ns = self.ns.read();
        let fd = self.object_fd(ino)?;
        Ok(xattr::set(
            fd.as_fd(),
            name,
            value,
            xattr::XattrFlags::from_bits_retain(flags as u32),
        )?)
    }

    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<(), Errno> {
        if ino == VERSION_INO || markers::is_private(name) {
            return Err(Errno::EPERM);
        }
        // Fail before copying up when there is nothing to remove.
        self.getxattr(ino, name)?;
        self.copy_up(ino)?;
        let _ns = self.ns.read();
        let fd = self.object_fd(ino)?;
        Ok(xattr::remove(fd.as_fd(), name)?)
    }

    /// Answers the file-attribute ioctls (others get ENOTTY): reads report
    /// the object's top copy; a change, of [`SETTABLE_FLAGS`] only, copies the
    /// object up and applies to its upper copy. Returns the output data.
    pub fn ioctl(&self, ino: Ino, cmd: u32, input: &[u8]) -> Result<Vec<u8>, Errno> {
        let fsx = match cmd {
            FS_IOC_GETFLAGS | FS_IOC_SETFLAGS => false,
            FS_IOC_FSGETXATTR | FS_IOC_FSSETXATTR => true,
            _ => return Err(Errno::ENOTTY),
        };
        let size = if fsx { size_of::<sys::FsxAttr>() } else { 4 };
        if ino == VERSION_INO {
            return match cmd {
                FS_IOC_GETFLAGS | FS_IOC_FSGETXATTR => Ok(vec![0; size]),
                _ => Err(Errno::EPERM),
            };
        }
        let current = {
            let _ns = self.ns.read();
            read_fileattr(self.open_for_fileattr(ino)?.as_fd(), fsx)?
        };
        if cmd == FS_IOC_GETFLAGS || cmd == FS_IOC_FSGETXATTR {
            return Ok(current);
        }
        let new = input.get(..size).ok_or(Errno::EINVAL)?;
        let mask = if fsx { SETTABLE_XFLAGS } else { SETTABLE_FLAGS };
        let (cur_word, new_word) = (flag_word(&current), flag_word(new));
        // Of a struct fsxattr, extsize, projid and cowextsize must stay (nextents is informative).
        let rest_same = !fsx || (new[4..8] == current[4..8] && new[12..20] == current[12..20]);
        if !rest_same || (cur_word ^ new_word) & !mask != 0 {
            return Err(Errno::ENOTSUP);
        }
        if cur_word == new_word {
            return Ok(Vec::new());
        }
        self.copy_up(ino)?;
        let _ns = self.ns.read();
        let real = self.open_for_fileattr(ino)?;
        // Onto the upper copy's own flags: they need not be the lower copy's.
        let mut attr = read_fileattr(real.as_fd(), fsx)?;
        let word = (flag_word(&attr) & !mask) | (new_word & mask);
        attr[..4].copy_from_slice(&word.to_ne_bytes());
        if fsx {
            let mut raw = sys::FsxAttr::default();
            raw.copy_from_slice(&attr);
            sys::set_fsxattr(real.as_fd(), &raw)?;
        } else {
            sys::set_inode_flags(real.as_fd(), word)?;
        }
        Ok(Vec::new())
    }

    /// Opens the top copy of a regular file or directory for attribute ioctls.
    fn open_for_fileattr(&self, ino: Ino) -> Result<OwnedFd, Errno> {
        let fd = self.object_fd(ino)?;
        let flags = match self.nodes.read().get(ino)?.kind {
            Kind::Dir => OFlags::RDONLY | OFlags::DIRECTORY,
            Kind::File => OFlags::RDONLY | OFlags::NONBLOCK,
            _ => return Err(Errno::ENOTTY),
        };
        Ok(sys::reopen(fd.as_fd(), flags)?)
    }
}

/// The backing object's inode flags (4 bytes) or `struct fsxattr`; ENOTTY
/// where its filesystem has none.
fn read_fileattr(fd: std::os::fd::BorrowedFd<'_>, fsx: bool) -> Result<Vec<u8>, Errno> {
    let r = if fsx {
        sys::get_fsxattr(fd).map(|a| a.to_vec())
    } else {
        sys::get_inode_flags(fd).map(|f| f.to_ne_bytes().to_vec())
    };
    r.map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTTY) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Errno::ENOTTY,
        _ => e.into(),
    })
}
