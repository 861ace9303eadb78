//! Atomic file replacement, directory fsync, and crash-safe tree removal.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Nanoseconds since the Unix epoch (for unique names).
pub fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Current time as RFC 3339 UTC with seconds precision.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A name that is unique within this process and across restarts:
/// `<prefix>-<unix-nanos>-<pid>-<counter>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{}-{n}", unix_nanos(), std::process::id())
}

/// fsyncs a directory so that renames and creations inside it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(|e| Error::io(format!("opening {}", dir.display()), e))?;
    f.sync_all()
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// Replaces `dir/name` with `bytes`: temp file, fsync, rename, fsync of `dir`.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp-{}", unique_name("w")));
    let target = dir.join(name);
    let res = (|| {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &target)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(format!("writing {}", target.display()), e));
    }
    fsync_dir(dir)
}

/// Serializes `value` as pretty JSON (with a trailing newline) and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| Error::internal(format!("serializing {name}: {e}")))?;
    bytes.push(b'\n');
    write_atomic(dir, name, &bytes)
}

/// Reads and parses a JSON file, with a message naming the file on failure.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::internal(format!(
            "{} is corrupt ({e}); restore it from a backup or remove the object it describes",
            path.display()
        ))
    })
}

/// Renames `path` into `work_dir` under a unique name (atomic: the object
/// disappears from its place at once) and returns the new path. The caller
/// then removes it with [`remove_tree`]; a crash in between leaves it in
/// `work/`, which is emptied at start-up.
pub fn move_to_work(path: &Path, work_dir: &Path, what: &str) -> Result<PathBuf> {
    let dest = work_dir.join(unique_name(&format!("trash-{what}")));
    fs::rename(path, &dest).map_err(|e| Error::io(format!("moving {} out of the way", path.display()), e))?;
    if let Some(parent) = path.parent() {
        fsync_dir(parent)?;
    }
    Ok(dest)
}

/// Removes a file or a whole tree without following symlinks. A missing path is fine.
pub fn remove_tree(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("inspecting {}", path.display()), e)),
    };
    let res = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// Bytes used by a tree (allocated blocks, each inode counted once; symlinks
/// never followed). Walks by directory fd, opening each subdirectory beneath
/// its parent with no symlink allowed, so a session that swaps a directory of
/// its upper for a symlink while this walks cannot lead it outside. Errors
/// are ignored: this is for reporting only.
pub fn tree_usage(path: &Path) -> u64 {
    use std::collections::HashSet;
    use std::os::fd::{AsFd, BorrowedFd};
    fn walk(dir: BorrowedFd<'_>, seen: &mut HashSet<(u64, u64)>, total: &mut u64) {
        let Ok(entries) = crate::sys::read_dir_entries(dir) else {
            return;
        };
        for e in entries {
            let Ok(st) = crate::sys::stat_at(dir, &e.name) else {
                continue;
            };
            if seen.insert((st.st_dev, st.st_ino)) {
                *total += st.st_blocks as u64 * 512;
            }
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR
                && let Ok(sub) = crate::sys::open_dir_read(dir, Path::new(&e.name))
            {
                walk(sub.as_fd(), seen, total);
            }
        }
    }
    let Ok(root) = crate::sys::open_dir_abs(path) else {
        return fs::symlink_metadata(path).map_or(0, |m| {
            use std::os::unix::fs::MetadataExt;
            m.blocks() * 512
        });
    };
    let mut seen = HashSet::new();
    let mut total = crate::sys::fstat(root.as_fd()).map_or(0, |st| st.st_blocks as u64 * 512);
    walk(root.as_fd(), &mut seen, &mut total);
    total
}

/// A file written and fsynced under a temporary name, not yet renamed into
/// place. [`Prepared::commit`] does the rename and the directory fsync (cheap,
/// so it can run under a lock); dropping it uncommitted removes the temp file.
pub struct Prepared {
    tmp: PathBuf,
    dir: PathBuf,
    target: PathBuf,
    committed: bool,
}

/// Writes `bytes` to a temp file in `dir` and fsyncs it; see [`Prepared`].
pub fn prepare_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<Prepared> {
    let tmp = dir.join(format!(".{name}.tmp-{}", unique_name("w")));
    let target = dir.join(name);
    let mut prepared = Prepared {
        tmp,
        dir: dir.to_path_buf(),
        target,
        committed: false,
    };
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&prepared.tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = res {
        prepared.committed = true; // nothing to keep; remove below
        let _ = fs::remove_file(&prepared.tmp);
        return Err(Error::io(format!("writing {}", prepared.target.display()), e));
    }
    Ok(prepared)
}

impl Prepared {
    /// Renames the temp file over the target and fsyncs the directory.
    pub fn commit(mut self) -> Result<()> {
        fs::rename(&self.tmp, &self.target)
            .map_err(|e| Error::io(format!("replacing {}", self.target.display()), e))?;
        self.committed = true;
        fsync_dir(&self.dir)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of replacing
/// an existing `to` (`RENAME_NOREPLACE`), then fsyncs both parents.
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    use crate::sys::{self, RenameFlags};
    let split = |p: &Path| -> Result<(PathBuf, std::ffi::OsString)> {
        match (p.parent(), p.file_name()) {
            (Some(d), Some(n)) => Ok((d.to_path_buf(), n.to_os_string())),
            _ => Err(Error::internal(format!("{} has no parent", p.display()))),
        }
    };
    let (fd_dir, fname) = split(from)?;
    let (td_dir, tname) = split(to)?;
    let open = |d: &Path| sys::open_dir_abs(d).map_err(|e| Error::io(format!("opening {}", d.display()), e));
    let fdir = open(&fd_dir)?;
    let tdir = open(&td_dir)?;
    use std::os::fd::AsFd;
    sys::rename_at(fdir.as_fd(), &fname, tdir.as_fd(), &tname, RenameFlags::NOREPLACE)
        .map_err(|e| Error::io(format!("renaming {} to {}", from.display(), to.display()), e))?;
    sys::fsync(tdir.as_fd(), false).map_err(|e| Error::io(format!("syncing {}", td_dir.display()), e))?;
    if fd_dir != td_dir {
        sys::fsync(fdir.as_fd(), false).map_err(|e| Error::io(format!("syncing {}", fd_dir.display()), e))?;
    }
    Ok(())
}
