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

/// `FS_IOC_GETFLAGS` and `FS_IOC_FSGETXATTR`: the attribute queries that
/// kernel overlayfs makes on copy-up from a FUSE lower.
pub const FS_IOC_GETFLAGS: u32 = 0x8008_6601;
pub const FS_IOC_FSGETXATTR: u32 = 0x801c_581f;

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
            NodeData::File(FileBacking::Upper(p)) => (sys::reopen(p.as_fd(), acc | data_flags(flags))?, true),
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

    /// Answers the file-attribute ioctls from the backing object; others get ENOTTY.
    pub fn ioctl_read(&self, ino: Ino, cmd: u32, out_size: usize) -> Result<Vec<u8>, Errno> {
        let need = match cmd {
            FS_IOC_GETFLAGS => 4,
            FS_IOC_FSGETXATTR => 28,
            _ => return Err(Errno::ENOTTY),
        };
        if ino == VERSION_INO {
            return Ok(vec![0; need.min(out_size.max(need))]);
        }
        let _ns = self.ns.read();
        let fd = self.object_fd(ino)?;
        let kind = self.nodes.read().get(ino)?.kind;
        let flags = if kind == Kind::Dir {
            OFlags::RDONLY | OFlags::DIRECTORY
        } else {
            OFlags::RDONLY | OFlags::NONBLOCK
        };
        let real = sys::reopen(fd.as_fd(), flags)?;
        let mut buf = vec![0u8; need.max(8)];
        match sys::ioctl_read(real.as_fd(), cmd, &mut buf) {
            Ok(_) => {
                buf.truncate(need);
                Ok(buf)
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::ENOTTY) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Err(Errno::ENOTTY),
                _ => Err(e.into()),
            },
        }
    }
}
