//! Checks on a mountpoint before a view is mounted there.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::Store;
use crate::sys;

/// If `path` is a dead FUSE mount (statfs fails with ENOTCONN, e.g. left by
/// a daemon that crashed), detaches it. Returns true when it did. Not stat:
/// the kernel answers it from the root's cached attributes (views cache
/// them for a day) without asking the filesystem, so it succeeds on a dead
/// mount; statfs always asks.
pub fn detach_if_stale(path: &Path) -> Result<bool> {
    match sys::statfs(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            log::warn!(
                "{} is a stale FUSE mount (transport endpoint not connected); detaching it",
                path.display()
            );
            sys::unmount(path, true).map_err(|e| {
                Error::io(
                    format!(
                        "{} is a stale FUSE mount and detaching it failed; run 'umount -l {}'",
                        path.display(),
                        path.display()
                    ),
                    e,
                )
            })?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Validates a mountpoint: absolute, an existing empty directory, not inside
/// the store and not containing it. Detaches a stale FUSE mount there first.
/// Returns the canonical path.
pub fn check(raw: &str, store: &Store) -> Result<PathBuf> {
    let path = PathBuf::from(raw);
    if !path.is_absolute() {
        return Err(Error::invalid(format!(
            "mountpoint {raw:?} is not an absolute path; the client sends absolute paths — upgrade the client"
        )));
    }
    detach_if_stale(&path)?;
    let meta = fs::metadata(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::not_found(format!(
                "mountpoint {raw} does not exist; create it with 'mkdir -p {raw}'"
            ))
        } else {
            Error::io(format!("cannot use mountpoint {raw}"), e)
        }
    })?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "mountpoint {raw} is not a directory; mount on an empty directory"
        )));
    }
    let canonical = fs::canonicalize(&path).map_err(|e| Error::io(format!("resolving mountpoint {raw}"), e))?;
    let nonempty = fs::read_dir(&canonical)
        .map_err(|e| Error::io(format!("listing mountpoint {raw}"), e))?
        .next()
        .is_some();
    if nonempty {
        return Err(Error::invalid(format!(
            "mountpoint {raw} is not empty (or is already a mount); mount on an empty directory"
        )));
    }
    if store.overlaps(&canonical) {
        return Err(Error::invalid(format!(
            "mountpoint {raw} overlaps the state directory {}; mount outside the store",
            store.root().display()
        )));
    }
    Ok(canonical)
}
