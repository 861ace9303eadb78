//! Copying file data and metadata between backing files (copy-up, import).

use std::ffi::OsStr;
use std::io;
use std::os::fd::BorrowedFd;

use super::xattr;

/// Copies all data of `src` into the empty file `dst`: a reflink (`FICLONE`)
/// where the filesystem has them, else `copy_file_range` (which the kernel
/// may still offload), else plain read/write.
pub fn clone_or_copy_data(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    if rustix::fs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(());
    }
    let mut off_in = 0u64;
    let mut off_out = 0u64;
    while off_in < len {
        let chunk = (len - off_in).min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), chunk) {
            Ok(0) => break, // source shrank; lower layers are immutable, so only on misuse
            Ok(_) => {}
            Err(rustix::io::Errno::XDEV) | Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::INVAL)
                if off_in == 0 =>
            {
                return copy_by_read_write(src, dst, len);
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_by_read_write(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let n = super::pread_full(src, &mut buf, off)?;
        if n == 0 {
            break;
        }
        super::pwrite_all(dst, &buf[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

/// Copies every xattr of `src` to `dst` for which `keep(name)` is true.
/// Both fds may be `O_PATH`. Unsupported namespaces on the destination
/// (EOPNOTSUPP) are skipped; other errors are returned.
pub fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, keep: impl Fn(&OsStr) -> bool) -> io::Result<()> {
    for name in xattr::list(src)? {
        if !keep(&name) {
            continue;
        }
        let Some(value) = xattr::get(src, &name)? else {
            continue;
        };
        match xattr::set(dst, &name, &value, xattr::XattrFlags::empty()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
