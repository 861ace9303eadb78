//! Helpers for tests that attack the control socket directly: raw lines,
//! many connections, other uids, and the daemon's threads and memory.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use super::{BIN, Daemon, output_with_timeout};

/// Hang guard for one reply on a raw connection (not a timing assertion).
pub const REPLY_WATCHDOG: Duration = Duration::from_secs(120);

/// A raw connection to the daemon's socket with a read watchdog.
pub fn connect(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    s.set_read_timeout(Some(REPLY_WATCHDOG)).unwrap();
    s
}

/// Sends `bytes` (one or more request lines) on a fresh connection and
/// reads `n` reply lines, each parsed as JSON.
pub fn raw_exchange(socket: &Path, bytes: &[u8], n: usize) -> Vec<Value> {
    let s = connect(socket);
    (&s).write_all(bytes).unwrap();
    let mut r = BufReader::new(&s);
    (0..n)
        .map(|i| {
            let mut line = String::new();
            r.read_line(&mut line)
                .unwrap_or_else(|e| panic!("reading reply {i} of {n}: {e}"));
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {i} is not JSON ({e}): {line:?}"))
        })
        .collect()
}

/// One request line for `value` (a JSON object).
pub fn line(value: &Value) -> Vec<u8> {
    let mut v = serde_json::to_vec(value).unwrap();
    v.push(b'\n');
    v
}

/// The error code of a reply (panics on a success).
pub fn error_code(reply: &Value) -> &str {
    reply["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error reply, got {reply}"))
}

/// The error message of a reply (panics on a success).
pub fn error_message(reply: &Value) -> &str {
    reply["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error reply, got {reply}"))
}

/// What `/proc/PID/status` says of a process's threads and memory.
#[derive(Clone, Copy, Debug)]
pub struct ProcStatus {
    pub threads: u64,
    /// Resident memory now, KiB.
    pub rss_kib: u64,
    /// Peak resident memory (since start or [`reset_peak_rss`]), KiB.
    pub hwm_kib: u64,
}

pub fn proc_status(pid: u32) -> ProcStatus {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    ProcStatus {
        threads: field("Threads:"),
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    }
}

/// How many of `pid`'s threads are named `name` (`/proc/PID/task/*/comm`).
pub fn threads_named(pid: u32, name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name))
        .count()
}

/// Resets the peak resident set size (`VmHWM`) to the current one.
pub fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("write /proc/PID/clear_refs");
}

/// The daemon's pid (from `goldenfs status`).
pub fn daemon_pid(d: &Daemon) -> u32 {
    d.json(&["status"])["pid"].as_u64().expect("status has a pid") as u32
}

/// Raises this process's open-file limit to at least `n` (for tests that
/// hold thousands of connections).
pub fn raise_nofile(n: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current.is_some_and(|c| c < n) {
        lim.current = Some(lim.maximum.map_or(n, |m| m.min(n)));
        setrlimit(Resource::Nofile, lim).expect("raise RLIMIT_NOFILE");
    }
}

/// Runs `goldenfs --socket SOCKET ARGS` as `uid`:`gid` (via setpriv). The
/// directory holding the socket is made traversable, so that the daemon
/// itself (SO_PEERCRED) decides, not the filesystem.
pub fn goldenfs_as(d: &Daemon, uid: u32, gid: u32, args: &[&str]) -> Output {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = Command::new("setpriv");
    c.args([
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".into(),
    ])
    .arg(BIN)
    .arg("--socket")
    .arg(d.socket())
    .args(args);
    output_with_timeout(c, Duration::from_secs(60), &format!("goldenfs {args:?} as {uid}:{gid}"))
}
