//! Every system call the crate makes goes through here.
//!
//! Most wrappers sit on `rustix` (safe, maintained bindings); the few that
//! need raw `libc` calls are marked `unsafe` with a `// SAFETY:` note. The
//! rest of the crate is `#![deny(unsafe_code)]`.
//!
//! Conventions: every path-taking helper resolves relative to a directory fd
//! and never follows a symlink ([`open_beneath`] uses `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`; the
//! single-name helpers use `AT_SYMLINK_NOFOLLOW`/`O_NOFOLLOW`).

pub mod copy;
pub mod ctl;
pub mod handle;
pub mod probe;
pub mod xattr;

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

pub use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Stat, StatFs};

/// Opens `rel` below `root` without following any symlink and without leaving
/// `root`. An empty `rel` opens `root` itself (a new fd).
pub fn open_beneath(root: BorrowedFd<'_>, rel: &Path, flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
    use rustix::fs::ResolveFlags;
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    loop {
        match rustix::fs::openat2(root, rel, flags | OFlags::CLOEXEC, Mode::from_raw_mode(mode), resolve) {
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => continue,
            // openat2 says ELOOP for a symlink in the path; callers treat a
            // symlink where a directory was expected as "not a directory".
            other => return other.map_err(io::Error::from),
        }
    }
}

/// Opens the directory `rel` below `root` as an `O_PATH` handle (for `*at` calls).
pub fn open_dir_path(root: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    open_beneath(root, rel, OFlags::PATH | OFlags::DIRECTORY, 0)
}

/// Opens the directory `rel` below `root` for reading entries.
pub fn open_dir_read(root: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    open_beneath(root, rel, OFlags::RDONLY | OFlags::DIRECTORY, 0)
}

/// Opens a directory by absolute path (used only for store roots given by the operator).
pub fn open_dir_abs(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Opens one entry of `dir` with `O_NOFOLLOW`.
pub fn open_at(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(io::Error::from)
}

/// `lstat` of one entry of `dir`; an empty name stats `dir` itself.
pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Stat> {
    let flags = if name.is_empty() {
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    rustix::fs::statat(dir, name, flags).map_err(io::Error::from)
}

pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    rustix::fs::fstat(fd).map_err(io::Error::from)
}

pub fn fstatfs(fd: BorrowedFd<'_>) -> io::Result<StatFs> {
    rustix::fs::fstatfs(fd).map_err(io::Error::from)
}

pub fn statfs(path: &Path) -> io::Result<StatFs> {
    rustix::fs::statfs(path).map_err(io::Error::from)
}

pub fn mkdir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)).map_err(io::Error::from)
}

/// `mknodat` for any file type encoded in `mode` (`S_IFIFO`, `S_IFCHR`, ...).
pub fn mknod_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, rdev: u64) -> io::Result<()> {
    let ft = FileType::from_raw_mode(mode);
    rustix::fs::mknodat(dir, name, ft, Mode::from_raw_mode(mode & 0o7777), rdev).map_err(io::Error::from)
}

pub fn symlink_at(target: &OsStr, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    rustix::fs::symlinkat(target, dir, name).map_err(io::Error::from)
}

pub fn readlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Vec<u8>> {
    rustix::fs::readlinkat(dir, name, Vec::new())
        .map(|c| c.into_bytes())
        .map_err(io::Error::from)
}

pub fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io::Error::from)
}

pub fn rmdir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io::Error::from)
}

pub fn rename_at(
    old_dir: BorrowedFd<'_>,
    old: &OsStr,
    new_dir: BorrowedFd<'_>,
    new: &OsStr,
    flags: RenameFlags,
) -> io::Result<()> {
    rustix::fs::renameat_with(old_dir, old, new_dir, new, flags).map_err(io::Error::from)
}

/// Hard-links `old_dir/old` (never following a symlink) to `new_dir/new`.
pub fn link_at(old_dir: BorrowedFd<'_>, old: &OsStr, new_dir: BorrowedFd<'_>, new: &OsStr) -> io::Result<()> {
    rustix::fs::linkat(old_dir, old, new_dir, new, AtFlags::empty()).map_err(io::Error::from)
}

/// `lchown` of one entry (or of `dir` itself with an empty name). `None` keeps the id.
pub fn chown_at(dir: BorrowedFd<'_>, name: &OsStr, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    let flags = if name.is_empty() {
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    rustix::fs::chownat(
        dir,
        name,
        uid.map(rustix::fs::Uid::from_raw),
        gid.map(rustix::fs::Gid::from_raw),
        flags,
    )
    .map_err(io::Error::from)
}

/// Sets atime/mtime of one entry without following symlinks. `None` leaves a
/// time unchanged; `Some(None)` sets it to now.
pub fn utimes_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    atime: Option<Option<(i64, i64)>>,
    mtime: Option<Option<(i64, i64)>>,
) -> io::Result<()> {
    use rustix::fs::{Timestamps, UTIME_NOW, UTIME_OMIT};
    let ts = |t: Option<Option<(i64, i64)>>| match t {
        None => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        Some(None) => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW,
        },
        Some(Some((s, ns))) => rustix::fs::Timespec {
            tv_sec: s,
            tv_nsec: ns as _,
        },
    };
    let times = Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    };
    let flags = if name.is_empty() {
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    rustix::fs::utimensat(dir, name, &times, flags).map_err(io::Error::from)
}

pub fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    rustix::fs::ftruncate(fd, size).map_err(io::Error::from)
}

pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::from_bits_retain(mode as _), offset, len)
        .map_err(io::Error::from)
}

pub fn fsync(fd: BorrowedFd<'_>, datasync: bool) -> io::Result<()> {
    if datasync {
        rustix::fs::fdatasync(fd).map_err(io::Error::from)
    } else {
        rustix::fs::fsync(fd).map_err(io::Error::from)
    }
}

/// Reads up to `buf.len()` bytes at `offset`, retrying short reads; stops at EOF.
pub fn pread_full(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(fd, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Writes all of `buf` at `offset`, retrying short writes.
pub fn pwrite_all(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pwrite(fd, &buf[done..], offset + done as u64) {
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> io::Result<u64> {
    use rustix::fs::SeekFrom;
    let pos = match whence {
        libc::SEEK_SET => SeekFrom::Start(offset as u64),
        libc::SEEK_CUR => SeekFrom::Current(offset),
        libc::SEEK_END => SeekFrom::End(offset),
        libc::SEEK_DATA => SeekFrom::Data(offset as u64),
        libc::SEEK_HOLE => SeekFrom::Hole(offset as u64),
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    rustix::fs::seek(fd, pos).map_err(io::Error::from)
}

/// One directory entry as read from a backing directory.
#[derive(Debug, Clone)]
pub struct RawDirEntry {
    pub name: std::ffi::OsString,
    pub ino: u64,
    pub file_type: FileType,
}

/// Reads every entry of an open directory (without `.` and `..`).
pub fn read_dir_entries(dir: impl AsFd) -> io::Result<Vec<RawDirEntry>> {
    use std::os::unix::ffi::OsStrExt;
    let mut d = rustix::fs::Dir::read_from(dir.as_fd()).map_err(io::Error::from)?;
    let mut out = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent.map_err(io::Error::from)?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsStr::from_bytes(name).to_os_string();
        let mut file_type = ent.file_type();
        if file_type == FileType::Unknown {
            // A filesystem without d_type (e.g. XFS with ftype=0): callers
            // tell whiteouts and directories apart by type, so ask.
            // Gone meanwhile: leave it Unknown (neither a dir nor a whiteout).
            if let Ok(st) = stat_at(dir.as_fd(), &name) {
                file_type = FileType::from_raw_mode(st.st_mode);
            }
        }
        out.push(RawDirEntry {
            name,
            ino: ent.ino(),
            file_type,
        });
    }
    Ok(out)
}

/// Credentials of the peer of a connected Unix socket (`SO_PEERCRED`).
pub fn peer_cred(sock: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    let c = rustix::net::sockopt::socket_peercred(sock).map_err(io::Error::from)?;
    Ok((c.pid.as_raw_nonzero().get() as u32, c.uid.as_raw(), c.gid.as_raw()))
}

/// Unmounts `path`; `lazy` detaches it even while busy (`MNT_DETACH`).
pub fn unmount(path: &Path, lazy: bool) -> io::Result<()> {
    use rustix::mount::UnmountFlags;
    let flags = if lazy {
        UnmountFlags::DETACH
    } else {
        UnmountFlags::empty()
    };
    rustix::mount::unmount(path, flags).map_err(io::Error::from)
}

/// Opens the directory at the absolute `path` (`O_PATH`) refusing any symlink
/// on the way, so the result is the directory at that literal path: what a
/// check of that path (canonical, so without symlinks) looked at, or a
/// failure if a component was swapped for a symlink since.
pub fn open_dir_no_symlinks(path: &Path) -> io::Result<OwnedFd> {
    use rustix::fs::ResolveFlags;
    rustix::fs::openat2(
        rustix::fs::CWD,
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(io::Error::from)
}

/// Mounts a FUSE filesystem served on `dev_fuse` onto the directory `target`
/// (an open fd: mounted through `/proc/self/fd`, so on exactly that
/// directory whatever happens to its path meanwhile). `options` are the
/// FUSE options after `fd=` and `rootmode=`, e.g. `user_id=0,group_id=0`.
pub fn mount_fuse(
    source: &str,
    target: BorrowedFd<'_>,
    dev_fuse: BorrowedFd<'_>,
    nosuid_nodev: bool,
    options: &str,
) -> io::Result<()> {
    use rustix::mount::MountFlags;
    let root_mode = fstat(target)?.st_mode;
    let data = format!("fd={},rootmode={root_mode:o},{options}", dev_fuse.as_raw_fd());
    let data = std::ffi::CString::new(data).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = if nosuid_nodev {
        MountFlags::NOSUID | MountFlags::NODEV
    } else {
        MountFlags::empty()
    };
    let at = format!("/proc/self/fd/{}", target.as_raw_fd());
    rustix::mount::mount(source, at.as_str(), "fuse", flags, Some(data.as_c_str())).map_err(io::Error::from)
}

/// Raises the open-file limit to the hard limit (the daemon keeps fds per open file).
pub fn raise_nofile_limit() -> io::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        lim.current = Some(max);
    }
    setrlimit(Resource::Nofile, lim).map_err(io::Error::from)?;
    Ok(lim.current.unwrap_or(u64::MAX))
}

/// Returns free heap memory to the kernel (after the kernel forgot many inodes).
#[allow(unsafe_code)]
pub fn trim_allocator() {
    // SAFETY: malloc_trim only releases free memory the allocator owns.
    unsafe { libc::malloc_trim(0) };
}

pub fn geteuid() -> u32 {
    rustix::process::geteuid().as_raw()
}

pub fn getegid() -> u32 {
    rustix::process::getegid().as_raw()
}

/// The device a directory lives on (to check that a store spans one filesystem).
pub fn device_of(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(fstat(fd)?.st_dev)
}

/// `FS_IOC_GETFLAGS`: the inode flags (`chattr`'s).
pub fn get_inode_flags(fd: BorrowedFd<'_>) -> io::Result<u32> {
    rustix::fs::ioctl_getflags(fd)
        .map(|f| f.bits())
        .map_err(io::Error::from)
}

/// `FS_IOC_SETFLAGS`.
pub fn set_inode_flags(fd: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    rustix::fs::ioctl_setflags(fd, rustix::fs::IFlags::from_bits_retain(flags)).map_err(io::Error::from)
}

/// A raw `struct fsxattr` (28 bytes: xflags, extsize, nextents, projid, cowextsize, padding).
pub type FsxAttr = [u8; 28];

const FS_IOC_FSGETXATTR: rustix::ioctl::Opcode = rustix::ioctl::opcode::read::<FsxAttr>(b'X', 31);
const FS_IOC_FSSETXATTR: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<FsxAttr>(b'X', 32);

/// `FS_IOC_FSGETXATTR`.
#[allow(unsafe_code)]
pub fn get_fsxattr(fd: BorrowedFd<'_>) -> io::Result<FsxAttr> {
    // SAFETY: FS_IOC_FSGETXATTR writes one `struct fsxattr`, 28 bytes, which
    // is exactly the Getter's output type.
    let get = unsafe { rustix::ioctl::Getter::<FS_IOC_FSGETXATTR, FsxAttr>::new() };
    // SAFETY: `get` pairs the opcode with its matching output type (above).
    unsafe { rustix::ioctl::ioctl(fd, get) }.map_err(io::Error::from)
}

/// `FS_IOC_FSSETXATTR`.
#[allow(unsafe_code)]
pub fn set_fsxattr(fd: BorrowedFd<'_>, attr: &FsxAttr) -> io::Result<()> {
    // SAFETY: FS_IOC_FSSETXATTR reads one 28-byte `struct fsxattr` through
    // the pointer the Setter passes, and does not keep it.
    let set = unsafe { rustix::ioctl::Setter::<FS_IOC_FSSETXATTR, FsxAttr>::new(*attr) };
    // SAFETY: `set` pairs the opcode with its matching input type (above).
    unsafe { rustix::ioctl::ioctl(fd, set) }.map_err(io::Error::from)
}

/// `/proc/self/fd/N`: names the object an fd (possibly `O_PATH`) refers to.
pub fn proc_fd_path(fd: BorrowedFd<'_>) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Re-opens the regular file or directory behind an `O_PATH` fd with real access flags.
pub fn reopen(fd: BorrowedFd<'_>, flags: OFlags) -> io::Result<OwnedFd> {
    rustix::fs::open(proc_fd_path(fd).as_str(), flags | OFlags::CLOEXEC, Mode::empty()).map_err(io::Error::from)
}

/// Opens for reading without moving the file's atime (`O_NOATIME`): the
/// layers are shared and immutable. Falls back to a plain open where the
/// kernel refuses `O_NOATIME` (neither the file's owner nor `CAP_FOWNER`).
pub fn with_noatime(flags: OFlags, open: impl Fn(OFlags) -> io::Result<OwnedFd>) -> io::Result<OwnedFd> {
    match open(flags | OFlags::NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(flags),
        other => other,
    }
}

/// `chmod` of the object behind an fd (may be `O_PATH`; not for symlinks).
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    rustix::fs::chmod(proc_fd_path(fd).as_str(), Mode::from_raw_mode(mode & 0o7777)).map_err(io::Error::from)
}

/// `lchown` of the object behind an fd (may be `O_PATH`, symlinks included).
pub fn chown_fd(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    chown_at(fd, OsStr::new(""), uid, gid)
}

/// Sets times of the object behind an fd (may be `O_PATH`, symlinks included).
pub fn utimes_fd(
    fd: BorrowedFd<'_>,
    atime: Option<Option<(i64, i64)>>,
    mtime: Option<Option<(i64, i64)>>,
) -> io::Result<()> {
    utimes_at(fd, OsStr::new(""), atime, mtime)
}

/// Makes a new name `new_dir/new` for the file behind an fd (`AT_EMPTY_PATH`, needs root).
pub fn link_fd(fd: BorrowedFd<'_>, new_dir: BorrowedFd<'_>, new: &OsStr) -> io::Result<()> {
    rustix::fs::linkat(fd, "", new_dir, new, AtFlags::EMPTY_PATH).map_err(io::Error::from)
}
