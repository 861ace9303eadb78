//! Test harness for the integration tests: a real `goldenfs daemon` on a
//! private temporary store and socket, driven through the real CLI, with real
//! FUSE mounts.
//!
//! Every test file does `mod common;` and starts its own [`Daemon`], so test
//! files and tests run in parallel without sharing anything.
//!
//! These tests need root and `/dev/fuse`. Without them they FAIL (with a
//! message saying so); they never skip.
#![allow(dead_code)]

pub mod extra;
pub mod fds;
pub mod load;

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod crash;
pub mod hostile;
pub mod notify;
pub mod prom;
pub mod rng;
pub use rng::Rng;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_goldenfs");

/// Name of the virtual version file at the root of every view.
pub const VERSION_FILE: &str = "golden-version.json";

/// How long the daemon gets to answer `status` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the daemon gets to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Hang guard for one CLI command (a guard against deadlocks, not a timing assertion).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Preconditions
// ---------------------------------------------------------------------------

/// Panics (fails the test) unless we are root and `/dev/fuse` can be opened.
pub fn require_root_and_fuse() {
    static CHECK: Once = Once::new();
    CHECK.call_once(|| {
        let euid = rustix::process::geteuid().as_raw();
        assert!(
            euid == 0,
            "goldenfs integration tests need root (they mount FUSE views and \
             the daemon uses trusted.* xattrs); running as uid {euid}. \
             Run them as root, e.g. `sudo ./scripts/test.sh`. They are not skipped."
        );
        if let Err(e) = fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
            panic!(
                "goldenfs integration tests need /dev/fuse (open read-write failed: {e}). \
                 Load the fuse module (`modprobe fuse`) or run on a machine/container \
                 with /dev/fuse. They are not skipped."
            );
        }
    });
}

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// kill(2) of a process we started.
fn send_signal(pid: u32, sig: libc::c_int) {
    let pid = rustix::process::Pid::from_raw(pid as i32);
    let sig = rustix::process::Signal::from_named_raw(sig);
    if let (Some(pid), Some(sig)) = (pid, sig) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn is_tmpfs(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|st| st.f_type == TMPFS_MAGIC)
}

/// A directory on a real disk filesystem (not tmpfs) to hold test stores:
/// `/var/tmp/goldenfs-tests` unless that is tmpfs, else the cargo target tmp dir.
pub fn scratch_root() -> PathBuf {
    let var = PathBuf::from("/var/tmp");
    let base = if var.is_dir() && !is_tmpfs(&var) {
        var.join("goldenfs-tests")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("goldenfs-tests")
    };
    fs::create_dir_all(&base).expect("create scratch root");
    base.canonicalize().expect("canonicalize scratch root")
}

/// A fresh temporary directory under [`scratch_root`], removed on drop.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scratch_root())
        .expect("create temp dir")
}

// ---------------------------------------------------------------------------
// Running commands with a hang guard
// ---------------------------------------------------------------------------

/// Runs `cmd` to completion, capturing stdout and stderr; panics if it does not
/// finish within `timeout` (it is killed first).
pub fn output_with_timeout(mut cmd: Command, timeout: Duration, what: &str) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {what}: {e}")),
        Err(_) => {
            // The child is not reaped yet: the waiting thread has not returned.
            send_signal(pid as u32, libc::SIGKILL);
            panic!("{what} did not finish within {timeout:?} (hang guard); it was killed");
        }
    }
}

/// Runs the goldenfs CLI with `GOLDENFS_SOCKET=socket`.
pub fn cli(socket: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("GOLDENFS_SOCKET", socket).env_remove("RUST_LOG");
    output_with_timeout(cmd, COMMAND_TIMEOUT, &format!("goldenfs {}", args.join(" ")))
}

/// Shell-style rendering of an output for panic messages.
pub fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "`goldenfs {}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Checks the error contract: non-zero exit, and stderr is exactly one
/// non-empty line starting with `goldenfs: `. Returns that line.
pub fn assert_cli_error(args: &[&str], out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, but it succeeded:\n{}",
        describe(args, out)
    );
    assert!(
        out.status.code().is_some(),
        "the CLI was killed by a signal instead of exiting:\n{}",
        describe(args, out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one line on stderr:\n{}",
        describe(args, out)
    );
    assert!(
        lines[0].starts_with("goldenfs: ") && lines[0].len() > "goldenfs: ".len(),
        "the error line must start with `goldenfs: `:\n{}",
        describe(args, out)
    );
    lines[0].to_string()
}

// ---------------------------------------------------------------------------
// Mount table
// ---------------------------------------------------------------------------

/// The mountpoints of `/proc/self/mountinfo` (unescaped).
pub fn mount_points() -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| c.is_ascii_digit()) {
            let v = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Whether something is mounted exactly at `path`.
pub fn is_mounted(path: &Path) -> bool {
    mount_points().iter().any(|m| m == path)
}

/// The filesystem type of the mount at `path` (from mountinfo), if mounted.
pub fn mount_fstype(path: &Path) -> Option<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() > 4 && Path::new(&unescape_mountinfo(fields[4])) == path {
            let sep = fields.iter().position(|f| *f == "-")?;
            return fields.get(sep + 1).map(|s| s.to_string());
        }
    }
    None
}

/// The mount options of the mount at `path`: (per-mount options, super options), if mounted.
pub fn mount_options(path: &Path) -> Option<(Vec<String>, Vec<String>)> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let split = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
    let mut found = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() > 5 && Path::new(&unescape_mountinfo(fields[4])) == path {
            let sep = fields.iter().position(|f| *f == "-")?;
            // The last matching line is the top of the mount stack.
            found = Some((split(fields[5]), split(fields.get(sep + 3).unwrap_or(&""))));
        }
    }
    found
}

fn lazy_umount(path: &Path) {
    let _ = Command::new("umount")
        .arg("-l")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

static DAEMON_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running `goldenfs daemon` on a private store.
pub struct Daemon {
    /// Keeps the temporary root alive; removed on drop.
    root: Option<tempfile::TempDir>,
    root_path: PathBuf,
    state: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    child: Mutex<Option<Child>>,
    /// Every mountpoint created through [`Daemon::mount`] (for cleanup).
    mounts: Mutex<Vec<PathBuf>>,
    dir_seq: AtomicUsize,
    extra_args: Vec<String>,
    /// Environment variables of the daemon process (see [`Daemon::set_env`]).
    env: Mutex<Vec<(String, String)>>,
}

impl Daemon {
    /// Starts a daemon on a fresh store and waits until `goldenfs status` answers.
    pub fn start() -> Daemon {
        Self::start_with(&[])
    }

    /// Like [`Daemon::start`] with extra `goldenfs daemon` options; `{root}`
    /// in them stands for the daemon's temporary root (see [`Daemon::root`]).
    pub fn start_with(extra: &[&str]) -> Daemon {
        Self::start_after(extra, |_| ()).1
    }

    /// Like [`Daemon::start_with`], running `setup(root)` once the temporary
    /// root (with an empty `state/`) exists and before the daemon starts, e.g.
    /// to mount a small filesystem on `state/`. Its value comes first so that
    /// `let (t, d) = …` drops the daemon (which unmounts everything below its
    /// root) before `t`.
    pub fn start_after<T>(extra: &[&str], setup: impl FnOnce(&Path) -> T) -> (T, Daemon) {
        require_root_and_fuse();
        let seq = DAEMON_SEQ.fetch_add(1, Ordering::Relaxed);
        let root = tempdir(&format!("d{}-{seq}-", std::process::id()));
        let root_path = root.path().to_path_buf();
        let state = root_path.join("state");
        fs::create_dir(&state).expect("create state dir");
        fs::create_dir(root_path.join("mnt")).expect("create mnt dir");
        fs::create_dir(root_path.join("src")).expect("create src dir");
        let root_str = root_path.display().to_string();
        let extra_args = extra.iter().map(|s| s.replace("{root}", &root_str)).collect();
        let d = Daemon {
            socket: root_path.join("goldenfs.sock"),
            log: root_path.join("daemon.log"),
            state,
            root_path,
            root: Some(root),
            child: Mutex::new(None),
            mounts: Mutex::new(Vec::new()),
            dir_seq: AtomicUsize::new(0),
            extra_args,
            env: Mutex::new(Vec::new()),
        };
        let t = setup(&d.root_path);
        d.spawn();
        (t, d)
    }

    fn spawn(&self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open daemon log");
        let log2 = log.try_clone().expect("clone log fd");
        let mut cmd = Command::new(BIN);
        cmd.arg("daemon")
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.extra_args)
            .envs(self.env.lock().unwrap().iter().cloned())
            .env_remove("GOLDENFS_SOCKET")
            .env(
                "RUST_LOG",
                std::env::var("GOLDENFS_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = cmd.spawn().expect("spawn goldenfs daemon");
        *self.child.lock().unwrap() = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.try_wait_child() {
                panic!(
                    "goldenfs daemon exited during start-up with {status}\n--- daemon log ---\n{}",
                    self.log_text()
                );
            }
            if self.socket.exists() {
                let out = cli(&self.socket, &["status"]);
                if out.status.success() {
                    return;
                }
                if Instant::now() >= deadline {
                    panic!(
                        "goldenfs daemon did not answer `status` within {START_TIMEOUT:?}\n{}\n--- daemon log ---\n{}",
                        describe(&["status"], &out),
                        self.log_text()
                    );
                }
            } else if Instant::now() >= deadline {
                panic!(
                    "goldenfs daemon did not create its socket {} within {START_TIMEOUT:?}\n--- daemon log ---\n{}",
                    self.socket.display(),
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_wait_child(&self) -> Option<ExitStatus> {
        let mut guard = self.child.lock().unwrap();
        let child = guard.as_mut()?;
        match child.try_wait() {
            Ok(Some(st)) => {
                *guard = None;
                Some(st)
            }
            _ => None,
        }
    }

    /// The daemon's stdout+stderr so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        // Keep panic messages readable: the last 200 lines are what matter.
        let lines: Vec<&str> = s.lines().collect();
        if lines.len() > 200 {
            format!(
                "[... {} earlier lines ...]\n{}",
                lines.len() - 200,
                lines[lines.len() - 200..].join("\n")
            )
        } else {
            s
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's `--state-dir`.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The temporary root (holds state/, mnt/, src/, the socket and the log).
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    /// `state/layers`: where the store keeps its immutable layers.
    pub fn layers_dir(&self) -> PathBuf {
        self.state.join("layers")
    }

    /// Runs `goldenfs ARGS` against this daemon.
    pub fn run(&self, args: &[&str]) -> Output {
        cli(&self.socket, args)
    }

    /// Runs `goldenfs ARGS`, panics (with stderr and the daemon log) unless it
    /// succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        if !out.status.success() {
            panic!("{}\n--- daemon log ---\n{}", describe(args, &out), self.log_text());
        }
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Runs `goldenfs ARGS` expecting the error contract; returns the stderr line.
    pub fn fail(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_cli_error(args, &out)
    }

    /// Runs `goldenfs ARGS --json` (ARGS without `--json`) and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut v: Vec<&str> = args.to_vec();
        v.push("--json");
        let out = self.ok(&v);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("`goldenfs {}` printed invalid JSON ({e}):\n{out}", v.join(" ")))
    }

    /// A fresh empty directory under the test root (for `--from` trees, mountpoints, ...).
    pub fn new_dir(&self, prefix: &str) -> PathBuf {
        let n = self.dir_seq.fetch_add(1, Ordering::Relaxed);
        let p = self.root_path.join("src").join(format!("{prefix}{n}"));
        fs::create_dir_all(&p).expect("create dir");
        p
    }

    /// The mountpoint path used for `session` (created empty if missing).
    pub fn mountpoint(&self, session: &str) -> PathBuf {
        let p = self.root_path.join("mnt").join(session);
        if !p.exists() {
            fs::create_dir(&p).expect("create mountpoint");
        }
        let mut m = self.mounts.lock().unwrap();
        if !m.contains(&p) {
            m.push(p.clone());
        }
        p
    }

    /// `goldenfs session mount PROJECT SESSION MNT` on a fresh (or the same
    /// session's previous) mountpoint; returns the mountpoint.
    pub fn mount(&self, project: &str, session: &str) -> PathBuf {
        let mp = self.mountpoint(session);
        self.ok(&["session", "mount", project, session, mp.to_str().unwrap()]);
        assert!(
            is_mounted(&mp),
            "`goldenfs session mount {project} {session} {}` succeeded but nothing is mounted there\n--- daemon log ---\n{}",
            mp.display(),
            self.log_text()
        );
        mp
    }

    /// `goldenfs session unmount SESSION`.
    /// Unmounts a session. A test that runs several threads also forks CLI
    /// subprocesses, and a child forked while another thread had a file of
    /// this view open holds that file until its exec closes it (O_CLOEXEC):
    /// the unmount can then meet EBUSY for that instant, so "busy" is retried
    /// for up to 2 s before it counts as a failure.
    pub fn unmount(&self, session: &str) {
        let args = ["session", "unmount", session];
        for _ in 0..100 {
            let out = self.run(&args);
            if out.status.success() {
                return;
            }
            if !String::from_utf8_lossy(&out.stderr).contains("is busy") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.ok(&args);
    }

    /// Unmounts `session` and mounts it again (at the same mountpoint).
    pub fn remount(&self, project: &str, session: &str) -> PathBuf {
        self.unmount(session);
        self.mount(project, session)
    }

    /// Creates project `name` from a tree built by `fill` (given the source dir).
    pub fn create_project_with(&self, name: &str, fill: impl FnOnce(&Path)) -> PathBuf {
        let src = self.new_dir(&format!("{name}-src"));
        fill(&src);
        self.ok(&["project", "create", name, "--from", src.to_str().unwrap()]);
        src
    }

    /// Sends SIGTERM and waits for the daemon to exit; asserts it exited 0
    /// (the contract: SIGTERM unmounts everything and exits 0).
    pub fn stop(&self) {
        let status = self.signal_and_wait(libc::SIGTERM, STOP_TIMEOUT);
        match status {
            Some(st) => assert!(
                st.success(),
                "goldenfs daemon exited with {st} after SIGTERM (expected 0)\n--- daemon log ---\n{}",
                self.log_text()
            ),
            None => {
                self.kill9();
                panic!(
                    "goldenfs daemon did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed\n--- daemon log ---\n{}",
                    self.log_text()
                );
            }
        }
    }

    /// Stops the daemon (SIGTERM, must exit 0) and starts it again on the same store and socket.
    pub fn restart(&self) {
        self.stop();
        self.spawn();
    }

    /// Kills the daemon with SIGKILL (simulates a crash); mounts are left behind
    /// (aborted) and cleaned up lazily.
    pub fn kill9(&self) {
        let mut guard = self.child.lock().unwrap();
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(guard);
        for mp in self.mounts.lock().unwrap().iter() {
            if is_mounted(mp) {
                lazy_umount(mp);
            }
        }
    }

    /// Sets (or, with `None`, unsets) an environment variable of the daemon
    /// from its next start on (e.g. `GOLDENFS_FAULT`, `GOLDENFS_PAUSE`).
    pub fn set_env(&self, key: &str, value: Option<&str>) {
        let mut env = self.env.lock().unwrap();
        env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            env.push((key.to_string(), v.to_string()));
        }
    }

    /// Starts the daemon again after [`Daemon::kill9`] or [`Daemon::stop`].
    pub fn start_again(&self) {
        assert!(
            self.child.lock().unwrap().is_none(),
            "start_again: the daemon is still running"
        );
        self.spawn();
    }

    /// Whether the daemon process is still alive.
    pub fn is_running(&self) -> bool {
        let mut guard = self.child.lock().unwrap();
        match guard.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    fn signal_and_wait(&self, sig: libc::c_int, timeout: Duration) -> Option<ExitStatus> {
        let mut guard = self.child.lock().unwrap();
        let child = guard.as_mut()?;
        // Our own child, not yet reaped.
        send_signal(child.id(), sig);
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => {
                    *guard = None;
                    return Some(st);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => return None,
            }
        }
    }

    /// The mountpoints created through this harness that are still mounted.
    pub fn still_mounted(&self) -> Vec<PathBuf> {
        let table = mount_points();
        self.mounts
            .lock()
            .unwrap()
            .iter()
            .filter(|m| table.contains(m))
            .cloned()
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let exited = self.signal_and_wait(libc::SIGTERM, STOP_TIMEOUT).is_some();
        if !exited {
            let mut guard = self.child.lock().unwrap();
            if let Some(mut c) = guard.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for mp in self.mounts.lock().unwrap().iter() {
            if is_mounted(mp) {
                lazy_umount(mp);
            }
        }
        // Anything else still mounted below our root (mounts made by tests by hand).
        for mp in mount_points() {
            if mp.starts_with(&self.root_path) {
                lazy_umount(&mp);
            }
        }
        if std::env::var_os("GOLDENFS_TEST_KEEP").is_some() {
            if let Some(root) = self.root.take() {
                let kept = root.keep();
                eprintln!("GOLDENFS_TEST_KEEP: kept {}", kept.display());
            }
        } else if let Some(root) = self.root.take() {
            let _ = root.close();
        }
    }
}

// ---------------------------------------------------------------------------
// JSON helpers (loose until docs/protocol.md fixes the shapes)
// ---------------------------------------------------------------------------

/// Every object in `v` (recursively, including `v` itself).
pub fn objects(v: &Value) -> Vec<&serde_json::Map<String, Value>> {
    let mut out = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a serde_json::Map<String, Value>>) {
        match v {
            Value::Object(m) => {
                out.push(m);
                for x in m.values() {
                    walk(x, out);
                }
            }
            Value::Array(a) => {
                for x in a {
                    walk(x, out);
                }
            }
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

/// The first of `keys` present in `m`.
pub fn field<'a>(m: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| m.get(*k))
}

/// The object in `v` whose name field (one of `name_keys`) equals `name`.
pub fn find_named<'a>(v: &'a Value, name_keys: &[&str], name: &str) -> Option<&'a serde_json::Map<String, Value>> {
    objects(v)
        .into_iter()
        .find(|m| field(m, name_keys).and_then(Value::as_str) == Some(name))
}

// ---------------------------------------------------------------------------
// File system helpers
// ---------------------------------------------------------------------------

/// Writes `content` to `path`, creating parent directories.
pub fn write(path: impl AsRef<Path>, content: impl AsRef<[u8]>) {
    let path = path.as_ref();
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", p.display()));
    }
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Reads `path` as UTF-8, panicking with the path on error.
pub fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Whether `path` exists (without following a final symlink).
pub fn exists(path: impl AsRef<Path>) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// The sorted entry names of directory `path`.
pub fn ls(path: impl AsRef<Path>) -> Vec<String> {
    let path = path.as_ref();
    let mut v: Vec<String> = fs::read_dir(path)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", path.display()))
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

/// The errno of an `io::Error` (0 if none).
pub fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Asserts `r` failed with one of `errnos`.
#[track_caller]
pub fn assert_errno<T: std::fmt::Debug>(r: io::Result<T>, errnos: &[i32], what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected failure with errno {errnos:?}, but it succeeded ({v:?})"),
        Err(e) => assert!(
            errnos.contains(&errno_of(&e)),
            "{what}: expected errno {errnos:?}, got {e} (errno {})",
            errno_of(&e)
        ),
    }
}

/// One entry of a tree snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        content: Vec<u8>,
        mtime: (i64, i64),
    },
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: PathBuf,
    },
    Other {
        mode: u32,
        rdev: u64,
    },
}

/// Snapshot of a tree on disk (relative path → node), symlinks not followed.
/// Includes every `user.*`/`trusted.*` xattr as a pseudo-entry `path@xattr`.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        let mut entries: Vec<_> = match fs::read_dir(dir) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(e) => panic!("snapshot: readdir {}: {e}", dir.display()),
        };
        entries.sort();
        for p in entries {
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let ft = md.file_type();
            let mode = md.mode() & 0o7777;
            let node = if ft.is_dir() {
                Node::Dir {
                    mode,
                    uid: md.uid(),
                    gid: md.gid(),
                }
            } else if ft.is_file() {
                Node::File {
                    mode,
                    uid: md.uid(),
                    gid: md.gid(),
                    content: fs::read(&p).unwrap(),
                    mtime: (md.mtime(), md.mtime_nsec()),
                }
            } else if ft.is_symlink() {
                Node::Symlink {
                    target: fs::read_link(&p).unwrap(),
                }
            } else {
                Node::Other {
                    mode: md.mode(),
                    rdev: md.rdev(),
                }
            };
            for name in xattr::list(&p).unwrap_or_default() {
                let v = xattr::get(&p, &name).ok().flatten().unwrap_or_default();
                let mut key = rel.clone().into_os_string();
                key.push("@");
                key.push(&name);
                out.insert(
                    PathBuf::from(key),
                    Node::File {
                        mode: 0,
                        uid: 0,
                        gid: 0,
                        content: v,
                        mtime: (0, 0),
                    },
                );
            }
            out.insert(rel, node);
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// Counts the entries directly under `dir` (0 if it does not exist).
pub fn count_entries(dir: &Path) -> usize {
    fs::read_dir(dir).map(|rd| rd.count()).unwrap_or(0)
}

/// Total number of filesystem objects under `dir` (recursive; 0 if missing).
pub fn count_tree(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd {
        let e = e.unwrap();
        n += 1;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            n += count_tree(&e.path());
        }
    }
    n
}

/// Whether `path` is a FIFO.
pub fn is_fifo(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false)
}

/// Sets mode bits on `path`.
pub fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// `mknod(2)`; `mode` carries the file type.
pub fn mknod(path: &Path, mode: u32, dev: u64) -> io::Result<()> {
    use rustix::fs::{CWD, FileType, Mode, mknodat};
    mknodat(
        CWD,
        path,
        FileType::from_raw_mode(mode),
        Mode::from_raw_mode(mode & 0o7777),
        dev,
    )
    .map_err(io::Error::from)
}

/// `mkfifo(3)`.
pub fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    mknod(path, libc::S_IFIFO | (mode & 0o7777), 0)
}

/// `lchown(2)`.
pub fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

/// `utimensat(2)` without following symlinks; times are (sec, nsec).
pub fn set_times(path: &Path, atime: (i64, i64), mtime: (i64, i64)) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, utimensat};
    let ts = |(tv_sec, tv_nsec): (i64, i64)| Timespec {
        tv_sec,
        tv_nsec: tv_nsec as _,
    };
    let times = Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    };
    utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

/// `truncate(2)` itself (a setattr of the size, not an open with `O_TRUNC`).
pub fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: a NUL-terminated path; rustix has no path-based truncate.
    if unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `statvfs(3)`: (block size, total blocks).
pub fn statvfs(path: &Path) -> io::Result<(u64, u64)> {
    let st = rustix::fs::statvfs(path).map_err(io::Error::from)?;
    Ok((st.f_bsize, st.f_blocks))
}

/// Extended attributes via the `l*xattr` calls (never follow symlinks).
pub mod xattr {
    use super::{OsStr, Path, io};
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    /// `lsetxattr(path, name, value, 0)`.
    pub fn set(path: &Path, name: impl AsRef<OsStr>, value: &[u8]) -> io::Result<()> {
        rustix::fs::lsetxattr(path, name.as_ref(), value, rustix::fs::XattrFlags::empty()).map_err(io::Error::from)
    }

    /// `lgetxattr`; `Ok(None)` for ENODATA.
    pub fn get(path: &Path, name: impl AsRef<OsStr>) -> io::Result<Option<Vec<u8>>> {
        let name = name.as_ref();
        loop {
            let len = match rustix::fs::lgetxattr_query(path, name) {
                Ok(n) => n,
                Err(rustix::io::Errno::NODATA) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let mut buf = vec![0u8; len];
            match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                Err(rustix::io::Errno::RANGE) => continue, // grew in between
                Err(rustix::io::Errno::NODATA) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `llistxattr`.
    pub fn list(path: &Path) -> io::Result<Vec<OsString>> {
        loop {
            let len = rustix::fs::llistxattr_query(path).map_err(io::Error::from)?;
            let mut buf = vec![0u8; len];
            match rustix::fs::llistxattr(path, &mut buf[..]) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf
                        .split(|b| *b == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| OsString::from_vec(s.to_vec()))
                        .collect());
                }
                Err(rustix::io::Errno::RANGE) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `lremovexattr`.
    pub fn remove(path: &Path, name: impl AsRef<OsStr>) -> io::Result<()> {
        rustix::fs::lremovexattr(path, name.as_ref()).map_err(io::Error::from)
    }
}

// ---------------------------------------------------------------------------
// Version file and generation helpers
// ---------------------------------------------------------------------------

/// Parsed `golden-version.json` of the view mounted at `mnt`.
pub fn version_of(mnt: &Path) -> Value {
    let text = read(mnt.join(VERSION_FILE));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{VERSION_FILE} in {} is not JSON ({e}):\n{text}", mnt.display()))
}

/// The `generation` field of the view's version file.
pub fn generation_of(mnt: &Path) -> u64 {
    let v = version_of(mnt);
    v.get("generation")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{VERSION_FILE} has no numeric `generation`: {v}"))
}

// The `--json` shapes (docs/protocol.md):
//   project list  -> {"projects": [{"project", "created_at", "current_generation", "generations", "layer_depth", "sessions": [..]}]}
//   session list  -> {"sessions": [{"session", "project", "base_generation", "mounted", "mountpoint", "created_at"}]}
//   generations P -> {"project", "current", "generations": [{"generation", "created_at", "session_id", "parent", "layers", "current", "pinned_by"}]}

impl Daemon {
    /// P's current generation: `current` of `goldenfs generations P --json`.
    pub fn current_generation(&self, project: &str) -> u64 {
        let g = self.json(&["generations", project]);
        g.get("current")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("`generations {project} --json` has no numeric `current`:\n{g}"))
    }

    /// The generation numbers listed by `goldenfs generations P --json`, sorted.
    pub fn generations(&self, project: &str) -> Vec<u64> {
        let v = self.json(&["generations", project]);
        let list = v
            .get("generations")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("`generations {project} --json` has no `generations` array:\n{v}"));
        let mut out: Vec<u64> = list
            .iter()
            .map(|g| {
                g.get("generation")
                    .and_then(Value::as_u64)
                    .unwrap_or_else(|| panic!("generation entry without `generation`: {g}"))
            })
            .collect();
        out.sort();
        out
    }

    /// Names of the projects in `goldenfs project list --json`.
    pub fn project_names(&self) -> Vec<String> {
        let v = self.json(&["project", "list"]);
        names_in(&v, "projects", "project")
    }

    /// Names of the sessions in `goldenfs session list --json`.
    pub fn session_names(&self) -> Vec<String> {
        let v = self.json(&["session", "list"]);
        names_in(&v, "sessions", "session")
    }

    /// The object describing `session` in `goldenfs session list --json`.
    pub fn session_info(&self, session: &str) -> serde_json::Map<String, Value> {
        let v = self.json(&["session", "list"]);
        v.get("sessions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .find(|m| m.get("session").and_then(Value::as_str) == Some(session))
            .cloned()
            .unwrap_or_else(|| panic!("session {session} not in `session list --json`:\n{v}"))
    }
}

fn names_in(v: &Value, list_key: &str, name_key: &str) -> Vec<String> {
    let list = v
        .get(list_key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("expected a `{list_key}` array in:\n{v}"));
    let mut out: Vec<String> = list
        .iter()
        .map(|x| {
            x.get(name_key)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("`{list_key}` entry without `{name_key}`: {x}"))
                .to_string()
        })
        .collect();
    out.sort();
    out
}

/// Whether `s` looks like an RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z'] | [b'z'] => true,
        [s, h1, h2, b':', m1, m2] => (*s == b'+' || *s == b'-') && [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// The standard small sample tree used by many tests:
/// `a.txt`, `b.txt`, `dir1/x.txt`, `dir1/nested/deep.txt`, `empty/`, `link -> a.txt`.
pub fn fill_sample(dir: &Path) {
    write(dir.join("a.txt"), "alpha\n");
    write(dir.join("b.txt"), "bravo\n");
    write(dir.join("dir1/x.txt"), "x\n");
    write(dir.join("dir1/nested/deep.txt"), "deep\n");
    fs::create_dir_all(dir.join("empty")).unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("link")).unwrap();
}
