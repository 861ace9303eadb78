//! Helpers for `tests/fd_usage.rs`: a daemon's open-file limit and
//! descriptor count, and trees of many small files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::load::{fd_count, nofile_limit};

/// Lowers the open-file limit (soft and hard) of the running process
/// `pid` to `n` with `prlimit(1)`: the daemon raises its soft limit to the
/// hard one at start-up, so it is lowered afterwards.
pub fn limit_nofile(pid: u32, n: u64) {
    let out = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={n}:{n}"))
        .output()
        .expect("run prlimit (util-linux)");
    assert!(
        out.status.success(),
        "prlimit --pid={pid} --nofile={n}:{n} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(nofile_limit(pid), Some(n), "the daemon's open-file limit after prlimit");
}

/// The daemon's open descriptors now.
pub fn fds_of(pid: u32) -> u64 {
    fd_count(pid).unwrap_or_else(|| panic!("daemon {pid} is gone"))
}

/// `dirs` directories of `per_dir` files each under `root`:
/// `root/dNN/fNNNN` (paths only).
pub fn tree_paths(root: &Path, dirs: usize, per_dir: usize) -> Vec<PathBuf> {
    (0..dirs)
        .flat_map(|d| (0..per_dir).map(move |f| root.join(format!("d{d:02}/f{f:04}"))))
        .collect()
}

/// Creates the directories of `tree_paths(root, dirs, _)`.
pub fn make_dirs(root: &Path, dirs: usize) {
    for d in 0..dirs {
        fs::create_dir_all(root.join(format!("d{d:02}"))).unwrap_or_else(|e| panic!("mkdir d{d:02}: {e}"));
    }
}

/// `lstat`s every path, panicking with the path and error on the first
/// failure (EMFILE included); returns the total size.
pub fn stat_all(paths: &[PathBuf]) -> u64 {
    paths
        .iter()
        .map(|p| {
            fs::symlink_metadata(p)
                .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
                .len()
        })
        .sum()
}
