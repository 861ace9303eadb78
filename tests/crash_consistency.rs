//! Crash consistency: the daemon killed at every fault point and at seeded
//! random moments (heavy writes, copy-ups, promotion, GC, rollback,
//! compaction), then restarted. After each crash the store must pass
//! `assert_store_consistent` (tests/common/crash.rs), `current` must name the
//! generation the crash point implies, fresh sessions must show exactly that
//! generation's tree, the crashed sessions' dead FUSE mounts must be
//! detached and the sessions remount with every write that was fsynced, and
//! the interrupted operation must succeed when run again.
//!
//! `CRASH_ROUNDS=N` raises the number of rounds of the randomized tests.

mod common;

use common::crash::*;
use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

type Tree = BTreeMap<PathBuf, Node>;

/// How long a fault point gets to abort the daemon (a hang guard).
const CRASH_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes `content` to `path` (replacing it), then fsyncs the file and its directory.
fn fsync_write(path: &Path, content: &[u8]) {
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(content).unwrap();
    f.sync_all().unwrap();
    fsync_dir(path.parent().unwrap()).unwrap();
}

/// Mounts `session` on `p`'s current generation, lets `f` change it and
/// returns what it shows; the session is left unmounted.
fn change(d: &Daemon, session: &str, f: impl FnOnce(&Path)) -> Tree {
    let m = d.mount("p", session);
    f(&m);
    let t = view_tree(&m);
    d.unmount(session);
    t
}

/// `change`, then promotes the session; returns the new generation's tree.
fn promote_with(d: &Daemon, session: &str, f: impl FnOnce(&Path)) -> Tree {
    let t = change(d, session, f);
    d.ok(&["promote", "p", session]);
    t
}

// ---------------------------------------------------------------------------
// A crash at each fault point
// ---------------------------------------------------------------------------

/// The store before the crash, and what each part of it must show.
struct Fixture {
    d: Daemon,
    /// The tree of each generation of `p`.
    gens: BTreeMap<u64, Tree>,
    /// The `held` session: mounted, with fsynced writes, when the daemon dies.
    held_mp: PathBuf,
    held: Tree,
    /// What the unmounted session `pend` (based on generation 4) holds.
    pend: Tree,
}

/// Project `p`: generation 1 (the import), 2 and 3 promoted on it, a
/// rollback to 1, then 4 promoted on 1 (current); so 2 and 3 are unpinned and
/// not current. An empty project `q`. Session `held` is based on 1 (pinning
/// it) and has copy-ups, a whiteout and new files; `pend` (based on 4) is
/// unmounted, with changes. Then the daemon restarts with
/// `GOLDENFS_FAULT=point` and `held` is mounted again and given more writes
/// (new files only: no copy-up, which would pass `copyup:before-rename`).
fn fixture(point: &str) -> Fixture {
    let d = Daemon::start_with(&["--compact-depth", "0"]);
    d.create_project_with("p", |s| {
        fill_sample(s);
        write(s.join("dir2/y.txt"), "y\n");
    });
    d.ok(&["project", "create", "q"]);
    let mut gens = BTreeMap::new();
    gens.insert(1, fresh_view(&d, "p", "reader1"));
    let held_mp = d.mount("p", "held");
    fsync_append(&held_mp.join("a.txt"), b"held\n").unwrap();
    fsync_write(&held_mp.join("dir1/x.txt"), b"held x\n");
    fs::remove_file(held_mp.join("dir1/nested/deep.txt")).unwrap();
    fsync_dir(&held_mp.join("dir1/nested")).unwrap();
    fs::create_dir(held_mp.join("held-dir")).unwrap();
    fsync_write(&held_mp.join("held-dir/one"), b"one\n");
    gens.insert(
        2,
        promote_with(&d, "w2", |m| {
            write(m.join("a.txt"), "alpha 2\n");
            write(m.join("g2/new"), "new in 2\n");
            fs::remove_file(m.join("b.txt")).unwrap();
        }),
    );
    gens.insert(
        3,
        promote_with(&d, "w3", |m| {
            fs::rename(m.join("dir1"), m.join("dir1-3")).unwrap();
            write(m.join("g3"), "3\n");
        }),
    );
    d.ok(&["rollback", "p", "1"]);
    gens.insert(
        4,
        promote_with(&d, "w4", |m| {
            write(m.join("dir2/y.txt"), "y 4\n");
            fs::remove_dir_all(m.join("dir1/nested")).unwrap();
            write(m.join("g4/deep/file"), "4\n");
        }),
    );
    assert_eq!(d.current_generation("p"), 4);
    let pend = change(&d, "pend", |m| {
        write(m.join("a.txt"), "pending\n");
        fs::rename(m.join("g4"), m.join("g4-moved")).unwrap();
        fs::remove_file(m.join("link")).unwrap();
        write(m.join("pend-new"), "pending new\n");
    });
    d.stop();
    d.set_env("GOLDENFS_FAULT", Some(point));
    d.start_again();
    assert_eq!(d.mount("p", "held"), held_mp);
    fs::create_dir(held_mp.join("after-restart")).unwrap();
    fsync_write(&held_mp.join("after-restart/f"), b"written after the restart\n");
    fsync_write(&held_mp.join("held-dir/two"), b"two\n");
    let held = view_tree(&held_mp);
    Fixture {
        d,
        gens,
        held_mp,
        held,
        pend,
    }
}

impl Fixture {
    /// Runs `goldenfs ARGS`, which must crash the daemon at the fault point.
    fn crash_on(&self, args: &[&str]) -> BTreeMap<String, u64> {
        let out = self.d.run(args);
        assert!(
            !out.status.success(),
            "the daemon should have crashed:\n{}",
            describe(args, &out)
        );
        self.after_crash()
    }

    /// The daemon aborted: its views are dead FUSE mounts. Restarts it
    /// without the fault; it must detach them and leave a consistent store.
    /// Returns the current generation of every project.
    fn after_crash(&self) -> BTreeMap<String, u64> {
        let d = &self.d;
        assert_aborted(d.reap_crashed(CRASH_TIMEOUT), d);
        assert_dead_fuse_mount(&self.held_mp);
        d.set_env("GOLDENFS_FAULT", None);
        d.start_again();
        assert!(
            !is_mounted(&self.held_mp),
            "the stale mount at {} was not detached at start-up\n--- daemon log ---\n{}",
            self.held_mp.display(),
            d.log_text()
        );
        assert!(d.log_text().contains("stale FUSE mount"));
        assert_store_consistent(d)
    }

    /// `held` mounts again at the same mountpoint with all its writes.
    fn assert_held_intact(&self) {
        assert_eq!(self.d.mount("p", "held"), self.held_mp);
        assert_eq!(view_tree(&self.held_mp), self.held, "session held after the crash");
    }

    /// `p`'s current generation is `n` and a fresh view of it shows `tree`.
    fn assert_current(&self, n: u64, tree: &Tree) {
        assert_eq!(self.d.current_generation("p"), n, "current generation of p");
        assert_eq!(
            &fresh_view(&self.d, "p", "fresh"),
            tree,
            "a fresh view of generation {n}"
        );
    }
}

/// A promotion interrupted before the pointer swap did not happen: `current`
/// is still 4, the session's changes are in its upper and it promotes again.
fn promotion_crash_before_the_pointer_swap(point: &str) {
    let fx = fixture(point);
    fx.crash_on(&["promote", "p", "pend"]);
    fx.assert_current(4, &fx.gens[&4]);
    assert_eq!(fx.d.generations("p"), vec![1, 2, 3, 4]);
    fx.assert_held_intact();
    assert_eq!(change(&fx.d, "pend", |_| {}), fx.pend, "pend's upper after the crash");
    let r = fx.d.json(&["promote", "p", "pend"]);
    assert_eq!(r["generation"], 5, "{r}");
    fx.assert_current(5, &fx.pend);
}

#[test]
fn a_crash_after_the_promotion_manifest_is_written_leaves_the_old_generation_current() {
    promotion_crash_before_the_pointer_swap("promote:after-manifest");
}

#[test]
fn a_crash_after_the_promoted_upper_became_a_layer_gives_the_session_its_upper_back() {
    promotion_crash_before_the_pointer_swap("promote:after-layer-rename");
}

#[test]
fn a_crash_just_before_the_promotion_pointer_swap_leaves_the_old_generation_current() {
    promotion_crash_before_the_pointer_swap("promote:before-pointer-swap");
}

#[test]
fn a_crash_after_the_promotion_pointer_swap_completes_the_promotion() {
    let fx = fixture("promote:after-pointer-swap");
    fx.crash_on(&["promote", "p", "pend"]);
    fx.assert_current(5, &fx.pend);
    assert!(!fx.d.session_names().contains(&"pend".to_string()), "pend was promoted");
    let g = fx.d.json(&["generations", "p"]);
    let five = find_named(&g, &["session_id"], "pend").unwrap_or_else(|| panic!("{g}"));
    assert_eq!(five["generation"], 5, "{g}");
    fx.assert_held_intact();
    // The next promotion goes on from there.
    let six = promote_with(&fx.d, "next", |m| write(m.join("six"), "6\n"));
    fx.assert_current(6, &six);
}

#[test]
fn a_crash_before_the_rollback_pointer_swap_keeps_the_current_generation() {
    let fx = fixture("rollback:before-pointer-swap");
    fx.crash_on(&["rollback", "p", "2"]);
    fx.assert_current(4, &fx.gens[&4]);
    fx.assert_held_intact();
    fx.d.ok(&["rollback", "p", "2"]);
    fx.assert_current(2, &fx.gens[&2]);
}

#[test]
fn a_crash_while_gc_deletes_generations_leaves_no_orphan_layer() {
    let fx = fixture("gc:mid-delete");
    // 2 and 3 go (1 is pinned by held, 4 is current); the crash comes
    // after the second deletion, before any layer is deleted.
    fx.crash_on(&["gc", "--keep", "1"]);
    fx.assert_current(4, &fx.gens[&4]);
    assert_eq!(fx.d.generations("p"), vec![1, 4]);
    assert!(
        fx.d.log_text().contains("no generation references it"),
        "recovery deleted the layers"
    );
    fx.assert_held_intact();
    let r = fx.d.json(&["gc", "--keep", "1"]);
    assert_eq!(r["deleted_generations"].as_array().map(Vec::len), Some(0), "{r}");
    assert_eq!(fx.d.generations("p"), vec![1, 4]);
}

#[test]
fn a_crash_while_a_deleted_project_s_layers_are_collected_leaves_no_orphan() {
    let fx = fixture("gc:mid-delete");
    let current = fx.crash_on(&["project", "delete", "q"]);
    assert!(!current.contains_key("q"), "q was deleted before its layers");
    fx.assert_current(4, &fx.gens[&4]);
    fx.assert_held_intact();
    fx.d.ok(&["gc"]);
    fx.d.ok(&["project", "create", "q"]);
    assert_eq!(fx.d.current_generation("q"), 1);
}

/// A source tree for an import, and what a view of it must show.
fn import_source(d: &Daemon) -> (PathBuf, Tree) {
    let src = d.new_dir("import");
    fill_sample(&src);
    write(src.join("more/file"), "more\n");
    let t = snapshot(&src);
    (src, t)
}

#[test]
fn a_crash_before_an_import_publishes_its_project_leaves_no_project_and_no_layer() {
    let fx = fixture("import:before-project-rename");
    let (src, tree) = import_source(&fx.d);
    let current = fx.crash_on(&["project", "create", "n", "--from", src.to_str().unwrap()]);
    assert!(!current.contains_key("n"), "{current:?}");
    fx.assert_current(4, &fx.gens[&4]);
    fx.assert_held_intact();
    fx.d.ok(&["project", "create", "n", "--from", src.to_str().unwrap()]);
    assert_eq!(fresh_view(&fx.d, "n", "fresh-n"), tree);
}

#[test]
fn a_crash_before_a_moved_import_is_renamed_leaves_the_directory_in_place() {
    let fx = fixture("import:before-move-rename");
    let (src, tree) = import_source(&fx.d);
    let args = ["project", "create", "n", "--from", src.to_str().unwrap(), "--move"];
    let current = fx.crash_on(&args);
    assert!(!current.contains_key("n"), "{current:?}");
    assert_eq!(snapshot(&src), tree, "the source directory is untouched");
    fx.assert_current(4, &fx.gens[&4]);
    fx.assert_held_intact();
    fx.d.ok(&args);
    assert!(!src.exists(), "moved into the store");
    assert_eq!(fresh_view(&fx.d, "n", "fresh-n"), tree);
}

#[test]
fn a_crash_in_the_middle_of_a_copy_up_leaves_the_lower_file_and_no_scratch() {
    let fx = fixture("copyup:before-rename");
    // b.txt is a lower file in held: appending copies it up first.
    let r = fsync_append(&fx.held_mp.join("b.txt"), b"appended\n");
    assert!(r.is_err(), "the copy-up should have crashed the daemon");
    fx.after_crash();
    fx.assert_current(4, &fx.gens[&4]);
    fx.assert_held_intact();
    assert_eq!(read(fx.held_mp.join("b.txt")), "bravo\n");
    fsync_append(&fx.held_mp.join("b.txt"), b"appended\n").unwrap();
    fx.d.unmount("held");
    let m = fx.d.mount("p", "held");
    assert_eq!(read(m.join("b.txt")), "bravo\nappended\n");
    assert_eq!(read(m.join("after-restart/f")), "written after the restart\n");
}

#[test]
fn a_dead_mount_whose_root_attributes_are_cached_is_detached_at_start_up() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s");
    write(m.join("dir1/new"), "new\n");
    // The kernel now holds the root's attributes: a stat of the dead mount
    // may be answered from them, a statfs never is.
    fs::symlink_metadata(&m).unwrap();
    d.kill9_leaving_mounts();
    assert_dead_fuse_mount(&m);
    d.start_again();
    assert!(!is_mounted(&m), "the dead mount was not detached\n{}", d.log_text());
    assert_store_consistent(&d);
    assert_eq!(d.mount("p", "s"), m);
    assert_eq!(read(m.join("dir1/new")), "new\n");
}

// ---------------------------------------------------------------------------
// kill -9 during heavy writes with fsync
// ---------------------------------------------------------------------------
//
// The view does not use the kernel's writeback cache (no
// FUSE_WRITEBACK_CACHE in `init`): a write(2) returns once the backing file
// in the session's upper has it (passthrough, or a synchronous FUSE_WRITE),
// and copy-ups, creates and renames are single renames in the upper. So a
// daemon that dies loses nothing that returned: fsync only adds durability
// across a crash of the machine, which this test does not simulate. What
// it asserts: every operation the writer journaled (after
// its file and directory fsyncs returned) is there byte for byte, and the
// one operation in flight when the daemon died is either not there or in
// one of the states its system calls pass through (a prefix of the new
// data, the old content, the name before or after the rename); no other
// file differs and nothing else (no garbage, no scratch file) appears.

#[test]
fn the_in_flight_check_accepts_only_the_states_an_interrupted_operation_passes_through() {
    let before: Files = [("a", "0123456789"), ("b", "bb")]
        .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
        .into();
    let with = |changes: &[(&str, Option<&str>)]| {
        let mut f = before.clone();
        for (p, c) in changes {
            match c {
                Some(c) => f.insert(p.to_string(), c.as_bytes().to_vec()),
                None => f.remove(*p),
            };
        }
        f
    };
    let check = |op: Op, good: &[&[(&str, Option<&str>)]], bad: &[&[(&str, Option<&str>)]]| {
        for g in good {
            assert!(op.allows(&before, &with(g)), "{op:?} should allow {g:?}");
        }
        for b in bad {
            assert!(!op.allows(&before, &with(b)), "{op:?} should not allow {b:?}");
        }
    };
    let data = |s: &str| s.as_bytes().to_vec();
    let (a, c) = (String::from("a"), String::from("c"));
    check(
        Op::Overwrite {
            path: a.clone(),
            offset: 2,
            data: data("xyz"),
        },
        &[&[], &[("a", Some("01x3456789"))], &[("a", Some("01xyz56789"))]],
        &[
            &[("a", Some("01y3456789"))],
            &[("a", Some("0123456"))],
            &[("a", Some("x1xyz56789"))],
            &[("b", None)],
        ],
    );
    check(
        Op::Overwrite {
            path: a.clone(),
            offset: 9,
            data: data("XYZ"),
        },
        &[
            &[("a", Some("012345678X"))],
            &[("a", Some("012345678XY"))],
            &[("a", Some("012345678XYZ"))],
        ],
        &[&[("a", Some("012345678XZ"))], &[("a", Some("012345678X\0"))]],
    );
    check(
        Op::Append {
            path: a.clone(),
            data: data("AB"),
        },
        &[&[], &[("a", Some("0123456789A"))], &[("a", Some("0123456789AB"))]],
        &[
            &[("a", Some("012345678"))],
            &[("a", Some("0123456789B"))],
            &[("a", None)],
        ],
    );
    check(
        Op::Create {
            path: c.clone(),
            data: data("new"),
        },
        &[&[], &[("c", Some(""))], &[("c", Some("ne"))], &[("c", Some("new"))]],
        &[&[("c", Some("nex"))], &[("c", Some("new")), ("b", Some("b"))]],
    );
    check(
        Op::Replace {
            path: a.clone(),
            data: data("R"),
        },
        &[&[], &[("a", Some(""))], &[("a", Some("R"))]],
        &[&[("a", Some("0"))], &[("a", None)]],
    );
    check(
        Op::Rename { from: a.clone(), to: c },
        &[&[], &[("a", None), ("c", Some("0123456789"))]],
        &[
            &[("c", Some("0123456789"))],
            &[("a", None)],
            &[("a", None), ("c", Some("012"))],
        ],
    );
    check(
        Op::Remove { path: a },
        &[&[], &[("a", None)]],
        &[&[("a", Some(""))], &[("b", None)]],
    );
}

#[test]
fn kill_9_during_fsynced_writes_loses_no_journaled_write() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        for (k, dir) in WRITER_DIRS.iter().enumerate() {
            for f in 0..3 {
                let size = 1000 * (k + 1) * (f + 1);
                write(s.join(dir).join(format!("g{f}")), vec![b'a' + (k * 3 + f) as u8; size]);
            }
        }
    });
    let golden = fresh_view(&d, "p", "golden");
    let m = d.mount("p", "w");
    let mut files = files_of(&m);
    let mut rng = Rng::new(0x5eed_0001);
    let mut journaled = 0;
    for round in 0..rounds(3) {
        let journal = d.new_dir("journal").join("journal");
        let seed = rng.next();
        let (mc, jc, fc) = (m.clone(), journal.clone(), files.clone());
        let w = thread::spawn(move || writer(mc, jc, fc, seed, round));
        thread::sleep(Duration::from_millis(100 + rng.below(900) as u64));
        d.kill9_leaving_mounts();
        let err = w.join().unwrap();
        assert_dead_fuse_mount(&m);
        d.start_again();
        assert!(!is_mounted(&m), "round {round}: the dead mount was not detached");
        assert_store_consistent(&d);
        assert_eq!(d.mount("p", "w"), m);

        // Replay the journaled operations on the model.
        let done: Vec<String> = read(&journal).lines().map(String::from).collect();
        let mut replay = Rng::new(seed);
        for (i, line) in done.iter().enumerate() {
            assert_eq!(line, &i.to_string(), "round {round}: journal");
            Op::random(&mut replay, &files, round, i).apply(&mut files);
        }
        let in_flight = Op::random(&mut replay, &files, round, done.len());
        let seen = files_of(&m);
        assert!(
            in_flight.allows(&files, &seen),
            "round {round}: after {} journaled operations (then {in_flight:?} failed with {err:?}) the view differs:\n{}",
            done.len(),
            diff(&files, &seen)
        );
        eprintln!(
            "round {round}: {} operations journaled; in flight: {}",
            done.len(),
            if seen == files { "not visible" } else { "visible" }
        );
        journaled += done.len();
        files = seen;
    }
    assert!(journaled > 0, "the writer did nothing before the kills");
    assert_eq!(fresh_view(&d, "p", "golden2"), golden, "the golden never changes");
}

// ---------------------------------------------------------------------------
// kill -9 at random moments of promotion, GC, rollback and compaction
// ---------------------------------------------------------------------------

/// One store operation of the driver.
#[derive(Clone, Debug)]
enum StoreOp {
    Promote(String),
    Compact,
    Gc(u64),
    /// Rollback to the oldest generation that is not current.
    RollbackToOldest,
}

/// How a driver's command ended.
#[derive(Debug)]
enum Outcome {
    Done(serde_json::Value),
    /// The daemon was gone (unreachable, or closed the connection without a reply).
    Died,
}

/// Runs `goldenfs ARGS --json`; a daemon that dies meanwhile is [`Outcome::Died`].
fn drive(socket: &Path, args: &[&str]) -> Outcome {
    let mut v = args.to_vec();
    v.push("--json");
    let out = cli(socket, &v);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) || stderr.contains("closed the connection without a reply") {
        return Outcome::Died;
    }
    assert!(out.status.success(), "{}", describe(&v, &out));
    Outcome::Done(serde_json::from_slice(&out.stdout).unwrap())
}

impl StoreOp {
    fn run(&self, socket: &Path) -> Outcome {
        match self {
            StoreOp::Promote(s) => drive(socket, &["promote", "p", s]),
            StoreOp::Compact => drive(socket, &["compact", "p"]),
            StoreOp::Gc(keep) => drive(socket, &["gc", "--keep", &keep.to_string()]),
            StoreOp::RollbackToOldest => {
                let g = match drive(socket, &["generations", "p"]) {
                    Outcome::Done(g) => g,
                    died => return died,
                };
                let oldest = g["generations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g["generation"].as_u64().unwrap())
                    .find(|n| g["current"] != *n);
                match oldest {
                    Some(n) => drive(socket, &["rollback", "p", &n.to_string()]),
                    None => Outcome::Done(g),
                }
            }
        }
    }
}

/// What the test knows: the tree of every generation of `p` it saw created
/// (numbers are not reused while GC keeps at least one), and the sessions
/// waiting to be promoted with the tree their promotion must show.
#[derive(Default)]
struct Model {
    gens: BTreeMap<u64, Tree>,
    pending: BTreeMap<String, Tree>,
}

impl Model {
    /// Takes in what the driver's finished commands reported.
    fn record(&mut self, op: &StoreOp, r: &serde_json::Value) {
        match op {
            StoreOp::Promote(s) => {
                let n = r["generation"].as_u64().unwrap();
                let t = self.pending.remove(s).unwrap();
                self.gens.insert(n, t);
            }
            StoreOp::Compact if r["compacted"] == true => {
                let (n, from) = (r["generation"].as_u64().unwrap(), r["compacted_from"].as_u64().unwrap());
                let t = self.gens[&from].clone();
                self.gens.insert(n, t);
            }
            _ => {}
        }
    }

    /// After a restart: generations the interrupted command published, and
    /// pending sessions it promoted.
    fn reconcile(&mut self, d: &Daemon) {
        let sessions = d.session_names();
        let g = d.json(&["generations", "p"]);
        for entry in g["generations"].as_array().unwrap() {
            let n = entry["generation"].as_u64().unwrap();
            if self.gens.contains_key(&n) {
                continue;
            }
            let t = if let Some(from) = entry["compacted_from"].as_u64() {
                self.gens[&from].clone()
            } else {
                let s = entry["session_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("unknown generation {entry}"));
                assert!(
                    !sessions.contains(&s.to_string()),
                    "{s} is promoted and still a session"
                );
                self.pending
                    .remove(s)
                    .unwrap_or_else(|| panic!("unknown generation {entry}"))
            };
            self.gens.insert(n, t);
        }
        // The interrupted command ran last (no GC after it): a promoted
        // session has its generation.
        for s in self.pending.keys() {
            assert!(sessions.contains(s), "session {s} is gone but no generation holds it");
        }
    }
}

/// Random changes in the view at `m`: a new file, an overwritten and a
/// deleted file, sometimes a renamed directory.
fn random_changes(rng: &mut Rng, m: &Path, tag: &str) {
    write(m.join(format!("new-{tag}")), rng.data(3000));
    let files: Vec<PathBuf> = view_tree(m)
        .into_iter()
        .filter(|(p, n)| matches!(n, Node::File { .. }) && !p.to_str().unwrap().contains('@'))
        .map(|(p, _)| p)
        .collect();
    let pick = |rng: &mut Rng| files[rng.below(files.len())].clone();
    write(m.join(pick(rng)), format!("overwritten by {tag}\n"));
    if files.len() > 4 {
        let _ = fs::remove_file(m.join(pick(rng)));
    }
    if rng.below(3) == 0 {
        let dirs: Vec<PathBuf> = fs::read_dir(m)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        if let Some(dir) = dirs.first() {
            fs::rename(dir, m.join(format!("dir-{tag}"))).unwrap();
        }
    }
}

#[test]
fn kill_9_at_random_moments_of_promotion_gc_rollback_and_compaction_keeps_every_generation() {
    let d = Daemon::start_with(&["--compact-depth", "0"]);
    d.create_project_with("p", |s| {
        fill_sample(s);
        for i in 0..5 {
            write(s.join(format!("dir{i}/f")), format!("{i}\n"));
        }
    });
    let mut model = Model::default();
    model.gens.insert(1, fresh_view(&d, "p", "reader"));
    let mut rng = Rng::new(0x5eed_0003);
    // Round 0 runs uninterrupted and times the script; later rounds are
    // killed at a random moment within that time.
    let mut script_time = Duration::ZERO;
    for round in 0..=rounds(4) {
        for k in 0..2 {
            let s = format!("s{round}-{k}");
            let m = d.mount("p", &s);
            random_changes(&mut rng, &m, &s);
            model.pending.insert(s.clone(), view_tree(&m));
            d.unmount(&s);
        }
        let mut promote: Vec<StoreOp> = model.pending.keys().cloned().map(StoreOp::Promote).collect();
        let last = promote.split_off(1);
        let mut script = promote;
        script.extend([StoreOp::Compact, StoreOp::Gc(2), StoreOp::RollbackToOldest]);
        script.extend(last);
        script.extend([StoreOp::Gc(1), StoreOp::Compact]);

        let done = Arc::new(Mutex::new(Vec::new()));
        let (socket, log, ops) = (d.socket().to_path_buf(), done.clone(), script.clone());
        let started = Instant::now();
        let driver = thread::spawn(move || {
            for op in ops {
                match op.run(&socket) {
                    Outcome::Done(r) => log.lock().unwrap().push((op, r)),
                    Outcome::Died => return,
                }
            }
        });
        if round > 0 {
            thread::sleep(Duration::from_millis(
                rng.below(script_time.as_millis() as usize + 1) as u64
            ));
            d.kill9();
        }
        driver.join().unwrap();
        if round == 0 {
            script_time = started.elapsed();
        }
        let finished = std::mem::take(&mut *done.lock().unwrap());
        eprintln!(
            "round {round}: {} of {} operations finished; in flight: {:?}",
            finished.len(),
            script.len(),
            script.get(finished.len())
        );
        for (op, r) in &finished {
            model.record(op, r);
        }
        if round > 0 {
            d.start_again();
        }
        let current = assert_store_consistent(&d)["p"];
        model.reconcile(&d);
        let expected = model
            .gens
            .get(&current)
            .unwrap_or_else(|| panic!("current {current} unknown"));
        assert_eq!(
            &fresh_view(&d, "p", &format!("reader{round}")),
            expected,
            "round {round}: generation {current}"
        );
    }
    // Whatever is still pending promotes, and compacts, as usual.
    for s in model.pending.keys().cloned().collect::<Vec<_>>() {
        let r = d.json(&["promote", "p", &s]);
        model.record(&StoreOp::Promote(s), &r);
    }
    let r = d.json(&["compact", "p"]);
    model.record(&StoreOp::Compact, &r);
    let current = d.current_generation("p");
    assert_eq!(fresh_view(&d, "p", "last"), model.gens[&current]);
}
