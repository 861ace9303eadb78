//! Compaction: a deep generation flattened into one layer and published as
//! an equivalent generation, in the background, without blocking mounts.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// Mounts a writer session on the current generation, lets `f` change it,
/// unmounts and promotes it.
fn promote_with(d: &Daemon, project: &str, session: &str, f: impl FnOnce(&Path)) {
    let m = d.mount(project, session);
    f(&m);
    d.unmount(session);
    d.ok(&["promote", project, session]);
}

/// The golden: the sample tree plus hard links, a device, a fifo, xattrs,
/// another owner and mode.
fn fill_golden(s: &Path) {
    fill_sample(s);
    write(s.join("h1"), "shared\n");
    fs::create_dir(s.join("sub")).unwrap();
    fs::hard_link(s.join("h1"), s.join("sub/h2")).unwrap();
    mknod(&s.join("null"), libc::S_IFCHR | 0o600, libc::makedev(1, 3)).unwrap();
    mkfifo(&s.join("fifo"), 0o640).unwrap();
    xattr::set(&s.join("a.txt"), "user.k", b"a").unwrap();
    xattr::set(&s.join("dir1"), "user.k", b"dir1").unwrap();
    lchown(&s.join("b.txt"), 1000, 1000).unwrap();
    chmod(&s.join("dir1/x.txt"), 0o640).unwrap();
}

/// Project `p` at generation 4 (4 layers): whiteouts, opaque directories,
/// redirects, copy-ups and hard links in its promoted layers.
fn deep_project(d: &Daemon) {
    d.create_project_with("p", fill_golden);
    promote_with(d, "p", "w2", |m| {
        write(m.join("a.txt"), "alpha v2\n");
        fs::remove_file(m.join("b.txt")).unwrap();
        fs::remove_dir_all(m.join("dir1/nested")).unwrap();
        write(m.join("newd/file"), "in newd\n");
        fs::rename(m.join("dir1"), m.join("dir1-moved")).unwrap();
        write(m.join("new.txt"), "new\n");
        fs::hard_link(m.join("new.txt"), m.join("new2")).unwrap();
        xattr::set(&m.join("empty"), "user.e", b"e").unwrap();
    });
    promote_with(d, "p", "w3", |m| {
        fs::remove_dir_all(m.join("empty")).unwrap();
        write(m.join("empty/again"), "again\n");
        fs::rename(m.join("newd"), m.join("newd2")).unwrap();
        chmod(&m.join("dir1-moved/x.txt"), 0o600).unwrap();
    });
    promote_with(d, "p", "w4", |m| {
        write(m.join("deep/a/b/c"), "c\n");
        fs::rename(m.join("dir1-moved/x.txt"), m.join("top-x.txt")).unwrap();
        fs::hard_link(m.join("top-x.txt"), m.join("top-x2")).unwrap();
    });
    assert_eq!(d.current_generation("p"), 4);
}

/// Inode number and, for non-directories, link count of every path.
fn inodes(root: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let nlink = if md.is_dir() { 0 } else { md.nlink() };
            out.insert(p.strip_prefix(root).unwrap().to_path_buf(), (md.ino(), nlink));
            if md.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// The layers of generation `n` of `p`.
fn layers_of(d: &Daemon, project: &str, n: u64) -> Vec<String> {
    let v = d.json(&["generations", project]);
    let g = v["generations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["generation"] == n)
        .unwrap_or_else(|| panic!("no generation {n} in {v}"));
    g["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// A view's tree without the version file (which names the generation).
fn tree(m: &Path) -> BTreeMap<PathBuf, Node> {
    let mut t = snapshot(m);
    t.remove(Path::new(VERSION_FILE));
    t
}

/// What a reader mounted on the current generation sees.
fn current_view(d: &Daemon, session: &str) -> (BTreeMap<PathBuf, Node>, BTreeMap<PathBuf, (u64, u64)>) {
    let m = d.mount("p", session);
    let mut inodes = inodes(&m);
    inodes.remove(Path::new(VERSION_FILE));
    let seen = (tree(&m), inodes);
    d.ok(&["session", "discard", session, "--force"]);
    seen
}

/// Starts a daemon whose process has `key=value` in its environment.
fn daemon_with_env(key: &str, value: &str) -> Daemon {
    let d = Daemon::start();
    d.stop();
    d.set_env(key, Some(value));
    d.start_again();
    d
}

/// Runs `goldenfs compact p` on another thread.
fn compact_in_background(d: &Daemon) -> thread::JoinHandle<std::process::Output> {
    let socket = d.socket().to_path_buf();
    thread::spawn(move || cli(&socket, &["compact", "p", "--json"]))
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn compaction_running(d: &Daemon) -> bool {
    d.json(&["status"])["compactions"]
        .as_array()
        .is_some_and(|c| !c.is_empty())
}

/// Nothing of an unpublished compaction is left: no scratch, no sidecar
/// without its layer.
fn assert_no_leftovers(d: &Daemon) {
    let work: Vec<String> = ls(d.state_dir().join("work"));
    assert!(work.iter().all(|w| !w.starts_with("compact-")), "{work:?}");
    for meta in ls(d.state_dir().join("layer-meta")) {
        let id = meta.strip_suffix(".json").unwrap();
        assert!(d.layers_dir().join(id).is_dir(), "sidecar {meta} without its layer");
    }
}

#[test]
fn compacted_generation_shows_the_same_tree_inodes_and_link_counts() {
    let d = Daemon::start_with(&["--compact-depth", "0"]);
    deep_project(&d);
    let (deep_tree, deep_inodes) = current_view(&d, "before");
    let r = d.json(&["compact", "p"]);
    assert_eq!(r["compacted"], true, "{r}");
    assert_eq!(
        (r["compacted_from"].as_u64(), r["generation"].as_u64()),
        (Some(4), Some(5)),
        "{r}"
    );
    assert_eq!(
        (r["layers_before"].as_u64(), r["layers_after"].as_u64()),
        (Some(4), Some(1)),
        "{r}"
    );
    assert!(r["entries"].as_u64().unwrap() > 10, "{r}");
    assert_eq!(d.current_generation("p"), 5);
    assert_eq!(layers_of(&d, "p", 5).len(), 1);

    let (flat_tree, flat_inodes) = current_view(&d, "after");
    assert_eq!(flat_tree, deep_tree);
    assert_eq!(flat_inodes, deep_inodes);
    assert_eq!(flat_inodes[Path::new("h1")].1, 2, "golden hard links keep their count");
    assert_eq!(
        flat_inodes[Path::new("a.txt")].1,
        1,
        "linked files do not count old layers"
    );
    assert_eq!(flat_inodes[Path::new("top-x.txt")], flat_inodes[Path::new("top-x2")]);
    let m = d.mount("p", "version");
    assert_eq!(generation_of(&m), 5);
    // Nothing to do on a one-layer generation.
    let again = d.json(&["compact", "p"]);
    assert_eq!(
        (again["compacted"].as_bool(), again["generation"].as_u64()),
        (Some(false), Some(5))
    );
    assert!(d.ok(&["compact", "p"]).contains("nothing to compact"));
    let err = d.fail(&["compact", "nope"]);
    assert!(err.contains("no project named \"nope\""), "{err}");
}

#[test]
fn compaction_does_not_publish_when_a_promotion_wins_the_race() {
    let d = daemon_with_env("GOLDENFS_PAUSE", "compact:built=5000");
    deep_project(&d);
    let compaction = compact_in_background(&d);
    wait_for("the compaction to start", Duration::from_secs(10), || {
        compaction_running(&d)
    });
    promote_with(&d, "p", "winner", |m| write(m.join("winner"), "won\n"));
    assert!(compaction_running(&d), "the promotion waited for the compaction");
    assert_eq!(d.current_generation("p"), 5);
    let out = compaction.join().unwrap();
    let err = assert_cli_error(&["compact", "p"], &out);
    assert!(err.contains("moved from generation 4 to 5"), "{err}");
    assert!(err.contains("goldenfs compact p"), "{err}");
    assert_eq!(d.generations("p"), vec![1, 2, 3, 4, 5]);
    assert!(!compaction_running(&d));
    assert_no_leftovers(&d);
    assert_eq!(ls(d.layers_dir()).len(), 5, "the import and four promoted layers");
    let m = d.mount("p", "reader");
    assert_eq!(read(m.join("winner")), "won\n");
}

#[test]
fn sessions_keep_working_and_mounts_are_not_blocked_while_compaction_runs() {
    let d = daemon_with_env("GOLDENFS_PAUSE", "compact:built=5000");
    deep_project(&d);
    let old = d.mount("p", "old");
    let compaction = compact_in_background(&d);
    wait_for("the compaction to start", Duration::from_secs(10), || {
        compaction_running(&d)
    });
    assert!(d.ok(&["status"]).contains("compacting generation 4"));
    let during = d.mount("p", "during");
    assert!(compaction_running(&d), "the mount waited for the compaction");
    assert_eq!(generation_of(&during), 4);
    write(old.join("while"), "compacting\n");
    assert_eq!(read(old.join("a.txt")), "alpha v2\n");
    let out = compaction.join().unwrap();
    assert!(out.status.success(), "{}", describe(&["compact", "p"], &out));
    assert_eq!(d.current_generation("p"), 5);
    // The sessions on generation 4 still work on their pinned layers.
    for m in [&old, &during] {
        assert_eq!(generation_of(m), 4);
        assert_eq!(read(m.join("deep/a/b/c")), "c\n");
        write(m.join("after"), "after\n");
        assert_eq!(read(m.join("after")), "after\n");
    }
    assert_eq!(read(old.join("while")), "compacting\n");
    d.ok(&["gc", "--keep", "0"]);
    assert!(d.generations("p").contains(&4), "generation 4 is pinned by sessions");
    assert_eq!(read(old.join("sub/h2")), "shared\n");
}

#[test]
fn promotion_of_a_session_based_on_the_compacted_generation_lands_on_the_compacted_layer() {
    let d = Daemon::start_with(&["--compact-depth", "0"]);
    deep_project(&d);
    let m = d.mount("p", "old");
    write(m.join("from-old"), "old\n");
    fs::remove_file(m.join("a.txt")).unwrap();
    fs::rename(m.join("newd2"), m.join("newd3")).unwrap();
    fs::remove_dir_all(m.join("deep")).unwrap();
    let expected = tree(&m);
    d.unmount("old");
    d.ok(&["compact", "p"]);
    let compacted = layers_of(&d, "p", 5);
    let r = d.json(&["promote", "p", "old"]);
    assert_eq!(
        (r["generation"].as_u64(), r["parent"].as_u64()),
        (Some(6), Some(5)),
        "{r}"
    );
    let layers = layers_of(&d, "p", 6);
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[1], compacted[0]);
    let m = d.mount("p", "reader");
    assert_eq!(tree(&m), expected);
    assert_eq!(read(m.join("newd3/file")), "in newd\n");
}

#[test]
fn a_crash_at_each_compaction_fault_point_leaves_the_store_consistent() {
    for point in ["compact:mid-build", "compact:before-publish"] {
        let d = daemon_with_env("GOLDENFS_FAULT", point);
        deep_project(&d);
        let (before, before_inodes) = current_view(&d, "before");
        let out = d.run(&["compact", "p"]);
        assert!(!out.status.success(), "{point}: the daemon should have crashed");
        wait_for("the daemon to die", Duration::from_secs(10), || !d.is_running());
        d.kill9();
        d.set_env("GOLDENFS_FAULT", None);
        d.start_again();
        assert_eq!(d.current_generation("p"), 4, "{point}");
        assert_no_leftovers(&d);
        let (after, after_inodes) = current_view(&d, "after");
        assert_eq!(after, before, "{point}");
        assert_eq!(after_inodes, before_inodes, "{point}");
        // It can be run again.
        let r = d.json(&["compact", "p"]);
        assert_eq!(r["compacted"], true, "{point}: {r}");
        let (flat, flat_inodes) = current_view(&d, "flat");
        assert_eq!(flat, before, "{point}");
        assert_eq!(flat_inodes, before_inodes, "{point}");
    }
}

#[test]
fn automatic_compaction_runs_after_a_promotion_exceeds_the_depth_threshold() {
    let d = Daemon::start_with(&["--compact-depth", "3"]);
    d.create_project_with("p", fill_golden);
    for i in 2..=3 {
        promote_with(&d, "p", &format!("w{i}"), |m| write(m.join(format!("f{i}")), "x\n"));
    }
    assert_eq!(
        layers_of(&d, "p", 3).len(),
        3,
        "3 layers: not deeper than the threshold"
    );
    thread::sleep(Duration::from_millis(300));
    assert_eq!(d.current_generation("p"), 3);
    promote_with(&d, "p", "w4", |m| write(m.join("f4"), "x\n"));
    wait_for("the background compaction", Duration::from_secs(30), || {
        d.current_generation("p") == 5
    });
    let g = d.json(&["generations", "p"]);
    let five = g["generations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["generation"] == 5)
        .cloned();
    assert_eq!(
        five.as_ref().map(|g| g["layers"].as_array().unwrap().len()),
        Some(1),
        "{g}"
    );
    assert_eq!(five.map(|g| g["parent"].clone()), Some(Value::from(4)));
    let m = d.mount("p", "reader");
    for i in 2..=4 {
        assert_eq!(read(m.join(format!("f{i}"))), "x\n");
    }
    assert!(d.log_text().contains("compacting in the background"));
}
