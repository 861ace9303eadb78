//! Extended attributes on any kind of file, symlinks and device nodes included.
//!
//! The object is named by an fd that may be `O_PATH`: the calls go through
//! `/proc/self/fd/N`, which the kernel resolves to the object itself (also
//! for a symlink, whose own xattrs are then read, not its target's).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

pub use rustix::fs::XattrFlags;

fn proc_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Reads one xattr. `Ok(None)` when it is not set.
pub fn get(fd: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let path = proc_path(fd);
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::getxattr(path.as_str(), name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(rustix::io::Errno::RANGE) => {
                let need = rustix::fs::getxattr_query(path.as_str(), name).map_err(io::Error::from)?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// True when the xattr exists (cheap probe, no value copy).
pub fn has(fd: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    match rustix::fs::getxattr_query(proc_path(fd).as_str(), name) {
        Ok(_) => Ok(true),
        Err(rustix::io::Errno::NODATA) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub fn set(fd: BorrowedFd<'_>, name: &OsStr, value: &[u8], flags: XattrFlags) -> io::Result<()> {
    rustix::fs::setxattr(proc_path(fd).as_str(), name, value, flags).map_err(io::Error::from)
}

pub fn remove(fd: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    rustix::fs::removexattr(proc_path(fd).as_str(), name).map_err(io::Error::from)
}

/// Lists the names of all xattrs (raw NUL-separated list split into names).
pub fn list(fd: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let raw = list_raw(fd)?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| OsStr::from_bytes(n).to_os_string())
        .collect())
}

/// The raw NUL-separated name list.
pub fn list_raw(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let path = proc_path(fd);
    let mut buf = vec![0u8; 1024];
    loop {
        match rustix::fs::listxattr(path.as_str(), &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => {
                let need = rustix::fs::listxattr_query(path.as_str()).map_err(io::Error::from)?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}
