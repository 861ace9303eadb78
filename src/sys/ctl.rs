//! Small helpers for the control plane (store and daemon): whole-filesystem
//! sync and naming the backing filesystem type.

use std::io;
use std::os::fd::BorrowedFd;

/// `syncfs`: flushes every dirty page and inode of the filesystem holding `fd`
/// (used before publishing imported or promoted data).
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::fs::syncfs(fd).map_err(io::Error::from)
}

/// The name of the filesystem type holding `fd` ("ext4", "xfs", ...), or its
/// magic number in hex when unknown.
pub fn fs_type_name(fd: BorrowedFd<'_>) -> io::Result<String> {
    let st = rustix::fs::fstatfs(fd).map_err(io::Error::from)?;
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as u64;
    let name = match magic {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlay",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x6573_5546 => "fuse",
        0x5265_4973 => "reiserfs",
        0x0000_6969 => "nfs",
        _ => return Ok(format!("unknown (0x{magic:x})")),
    };
    Ok(name.to_string())
}

/// Takes an exclusive `flock` on `fd` without waiting; `Ok(false)` when
/// another open file description holds it (another daemon on the same store).
pub fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    use rustix::fs::{FlockOperation, flock};
    match flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
