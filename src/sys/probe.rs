//! Probes of the kernel and of a filesystem for `goldenfs doctor`: what the
//! machine offers, found by trying it rather than by guessing.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

/// `uname`: (sysname, release, machine).
pub fn uname() -> (String, String, String) {
    let u = rustix::system::uname();
    let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    (s(u.sysname()), s(u.release()), s(u.machine()))
}

/// `RLIMIT_NOFILE` (soft, hard); `None` is unlimited.
pub fn nofile_limit() -> (Option<u64>, Option<u64>) {
    let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    (l.current, l.maximum)
}

/// `FICLONE`: makes `dst` share `src`'s blocks (a reflink).
pub fn reflink(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    rustix::fs::ioctl_ficlone(dst, src).map_err(io::Error::from)
}

/// What the kernel offered in its `FUSE_INIT` request.
#[derive(Debug, Clone, Copy)]
pub struct FuseInitOffer {
    pub major: u32,
    pub minor: u32,
    /// `flags | flags2 << 32` (flags2 only when `FUSE_INIT_EXT` is set).
    pub flags: u64,
}

/// `FUSE_PASSTHROUGH` in the 64-bit INIT flags.
pub const FUSE_PASSTHROUGH: u64 = 1 << 37;
const FUSE_INIT_EXT: u64 = 1 << 30;
const FUSE_INIT_OPCODE: u32 = 26;
/// `struct fuse_in_header` is 40 bytes; `fuse_init_in` starts with
/// major, minor, max_readahead, flags, flags2 (u32 each).
const IN_HEADER: usize = 40;

/// Mounts a FUSE filesystem on the empty directory `mountpoint`, reads the
/// kernel's `FUSE_INIT` request, and tears the mount down without answering
/// (closing `/dev/fuse` aborts the connection, then a lazy unmount). Needs
/// `CAP_SYS_ADMIN`. Waits at most `timeout` for the request.
pub fn fuse_init_offer(mountpoint: &Path, timeout: Duration) -> io::Result<FuseInitOffer> {
    let dev = rustix::fs::open(
        "/dev/fuse",
        OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let dir = super::open_dir_no_symlinks(mountpoint)?;
    super::mount_fuse(
        "goldenfs-doctor",
        dir.as_fd(),
        dev.as_fd(),
        true,
        "user_id=0,group_id=0",
    )?;
    let read = read_init(dev.as_fd(), timeout);
    drop(dev);
    let unmounted = super::unmount(mountpoint, true);
    let offer = read?;
    unmounted?;
    Ok(offer)
}

fn read_init(dev: BorrowedFd<'_>, timeout: Duration) -> io::Result<FuseInitOffer> {
    // The kernel refuses reads into buffers smaller than FUSE_MIN_READ_BUFFER.
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + timeout;
    let n = loop {
        match rustix::io::read(dev, &mut buf) {
            Ok(n) => break n,
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(rustix::io::Errno::AGAIN) => return Err(io::Error::from(io::ErrorKind::TimedOut)),
            Err(e) => return Err(e.into()),
        }
    };
    let word = |off: usize| -> Option<u32> {
        let b = buf.get(off..off + 4)?;
        Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not a FUSE_INIT request");
    if n < IN_HEADER + 20 || word(4) != Some(FUSE_INIT_OPCODE) {
        return Err(bad());
    }
    let (major, minor, flags, flags2) = match (
        word(IN_HEADER),
        word(IN_HEADER + 4),
        word(IN_HEADER + 12),
        word(IN_HEADER + 16),
    ) {
        (Some(a), Some(b), Some(c), Some(d)) => (a, b, u64::from(c), u64::from(d)),
        _ => return Err(bad()),
    };
    let flags = if flags & FUSE_INIT_EXT != 0 {
        flags | flags2 << 32
    } else {
        flags
    };
    Ok(FuseInitOffer { major, minor, flags })
}
