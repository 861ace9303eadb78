//! The CLI's error contract: non-zero exit and exactly one line
//! `goldenfs: ...` on stderr, for every kind of mistake.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

#[test]
fn daemon_not_running_gives_a_clear_one_line_error() {
    let dir = tempdir("nodaemon-");
    let sock = dir.path().join("nobody-listens.sock");
    for args in [
        &["status"][..],
        &["project", "list"][..],
        &["session", "mount", "p", "s", "/nonexistent"][..],
    ] {
        let out = cli(&sock, args);
        let line = assert_cli_error(args, &out);
        assert!(
            line.contains(sock.to_str().unwrap()),
            "the error should name the socket it tried: {line}"
        );
        assert!(
            line.contains("daemon"),
            "the error should hint that the daemon is not running: {line}"
        );
    }
    // Same with a stale socket file nobody listens on.
    let stale = dir.path().join("stale.sock");
    {
        let l = std::os::unix::net::UnixListener::bind(&stale).unwrap();
        drop(l);
    }
    let out = cli(&stale, &["status"]);
    let line = assert_cli_error(&["status"], &out);
    assert!(line.contains(stale.to_str().unwrap()), "{line}");
}

#[test]
fn socket_env_var_is_used_when_no_flag_is_given() {
    let d = Daemon::start();
    // `cli` passes GOLDENFS_SOCKET only; this is what Daemon::ok uses throughout.
    let out = cli(d.socket(), &["status"]);
    assert!(out.status.success(), "{}", describe(&["status"], &out));
}

#[test]
fn bad_project_names_are_rejected() {
    let d = Daemon::start();
    let long = "x".repeat(129);
    for name in ["..", ".", "a/b", "/abs", "-dash", ".hidden", "a b", "", "a..b", &long] {
        // `--` so that "-dash" reaches name validation instead of option parsing.
        let line = d.fail(&["project", "create", "--", name]);
        assert!(
            line.to_lowercase().contains("name"),
            "the error for {name:?} should be about the name: {line}"
        );
    }
    assert!(d.project_names().is_empty(), "nothing may have been created");
    // Nothing was created outside the store either.
    assert!(!exists(d.state_dir().join("..").join("b")));
    // 128 characters are fine.
    let ok = "y".repeat(128);
    d.ok(&["project", "create", &ok]);
}

#[test]
fn bad_session_names_are_rejected() {
    let d = Daemon::start();
    d.ok(&["project", "create", "p"]);
    let mp = d.mountpoint("target");
    for name in ["..", "a/b", "../escape", "-x", ""] {
        let line = d.fail(&["session", "mount", "--", "p", name, mp.to_str().unwrap()]);
        assert!(line.to_lowercase().contains("name"), "{name:?}: {line}");
        assert!(!is_mounted(&mp));
    }
    assert!(d.session_names().is_empty());
    for args in [
        &["session", "unmount", ".."][..],
        &["session", "discard", "a/b"][..],
        &["promote", "p", ".."][..],
        &["generations", "../p"][..],
        &["rollback", "a/b", "1"][..],
        &["project", "delete", ".."][..],
    ] {
        d.fail(args);
    }
}

#[test]
fn unknown_project_or_session_is_an_error() {
    let d = Daemon::start();
    let mp = d.mountpoint("s");
    let line = d.fail(&["session", "mount", "nope", "s", mp.to_str().unwrap()]);
    assert!(line.contains("nope"), "the error should name the project: {line}");
    assert!(!is_mounted(&mp));
    assert!(d.session_names().is_empty(), "no session may be left behind");
    d.fail(&["generations", "nope"]);
    d.fail(&["rollback", "nope", "1"]);
    d.fail(&["project", "delete", "nope"]);
    d.fail(&["promote", "nope", "s"]);
    d.ok(&["project", "create", "p"]);
    let line = d.fail(&["promote", "p", "ghost"]);
    assert!(line.contains("ghost"), "{line}");
    d.fail(&["session", "unmount", "ghost"]);
    d.fail(&["session", "discard", "ghost"]);
}

#[test]
fn mount_on_a_non_empty_dir_is_refused() {
    let d = Daemon::start();
    d.ok(&["project", "create", "p"]);
    let mp = d.mountpoint("busy");
    write(mp.join("precious"), "do not hide me\n");
    let line = d.fail(&["session", "mount", "p", "s1", mp.to_str().unwrap()]);
    assert!(
        line.contains(mp.to_str().unwrap()) || line.contains("empty"),
        "the error should say what is wrong with the mountpoint: {line}"
    );
    assert!(!is_mounted(&mp));
    assert_eq!(read(mp.join("precious")), "do not hide me\n");
}

#[test]
fn mount_on_a_missing_dir_or_a_file_is_refused() {
    let d = Daemon::start();
    d.ok(&["project", "create", "p"]);
    let missing = d.root().join("mnt/does-not-exist");
    d.fail(&["session", "mount", "p", "s1", missing.to_str().unwrap()]);
    assert!(!exists(&missing));
    let file = d.root().join("mnt/a-file");
    write(&file, "x");
    d.fail(&["session", "mount", "p", "s2", file.to_str().unwrap()]);
    d.fail(&["session", "mount", "p", "s3", "relative/path"]);
}

#[test]
fn mounting_an_already_mounted_session_again_is_refused() {
    let d = Daemon::start();
    d.ok(&["project", "create", "p"]);
    let m = d.mount("p", "s1");
    let other = d.mountpoint("s1-second");
    d.fail(&["session", "mount", "p", "s1", other.to_str().unwrap()]);
    assert!(!is_mounted(&other));
    assert!(is_mounted(&m));
}

#[test]
fn mounting_onto_an_active_mountpoint_is_refused() {
    let d = Daemon::start();
    d.ok(&["project", "create", "p"]);
    let m = d.mount("p", "s1");
    // The view's root is not empty (it has the version file) — refused.
    d.fail(&["session", "mount", "p", "s2", m.to_str().unwrap()]);
    assert_eq!(generation_of(&m), 1);
}

#[test]
fn reattaching_a_session_under_another_project_is_refused() {
    let d = Daemon::start();
    d.ok(&["project", "create", "p"]);
    d.ok(&["project", "create", "q"]);
    d.mount("p", "s1");
    d.unmount("s1");
    let mp = d.mountpoint("s1");
    d.fail(&["session", "mount", "q", "s1", mp.to_str().unwrap()]);
    assert!(!is_mounted(&mp));
}

#[test]
fn promote_of_a_mounted_session_gives_a_clear_error() {
    let d = Daemon::start();
    d.ok(&["project", "create", "p"]);
    d.mount("p", "s1");
    let line = d.fail(&["promote", "p", "s1"]);
    assert!(
        line.contains("s1") && line.contains("mount"),
        "the error should say s1 is mounted: {line}"
    );
}

#[test]
fn bad_arguments_are_usage_errors() {
    let d = Daemon::start();
    d.ok(&["project", "create", "p"]);
    for args in [
        &["rollback", "p", "not-a-number"][..],
        &["rollback", "p", "-1"][..],
        &["promote", "p", "s", "--if-generation", "x"][..],
        &["gc", "--keep", "many"][..],
        &["no-such-command"][..],
    ] {
        let out = d.run(args);
        assert!(!out.status.success(), "{}", describe(args, &out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.trim().is_empty(), "usage errors must say something");
    }
    // Rollback to the current generation or a missing one.
    d.fail(&["rollback", "p", "0"]);
    d.fail(&["rollback", "p", "2"]);
}

#[test]
fn project_create_from_a_missing_dir_fails_cleanly() {
    let d = Daemon::start();
    let line = d.fail(&["project", "create", "p", "--from", "/nonexistent/golden"]);
    assert!(line.contains("/nonexistent/golden"), "{line}");
    assert!(d.project_names().is_empty(), "a failed import must leave no project");
    let f = d.root().join("src/file");
    write(&f, "x");
    d.fail(&["project", "create", "p", "--from", f.to_str().unwrap()]);
    assert!(d.project_names().is_empty());
}

#[test]
fn malformed_requests_on_the_socket_do_not_crash_the_daemon() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let d = Daemon::start();
    let long_line = format!("{{\"x\":\"{}\"}}\n", "a".repeat(4 << 20));
    let payloads: Vec<Vec<u8>> = vec![
        b"not json\n".to_vec(),
        b"{}\n".to_vec(),
        b"{\"type\":\"no_such_request\"}\n".to_vec(),
        b"[1,2,3]\n".to_vec(),
        vec![0xff, 0xfe, 0x00, b'\n'],
        long_line.into_bytes(),
        b"{\"unterminated\": ".to_vec(),
    ];
    for p in payloads {
        if let Ok(mut s) = UnixStream::connect(d.socket()) {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let _ = s.write_all(&p);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut line = String::new();
            let _ = BufReader::new(&s).read_line(&mut line);
        }
        assert!(
            d.is_running(),
            "the daemon died on a malformed request\n--- daemon log ---\n{}",
            d.log_text()
        );
    }
    d.ok(&["status"]);
    d.ok(&["project", "create", "still-works"]);
}

#[test]
fn the_socket_is_private_to_root() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start();
    let mode = fs::metadata(d.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode is {mode:o}");
    // A non-root uid cannot use it.
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(BIN);
    c.arg("status").env("GOLDENFS_SOCKET", d.socket()).uid(1000).gid(1000);
    let out = output_with_timeout(c, Duration::from_secs(60), "goldenfs status as uid 1000");
    assert_cli_error(&["status (as uid 1000)"], &out);
}

#[test]
fn exit_status_tells_the_kind_of_error() {
    // docs/protocol.md: 1 = the daemon reported an error, 2 = usage error,
    // 3 = the daemon cannot be reached.
    let d = Daemon::start();
    let code = |args: &[&str]| d.run(args).status.code();
    assert_eq!(code(&["generations", "nope"]), Some(1));
    assert_eq!(code(&["rollback", "p", "not-a-number"]), Some(2));
    assert_eq!(code(&["no-such-command"]), Some(2));
    let dir = tempdir("nodaemon-");
    let out = cli(&dir.path().join("none.sock"), &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&["status"], &out));
}

#[test]
fn a_second_daemon_on_the_same_store_or_socket_refuses_to_start() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let other_sock = d.root().join("other.sock");
    for args in [
        // Same store, other socket.
        vec![
            "daemon".to_string(),
            "--state-dir".into(),
            d.state_dir().to_str().unwrap().into(),
            "--socket".into(),
            other_sock.to_str().unwrap().into(),
        ],
        // Same socket, other store.
        vec![
            "daemon".to_string(),
            "--state-dir".into(),
            d.root().join("other-state").to_str().unwrap().into(),
            "--socket".into(),
            d.socket().to_str().unwrap().into(),
        ],
    ] {
        let _ = fs::create_dir_all(d.root().join("other-state"));
        let mut c = Command::new(BIN);
        c.args(&args);
        let out = output_with_timeout(c, Duration::from_secs(60), "second goldenfs daemon");
        assert!(
            !out.status.success(),
            "a second daemon started: goldenfs {}",
            args.join(" ")
        );
        // The first one is unharmed.
        assert!(d.is_running());
        d.ok(&["status"]);
        assert_eq!(read(m.join("a.txt")), "alpha\n");
    }
}

/// Runs `goldenfs --socket S ping` as `uid` (via setpriv) and returns its output.
fn ping_as(d: &Daemon, uid: u32) -> std::process::Output {
    // The socket's directory must be reachable for another uid to be refused by
    // the daemon itself (SO_PEERCRED), not by the filesystem.
    fs::set_permissions(d.root(), fs::Permissions::from_mode(0o755)).unwrap();
    Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
        ])
        .arg(BIN)
        .arg("--socket")
        .arg(d.socket())
        .arg("ping")
        .output()
        .expect("run setpriv (util-linux)")
}

#[test]
fn daemon_refuses_peers_whose_uid_is_not_allowed() {
    let d = Daemon::start_with(&["--allow-uid", "4242"]);
    let refused = ping_as(&d, 4343);
    assert!(!refused.status.success(), "uid 4343 must be refused");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.starts_with("goldenfs: ") && err.lines().count() == 1, "{err}");
    let allowed = ping_as(&d, 4242);
    assert!(
        allowed.status.success(),
        "uid 4242 is allowed: {}",
        String::from_utf8_lossy(&allowed.stderr)
    );
}
