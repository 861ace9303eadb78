//! Progress of long operations: `status` lists imports, compactions, GC runs
//! and project deletions while they run, with counters that match what the
//! operation does; the CLI draws them as a progress bar on a terminal only.
//! Operations are slowed down with debug-build pause points
//! (`import:entry`, `compact:entry`, `gc:layer`) so a poll catches them.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

fn daemon_with_pause(point: &str) -> Daemon {
    let d = Daemon::start();
    d.stop();
    d.set_env("GOLDENFS_PAUSE", Some(point));
    d.start_again();
    d
}

/// Runs `goldenfs ARGS` on another thread.
fn in_background(d: &Daemon, args: &[&str]) -> thread::JoinHandle<Output> {
    let socket = d.socket().to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&socket, &args)
    })
}

/// Polls `status --json` until an operation of `kind` satisfies `cond`;
/// returns every snapshot of it seen up to then.
fn watch(d: &Daemon, kind: &str, cond: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let status = d.json(&["status"]);
        if let Some(op) = status["operations"]
            .as_array()
            .and_then(|ops| ops.iter().find(|o| o["kind"] == kind))
        {
            seen.push(op.clone());
            if cond(op) {
                return seen;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} operation matching the condition within 60 s; seen {seen:?}"
        );
        thread::sleep(Duration::from_millis(40));
    }
}

fn no_operations(d: &Daemon) -> bool {
    d.json(&["status"])["operations"]
        .as_array()
        .is_some_and(|a| a.is_empty())
}

/// `dirs` directories of `files` files of `size` bytes each.
fn fill_tree(root: &Path, dirs: usize, files: usize, size: usize) {
    for d in 0..dirs {
        for f in 0..files {
            write(root.join(format!("d{d}/f{f}")), vec![b'x'; size + f]);
        }
    }
}

fn tree_bytes(dirs: usize, files: usize, size: usize) -> u64 {
    (dirs * (0..files).map(|f| size + f).sum::<usize>()) as u64
}

#[test]
fn import_progress_counts_entries_and_bytes_against_the_source_total() {
    let d = daemon_with_pause("import:entry=15");
    let src = d.new_dir("src");
    fill_tree(&src, 4, 30, 1000);
    let total_entries = 4 + 4 * 30 + 1; // directories, files, the root
    let total_bytes = tree_bytes(4, 30, 1000);
    let create = in_background(
        &d,
        &["project", "create", "web", "--from", src.to_str().unwrap(), "--json"],
    );
    let seen = watch(&d, "import", |op| op["total"].is_u64() && op["done"].as_u64() > Some(0));
    let op = seen.last().unwrap();
    assert_eq!(op["project"], "web");
    assert_eq!(op["phase"], "copying");
    assert_eq!(op["total"], total_entries, "{op}");
    assert_eq!(op["total_bytes"], total_bytes, "{op}");
    assert!(
        op["done"].as_u64().unwrap() < total_entries,
        "caught before the end: {op}"
    );
    assert!(op["done_bytes"].as_u64().unwrap() <= total_bytes, "{op}");
    let human = d.ok(&["status"]);
    assert!(human.contains("operations (1):\n  importing web: copying, "), "{human}");
    assert!(human.contains(&format!("/{total_entries} entries")), "{human}");
    for pair in seen.windows(2) {
        assert!(
            pair[1]["done"].as_u64() >= pair[0]["done"].as_u64(),
            "done never goes back: {seen:?}"
        );
    }
    let out = create.join().unwrap();
    assert!(out.status.success(), "{}", describe(&["project", "create"], &out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"], 120);
    assert_eq!(report["bytes"], total_bytes);
    assert!(no_operations(&d), "the finished import is no longer listed");
}

#[test]
fn compaction_progress_is_reported_while_it_flattens() {
    let d = daemon_with_pause("compact:entry=40");
    d.create_project_with("web", |s| fill_tree(s, 2, 10, 10));
    for (i, session) in ["w1", "w2"].iter().enumerate() {
        let m = d.mount("web", session);
        write(m.join(format!("new{i}")), "new\n");
        d.unmount(session);
        d.ok(&["promote", "web", session]);
    }
    let compact = in_background(&d, &["compact", "web", "--json"]);
    let seen = watch(&d, "compact", |op| op["done"].as_u64() >= Some(3));
    let op = seen.last().unwrap();
    assert_eq!(op["project"], "web");
    assert_eq!(op["phase"], "flattening");
    let out = compact.join().unwrap();
    assert!(out.status.success(), "{}", describe(&["compact", "web"], &out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(op["done"].as_u64() <= report["entries"].as_u64(), "{op} vs {report}");
    assert_eq!(report["entries"], 2 + 20 + 2);
    assert!(no_operations(&d));
}

#[test]
fn gc_and_project_delete_report_layers_and_bytes_freed() {
    let d = daemon_with_pause("gc:layer=1500");
    d.create_project_with("web", |s| fill_tree(s, 1, 3, 10));
    let m = d.mount("web", "w1");
    write(m.join("big"), vec![7u8; 1 << 20]);
    d.unmount("w1");
    d.ok(&["promote", "web", "w1"]);
    d.ok(&["rollback", "web", "1"]);
    // Generation 2 is neither current nor kept: its layer goes.
    let gc = in_background(&d, &["gc", "--keep", "0", "--json"]);
    let op = watch(&d, "gc", |op| op["phase"] == "deleting layers" && op["total"].is_u64())
        .pop()
        .unwrap();
    assert_eq!(op["total"], 1, "{op}");
    assert!(op["total_bytes"].as_u64().unwrap() >= 1 << 20, "{op}");
    assert!(op.get("project").is_none(), "{op}");
    let out = gc.join().unwrap();
    assert!(out.status.success(), "{}", describe(&["gc"], &out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["deleted_layers"].as_array().map(Vec::len), Some(1));
    assert_eq!(report["bytes_freed"], op["total_bytes"]);

    let delete = in_background(&d, &["project", "delete", "web", "--json"]);
    let op = watch(&d, "delete_project", |op| op["total"].is_u64()).pop().unwrap();
    assert_eq!(op["project"], "web");
    assert_eq!(op["total"], 1, "the import's layer: {op}");
    assert!(delete.join().unwrap().status.success());
    assert!(no_operations(&d));
}

/// Runs `goldenfs ARGS` with a pseudo-terminal as its stdout and stderr
/// (`script` from util-linux); returns what the terminal showed.
fn on_a_terminal(d: &Daemon, args: &[&str]) -> String {
    let line = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-qefc", &line, "/dev/null"])
        .env("GOLDENFS_SOCKET", d.socket())
        .env("TERM", "xterm")
        .env("COLUMNS", "120")
        .env_remove("GOLDENFS_NO_PROGRESS");
    let out = output_with_timeout(cmd, Duration::from_secs(120), &format!("script -c {line}"));
    assert!(out.status.success(), "{}", describe(args, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cli_draws_a_progress_bar_on_a_terminal_only() {
    let d = daemon_with_pause("import:entry=20");
    let src = d.new_dir("src");
    fill_tree(&src, 3, 30, 100);
    let src = src.to_str().unwrap();

    let shown = on_a_terminal(&d, &["project", "create", "a", "--from", src]);
    assert!(shown.contains("importing a"), "no progress bar on a terminal:\n{shown}");
    assert!(
        shown.contains("/94 entries"),
        "the bar shows the source's total:\n{shown}"
    );
    assert!(shown.contains("created project a"), "{shown}");

    let json = on_a_terminal(&d, &["project", "create", "b", "--from", src, "--json"]);
    assert!(!json.contains("entries,"), "no bar with --json:\n{json}");
    let report: Value = serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(report["files"], 90);

    let out = d.run(&["project", "create", "c", "--from", src]);
    assert!(out.status.success(), "{}", describe(&["project", "create"], &out));
    assert!(out.stderr.is_empty(), "no bar when stderr is not a terminal: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("created project c"));
}
