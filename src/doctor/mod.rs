//! `goldenfs doctor`: checks, without the daemon, whether this machine and
//! the store's filesystem can run goldenfs, and what will be slow or
//! impossible. Each check is one row: name, status, what was found, and
//! what it means or what to do.
//!
//! It never modifies a store: the filesystem probes run in a scratch
//! directory created inside the state directory (or its nearest existing
//! parent) and removed afterwards, also when a probe fails.

mod store;

use serde::Serialize;
use std::path::Path;
use std::time::Duration;

use crate::protocol::{PingResult, Request};
use crate::sys::probe;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One row of the report (also the `--json` object).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub found: String,
    pub advice: String,
}

impl Check {
    /// The human table's cells: check, status, found, advice.
    pub fn cells(&self) -> Vec<String> {
        let status = self.status.as_str().to_string();
        vec![self.check.clone(), status, self.found.clone(), self.advice.clone()]
    }
}

/// How many checks failed (the exit status is 1 if any).
pub fn failures(checks: &[Check]) -> usize {
    checks.iter().filter(|c| c.status == Status::Fail).count()
}

pub(crate) fn row(check: &str, status: Status, found: impl Into<String>, advice: impl Into<String>) -> Check {
    Check {
        check: check.to_string(),
        status,
        found: found.into(),
        advice: advice.into(),
    }
}

/// Runs every check.
pub fn run(state_dir: &Path, socket: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    let admin = has_cap_sys_admin();
    out.push(privileges(admin));
    let dev_fuse = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse");
    out.push(match &dev_fuse {
        Ok(_) => row("dev-fuse", Status::Ok, "/dev/fuse opens read-write", ""),
        Err(e) => row(
            "dev-fuse",
            Status::Fail,
            format!("/dev/fuse: {e}"),
            "views cannot be mounted: load the module (modprobe fuse) or pass /dev/fuse into the container",
        ),
    });
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    out.push(if has_fs(&filesystems, "fuse") {
        row("fuse-fs", Status::Ok, "fuse is in /proc/filesystems", "")
    } else {
        row(
            "fuse-fs",
            Status::Fail,
            "fuse is not in /proc/filesystems",
            "views cannot be mounted: modprobe fuse",
        )
    });
    let (sysname, release, machine) = probe::uname();
    let version = kernel_version(&release);
    out.push(row("kernel", Status::Ok, format!("{sysname} {release} {machine}"), ""));
    out.push(passthrough(admin && dev_fuse.is_ok(), version));
    out.push(max_pages());
    out.push(overlayfs(&filesystems));
    out.extend(store::checks(state_dir));
    out.push(nofile());
    out.push(daemon(socket));
    out
}

fn has_fs(filesystems: &str, name: &str) -> bool {
    filesystems.lines().any(|l| l.split_whitespace().last() == Some(name))
}

/// `CapEff` from /proc/self/status has bit 21 (`CAP_SYS_ADMIN`).
fn has_cap_sys_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 21) != 0)
}

fn privileges(admin: bool) -> Check {
    let euid = crate::sys::geteuid();
    let found = format!(
        "euid {euid}, CAP_SYS_ADMIN {}",
        if admin { "present" } else { "missing" }
    );
    if admin {
        row("privileges", Status::Ok, found, "")
    } else {
        row(
            "privileges",
            Status::Fail,
            found,
            "the daemon needs root (CAP_SYS_ADMIN) to mount views and to keep its markers in trusted.* xattrs",
        )
    }
}

/// "6.18.0-1-amd64" → (6, 18).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

const NO_PASSTHROUGH: &str =
    "without passthrough, reads and writes of a session's own files go through the daemon (slower)";

fn passthrough(can_probe: bool, version: Option<(u32, u32)>) -> Check {
    let by_version = version.is_some_and(|v| v >= (6, 9));
    if can_probe {
        match probe_passthrough() {
            Ok(o) if o.flags & probe::FUSE_PASSTHROUGH != 0 => {
                return row(
                    "fuse-passthrough",
                    Status::Ok,
                    format!(
                        "offered by the kernel in FUSE_INIT (protocol {}.{}; probed with a test mount)",
                        o.major, o.minor
                    ),
                    "",
                );
            }
            Ok(o) => {
                return row(
                    "fuse-passthrough",
                    Status::Warn,
                    format!(
                        "not offered in FUSE_INIT (protocol {}.{}; probed with a test mount)",
                        o.major, o.minor
                    ),
                    format!("{NO_PASSTHROUGH}; it needs kernel >= 6.9 built with CONFIG_FUSE_PASSTHROUGH"),
                );
            }
            Err(e) => {
                return row(
                    "fuse-passthrough",
                    Status::Warn,
                    format!("test mount failed ({e}); kernel >= 6.9: {}", yes_no(by_version)),
                    "could not confirm passthrough; mounting views may fail the same way",
                );
            }
        }
    }
    let found = format!(
        "not probed (needs root and /dev/fuse); judged by kernel version only: >= 6.9 {}",
        yes_no(by_version)
    );
    if by_version {
        row(
            "fuse-passthrough",
            Status::Ok,
            found,
            "likely available unless the kernel lacks CONFIG_FUSE_PASSTHROUGH",
        )
    } else {
        row("fuse-passthrough", Status::Warn, found, NO_PASSTHROUGH)
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Mounts a test FUSE filesystem in a private temp directory.
fn probe_passthrough() -> std::io::Result<probe::FuseInitOffer> {
    let dir = std::env::temp_dir().join(unique_name());
    std::fs::create_dir(&dir)?;
    let r = probe::fuse_init_offer(&dir, Duration::from_secs(5));
    let removed = std::fs::remove_dir(&dir);
    let offer = r?;
    removed?;
    Ok(offer)
}

/// A scratch name no other run picks.
fn unique_name() -> String {
    crate::store::unique_name("goldenfs-doctor")
}

fn max_pages() -> Check {
    match std::fs::read_to_string("/proc/sys/fs/fuse/max_pages_limit") {
        Ok(v) => row(
            "fuse-max-pages",
            Status::Ok,
            format!("/proc/sys/fs/fuse/max_pages_limit = {}", v.trim()),
            "",
        ),
        Err(_) => row(
            "fuse-max-pages",
            Status::Ok,
            "/proc/sys/fs/fuse/max_pages_limit absent (kernel < 6.13): FUSE requests are at most 256 pages",
            "",
        ),
    }
}

const OVERLAY_NEED: &str = "only dockerd's overlay2 storage driver inside a view needs it";

fn overlayfs(filesystems: &str) -> Check {
    if has_fs(filesystems, "overlay") {
        return row("overlayfs", Status::Ok, "overlay is in /proc/filesystems", OVERLAY_NEED);
    }
    let loadable = std::process::Command::new("modprobe")
        .args(["-n", "-q", "overlay"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if loadable {
        row(
            "overlayfs",
            Status::Ok,
            "overlay module not loaded but available (modprobe -n overlay)",
            format!("{OVERLAY_NEED}; the first overlay mount loads it"),
        )
    } else {
        row(
            "overlayfs",
            Status::Warn,
            "overlay is not in /proc/filesystems and modprobe -n overlay fails",
            format!("{OVERLAY_NEED}: dockerd in a view falls back to a slow driver (vfs or fuse-overlayfs)"),
        )
    }
}

fn nofile() -> Check {
    let (soft, hard) = probe::nofile_limit();
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |v| v.to_string());
    let found = format!("RLIMIT_NOFILE soft {}, hard {}", show(soft), show(hard));
    // The daemon raises its soft limit to the hard one at start.
    if hard.is_none_or(|h| h >= 65536) {
        row(
            "nofile-limit",
            Status::Ok,
            found,
            "the daemon raises its soft limit to the hard limit",
        )
    } else {
        row(
            "nofile-limit",
            Status::Warn,
            found,
            "the daemon keeps file descriptors per open file: raise the hard limit to at least 65536 (LimitNOFILE= in a systemd unit, ulimit -Hn)",
        )
    }
}

fn daemon(socket: &Path) -> Check {
    let found = match ping(socket) {
        Ok(p) => format!("daemon {} (pid {}) answers on {}", p.version, p.pid, socket.display()),
        Err(e) => format!("no daemon answers on {} ({e})", socket.display()),
    };
    row(
        "daemon",
        Status::Ok,
        found,
        "informational: doctor does not need the daemon",
    )
}

fn ping(socket: &Path) -> Result<PingResult, String> {
    let client = crate::cli::Client {
        socket,
        timeout: Some(Duration::from_secs(5)),
    };
    client.call(&Request::Ping {}).map_err(|f| f.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(kernel_version("6.9"), Some((6, 9)));
        assert_eq!(kernel_version("x"), None);
    }

    #[test]
    fn proc_filesystems_lines_parse() {
        let text = "nodev\tfuse\nnodev\tfusectl\n\text4\n";
        assert!(has_fs(text, "fuse"));
        assert!(has_fs(text, "ext4"));
        assert!(!has_fs(text, "overlay"));
    }
}
