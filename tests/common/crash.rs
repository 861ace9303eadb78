//! Crash-test helpers: killing the daemon without tidying up after it, the
//! store-invariant checker (docs/on-disk-format.md), a seeded random number
//! generator, and small tree helpers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Daemon, Node, Rng, VERSION_FILE, errno_of, is_mounted, ls, snapshot};

impl Daemon {
    /// Waits (at most `timeout`) for the daemon to die by itself (a fault
    /// point aborts it) and reaps it. Unlike [`Daemon::kill9`], the mounts are
    /// left as the crash left them: dead FUSE mounts.
    pub fn reap_crashed(&self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut guard = self.child.lock().unwrap();
                let child = guard.as_mut().expect("reap_crashed: no daemon process");
                if let Ok(Some(st)) = child.try_wait() {
                    *guard = None;
                    return st;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not crash within {timeout:?}\n--- daemon log ---\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL now and reap; unlike [`Daemon::kill9`], mounts are left dead.
    pub fn kill9_leaving_mounts(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Asserts the daemon died of `SIGABRT` (a fault point), not of anything else.
#[track_caller]
pub fn assert_aborted(st: ExitStatus, d: &Daemon) {
    assert_eq!(
        st.signal(),
        Some(libc::SIGABRT),
        "the daemon should have aborted at the fault point, it exited with {st}\n--- daemon log ---\n{}",
        d.log_text()
    );
}

/// Asserts `mp` is still in the mount table and is a dead FUSE mount:
/// `statfs` fails with `ENOTCONN`, and so does `stat` unless the kernel
/// still holds the root's attributes (views cache them for a day, and a
/// cached `stat` never reaches the daemon, dead or alive).
#[track_caller]
pub fn assert_dead_fuse_mount(mp: &Path) {
    assert!(is_mounted(mp), "{} should still be mounted (dead)", mp.display());
    match rustix::fs::statfs(mp) {
        Ok(_) => panic!("statfs {} succeeded on a dead mount", mp.display()),
        Err(e) => assert_eq!(e, rustix::io::Errno::NOTCONN, "statfs {}", mp.display()),
    }
    if let Err(e) = fs::symlink_metadata(mp) {
        assert_eq!(errno_of(&e), libc::ENOTCONN, "stat {}: {e}", mp.display());
    }
}

/// A view's tree without the version file (which names the generation).
pub fn view_tree(m: &Path) -> BTreeMap<PathBuf, Node> {
    let mut t = snapshot(m);
    t.remove(Path::new(VERSION_FILE));
    t
}

/// What a fresh session mounted on `project`'s current generation shows; the
/// session is discarded afterwards.
pub fn fresh_view(d: &Daemon, project: &str, session: &str) -> BTreeMap<PathBuf, Node> {
    let m = d.mount(project, session);
    let t = view_tree(&m);
    d.ok(&["session", "discard", session, "--force"]);
    t
}

/// How many rounds a randomized crash test runs: `default`, or the value of
/// the environment variable `CRASH_ROUNDS`.
pub fn rounds(default: usize) -> usize {
    std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn parse_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("store: read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("store: {} is not JSON ({e}):\n{text}", path.display()))
}

/// Asserts no entry of `dir` is a temp file (`.NAME.tmp-…`, any dot file, or
/// a name containing `tmp`).
#[track_caller]
fn assert_no_temp_files(dir: &Path) {
    for name in ls(dir) {
        assert!(
            !name.starts_with('.') && !name.contains("tmp"),
            "store: temp file {} left behind",
            dir.join(&name).display()
        );
    }
}

/// Asserts the files of the store at `state` are consistent, as they must be
/// between operations (views may be mounted):
/// - `work/` is empty; no temp files in the store root, `projects/P`,
///   `projects/P/generations`, `sessions/S`, `layer-meta/`;
/// - every project has a `project.json` naming it and a `current` ("N\n")
///   naming a generation whose manifest parses and whose layers all exist;
///   every other manifest is complete too (recovery deletes the others);
/// - every session record parses, names an existing project and a base
///   generation that exists, and has its `upper/`;
/// - every layer directory is referenced by a manifest (or is a `sources`
///   entry of a referenced compacted layer's sidecar), and every sidecar has
///   its layer.
///
/// Returns the current generation of every project.
#[track_caller]
pub fn assert_store_files_consistent(state: &Path) -> BTreeMap<String, u64> {
    store_files(state)
        .into_iter()
        .map(|(p, (current, _))| (p, current))
        .collect()
}

/// The checks of [`assert_store_files_consistent`]; returns the current
/// generation and the generation numbers of every project.
#[track_caller]
fn store_files(state: &Path) -> BTreeMap<String, (u64, BTreeSet<u64>)> {
    assert_no_temp_files(state);
    let work: Vec<String> = ls(state.join("work"));
    assert!(work.is_empty(), "store: work/ is not empty: {work:?}");
    let layers_dir = state.join("layers");
    let mut referenced = BTreeSet::new();
    let mut currents = BTreeMap::new();
    for p in ls(state.join("projects")) {
        let pdir = state.join("projects").join(&p);
        assert_no_temp_files(&pdir);
        let entries: BTreeSet<String> = ls(&pdir).into_iter().collect();
        let want: BTreeSet<String> = ["current", "generations", "project.json"].map(String::from).into();
        let optional: BTreeSet<String> = ["last-generation"].map(String::from).into();
        assert!(
            entries.is_superset(&want) && entries.is_subset(&(&want | &optional)),
            "store: projects/{p} holds unexpected entries: {entries:?}"
        );
        assert_eq!(
            parse_json(&pdir.join("project.json"))["name"],
            p.as_str(),
            "store: projects/{p}/project.json"
        );
        let text = fs::read_to_string(pdir.join("current")).unwrap();
        let current: u64 = text
            .strip_suffix('\n')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("store: projects/{p}/current is {text:?}, not \"N\\n\""));
        let gdir = pdir.join("generations");
        assert_no_temp_files(&gdir);
        let mut numbers = BTreeSet::new();
        for name in ls(&gdir) {
            let n: u64 = name
                .strip_suffix(".json")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("store: projects/{p}/generations/{name} is not N.json"));
            let m = parse_json(&gdir.join(&name));
            assert_eq!(m["generation"], n, "store: {p} generation {n}: {m}");
            assert_eq!(m["project_id"], p.as_str(), "store: {p} generation {n}: {m}");
            assert!(m["created_at"].is_string(), "store: {p} generation {n}: {m}");
            let layers = m["layers"]
                .as_array()
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| panic!("store: {p} generation {n} has no layers: {m}"));
            for l in layers {
                let id = l
                    .as_str()
                    .unwrap_or_else(|| panic!("store: layer id {l} is not a string"));
                assert!(
                    layers_dir.join(id).is_dir(),
                    "store: {p} generation {n} names layer {id}, which does not exist (half-built generation visible)"
                );
                referenced.insert(id.to_string());
            }
            numbers.insert(n);
        }
        assert!(
            numbers.contains(&current),
            "store: projects/{p}/current names generation {current}, which has no manifest (have {numbers:?})"
        );
        currents.insert(p, (current, numbers));
    }
    let sessions_dir = state.join("sessions");
    let sessions = ls(&sessions_dir);
    for s in &sessions {
        let sdir = sessions_dir.join(s);
        assert_no_temp_files(&sdir);
        let rec = parse_json(&sdir.join("session.json"));
        assert_eq!(rec["session"], s.as_str(), "store: sessions/{s}/session.json: {rec}");
        let p = rec["project"].as_str().unwrap_or_else(|| panic!("session {s}: {rec}"));
        let base = rec["base_generation"]
            .as_u64()
            .unwrap_or_else(|| panic!("session {s}: {rec}"));
        let manifest = state
            .join("projects")
            .join(p)
            .join("generations")
            .join(format!("{base}.json"));
        assert!(
            manifest.is_file(),
            "store: session {s} is based on {p} generation {base}, which does not exist"
        );
        assert!(sdir.join("upper").is_dir(), "store: session {s} has no upper/");
    }
    let metas = state.join("layer-meta");
    let mut todo: Vec<String> = referenced.iter().cloned().collect();
    while let Some(id) = todo.pop() {
        let path = metas.join(format!("{id}.json"));
        if !path.exists() {
            continue;
        }
        let meta = parse_json(&path);
        for src in meta["sources"].as_array().into_iter().flatten() {
            let src = src.as_str().unwrap().to_string();
            assert!(
                layers_dir.join(&src).is_dir(),
                "store: layer {src}, a source of the kept compacted layer {id}, is gone"
            );
            if referenced.insert(src.clone()) {
                todo.push(src);
            }
        }
    }
    for id in ls(&layers_dir) {
        assert!(layers_dir.join(&id).is_dir(), "store: layers/{id} is not a directory");
        assert!(
            referenced.contains(&id),
            "store: layers/{id} is an orphan (no generation references it)"
        );
    }
    if metas.exists() {
        assert_no_temp_files(&metas);
        for name in ls(&metas) {
            let id = name.strip_suffix(".json").unwrap_or(&name);
            assert!(layers_dir.join(id).is_dir(), "store: layer-meta/{name} has no layer");
        }
    }
    currents
}

/// Asserts the store of `d` is as recovery must leave it. Call it right after
/// a (re)start, before anything is mounted: the checks of
/// [`assert_store_files_consistent`], every session's `work/` is empty, and
/// the daemon's `project list`, `session list` and `generations` agree with
/// the disk. Returns the current generation of every project.
#[track_caller]
pub fn assert_store_consistent(d: &Daemon) -> BTreeMap<String, u64> {
    let state = d.state_dir();
    let projects = store_files(state);
    for (p, (current, numbers)) in &projects {
        let listed = d.json(&["generations", p]);
        assert_eq!(
            listed["current"], *current,
            "daemon disagrees with projects/{p}/current"
        );
        let listed: BTreeSet<u64> = listed["generations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["generation"].as_u64().unwrap())
            .collect();
        assert_eq!(
            &listed, numbers,
            "daemon lists other generations of {p} than the store holds"
        );
    }
    assert_eq!(
        d.project_names(),
        projects.keys().cloned().collect::<Vec<_>>(),
        "daemon lists other projects than the store holds"
    );
    let sessions = ls(state.join("sessions"));
    for s in &sessions {
        let scratch = ls(state.join("sessions").join(s).join("work"));
        assert!(
            scratch.is_empty(),
            "store: session {s}'s work/ still holds {scratch:?} after start-up"
        );
    }
    assert_eq!(
        d.session_names(),
        sessions,
        "daemon lists other sessions than the store holds"
    );
    projects.into_iter().map(|(p, (current, _))| (p, current)).collect()
}

// ---------------------------------------------------------------------------
// A journaling writer and the model that checks a view against its journal
// ---------------------------------------------------------------------------

/// Appends `content` to `path` and fsyncs it.
pub fn fsync_append(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(content)?;
    f.sync_all()
}

/// fsyncs a directory (in a view: FUSE_FSYNCDIR).
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Directories of the golden the writer works in (it never adds or removes one).
pub const WRITER_DIRS: [&str; 4] = ["", "d0", "d0/sub", "d1"];

/// Regular files of a view, path → content.
pub type Files = BTreeMap<String, Vec<u8>>;

/// One operation of the journaling writer, on the regular files of a view.
#[derive(Clone, Debug)]
pub enum Op {
    /// A new file.
    Create {
        path: String,
        data: Vec<u8>,
    },
    Append {
        path: String,
        data: Vec<u8>,
    },
    /// `pwrite` in place (it may extend the file).
    Overwrite {
        path: String,
        offset: usize,
        data: Vec<u8>,
    },
    /// `O_TRUNC` and write.
    Replace {
        path: String,
        data: Vec<u8>,
    },
    /// To a new name.
    Rename {
        from: String,
        to: String,
    },
    Remove {
        path: String,
    },
}

impl Op {
    /// A random operation on `files` (the `i`-th of round `round`).
    pub fn random(rng: &mut Rng, files: &Files, round: usize, i: usize) -> Op {
        let names: Vec<&String> = files.keys().collect();
        let pick = |rng: &mut Rng| names[rng.below(names.len())].clone();
        let new_name = |rng: &mut Rng, kind: &str| {
            let dir = WRITER_DIRS[rng.below(WRITER_DIRS.len())];
            let name = format!("{kind}-{round}-{i}");
            if dir.is_empty() { name } else { format!("{dir}/{name}") }
        };
        // Too few files left to pick from: create one.
        let roll = if names.len() < 4 { 0 } else { rng.below(100) };
        match roll {
            0..25 => Op::Create {
                path: new_name(rng, "c"),
                data: rng.data(32 << 10),
            },
            25..45 => Op::Append {
                path: pick(rng),
                data: rng.data(8 << 10),
            },
            45..60 => {
                let path = pick(rng);
                let offset = rng.below(files[&path].len() + 1);
                Op::Overwrite {
                    path,
                    offset,
                    data: rng.data(8 << 10),
                }
            }
            60..70 => Op::Replace {
                path: pick(rng),
                data: rng.data(16 << 10),
            },
            70..88 => Op::Rename {
                from: pick(rng),
                to: new_name(rng, "r"),
            },
            _ => Op::Remove { path: pick(rng) },
        }
    }

    /// The paths it changes.
    pub fn paths(&self) -> Vec<&String> {
        match self {
            Op::Rename { from, to } => vec![from, to],
            Op::Create { path, .. }
            | Op::Append { path, .. }
            | Op::Overwrite { path, .. }
            | Op::Replace { path, .. }
            | Op::Remove { path } => vec![path],
        }
    }

    pub fn apply(&self, files: &mut Files) {
        match self {
            Op::Create { path, data } | Op::Replace { path, data } => {
                files.insert(path.clone(), data.clone());
            }
            Op::Append { path, data } => files.get_mut(path).unwrap().extend_from_slice(data),
            Op::Overwrite { path, offset, data } => {
                let f = files.get_mut(path).unwrap();
                let end = offset + data.len();
                if f.len() < end {
                    f.resize(end, 0);
                }
                f[*offset..end].copy_from_slice(data);
            }
            Op::Rename { from, to } => {
                let data = files.remove(from).unwrap();
                files.insert(to.clone(), data);
            }
            Op::Remove { path } => {
                files.remove(path);
            }
        }
    }

    /// Runs it in the view at `m`, fsyncing what it changed (the file and
    /// its directory, or both directories of a rename).
    pub fn run(&self, m: &Path) -> std::io::Result<()> {
        let parent = |p: &str| m.join(p).parent().unwrap().to_path_buf();
        match self {
            Op::Create { path, data } => {
                let mut f = fs::OpenOptions::new().write(true).create_new(true).open(m.join(path))?;
                f.write_all(data)?;
                f.sync_all()?;
                fsync_dir(&parent(path))
            }
            Op::Append { path, data } => fsync_append(&m.join(path), data),
            Op::Overwrite { path, offset, data } => {
                let f = fs::OpenOptions::new().write(true).open(m.join(path))?;
                f.write_all_at(data, *offset as u64)?;
                f.sync_all()
            }
            Op::Replace { path, data } => {
                let mut f = fs::File::create(m.join(path))?;
                f.write_all(data)?;
                f.sync_all()
            }
            Op::Rename { from, to } => {
                fs::rename(m.join(from), m.join(to))?;
                fsync_dir(&parent(from))?;
                fsync_dir(&parent(to))
            }
            Op::Remove { path } => {
                fs::remove_file(m.join(path))?;
                fsync_dir(&parent(path))
            }
        }
    }

    /// Whether `after` is a state this operation, interrupted anywhere,
    /// can leave `before` in (not started and finished included).
    pub fn allows(&self, before: &Files, after: &Files) -> bool {
        let touched: BTreeSet<&String> = self.paths().into_iter().collect();
        let untouched = |files: &Files| -> Files {
            files
                .iter()
                .filter(|(p, _)| !touched.contains(p))
                .map(|(p, c)| (p.clone(), c.clone()))
                .collect()
        };
        if untouched(before) != untouched(after) {
            return false;
        }
        let old = |p: &String| before.get(p);
        let now = |p: &String| after.get(p);
        match self {
            Op::Create { path, data } => now(path).is_none_or(|a| data.starts_with(a)),
            Op::Append { path, data } => now(path).is_some_and(|a| {
                let o = old(path).unwrap();
                a.starts_with(o) && data.starts_with(&a[o.len()..])
            }),
            Op::Overwrite { path, offset, data } => {
                now(path).is_some_and(|a| partial_pwrite(old(path).unwrap(), *offset, data, a))
            }
            Op::Replace { path, data } => now(path).is_some_and(|a| Some(a) == old(path) || data.starts_with(a)),
            Op::Rename { from, to } => {
                (now(from) == old(from) && now(to).is_none()) || (now(from).is_none() && now(to) == old(from))
            }
            Op::Remove { path } => now(path).is_none() || now(path) == old(path),
        }
    }
}

/// Whether `a` is `old` with a prefix (possibly empty or whole) of `data`
/// written at `offset` (`offset <= old.len()`).
pub fn partial_pwrite(old: &[u8], offset: usize, data: &[u8], a: &[u8]) -> bool {
    if a.len() < old.len() || a[..offset] != old[..offset] {
        return false;
    }
    if a.len() > old.len() {
        let j = a.len() - offset;
        return j <= data.len() && a[offset..] == data[..j];
    }
    // Same length: data[..j] at offset, then old again, for some j.
    let common = a[offset..].iter().zip(data).take_while(|(x, y)| x == y).count();
    let mut suffix_start = a.len();
    while suffix_start > offset && a[suffix_start - 1] == old[suffix_start - 1] {
        suffix_start -= 1;
    }
    suffix_start - offset <= common
}

/// The regular files of the view at `m`; panics on anything but the
/// golden's directories and regular files.
pub fn files_of(m: &Path) -> Files {
    let mut files = Files::new();
    let mut dirs = BTreeSet::new();
    for (path, node) in view_tree(m) {
        let p = path.to_str().unwrap().to_string();
        match node {
            Node::File { content, .. } => {
                assert!(!p.contains('@'), "unexpected xattr {p}");
                files.insert(p, content);
            }
            Node::Dir { .. } => {
                dirs.insert(p);
            }
            other => panic!("unexpected {p}: {other:?}"),
        }
    }
    let want: BTreeSet<String> = WRITER_DIRS
        .iter()
        .filter(|d| !d.is_empty())
        .map(|d| d.to_string())
        .collect();
    assert_eq!(dirs, want, "the view's directories");
    files
}

/// Runs random operations in the view at `m` until one fails (the daemon
/// died) or the watchdog ends it, journaling each after its fsyncs.
pub fn writer(m: PathBuf, journal: PathBuf, mut files: Files, seed: u64, round: usize) -> Option<std::io::Error> {
    let mut rng = Rng::new(seed);
    let mut j = fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&journal)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0.. {
        if Instant::now() > deadline {
            return None;
        }
        let op = Op::random(&mut rng, &files, round, i);
        if let Err(e) = op.run(&m) {
            return Some(e);
        }
        op.apply(&mut files);
        j.write_all(format!("{i}\n").as_bytes()).unwrap();
        j.sync_all().unwrap();
    }
    None
}

/// The paths whose content differs, for failure messages.
pub fn diff(want: &Files, got: &Files) -> String {
    let paths: BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    let show = |c: Option<&Vec<u8>>| c.map_or("absent".to_string(), |c| format!("{} bytes", c.len()));
    paths
        .into_iter()
        .filter(|p| want.get(*p) != got.get(*p))
        .map(|p| format!("  {p}: model {}, view {}\n", show(want.get(p)), show(got.get(p))))
        .collect()
}
