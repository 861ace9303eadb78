//! Concurrency under load (issue 6): many sessions mounted at once, each
//! running a seeded mixed workload (untar, reads checked against a model,
//! copy-up by overwrite/append/pwrite/truncate, renames of files and
//! directories, hard links, `rm -rf`, mkdir/rmdir, chmod, symlinks), while a
//! control thread promotes, rolls back, collects garbage and compacts.
//!
//! Every operation's result is asserted against the session's in-memory
//! model; at the end every view, then every view remounted after a GC, and a
//! fresh session on `current` must equal their models. A watchdog bounds the
//! whole run (a deadlock fails with the daemon's thread stacks instead of
//! hanging CI); the daemon's resident memory is sampled and bounded, its
//! open descriptors sampled and reported, and its log must hold no error.
//!
//! Scale with `LOAD_SESSIONS` (16), `LOAD_OPS` (ops per session, 6000),
//! `LOAD_CONTROL_OPS` (ops per control session, 25), `LOAD_SEED` (1),
//! `LOAD_TIMEOUT_SECS` (600), `LOAD_RSS_LIMIT_MIB` (see [`RSS_LIMIT_MIB`]).

mod common;

use common::load::model::*;
use common::load::workload::*;
use common::load::*;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const PROJECT: &str = "load";

/// The bound on the daemon's peak VmRSS. The default run peaks at about
/// 23 MiB here (17 views of up to a few thousand names, 16 FUSE threads per
/// view, the node tables; docs/performance.md measured ~50 KiB per idle
/// session and ~340 bytes per node). The bound is five times that: a leak
/// per operation, per copy-up or per promotion, or buffers that are not
/// given back, cross it long before the run ends.
const RSS_LIMIT_MIB: u64 = 128;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    match std::env::var(key) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{key}={v} is not a valid number")),
        Err(_) => default,
    }
}

#[derive(Clone, Copy)]
struct Config {
    sessions: usize,
    ops: usize,
    control_ops: usize,
    seed: u64,
    bound: Duration,
    rss_limit_mib: u64,
}

impl Config {
    fn from_env() -> Config {
        Config {
            sessions: env_or("LOAD_SESSIONS", 16),
            ops: env_or("LOAD_OPS", 6000),
            control_ops: env_or("LOAD_CONTROL_OPS", 25),
            seed: env_or("LOAD_SEED", 1),
            bound: Duration::from_secs(env_or("LOAD_TIMEOUT_SECS", 600)),
            rss_limit_mib: env_or("LOAD_RSS_LIMIT_MIB", RSS_LIMIT_MIB),
        }
    }
}

// ---------------------------------------------------------------------------
// The golden
// ---------------------------------------------------------------------------

/// The golden: 60 nested directories (some 0750), 300 small files of mixed
/// modes, a dozen files of 100–400 KB, 20 symlinks (relative, absolute,
/// dangling, to directories), a pair and a triple of hard links.
fn golden_model(seed: u64) -> Model {
    let mut rng = Rng::new(seed);
    let mut m = Model::default();
    let mut dirs = Vec::new();
    for t in 0..6 {
        dirs.push(format!("t{t}"));
        for s in 0..3 {
            dirs.push(format!("t{t}/s{s}"));
            for u in 0..2 {
                dirs.push(format!("t{t}/s{s}/u{u}"));
            }
        }
    }
    for (i, dir) in dirs.iter().enumerate() {
        m.add_dir(dir, if i % 5 == 4 { 0o750 } else { 0o755 });
    }
    let mut n = 0;
    for dir in &dirs {
        for f in 0..5 {
            n += 1;
            let mode = match n % 11 {
                0 => 0o755,
                3 | 7 => 0o600,
                5 => 0o444,
                _ => 0o644,
            };
            let len = rng.below(4096);
            m.add_file(&join(dir, &format!("f{f}.dat")), rng.bytes(len), mode);
        }
    }
    for (i, dir) in dirs.iter().step_by(5).enumerate() {
        let len = 100_000 + rng.below(300_000);
        m.add_file(&join(dir, &format!("big{i}.bin")), rng.bytes(len), 0o644);
    }
    m.add_file("README", b"the golden of tests/load.rs\n".to_vec(), 0o644);
    for i in 0..20 {
        let dir = rng.pick(&dirs).unwrap_or_default();
        let target = match i % 4 {
            0 => "f0.dat".to_string(),
            1 => "../f1.dat".to_string(),
            2 => format!("/nonexistent/{i}"),
            _ => "u0".to_string(),
        };
        m.add_symlink(&join(&dir, &format!("l{i}")), &target);
    }
    m.add_link("t0/s0/f0.dat", "t1/hl_a");
    m.add_link("t2/s1/u0/f1.dat", "t3/hl_b");
    m.add_link("t2/s1/u0/f1.dat", "t3/s2/hl_c");
    m
}

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

struct Shared {
    d: Arc<Daemon>,
    cfg: Config,
    tarballs: Vec<Tarball>,
    progress: Arc<Progress>,
    /// Generation → the model of its tree.
    gens: Mutex<BTreeMap<u64, Arc<Model>>>,
    /// Mounted worker session → its base generation.
    pins: Mutex<BTreeMap<String, u64>>,
    promotions: AtomicUsize,
    workers_done: AtomicUsize,
    failed: AtomicBool,
}

/// Sets `failed` if the thread unwinds, so the others stop early.
struct FailFlag<'a>(&'a AtomicBool);
impl Drop for FailFlag<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// `compacted_from` of generation `g` in a `generations --json` answer.
fn compacted_from(v: &Value, g: u64) -> Option<u64> {
    v.get("generations")?
        .as_array()?
        .iter()
        .find(|e| e.get("generation").and_then(Value::as_u64) == Some(g))?
        .get("compacted_from")?
        .as_u64()
}

impl Shared {
    /// The model of generation `g`. The control thread records a
    /// promotion's model as soon as `promote` returns (a session may mount
    /// the new generation a moment earlier), and a compacted generation —
    /// also the daemon's own background compactions — has the model of the
    /// generation it was compacted from.
    fn model_of(&self, g: u64) -> Arc<Model> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(m) = self.gens.lock().unwrap().get(&g) {
                return m.clone();
            }
            if let Some(from) = compacted_from(&self.d.json(&["generations", PROJECT]), g) {
                let m = self.model_of(from);
                self.gens.lock().unwrap().insert(g, m.clone());
                return m;
            }
            assert!(Instant::now() < deadline, "no model of generation {g} appeared");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether `g` is `want` or a compaction of it.
    fn same_tree_as(&self, g: u64, want: u64) -> bool {
        g == want || compacted_from(&self.d.json(&["generations", PROJECT]), g) == Some(want)
    }

    /// `gc --keep 1`; no generation a recorded session is based on may go.
    fn gc(&self, when: &str) -> usize {
        let v = self.d.json(&["gc", "--keep", "1"]);
        let pins = self.pins.lock().unwrap().clone();
        let deleted = v["deleted_generations"].as_array().cloned().unwrap_or_default();
        for dg in &deleted {
            let g = dg["generation"].as_u64();
            for (s, base) in &pins {
                assert_ne!(
                    g,
                    Some(*base),
                    "{when}: gc deleted generation {base}, the base of session {s}:\n{v}"
                );
            }
        }
        deleted.len()
    }
}

#[derive(Default, Debug)]
struct ControlReport {
    rounds: usize,
    promotions: usize,
    rollbacks: usize,
    gcs: usize,
    gc_deleted: usize,
    compactions: usize,
    compact_noop: usize,
    compact_busy: usize,
    ops: u64,
}

fn control(sh: &Shared) -> ControlReport {
    let _flag = FailFlag(&sh.failed);
    let d = &sh.d;
    let mut rng = Rng::new(sh.cfg.seed ^ 0xC047_A011);
    let mut report = ControlReport::default();
    let first_tier = sh.cfg.sessions.min(3);
    // After a rollback: the generation the next session must be based on.
    let mut expect: Option<u64> = None;
    for round in 0usize.. {
        if sh.failed.load(Ordering::SeqCst) || sh.workers_done.load(Ordering::SeqCst) == sh.cfg.sessions {
            break;
        }
        let s = format!("c{round:03}");
        sh.progress.set("control", format!("round {round}: mount {s}"));
        let mnt = d.mount(PROJECT, &s);
        let g = generation_of(&mnt);
        if let Some(want) = expect.take() {
            assert!(
                sh.same_tree_as(g, want),
                "after rollback to {want}, {s} was mounted on generation {g}"
            );
        }
        let base = sh.model_of(g);
        sh.progress
            .set("control", format!("round {round}: check {s} on generation {g}"));
        assert_view_matches(&mnt, &base, &format!("{s}, a fresh session on current generation {g}"));
        let mut w = Worker::new(
            &s,
            sh.cfg.seed ^ (1000 + round as u64),
            mnt,
            (*base).clone(),
            &sh.tarballs,
            &sh.progress,
        );
        for op in 0..sh.cfg.control_ops {
            w.step(op);
        }
        w.assert_view("after its ops");
        report.ops += sh.cfg.control_ops as u64;
        // The first tier of sessions is mounted on generation 1 before anything is promoted.
        while sh.pins.lock().unwrap().len() < first_tier && !sh.failed.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
        sh.progress
            .set("control", format!("round {round}: unmount and promote {s}"));
        d.unmount(&s);
        let r = d.json(&["promote", PROJECT, &s]);
        let (n, parent) = (r["generation"].as_u64().unwrap(), r["parent"].as_u64().unwrap());
        assert!(
            sh.same_tree_as(parent, g),
            "{s} based on {g} was promoted onto {parent}:\n{r}"
        );
        sh.gens
            .lock()
            .unwrap()
            .insert(n, Arc::new(std::mem::take(&mut w.model)));
        sh.promotions.fetch_add(1, Ordering::SeqCst);
        report.promotions += 1;
        if round % 3 == 2 {
            sh.progress.set("control", format!("round {round}: gc"));
            report.gc_deleted += sh.gc(&format!("round {round}"));
            report.gcs += 1;
        }
        if round % 4 == 3 {
            // Never back to generation 1: the later sessions are then
            // certainly on newer generations than the first tier.
            let cur = d.current_generation(PROJECT);
            let to: Vec<u64> = d
                .generations(PROJECT)
                .into_iter()
                .filter(|&x| x != cur && x != 1)
                .collect();
            if let Some(to) = rng.pick(&to) {
                sh.progress.set("control", format!("round {round}: rollback to {to}"));
                d.ok(&["rollback", PROJECT, &to.to_string()]);
                expect = Some(to);
                report.rollbacks += 1;
            }
        }
        if round % 5 == 4 {
            sh.progress.set("control", format!("round {round}: compact"));
            let args = ["compact", PROJECT, "--json"];
            let out = d.run(&args);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                if v["compacted"].as_bool() == Some(true) {
                    let (n, from) = (v["generation"].as_u64().unwrap(), v["compacted_from"].as_u64().unwrap());
                    let m = sh.model_of(from);
                    sh.gens.lock().unwrap().insert(n, m);
                    report.compactions += 1;
                } else {
                    report.compact_noop += 1;
                }
            } else {
                // A background compaction (--compact-depth) may be running.
                let line = assert_cli_error(&args, &out);
                assert!(line.contains("already running"), "compact failed: {line}");
                report.compact_busy += 1;
            }
        }
        report.rounds = round + 1;
    }
    sh.progress.set("control", "done".into());
    report
}

struct WorkerReport {
    who: String,
    generation: u64,
    mnt: PathBuf,
    model: Model,
    counts: BTreeMap<&'static str, u64>,
}

fn worker(sh: &Shared, k: usize) -> WorkerReport {
    let _flag = FailFlag(&sh.failed);
    let who = format!("s{k:02}");
    // Tiers of three: tier t mounts once t promotions are done.
    sh.progress.set(&who, format!("waiting for {} promotions", k / 3));
    while sh.promotions.load(Ordering::SeqCst) < k / 3 && !sh.failed.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(20));
    }
    sh.progress.set(&who, "mounting".into());
    let mnt = sh.d.mount(PROJECT, &who);
    let g = generation_of(&mnt);
    sh.pins.lock().unwrap().insert(who.clone(), g);
    let base = sh.model_of(g);
    sh.progress
        .set(&who, format!("checking the fresh view of generation {g}"));
    assert_view_matches(&mnt, &base, &format!("{who}, freshly mounted on generation {g}"));
    let seed = sh.cfg.seed.wrapping_mul(1_000_003) ^ k as u64;
    let mut w = Worker::new(&who, seed, mnt, (*base).clone(), &sh.tarballs, &sh.progress);
    for op in 0..sh.cfg.ops {
        if sh.failed.load(Ordering::SeqCst) {
            break;
        }
        w.step(op);
    }
    sh.progress.set(&who, "checking the view after its ops".into());
    w.assert_view(&format!("(generation {g}) after its ops"));
    sh.progress.set(&who, "done".into());
    sh.workers_done.fetch_add(1, Ordering::SeqCst);
    WorkerReport {
        who,
        generation: g,
        mnt: w.mnt.clone(),
        model: std::mem::take(&mut w.model),
        counts: std::mem::take(&mut w.counts),
    }
}

/// Joins `h`, turning a panic into its message.
fn join_thread<T>(h: thread::ScopedJoinHandle<'_, T>) -> Result<T, String> {
    h.join().map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(non-string panic)".into())
    })
}

struct Outcome {
    control: ControlReport,
    ops: BTreeMap<&'static str, u64>,
    generations: BTreeSet<u64>,
    final_generation: u64,
    /// Names in each session's tree at the end.
    names: Vec<usize>,
}

fn scenario(sh: Arc<Shared>) -> Outcome {
    let (control_report, workers) = thread::scope(|s| {
        let c = thread::Builder::new()
            .name("load-control".into())
            .spawn_scoped(s, || control(&sh))
            .unwrap();
        let ws: Vec<_> = (0..sh.cfg.sessions)
            .map(|k| {
                let sh = &sh;
                thread::Builder::new()
                    .name(format!("load-s{k:02}"))
                    .spawn_scoped(s, move || worker(sh, k))
                    .unwrap()
            })
            .collect();
        let mut errors = Vec::new();
        let workers: Vec<WorkerReport> = ws
            .into_iter()
            .filter_map(|h| join_thread(h).map_err(|e| errors.push(e)).ok())
            .collect();
        let control = join_thread(c).map_err(|e| errors.push(e)).ok();
        assert!(
            errors.is_empty(),
            "{} thread(s) failed:\n{}",
            errors.len(),
            errors.join("\n---\n")
        );
        (control.unwrap(), workers)
    });
    let d = &sh.d;
    sh.progress.set("final", "checking every view".into());
    for w in &workers {
        assert_view_matches(&w.mnt, &w.model, &format!("{} at the end of the load", w.who));
    }
    // Unmounted sessions still pin their generations: GC must keep them.
    for w in &workers {
        d.unmount(&w.who);
    }
    sh.progress.set("final", "gc with every session unmounted".into());
    sh.gc("final gc");
    let listed = d.generations(PROJECT);
    sh.progress.set("final", "remounting every session".into());
    for w in &workers {
        assert!(
            listed.contains(&w.generation),
            "generation {} of {} is gone: {listed:?}",
            w.generation,
            w.who
        );
        let m = d.mount(PROJECT, &w.who);
        assert_eq!(
            generation_of(&m),
            w.generation,
            "{} remounted on another generation",
            w.who
        );
        assert_view_matches(&m, &w.model, &format!("{} remounted after the final gc", w.who));
    }
    let generations: BTreeSet<u64> = workers.iter().map(|w| w.generation).collect();
    if sh.cfg.sessions > 3 {
        assert!(
            generations.contains(&1) && generations.len() >= 2,
            "the sessions should span generation 1 and newer ones: {generations:?}"
        );
    }
    sh.progress.set("final", "a fresh session on current".into());
    let m = d.mount(PROJECT, "final");
    let g = generation_of(&m);
    assert_view_matches(
        &m,
        &sh.model_of(g),
        &format!("a fresh session on current generation {g}"),
    );
    let mut ops = BTreeMap::new();
    for w in &workers {
        for (k, n) in &w.counts {
            *ops.entry(*k).or_default() += n;
        }
    }
    Outcome {
        control: control_report,
        ops,
        generations,
        final_generation: g,
        names: workers.iter().map(|w| w.model.entries.len()).collect(),
    }
}

#[test]
fn sixteen_sessions_under_mixed_load_with_promotions_rollbacks_gc_and_compaction_match_their_models() {
    let cfg = Config::from_env();
    let started = Instant::now();
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    // Background compaction too, past 3 layers.
    let d = Arc::new(Daemon::start_with(&["--compact-depth", "3"]));
    let golden = golden_model(cfg.seed);
    d.create_project_with(PROJECT, |src| golden.materialize(src));
    let tarballs = make_tarballs(&d, cfg.seed);
    let pid = daemon_pid(&d);
    let sh = Arc::new(Shared {
        d: d.clone(),
        cfg,
        tarballs,
        progress: Arc::new(Progress::default()),
        gens: Mutex::new(BTreeMap::from([(1, Arc::new(golden))])),
        pins: Mutex::new(BTreeMap::new()),
        promotions: AtomicUsize::new(0),
        workers_done: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
    });
    let sampler = Sampler::start(pid, Duration::from_millis(100));
    let progress = sh.progress.clone();
    let outcome = run_with_watchdog("load-scenario", &d, pid, cfg.bound, &progress, move || scenario(sh))
        .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let peaks = sampler.finish();
    let total_ops: u64 = outcome.ops.values().sum();
    eprintln!(
        "load: {} sessions x {} ops ({total_ops} ops, {:?}); control: {:?}; session generations {:?}, final {}; \
         names per session at the end {:?}; daemon peak VmRSS {:.1} MiB, peak open fds {} (limit {:?}), {} samples; wall {:.1} s",
        cfg.sessions,
        cfg.ops,
        outcome.ops,
        outcome.control,
        outcome.generations,
        outcome.final_generation,
        outcome.names,
        peaks.rss_kib as f64 / 1024.0,
        peaks.fds,
        nofile_limit(pid),
        peaks.samples,
        started.elapsed().as_secs_f64()
    );
    // No errors; warnings only of the kind the races here may cause.
    let log = fs::read_to_string(d.root().join("daemon.log")).unwrap();
    let unexpected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR ") || (l.contains(" WARN ") && !l.contains("background compaction of")))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the daemon logged problems:\n{}",
        unexpected.join("\n")
    );
    assert!(peaks.samples > 0, "no sample of pid {pid} was taken");
    assert!(
        peaks.rss_kib <= cfg.rss_limit_mib * 1024,
        "the daemon's peak VmRSS was {:.1} MiB, above the bound of {} MiB",
        peaks.rss_kib as f64 / 1024.0,
        cfg.rss_limit_mib
    );
    assert!(outcome.control.promotions >= cfg.sessions.saturating_sub(1) / 3);
}

#[test]
fn a_hung_view_trips_the_watchdog_which_reports_the_threads_and_frees_them() {
    use rustix::process::{Pid, Signal, kill_process};
    let d = Daemon::start();
    d.create_project_with("w", fill_sample);
    let mnt = d.mount("w", "s");
    let pid = daemon_pid(&d);
    // A stopped daemon answers nothing: the lookup below waits in the kernel.
    kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::STOP).unwrap();
    let started = Instant::now();
    let all_stopped = || {
        let tasks = fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        tasks.filter_map(|e| e.ok()).all(|e| {
            let status = fs::read_to_string(e.path().join("status")).unwrap_or_default();
            status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains("(stopped)"))
        })
    };
    while !all_stopped() {
        assert!(started.elapsed() < Duration::from_secs(30), "the daemon did not stop");
        thread::sleep(Duration::from_millis(10));
    }
    let probe = mnt.join("never-looked-up");
    let progress = Progress::default();
    progress.set("probe", format!("lstat {}", probe.display()));
    let r = run_with_watchdog("wd-probe", &d, pid, Duration::from_secs(3), &progress, move || {
        fs::symlink_metadata(probe).map(|_| ()).map_err(|e| e.raw_os_error())
    });
    let diag = match r {
        Err(diag) => diag,
        Ok(lookup) => panic!(
            "a stopped daemon must trip the watchdog, but the lookup returned {lookup:?} (mounted: {}):\n{}",
            is_mounted(&mnt),
            task_report(&pid.to_string())
        ),
    };
    assert!(diag.contains("WATCHDOG") && diag.contains("probe: lstat"), "{diag}");
    assert!(
        diag.contains("(stopped)"),
        "the daemon's tasks should show as stopped:\n{diag}"
    );
    // The blocked thread's task line and its kernel stack name the FUSE wait.
    let probe_task: String = diag
        .lines()
        .skip_while(|l| !l.contains("\"wd-probe\""))
        .take_while(|l| l.contains("\"wd-probe\"") || l.starts_with("    "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        probe_task.contains("request_wait_answer") || probe_task.contains("fuse"),
        "the blocked thread should wait in FUSE:\n{diag}"
    );
    assert!(!d.is_running(), "the watchdog must kill the daemon");
    // Killing the daemon aborted the connection: the blocked thread returns.
    let gone = || {
        fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| e.ok())
            .all(|e| fs::read_to_string(e.path().join("comm")).unwrap_or_default().trim() != "wd-probe")
    };
    while !gone() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the blocked thread never returned"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Found by the load test: the view's node of a multiply-linked lower file
/// carries the name it was last looked up by, and removing that name (unlink,
/// or a rename over it) made every later copy-up of the file through its
/// other names fail with ENOENT.
#[test]
fn a_golden_hard_link_can_still_be_written_after_another_of_its_names_is_removed() {
    let d = Daemon::start();
    d.create_project_with("hl", |s| {
        write(s.join("a1"), "one\n");
        write(s.join("a2"), "two\n");
        write(s.join("x"), "x\n");
        fs::create_dir(s.join("d")).unwrap();
        fs::hard_link(s.join("a1"), s.join("d/b1")).unwrap();
        fs::hard_link(s.join("a2"), s.join("d/b2")).unwrap();
    });
    let m = d.mount("hl", "s");
    // The kernel looks up a1 then d/b1: the node is named d/b1 now.
    for name in ["a1", "d/b1", "a2", "d/b2"] {
        fs::symlink_metadata(m.join(name)).unwrap();
    }
    fs::remove_file(m.join("d/b1")).unwrap();
    fs::rename(m.join("x"), m.join("d/b2")).unwrap();
    for (name, old) in [("a1", "one\n"), ("a2", "two\n")] {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(m.join(name))
            .unwrap_or_else(|e| panic!("open {name} for writing after its other name went: {e}"));
        f.write_all(b"more\n").unwrap();
        drop(f);
        assert_eq!(read(m.join(name)), format!("{old}more\n"));
    }
    assert_eq!(read(m.join("d/b2")), "x\n");
    assert_eq!(ls(m.join("d")), ["b2"]);
    let m = d.remount("hl", "s");
    assert_eq!(read(m.join("a1")), "one\nmore\n");
    assert_eq!(read(m.join("a2")), "two\nmore\n");
    assert_eq!(ls(m.join("d")), ["b2"]);
}
