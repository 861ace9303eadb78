//! Helpers of `tests/load.rs`: a seeded random source, the daemon's pid,
//! resident memory and open descriptors, and a watchdog that turns a hang
//! into a failure with diagnostics instead of a stuck CI job. `model` holds
//! the in-memory model of a view's tree, `workload` one session's workload.

pub mod model;
pub mod workload;

use super::Daemon;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

pub use super::Rng;

// ---------------------------------------------------------------------------
// The daemon process: pid, memory, diagnostics
// ---------------------------------------------------------------------------

/// The daemon's pid, from `goldenfs status --json` (it re-executes itself
/// once at start-up, keeping its pid).
pub fn daemon_pid(d: &Daemon) -> u32 {
    let st = d.json(&["status"]);
    st.get("pid")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("`status --json` has no numeric pid:\n{st}")) as u32
}

/// `VmRSS` of `pid` in KiB, `None` once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Number of open file descriptors of `pid`, `None` once it is gone.
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The soft `Max open files` limit of `pid`.
pub fn nofile_limit(pid: u32) -> Option<u64> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Peaks of a process's resources, sampled in the background.
#[derive(Clone, Copy, Debug, Default)]
pub struct Peaks {
    pub rss_kib: u64,
    pub fds: u64,
    pub samples: u64,
}

/// Samples a process's `VmRSS` and open descriptors in the background and
/// keeps the peaks.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<Peaks>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Sampler {
    pub fn start(pid: u32, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new(Peaks::default()));
        let (s, p) = (stop.clone(), peaks.clone());
        let handle = thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    if let (Some(kib), Some(fds)) = (rss_kib(pid), fd_count(pid)) {
                        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
                        p.rss_kib = p.rss_kib.max(kib);
                        p.fds = p.fds.max(fds);
                        p.samples += 1;
                    }
                    thread::sleep(every);
                }
            })
            .expect("spawn the sampler");
        Sampler {
            stop,
            peaks,
            handle: Some(handle),
        }
    }

    /// Stops sampling; returns the peaks.
    pub fn finish(mut self) -> Peaks {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        *self.peaks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every task of `pid`: name, state, wait channel and kernel stack.
pub fn task_report(pid: &str) -> String {
    let mut out = String::new();
    let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("(no /proc/{pid}/task)\n");
    };
    let mut tids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    tids.sort_by_key(|t| t.parse::<u64>().unwrap_or(0));
    for tid in tids {
        let base = format!("/proc/{pid}/task/{tid}");
        let read = |f: &str| fs::read_to_string(format!("{base}/{f}")).unwrap_or_default();
        let state = read("status")
            .lines()
            .find(|l| l.starts_with("State:"))
            .unwrap_or("")
            .to_string();
        let _ = writeln!(
            out,
            "task {tid} {:?} {state} wchan={}",
            read("comm").trim(),
            read("wchan").trim()
        );
        for line in read("stack").lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    out
}

/// Shared "what is each thread doing now" board, dumped when the watchdog fires.
#[derive(Default)]
pub struct Progress(Mutex<BTreeMap<String, String>>);

impl Progress {
    pub fn set(&self, who: &str, what: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(who.to_string(), what);
    }

    pub fn dump(&self) -> String {
        let board = self.0.lock().unwrap_or_else(|e| e.into_inner());
        board.iter().map(|(k, v)| format!("  {k}: {v}\n")).collect()
    }
}

/// Sends on drop (a finished or a panicking scenario both end).
struct Finished(mpsc::Sender<()>);
impl Drop for Finished {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Runs `scenario` on its own thread and waits at most `bound` for it.
/// In time: its result (a panic is resumed here). Too late (a deadlock, or a
/// livelock): the daemon's and this process's threads with their wait
/// channels and kernel stacks, the progress board and the daemon log tail
/// are collected, the daemon is killed (which aborts its FUSE connections,
/// so threads blocked in the views return), and the diagnostics are returned
/// as `Err`. It never waits for a stuck scenario.
pub fn run_with_watchdog<T: Send + 'static>(
    thread_name: &str,
    d: &Daemon,
    pid: u32,
    bound: Duration,
    progress: &Progress,
    scenario: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    let handle = thread::Builder::new()
        .name(thread_name.into())
        .spawn(move || {
            let _done = Finished(tx);
            scenario()
        })
        .expect("spawn the scenario");
    match rx.recv_timeout(bound) {
        Ok(()) => match handle.join() {
            Ok(v) => Ok(v),
            Err(panic) => {
                eprintln!("--- daemon log (tail) ---\n{}", d.log_text());
                std::panic::resume_unwind(panic)
            }
        },
        Err(_) => {
            let diag = format!(
                "WATCHDOG: the scenario did not finish within {bound:?} (started {:?} ago)\n\
                 --- progress ---\n{}--- daemon (pid {pid}) tasks ---\n{}--- test process tasks ---\n{}\
                 --- daemon log (tail) ---\n{}\n",
                started.elapsed(),
                progress.dump(),
                task_report(&pid.to_string()),
                task_report("self"),
                d.log_text()
            );
            d.kill9();
            Err(diag)
        }
    }
}
