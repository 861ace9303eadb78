//! Clean shutdown and upgrade: SIGTERM unmounts every view (a busy one is
//! detached lazily once the grace period is over, and the log says which),
//! keeps every upper byte for byte, and exits 0; the next daemon on the same
//! store mounts every session again with all its writes. A promotion or a
//! compaction running when SIGTERM arrives either completes or is undone,
//! and the store is consistent after the restart.
//! (`lifecycle.rs` covers SIGTERM with idle views and restarts.)

mod common;

use common::crash::assert_store_files_consistent;
use common::extra::*;
use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The daemon's grace period for busy views (`SHUTDOWN_GRACE`).
const GRACE: Duration = Duration::from_secs(5);
/// Margin on top of it: a bound against a hang, not a performance figure.
const MARGIN: Duration = Duration::from_secs(15);

fn uppers(d: &Daemon) -> BTreeMap<String, BTreeMap<PathBuf, String>> {
    ls(d.state_dir().join("sessions"))
        .into_iter()
        .map(|s| {
            let snap = deep_snapshot(&d.state_dir().join("sessions").join(&s).join("upper"));
            (s, snap)
        })
        .collect()
}

fn errno_of_result<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().map(|e| errno_of(&e))
}

#[test]
fn sigterm_detaches_a_busy_view_lazily_says_so_and_keeps_every_upper() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let mut mounts = BTreeMap::new();
    for s in ["idle1", "idle2", "busy", "gone"] {
        let m = d.mount("p", s);
        write(m.join(format!("{s}.txt")), format!("{s} was here\n"));
        write(m.join("a.txt"), format!("a by {s}\n"));
        fs::remove_file(m.join("b.txt")).unwrap();
        fs::create_dir(m.join(format!("dir1/{s}-dir"))).unwrap();
        mounts.insert(s, m);
    }
    d.unmount("gone");
    let busy = &mounts["busy"];
    // Kept busy by another process (working directory and an open file), and
    // by this one (an upper file open for writing, a lower file, a directory).
    let holder = Busy::new(&busy.join("dir1"), Some(&busy.join("busy.txt")));
    let mut upper_file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(busy.join("a.txt"))
        .unwrap();
    let mut lower_file = fs::File::open(busy.join("dir1/x.txt")).unwrap();
    let dir = fs::File::open(busy.join("dir1")).unwrap();
    upper_file.write_all(b"written through an open file\n").unwrap();
    let before = uppers(&d);

    let t0 = Instant::now();
    d.stop(); // asserts exit 0
    let took = t0.elapsed();
    assert!(took < GRACE + MARGIN, "SIGTERM took {took:?} with a busy view");
    let log = d.log_text();
    for s in ["idle1", "idle2", "busy"] {
        assert!(!is_mounted(&mounts[s]), "{s} is still mounted after SIGTERM");
    }
    assert!(
        log.lines().any(|l| l.contains("session busy:") && l.contains("lazily")),
        "the log must name the busy view it detached lazily:\n{log}"
    );
    for s in ["idle1", "idle2"] {
        assert!(
            log.lines().any(|l| l.contains(&format!("session {s}: unmounted"))),
            "{s} was not unmounted normally:\n{log}"
        );
        assert!(
            !log.lines()
                .any(|l| l.contains(&format!("session {s}:")) && l.contains("lazily"))
        );
    }
    assert_eq!(uppers(&d), before, "an upper changed across SIGTERM");

    // What the busy processes see now: the detached view has no daemon.
    // Names can no longer be looked up (ENOTCONN), in the working directory
    // or through an open directory.
    assert_eq!(
        errno_of_result(holder.list_cwd()),
        Some(libc::ENOTCONN),
        "listing the cwd"
    );
    assert_eq!(
        errno_of_result(
            rustix::fs::openat(&dir, "x.txt", rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty())
                .map_err(std::io::Error::from)
        ),
        Some(libc::ENOTCONN),
        "a lookup through an open directory"
    );
    // An open file of the session's own copy is its backing file (FUSE
    // passthrough): reads and writes go on, daemon or not. A lower file
    // opened but never read needs the daemon: ENOTCONN.
    let mut s = String::new();
    upper_file.seek(SeekFrom::Start(0)).unwrap();
    upper_file.read_to_string(&mut s).unwrap();
    assert_eq!(s, "written through an open file\n");
    let mut t = String::new();
    assert_eq!(errno_of_result(lower_file.read_to_string(&mut t)), Some(libc::ENOTCONN));

    // The next daemon mounts every session again, with all its writes, the
    // busy one too (while the old detached mount is still held).
    d.start_again();
    for s in ["idle1", "idle2", "busy", "gone"] {
        let m = d.mount("p", s);
        assert_eq!(read(m.join(format!("{s}.txt"))), format!("{s} was here\n"));
        assert!(!exists(m.join("b.txt")), "{s}: the whiteout was lost");
        assert!(m.join(format!("dir1/{s}-dir")).is_dir());
        let a = read(m.join("a.txt"));
        if s == "busy" {
            assert_eq!(a, "written through an open file\n");
        } else {
            assert_eq!(a, format!("a by {s}\n"));
        }
    }
    // So a writer that kept a file of a lazily detached view open still
    // writes the session's upper: a limitation of passthrough (the kernel
    // never asks the daemon), to keep in mind before promoting such a
    // session. Here it lands in the reattached view.
    upper_file.write_all(b"late write\n").unwrap();
    assert_eq!(
        read(d.mountpoint("busy").join("a.txt")),
        "written through an open file\nlate write\n"
    );
    drop((holder, upper_file, lower_file, dir));
    assert_store_files_consistent(d.state_dir());
}

/// Starts `goldenfs ARGS` in the background (its output captured).
fn spawn_cli(d: &Daemon, args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .env("GOLDENFS_SOCKET", d.socket())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn goldenfs")
}

/// Waits (bounded) until the daemon log has a line containing `what`.
fn wait_for_log(d: &Daemon, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !d.log_text().contains(what) {
        assert!(
            Instant::now() < deadline,
            "the daemon never logged {what:?}:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reaps a background CLI (bounded); returns whether it succeeded, and its stderr.
fn finish(mut child: Child) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (st.success(), err);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the CLI did not finish after the daemon stopped");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Project `p` at generation 2, two layers deep, and a session `other`.
fn two_generations(d: &Daemon) {
    d.create_project_with("p", fill_sample);
    promote_new_session(d, "p", "w", "gen2.txt", "2\n");
    let m = d.mount("p", "other");
    write(m.join("other.txt"), "other\n");
}

/// Restarts the daemon with `GOLDENFS_PAUSE=pause`, mounts `other` again
/// (more shutdown work), runs `goldenfs ARGS` in the background, sends
/// SIGTERM once the daemon pauses (it must exit 0 within the bound, keeping
/// `other`'s upper), and starts it again without the pause. Returns whether
/// the CLI succeeded, and its stderr.
fn sigterm_while_paused(d: &Daemon, pause: &str, args: &[&str]) -> (bool, String) {
    d.set_env("GOLDENFS_PAUSE", Some(pause));
    d.restart();
    d.mount("p", "other");
    let other = d.state_dir().join("sessions/other/upper");
    let before = deep_snapshot(&other);
    let cli = spawn_cli(d, args);
    wait_for_log(d, "pausing");
    let t0 = Instant::now();
    d.stop();
    assert!(t0.elapsed() < GRACE + MARGIN, "SIGTERM took {:?}", t0.elapsed());
    let (ok, err) = finish(cli);
    eprintln!("`goldenfs {}` under SIGTERM: ok={ok} {err}", args.join(" "));
    assert_same_snapshot("other's upper", &before, &deep_snapshot(&other));
    d.set_env("GOLDENFS_PAUSE", None);
    d.start_again();
    (ok, err)
}

#[test]
fn sigterm_during_a_promotion_completes_or_undoes_it() {
    let d = Daemon::start();
    two_generations(&d);
    let m = d.mount("p", "s1");
    write(m.join("s1.txt"), "s1\n");
    d.unmount("s1");
    let (ok, _) = sigterm_while_paused(&d, "promote:before-pointer-swap=3000", &["promote", "p", "s1"]);
    let current = assert_store_files_consistent(d.state_dir())["p"];
    if current == 3 {
        assert!(
            !d.session_names().contains(&"s1".to_string()),
            "promoted, but s1 is still a session"
        );
        let m = d.mount("p", "check");
        assert_eq!(read(m.join("s1.txt")), "s1\n");
    } else {
        assert!(!ok, "the CLI reported success but generation 3 is not current");
        assert_eq!(current, 2);
        assert_eq!(read(d.state_dir().join("sessions/s1/upper/s1.txt")), "s1\n");
        d.ok(&["promote", "p", "s1"]);
    }
    assert_eq!(read(d.mount("p", "other").join("other.txt")), "other\n");
}

#[test]
fn sigterm_during_a_compaction_abandons_it_and_it_can_run_again() {
    let d = Daemon::start();
    two_generations(&d);
    let (ok, _) = sigterm_while_paused(&d, "compact:built=30000", &["compact", "p"]);
    assert!(!ok, "a compaction paused for 30 s cannot have finished");
    assert_eq!(assert_store_files_consistent(d.state_dir())["p"], 2);
    let report = d.json(&["compact", "p"]);
    assert_eq!(report["compacted"], true, "{report}");
    let m = d.mount("p", "check");
    assert_eq!(read(m.join("gen2.txt")), "2\n");
    assert_eq!(read(d.mount("p", "other").join("other.txt")), "other\n");
    assert_eq!(
        assert_store_files_consistent(d.state_dir())["p"],
        d.current_generation("p")
    );
}

/// An operator's `umount -l` of a busy view leaves its FUSE session alive
/// until the last process lets go; unmounting it through goldenfs, and
/// SIGTERM, must not wait for that.
#[test]
fn a_busy_view_detached_behind_the_daemons_back_does_not_hold_up_unmount_or_sigterm() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let mut holders = Vec::new();
    for s in ["s1", "s2"] {
        let m = d.mount("p", s);
        write(m.join(format!("{s}.txt")), format!("{s}\n"));
        holders.push(Busy::new(&m.join("dir1"), None));
        run_ok("umount", &["-l", m.to_str().unwrap()]);
        assert!(!is_mounted(&m));
    }
    d.ok(&["session", "unmount", "s2"]);
    assert_eq!(d.session_info("s2")["mounted"], false);
    let before = uppers(&d);
    let t0 = Instant::now();
    d.stop();
    assert!(t0.elapsed() < GRACE + MARGIN, "SIGTERM took {:?}", t0.elapsed());
    assert_eq!(uppers(&d), before);
    assert_eq!(errno_of_result(holders[0].list_cwd()), Some(libc::ENOTCONN));
    drop(holders);
    d.start_again();
    for s in ["s1", "s2"] {
        let m = d.mount("p", s);
        assert_eq!(read(m.join(format!("{s}.txt"))), format!("{s}\n"));
    }
}
