//! Running under systemd (`Type=notify`): the daemon reports `READY=1`
//! exactly once, from its main pid, only when the control socket answers and
//! the store's crash recovery is done; `STOPPING=1` when SIGTERM starts the
//! shutdown; never `READY=1` when it cannot start; and a notification socket
//! nobody listens on does not stop it. A fake service manager
//! (`common::notify`) listens on a path and on an abstract name.
//! The unit file's essentials are checked as text.

mod common;

use common::notify::{Notification, NotifyListener};
use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Hang guard for a notification (not a timing assertion).
const WAIT: Duration = Duration::from_secs(60);

fn ready_messages(ns: &[Notification]) -> Vec<&Notification> {
    ns.iter().filter(|n| n.is_ready()).collect()
}

#[test]
fn ready_comes_once_from_the_main_pid_after_the_socket_answers_and_recovery_is_done() {
    let d = Daemon::start();
    d.ok(&["project", "create", "p"]);
    d.mount("p", "s1");
    d.stop();
    // What a crash leaves in work/: recovery removes it when the store opens.
    let leftover = d.state_dir().join("work").join("half-built-layer");
    fs::create_dir(&leftover).unwrap();
    let listener = NotifyListener::on_path();
    d.set_env("NOTIFY_SOCKET", Some(listener.env_value()));
    // Widens the window between binding the socket and opening the store:
    // an early READY would arrive while `leftover` is still there.
    d.set_env("GOLDENFS_PAUSE", Some("daemon:before-store-open=1000"));

    let socket = d.socket().to_path_buf();
    let (at_ready, leftover_at_ready, status_at_ready) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let got = listener.wait_for("READY", WAIT);
            // Observed the moment READY arrives, before anything else.
            let leftover_there = leftover.exists();
            let status = cli(&socket, &["status", "--json"]);
            (got, leftover_there, status)
        });
        d.start_again();
        watcher.join().unwrap()
    });

    assert!(
        status_at_ready.status.success(),
        "`status` failed right after READY=1:\n{}",
        describe(&["status", "--json"], &status_at_ready)
    );
    assert!(
        !leftover_at_ready,
        "READY=1 came before crash recovery emptied work/\n--- daemon log ---\n{}",
        d.log_text()
    );
    let status: serde_json::Value = serde_json::from_slice(&status_at_ready.stdout).unwrap();
    let pid = status["pid"].as_u64().unwrap() as u32;
    let ready = at_ready.last().unwrap();
    assert_eq!(ready.get("MAINPID"), Some(pid.to_string().as_str()), "{ready:?}");
    assert_eq!(
        ready.sender_pid,
        Some(pid),
        "READY=1 not sent by the main pid: {ready:?}"
    );
    assert_eq!(
        ready.get("STATUS"),
        Some(format!("listening on {}, 1 projects, 1 sessions", socket.display()).as_str()),
    );

    // Requests do not trigger more; after the stop, still exactly one READY=1.
    d.mount("p", "s1");
    d.unmount("s1");
    d.stop();
    let mut all = at_ready;
    all.extend(listener.drain());
    assert_eq!(ready_messages(&all).len(), 1, "READY=1 not sent exactly once: {all:?}");
    assert!(all.iter().all(|n| n.sender_pid == Some(pid)), "{all:?}");
}

#[test]
fn sigterm_reports_stopping_with_the_mounted_sessions_on_an_abstract_socket() {
    let d = Daemon::start();
    d.ok(&["project", "create", "p"]);
    d.stop();
    let listener = NotifyListener::on_abstract_name();
    d.set_env("NOTIFY_SOCKET", Some(listener.env_value()));
    d.start_again();
    let got = listener.wait_for("READY", WAIT);
    let pid = d.json(&["status"])["pid"].as_u64().unwrap() as u32;
    assert_eq!(got.last().unwrap().get("MAINPID"), Some(pid.to_string().as_str()));
    let mp = d.mount("p", "s1");
    fs::write(mp.join("kept.txt"), "kept").unwrap();
    d.mount("p", "s2");
    d.stop();

    let after: Vec<Notification> = listener.drain();
    assert!(ready_messages(&after).is_empty(), "a second READY=1: {after:?}");
    let stopping = after
        .iter()
        .position(|n| n.get("STOPPING") == Some("1"))
        .unwrap_or_else(|| panic!("no STOPPING=1 after SIGTERM: {after:?}"));
    assert_eq!(
        after[stopping].get("STATUS"),
        Some("shutting down: unmounting 2 mounted sessions (uppers are kept)")
    );
    assert!(
        after[stopping + 1..]
            .iter()
            .any(|n| n.get("STATUS") == Some("stopped: every session unmounted")),
        "no final STATUS after the unmounts: {after:?}"
    );
    assert!(after.iter().all(|n| n.sender_pid == Some(pid)), "{after:?}");
    assert!(d.still_mounted().is_empty());
}

#[test]
fn a_daemon_that_cannot_open_its_store_never_reports_ready() {
    let dir = tempdir("notify-fail-");
    let state = dir.path().join("state");
    fs::write(&state, "a file where the store should be").unwrap();
    let listener = NotifyListener::on_path();
    let mut cmd = Command::new(BIN);
    cmd.arg("daemon")
        .arg("--state-dir")
        .arg(&state)
        .arg("--socket")
        .arg(dir.path().join("goldenfs.sock"))
        .env("NOTIFY_SOCKET", listener.env_value())
        .env_remove("GOLDENFS_SOCKET");
    let out = output_with_timeout(cmd, Duration::from_secs(60), "goldenfs daemon on a file");
    assert!(!out.status.success(), "the daemon started on a file as its store");
    let got = listener.drain();
    assert!(
        ready_messages(&got).is_empty(),
        "READY=1 from a daemon that failed: {got:?}"
    );
    // The listener was reachable: the failure was reported to it.
    assert!(
        got.iter()
            .any(|n| n.get("STATUS").is_some_and(|s| s.starts_with("cannot start: "))),
        "no STATUS=cannot start: ... ({got:?})\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("goldenfs.sock").exists(), "the socket was left behind");
}

#[test]
fn a_notify_socket_nobody_listens_on_is_logged_and_the_daemon_serves() {
    let d = Daemon::start();
    d.stop();
    let nobody = d.root().join("nobody-listens.sock");
    d.set_env("NOTIFY_SOCKET", Some(nobody.to_str().unwrap()));
    // The harness waits for `status` to answer.
    d.start_again();
    d.ok(&["project", "create", "p"]);
    d.mount("p", "s1");
    assert!(
        d.log_text().contains("cannot notify the service manager"),
        "the failed notification was not logged\n--- daemon log ---\n{}",
        d.log_text()
    );
    d.stop();
}

// ---------------------------------------------------------------------------
// contrib/goldenfs.service
// ---------------------------------------------------------------------------

/// `section → key → values` of a systemd unit file (comments dropped).
fn parse_unit(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        out.entry(section.clone())
            .or_default()
            .entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    out
}

#[test]
fn the_unit_file_keeps_notify_restart_directories_and_the_installed_path() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = parse_unit(&fs::read_to_string(root.join("contrib/goldenfs.service")).unwrap());
    let service = &unit["Service"];
    let one = |k: &str| -> &str {
        match service.get(k).map(Vec::as_slice) {
            Some([v]) => v,
            other => panic!("[Service] {k}= must be set once, found {other:?}"),
        }
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("StateDirectory"), "goldenfs");
    assert_eq!(one("RuntimeDirectory"), "goldenfs");
    assert_eq!(one("RuntimeDirectoryPreserve"), "yes");
    assert_eq!(one("KillMode"), "mixed");
    let stop = humantime::parse_duration(one("TimeoutStopSec")).unwrap();
    assert!(stop > goldenfs::daemon::SHUTDOWN_GRACE * 2, "TimeoutStopSec {stop:?}");
    assert!(one("LimitNOFILE").parse::<u64>().unwrap() >= 65536);
    assert_eq!(one("Environment"), "RUST_LOG=info");

    // ExecStart: the installed binary, the daemon on the directories
    // systemd creates, which are also the CLI's defaults.
    let exec: Vec<&str> = one("ExecStart").split_whitespace().collect();
    assert_eq!(exec[..2], ["/usr/local/bin/goldenfs", "daemon"]);
    let opt = |name: &str| exec.iter().position(|a| *a == name).map(|i| exec[i + 1]);
    assert_eq!(opt("--state-dir"), Some("/var/lib/goldenfs"));
    assert_eq!(opt("--state-dir"), Some(goldenfs::daemon::DEFAULT_STATE_DIR));
    assert_eq!(opt("--socket"), Some(goldenfs::daemon::DEFAULT_SOCKET));
    assert_eq!(
        Path::new(opt("--socket").unwrap()).parent(),
        Some(Path::new("/run/goldenfs"))
    );

    // The install script and the README put the binary where ExecStart looks.
    let script = fs::read_to_string(root.join("scripts/install-systemd.sh")).unwrap();
    assert!(script.contains("install -m 0755 target/release/goldenfs /usr/local/bin/"));
    assert!(script.contains("install -m 0644 contrib/goldenfs.service /etc/systemd/system/"));
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains("install -m 0755 target/release/goldenfs /usr/local/bin/"));

    // No setting that gives the service its own mount namespace: its views
    // would be invisible to everyone else.
    for key in [
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "PrivateMounts",
        "MountFlags",
        "ReadWritePaths",
        "ReadOnlyPaths",
        "InaccessiblePaths",
        "TemporaryFileSystem",
        "BindPaths",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RootDirectory",
    ] {
        assert!(!service.contains_key(key), "{key}= would hide the views' mounts");
    }
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);
}
