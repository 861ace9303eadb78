//! Checks on a mountpoint before a view is mounted there.

use std::collections::BTreeMap;
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

/// Longest path accepted in a request (bytes; `PATH_MAX` with its NUL).
pub const MAX_PATH: usize = libc::PATH_MAX as usize - 1;

/// At most 60 characters of a client's path, for messages.
fn shown(raw: &str) -> String {
    let mut s: String = raw.chars().take(60).collect();
    if s.len() < raw.len() {
        s.push('…');
    }
    format!("{s:?}")
}

/// The checks every path in a request gets before anything looks it up:
/// not empty, no NUL, absolute, at most [`MAX_PATH`] bytes, no component
/// longer than `NAME_MAX`. `what` names the field ("mountpoint").
pub fn check_request_path<'a>(what: &str, raw: &'a str) -> Result<&'a Path> {
    let bad = |why: String| Err(Error::invalid(format!("{what} {}: {why}", shown(raw))));
    if raw.is_empty() {
        return bad("it is empty; send an absolute path".into());
    }
    if raw.contains('\0') {
        return bad("it contains a NUL byte, which no path can; send an absolute path".into());
    }
    if raw.len() > MAX_PATH {
        return bad(format!(
            "it is {} bytes long; paths are limited to {MAX_PATH} bytes",
            raw.len()
        ));
    }
    let name_max = libc::NAME_MAX as usize;
    if let Some(c) = raw.split('/').find(|c| c.len() > name_max) {
        return bad(format!(
            "it has a component of {} bytes; names are limited to {name_max} bytes",
            c.len()
        ));
    }
    let path = Path::new(raw);
    if !path.is_absolute() {
        return bad(
            "it is not an absolute path; send an absolute path (the goldenfs CLI resolves relative ones)".into(),
        );
    }
    Ok(path)
}

/// Validates a mountpoint: a well-formed absolute path (see
/// [`check_request_path`]) of an existing empty directory that neither
/// overlaps the store, nor holds the control socket `socket`, nor lies in a
/// mounted view (`views`: session -> mountpoint). Symlinks and `..` are
/// resolved first. Detaches a stale FUSE mount there first. Returns the
/// canonical path.
pub fn check(raw: &str, store: &Store, socket: &Path, views: &BTreeMap<String, PathBuf>) -> Result<PathBuf> {
    let path = check_request_path("mountpoint", raw)?;
    detach_if_stale(path)?;
    let meta = fs::metadata(path).map_err(|e| {
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
    let canonical = fs::canonicalize(path).map_err(|e| Error::io(format!("resolving mountpoint {raw}"), e))?;
    let resolved = if canonical != path {
        format!(" (resolves to {})", canonical.display())
    } else {
        String::new()
    };
    if store.overlaps(&canonical) {
        return Err(Error::invalid(format!(
            "mountpoint {raw}{resolved} overlaps the state directory {}; mount outside the store",
            store.root().display()
        )));
    }
    if let Some(dir) = socket.parent().and_then(|d| fs::canonicalize(d).ok())
        && dir.starts_with(&canonical)
    {
        return Err(Error::invalid(format!(
            "mountpoint {raw}{resolved} would hide the daemon's control socket {}; mount elsewhere",
            socket.display()
        )));
    }
    if let Some((session, view)) = views.iter().find(|(_, v)| canonical.starts_with(v)) {
        if canonical == *view {
            return Err(Error::busy(format!(
                "mountpoint {raw}{resolved} is where session {session} is mounted; pick another directory"
            )));
        }
        return Err(Error::invalid(format!(
            "mountpoint {raw}{resolved} is inside the view of session {session} mounted at {}; mount outside goldenfs views",
            view.display()
        )));
    }
    let nonempty = fs::read_dir(&canonical)
        .map_err(|e| Error::io(format!("listing mountpoint {raw}"), e))?
        .next()
        .is_some();
    if nonempty {
        return Err(Error::invalid(format!(
            "mountpoint {raw}{resolved} is not empty (or is already a mount); mount on an empty directory"
        )));
    }
    Ok(canonical)
}
