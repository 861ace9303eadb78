//! `goldenfs doctor`, `goldenfs completions` and `goldenfs man`, run as the
//! real binary. The filesystem checks are compared with independent probes
//! made here (`cp --reflink=always`, `lsetxattr`), not with the doctor's own
//! code, and run on the ext4 of /var/tmp and on a tmpfs mounted by the test.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every row `doctor` prints for a usable state directory, in order.
const CHECKS: &[&str] = &[
    "privileges",
    "dev-fuse",
    "fuse-fs",
    "kernel",
    "fuse-passthrough",
    "fuse-max-pages",
    "overlayfs",
    "state-dir",
    "store-fs",
    "store-space",
    "store-inodes",
    "xattr-trusted",
    "xattr-user",
    "reflink",
    "d-type",
    "hard-links",
    "rename-exchange",
    "whiteout-mknod",
    "nofile-limit",
    "daemon",
];

/// A fresh temp dir (root and FUSE checked) with an empty subdirectory `name`.
fn temp_with_dir(prefix: &str, name: &str) -> (tempfile::TempDir, PathBuf) {
    require_root_and_fuse();
    let t = tempdir(prefix);
    let dir = t.path().join(name);
    fs::create_dir(&dir).unwrap();
    (t, dir)
}

/// A socket path nobody listens on.
fn no_socket(dir: &Path) -> PathBuf {
    dir.join("no-daemon.sock")
}

fn doctor(socket: &Path, state_dir: &Path, json: bool) -> Output {
    let dir = state_dir.to_str().unwrap();
    let mut args = vec!["doctor", "--state-dir", dir];
    if json {
        args.push("--json");
    }
    cli(socket, &args)
}

/// The `--json` report as (check → object); asserts the documented shape.
fn report(socket: &Path, state_dir: &Path) -> (Output, Vec<serde_json::Map<String, Value>>) {
    let out = doctor(socket, state_dir, true);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json is not JSON ({e}):\n{}",
            describe(&["doctor", "--json"], &out)
        )
    });
    let rows: Vec<_> = v
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| r.as_object().unwrap().clone())
        .collect();
    for r in &rows {
        let keys: BTreeSet<&str> = r.keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["check", "status", "found", "advice"]), "{r:?}");
        for k in ["check", "found", "advice"] {
            assert!(r[k].is_string(), "{k} of {r:?}");
        }
        let status = r["status"].as_str().unwrap();
        assert!(["ok", "warn", "fail"].contains(&status), "{r:?}");
        if status != "ok" {
            assert!(!r["found"].as_str().unwrap().is_empty(), "{r:?}");
        }
    }
    (out, rows)
}

fn get<'a>(rows: &'a [serde_json::Map<String, Value>], check: &str) -> &'a serde_json::Map<String, Value> {
    rows.iter()
        .find(|r| r["check"] == check)
        .unwrap_or_else(|| panic!("no {check} row in {rows:#?}"))
}

fn status(rows: &[serde_json::Map<String, Value>], check: &str) -> String {
    get(rows, check)["status"].as_str().unwrap().to_string()
}

/// What this filesystem really does, found without goldenfs.
fn expected_store_statuses(dir: &Path) -> (&'static str, &'static str) {
    let probe = dir.join("probe");
    write(&probe, "x");
    let trusted = match xattr::set(&probe, "trusted.test.probe", b"1") {
        Ok(()) => "ok",
        Err(_) => "fail",
    };
    write(dir.join("a"), vec![1u8; 4096]);
    let cp = Command::new("cp")
        .args(["--reflink=always"])
        .arg(dir.join("a"))
        .arg(dir.join("b"))
        .output()
        .expect("run cp");
    let reflink = if cp.status.success() { "ok" } else { "warn" };
    for n in ["probe", "a", "b"] {
        let _ = fs::remove_file(dir.join(n));
    }
    (trusted, reflink)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v = ls(dir);
    v.sort();
    v
}

fn doctor_mounts() -> Vec<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    mounts
        .lines()
        .filter(|l| l.contains("goldenfs-doctor"))
        .map(|l| PathBuf::from(l.split(' ').nth(4).unwrap()))
        .collect()
}

#[test]
fn doctor_reports_every_check_and_the_real_answers_of_an_ext4_store() {
    let (t, state) = temp_with_dir("doctor-ext4-", "state");
    let (expect_trusted, expect_reflink) = expected_store_statuses(&state);
    let (out, rows) = report(&no_socket(t.path()), &state);
    assert!(out.status.success(), "{}", describe(&["doctor"], &out));
    let got: Vec<&str> = rows.iter().map(|r| r["check"].as_str().unwrap()).collect();
    assert_eq!(got, CHECKS);
    assert_eq!(status(&rows, "xattr-trusted"), expect_trusted);
    assert_eq!(status(&rows, "reflink"), expect_reflink);
    if get(&rows, "store-fs")["found"] == "ext4" {
        // ext4 has xattrs and no reflinks: copy-up copies bytes.
        assert_eq!(status(&rows, "xattr-trusted"), "ok");
        assert_eq!(status(&rows, "reflink"), "warn");
        assert!(
            get(&rows, "reflink")["advice"]
                .as_str()
                .unwrap()
                .contains("copy_file_range")
        );
    }
    // Root with /dev/fuse (checked above): privileges and FUSE hold.
    for c in [
        "privileges",
        "dev-fuse",
        "fuse-fs",
        "d-type",
        "hard-links",
        "rename-exchange",
        "whiteout-mknod",
    ] {
        assert_eq!(status(&rows, c), "ok", "{:?}", get(&rows, c));
    }
    assert!(
        get(&rows, "daemon")["found"]
            .as_str()
            .unwrap()
            .contains("no daemon answers")
    );

    // The human table: a header and one aligned row per check, same statuses.
    let out = doctor(&no_socket(t.path()), &state, false);
    assert!(out.status.success(), "{}", describe(&["doctor"], &out));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("CHECK") && lines[0].contains("STATUS"), "{text}");
    let status_col = lines[0].find("STATUS").unwrap();
    assert_eq!(lines.len(), CHECKS.len() + 1, "{text}");
    for (line, c) in lines[1..].iter().zip(CHECKS) {
        assert!(line.starts_with(&format!("{c} ")), "{line}");
        let st = line[status_col..].split_whitespace().next().unwrap();
        assert_eq!(st, status(&rows, c), "{line}");
    }
}

/// Unmounts the test's tmpfs when dropped (also when an assertion failed).
struct TmpfsMount(PathBuf);

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn doctor_on_tmpfs_finds_trusted_xattrs_but_no_reflink() {
    let (t, mnt) = temp_with_dir("doctor-tmpfs-", "tmpfs");
    rustix::mount::mount("tmpfs", &mnt, "tmpfs", rustix::mount::MountFlags::empty(), c"size=16m").unwrap();
    let _guard = TmpfsMount(mnt.clone());
    let (expect_trusted, expect_reflink) = expected_store_statuses(&mnt);
    // Modern kernels (>= 6.6) give tmpfs trusted xattrs; tmpfs has no reflinks.
    assert_eq!((expect_trusted, expect_reflink), ("ok", "warn"));
    let (out, rows) = report(&no_socket(t.path()), &mnt);
    assert!(out.status.success(), "{}", describe(&["doctor"], &out));
    assert_eq!(get(&rows, "store-fs")["found"], "tmpfs");
    assert_eq!(status(&rows, "store-fs"), "warn", "a store in memory is lost at reboot");
    assert_eq!(status(&rows, "xattr-trusted"), expect_trusted);
    assert_eq!(status(&rows, "reflink"), expect_reflink);
    assert!(names(&mnt).is_empty(), "doctor left {:?} on the tmpfs", names(&mnt));
}

#[test]
fn doctor_leaves_no_files_in_the_state_dir_nor_a_test_mount() {
    let (t, state) = temp_with_dir("doctor-clean-", "state");
    write(state.join("existing"), "keep");
    let before = snapshot(t.path());
    let (out, _) = report(&no_socket(t.path()), &state);
    assert!(out.status.success(), "{}", describe(&["doctor"], &out));
    assert_eq!(snapshot(t.path()), before, "doctor changed the state dir");
    assert!(
        doctor_mounts().is_empty(),
        "test FUSE mount left: {:?}",
        doctor_mounts()
    );

    // A state dir that does not exist yet: its nearest parent is checked,
    // and nothing is created on the way.
    let later = state.join("not/yet");
    let (out, rows) = report(&no_socket(t.path()), &later);
    assert!(out.status.success(), "{}", describe(&["doctor"], &out));
    let found = get(&rows, "state-dir")["found"].as_str().unwrap().to_string();
    assert!(
        found.contains("does not exist yet") && found.contains(state.to_str().unwrap()),
        "{found}"
    );
    assert_eq!(status(&rows, "xattr-trusted"), "ok");
    assert_eq!(snapshot(t.path()), before, "doctor changed the parent of the state dir");
}

#[test]
fn doctor_on_a_live_store_reports_the_daemon_and_changes_nothing() {
    let d = Daemon::start();
    d.create_project_with("web", |p| write(p.join("f"), "golden"));
    let before = snapshot(d.state_dir());
    let (out, rows) = report(d.socket(), d.state_dir());
    assert!(out.status.success(), "{}", describe(&["doctor"], &out));
    let found = get(&rows, "daemon")["found"].as_str().unwrap().to_string();
    assert!(found.contains("answers on") && !found.contains("no daemon"), "{found}");
    assert_eq!(snapshot(d.state_dir()), before, "doctor changed a live store");
    assert_eq!(d.json(&["generations", "web"])["current"], 1);
}

#[test]
fn doctor_fails_clearly_when_the_state_dir_is_a_regular_file() {
    require_root_and_fuse();
    let t = tempdir("doctor-file-");
    let file = t.path().join("state");
    write(&file, "not a directory");
    let (out, rows) = report(&no_socket(t.path()), &file);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&["doctor"], &out));
    let row = get(&rows, "state-dir");
    assert_eq!(row["status"], "fail");
    assert!(row["found"].as_str().unwrap().contains("is not a directory"), "{row:?}");
    assert!(
        !rows.iter().any(|r| r["check"] == "xattr-trusted"),
        "filesystem probes ran on a file"
    );
    let line = assert_cli_error(&["doctor"], &doctor(&no_socket(t.path()), &file, false));
    assert!(line.contains("1 doctor check(s) failed"), "{line}");
    assert_eq!(read(&file), "not a directory");
    assert_eq!(names(t.path()), ["state"]);
}

#[test]
fn completions_name_the_binary_and_its_subcommands() {
    let t = tempdir("doctor-compl-");
    let sock = no_socket(t.path());
    let out = cli(&sock, &["completions", "bash"]);
    assert!(out.status.success(), "{}", describe(&["completions", "bash"], &out));
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("goldenfs"), "{script}");
    for sub in [
        "daemon",
        "project",
        "session",
        "promote",
        "doctor",
        "completions",
        "man",
    ] {
        assert!(script.contains(sub), "bash completion lacks {sub}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = cli(&sock, &["completions", shell]);
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "{}",
            describe(&["completions", shell], &out)
        );
    }
    let out = cli(&sock, &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert_cli_error(&["completions", "tcsh"], &out);
}

#[test]
fn man_page_is_roff_naming_the_subcommands_and_man_dir_writes_one_per_subcommand() {
    let t = tempdir("doctor-man-");
    let sock = no_socket(t.path());
    let out = cli(&sock, &["man"]);
    assert!(out.status.success(), "{}", describe(&["man"], &out));
    let page = String::from_utf8(out.stdout).unwrap();
    // clap_mangen puts two lines of roff string setup before the title.
    let th = page
        .lines()
        .position(|l| l.starts_with(".TH goldenfs 1"))
        .expect(".TH line");
    assert!(th <= 2, "{page}");
    for sub in ["daemon", "project", "session", "doctor", "completions", "man"] {
        assert!(page.contains(&format!("goldenfs\\-{sub}(1)")), "man page lacks {sub}");
    }

    let dir = t.path().join("man1");
    fs::create_dir(&dir).unwrap();
    let out = cli(&sock, &["man", "--dir", dir.to_str().unwrap()]);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        describe(&["man", "--dir"], &out)
    );
    let files = names(&dir);
    for f in [
        "goldenfs.1",
        "goldenfs-doctor.1",
        "goldenfs-session-mount.1",
        "goldenfs-man.1",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} not in {files:?}");
    }
    for f in &files {
        assert!(read(dir.join(f)).contains(".TH "), "{f} is not a man page");
    }
    let missing = t.path().join("nope");
    let out = cli(&sock, &["man", "--dir", missing.to_str().unwrap()]);
    let line = assert_cli_error(&["man", "--dir"], &out);
    assert!(line.contains("nope"), "{line}");
}
