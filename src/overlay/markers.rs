//! goldenfs's private markers, all in the `trusted.goldenfs.*` namespace.
//!
//! - whiteout: a char 0/0 device carrying `trusted.goldenfs.whiteout`. A char
//!   0/0 device without it is user data (e.g. an inner overlayfs's whiteout).
//! - opaque: a directory carrying `trusted.goldenfs.opaque`; layers below it
//!   do not contribute.
//! - redirect: a directory carrying `trusted.goldenfs.redirect` = the path
//!   (relative, in the merged namespace of the layers below) its lower
//!   content lives at; written when a directory with lower content is renamed.
//! - origin: a copied-up file carrying `trusted.goldenfs.origin` = the decimal
//!   inode number of its lowest copy, so `st_ino` survives copy-up.
//!
//! The namespace is hidden from the view and cannot be set through it.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::sys::{self, OFlags, Stat, xattr};

pub const PREFIX: &[u8] = b"trusted.goldenfs.";
pub const WHITEOUT: &str = "trusted.goldenfs.whiteout";
pub const OPAQUE: &str = "trusted.goldenfs.opaque";
pub const REDIRECT: &str = "trusted.goldenfs.redirect";
pub const ORIGIN: &str = "trusted.goldenfs.origin";

/// True for names in goldenfs's private xattr namespace.
pub fn is_private(name: &OsStr) -> bool {
    name.as_bytes().starts_with(PREFIX)
}

/// True if `st` could be a goldenfs whiteout (the xattr decides).
pub fn looks_like_whiteout(st: &Stat) -> bool {
    (st.st_mode & libc::S_IFMT) == libc::S_IFCHR && st.st_rdev == 0
}

/// Opens one entry as an `O_PATH` handle (to read its markers).
pub fn open_entry(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    sys::open_at(dir, name, OFlags::PATH, 0)
}

/// Is `dir/name` (already known to look like a whiteout) one of ours?
pub fn is_whiteout(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    let fd = open_entry(dir, name)?;
    xattr::has(fd.as_fd(), OsStr::new(WHITEOUT))
}

/// Directory markers read in one go.
#[derive(Debug, Default)]
pub struct DirMarkers {
    pub opaque: bool,
    pub redirect: Option<PathBuf>,
}

pub fn dir_markers(dir_fd: BorrowedFd<'_>) -> io::Result<DirMarkers> {
    let opaque = xattr::has(dir_fd, OsStr::new(OPAQUE))?;
    let redirect = if opaque {
        None
    } else {
        xattr::get(dir_fd, OsStr::new(REDIRECT))?.map(|v| PathBuf::from(OsStr::from_bytes(&v)))
    };
    Ok(DirMarkers { opaque, redirect })
}

/// The origin inode recorded on a copied-up file, if any.
pub fn origin(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    Ok(xattr::get(fd, OsStr::new(ORIGIN))?.and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok())))
}

pub fn set_origin(fd: BorrowedFd<'_>, ino: u64) -> io::Result<()> {
    xattr::set(
        fd,
        OsStr::new(ORIGIN),
        ino.to_string().as_bytes(),
        xattr::XattrFlags::empty(),
    )
}

pub fn set_opaque(fd: BorrowedFd<'_>) -> io::Result<()> {
    xattr::set(fd, OsStr::new(OPAQUE), b"y", xattr::XattrFlags::empty())
}

/// Records where a renamed directory's lower content lives. A path longer
/// than the backing filesystem can store in an xattr (ext4: about one block)
/// is `ENAMETOOLONG`: the disk is not full, the path is too long to record.
pub fn set_redirect(fd: BorrowedFd<'_>, path: &std::path::Path) -> io::Result<()> {
    let value = path.as_os_str().as_bytes();
    xattr::set(fd, OsStr::new(REDIRECT), value, xattr::XattrFlags::empty()).map_err(|e| match e.raw_os_error() {
        // Longer than a single name: a path of several names.
        Some(libc::ENOSPC | libc::E2BIG) if value.len() > libc::NAME_MAX as usize => {
            io::Error::from_raw_os_error(libc::ENAMETOOLONG)
        }
        _ => e,
    })
}

/// Creates a goldenfs whiteout named `name` in `dir` (the view's work dir:
/// whiteouts are hard links of it, so a half-made one is never visible).
pub fn make_whiteout(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    sys::mknod_at(dir, name, libc::S_IFCHR, 0)?;
    let fd = open_entry(dir, name)?;
    xattr::set(fd.as_fd(), OsStr::new(WHITEOUT), b"y", xattr::XattrFlags::empty())
}
