//! Kernel file handles: `name_to_handle_at` and `open_by_handle_at`.
//!
//! A handle names an inode of a filesystem (number and generation, for
//! ext4) without holding it open, so a view can remember any number of its
//! upper files without an fd per file. `rustix` does not wrap these calls.
//! Opening by handle needs `CAP_DAC_READ_SEARCH` (the daemon runs as root).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use super::OFlags;

/// `MAX_HANDLE_SZ` of `<linux/exportfs.h>`: no filesystem's handle is longer.
const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the longest handle.
#[repr(C)]
struct RawHandle {
    handle_bytes: libc::c_uint,
    handle_type: libc::c_int,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// An opaque handle on one inode of the filesystem it came from (its type
/// and the `f_handle` bytes). Shared, so cloning a node's data is cheap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHandle {
    handle_type: i32,
    bytes: Arc<[u8]>,
}

/// The handle of the object behind `fd` (any kind, `O_PATH` fds included).
/// EOPNOTSUPP where the filesystem cannot export handles.
#[allow(unsafe_code)]
pub fn name_to_handle(fd: BorrowedFd<'_>) -> io::Result<FileHandle> {
    let mut raw = RawHandle {
        handle_bytes: MAX_HANDLE_SZ as libc::c_uint,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `raw` is a `struct file_handle` whose `handle_bytes` says how
    // much room follows it (MAX_HANDLE_SZ bytes, the kernel's maximum); the
    // kernel writes at most that many. The path is a NUL-terminated empty
    // string, used with AT_EMPTY_PATH to name `fd` itself. `mount_id` is a
    // valid out-pointer. Nothing is kept after the call.
    let r = unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            (&raw mut raw).cast::<libc::file_handle>(),
            &mut mount_id,
            libc::AT_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = (raw.handle_bytes as usize).min(MAX_HANDLE_SZ);
    Ok(FileHandle {
        handle_type: raw.handle_type,
        bytes: raw.f_handle[..len].into(),
    })
}

/// Opens the inode `h` names, on the filesystem of `mount_fd`, with `flags`
/// (`O_CLOEXEC` added). A symlink or special file can only be opened
/// `O_PATH`. ESTALE once the inode is gone.
#[allow(unsafe_code)]
pub fn open_by_handle(mount_fd: BorrowedFd<'_>, h: &FileHandle, flags: OFlags) -> io::Result<OwnedFd> {
    let mut raw = RawHandle {
        handle_bytes: h.bytes.len() as libc::c_uint,
        handle_type: h.handle_type,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    let len = h.bytes.len().min(MAX_HANDLE_SZ);
    raw.f_handle[..len].copy_from_slice(&h.bytes[..len]);
    let flags = (flags | OFlags::CLOEXEC).bits() as libc::c_int;
    loop {
        // SAFETY: `raw` is a complete `struct file_handle` (its
        // `handle_bytes` never exceeds the room that follows it); the
        // kernel only reads it. On success the result is a new fd that
        // nothing else owns.
        let r = unsafe { libc::open_by_handle_at(mount_fd.as_raw_fd(), (&raw mut raw).cast(), flags) };
        if r >= 0 {
            // SAFETY: `r` is a fresh fd returned by the kernel to us alone.
            return Ok(unsafe { OwnedFd::from_raw_fd(r) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_handle_reopens_its_file_after_a_rename() {
        let dir = std::env::temp_dir().join(format!("goldenfs-handle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a");
        std::fs::write(&a, b"data").unwrap();
        let f = std::fs::File::open(&a).unwrap();
        let h = name_to_handle(f.as_fd()).unwrap();
        drop(f);
        std::fs::rename(&a, dir.join("b")).unwrap();
        let root = std::fs::File::open(&dir).unwrap();
        let fd = open_by_handle(root.as_fd(), &h, OFlags::RDONLY).unwrap();
        let mut buf = [0u8; 8];
        let n = super::super::pread_full(fd.as_fd(), &mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"data");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
