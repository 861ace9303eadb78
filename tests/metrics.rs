//! Metrics (issue 7): the Prometheus endpoint and `status --json` report what
//! a session really did — copy-ups, whiteouts, open files, bytes, requests —
//! and a promotion's new generation; the exposition is valid text format.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::prom::{self, Sample};
use common::*;
use serde_json::Value;

/// A daemon serving metrics on a Unix socket, and that socket.
fn daemon_with_metrics() -> (tempfile::TempDir, PathBuf, Daemon) {
    let dir = tempdir("metrics-");
    let sock = dir.path().join("metrics.sock");
    let d = Daemon::start_with(&["--metrics-socket", sock.to_str().unwrap()]);
    (dir, sock, d)
}

/// Scrapes `/metrics` and validates the exposition.
fn scrape(sock: &Path) -> Vec<Sample> {
    let r = prom::get_unix(sock, "/metrics");
    assert_eq!(r.status, 200, "{}\n{}", r.headers, r.body);
    prom::parse(&r.body)
}

/// Scrapes until `ok` holds for the samples (the kernel sends RELEASE after
/// close(2) returns, sizes are measured in the background); panics after 30 s.
fn scrape_until(sock: &Path, what: &str, ok: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = scrape(sock);
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen within 30 s; last scrape:\n{s:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn session_value(s: &[Sample], name: &str, session: &str) -> Option<f64> {
    prom::value(s, name, &[("project", "p"), ("session", session)])
}

const LOWER_FILES: [&str; 5] = ["a.txt", "b.txt", "c.txt", "dir/d.txt", "dir/e.txt"];
const LOWER_SIZE: usize = 10_000;
const NEW_SIZE: usize = 200_000;

#[test]
fn endpoint_and_status_count_copy_ups_whiteouts_open_files_bytes_and_promotions() {
    let (_dir, sock, d) = daemon_with_metrics();
    d.create_project_with("p", |src| {
        fs::create_dir(src.join("dir")).unwrap();
        for f in LOWER_FILES {
            write(src.join(f), vec![b'x'; LOWER_SIZE]);
        }
    });
    let mnt = d.mount("p", "s1");

    // 3 copy-ups (appends to lower files), 2 whiteouts, one new file.
    for f in &LOWER_FILES[..3] {
        let mut file = OpenOptions::new().append(true).open(mnt.join(f)).unwrap();
        file.write_all(b"appended").unwrap();
    }
    for f in &LOWER_FILES[3..] {
        fs::remove_file(mnt.join(f)).unwrap();
    }
    write(mnt.join("new.bin"), vec![7u8; NEW_SIZE]);

    let s = scrape_until(&sock, "upper bytes measured and every file released", |s| {
        session_value(s, "goldenfs_session_upper_bytes", "s1").is_some()
            && session_value(s, "goldenfs_session_open_files", "s1") == Some(0.0)
    });
    let v = |name| session_value(&s, name, "s1").unwrap_or_else(|| panic!("no {name} for s1"));
    assert!(v("goldenfs_session_copy_ups_total") >= 3.0);
    assert!(v("goldenfs_session_copy_up_bytes_total") >= (3 * LOWER_SIZE) as f64);
    assert!(v("goldenfs_session_whiteouts_total") >= 2.0);
    assert!(v("goldenfs_session_upper_bytes") >= NEW_SIZE as f64);
    assert_eq!(v("goldenfs_session_mounted"), 1.0);
    assert_eq!(v("goldenfs_session_base_generation"), 1.0);
    let op = |op: &str, name: &str| {
        prom::value(&s, name, &[("session", "s1"), ("op", op)]).unwrap_or_else(|| panic!("no {name} for {op}"))
    };
    assert!(op("unlink", "goldenfs_fuse_requests_total") >= 2.0);
    assert!(op("create", "goldenfs_fuse_requests_total") >= 1.0);
    // Writes may never reach the daemon (passthrough); the opens do.
    assert!(op("open", "goldenfs_fuse_requests_total") >= 3.0);
    let opens = |mode| prom::value(&s, "goldenfs_session_opens_total", &[("session", "s1"), ("mode", mode)]);
    assert!(opens("passthrough").unwrap() + opens("cached").unwrap() >= 4.0);
    assert!(op("lookup", "goldenfs_fuse_request_duration_seconds_count") >= 1.0);
    assert_eq!(
        op("unlink", "goldenfs_fuse_requests_total"),
        op("unlink", "goldenfs_fuse_request_duration_seconds_count")
    );
    assert_eq!(prom::value(&s, "goldenfs_mounted_views", &[]), Some(1.0));
    assert_eq!(
        prom::value(&s, "goldenfs_project_current_generation", &[("project", "p")]),
        Some(1.0)
    );
    assert_eq!(
        prom::value(&s, "goldenfs_project_layer_depth", &[("project", "p")]),
        Some(1.0)
    );
    assert_eq!(
        prom::value(&s, "goldenfs_project_sessions", &[("project", "p")]),
        Some(1.0)
    );

    // A failed lookup is an error of its operation.
    let errors_before = op("lookup", "goldenfs_fuse_request_errors_total");
    assert!(!mnt.join("no-such-file").exists());
    let s = scrape(&sock);
    let errors = prom::value(
        &s,
        "goldenfs_fuse_request_errors_total",
        &[("session", "s1"), ("op", "lookup")],
    );
    assert!(errors.unwrap() > errors_before, "{errors:?} after {errors_before}");

    // status --json has the same numbers (nothing touched the view since).
    let st = d.json(&["status"]);
    let s1 = find_named(&st["sessions"], &["session"], "s1").expect("s1 in status");
    let m = &s1["metrics"];
    for (key, name) in [
        ("copy_ups", "goldenfs_session_copy_ups_total"),
        ("copy_up_bytes", "goldenfs_session_copy_up_bytes_total"),
        ("whiteouts", "goldenfs_session_whiteouts_total"),
        ("open_files", "goldenfs_session_open_files"),
    ] {
        assert_eq!(m[key].as_f64(), session_value(&s, name, "s1"), "{key}: {m}");
    }
    assert!(m["upper_bytes"].as_u64().unwrap() >= NEW_SIZE as u64, "{m}");
    assert!(m["requests"].as_u64().unwrap() > 0 && m["ops"].as_array().is_some_and(|o| !o.is_empty()));
    let p = find_named(&st["projects"], &["project"], "p").expect("p in status");
    assert_eq!(
        (p["current_generation"].as_u64(), p["layer_depth"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        p["metrics"].as_object().is_some_and(|o| o.contains_key("bytes")),
        "{p:?}"
    );
    assert_eq!(st["metrics"]["mounted_views"], 1, "{}", st["metrics"]);
    let human = d.ok(&["status"]);
    assert!(human.contains("COPY-UPS") && human.contains("DEPTH"), "{human}");

    // A file held open is one open file; closed, none.
    let held = fs::File::open(mnt.join("a.txt")).unwrap();
    let s = scrape_until(&sock, "one open file", |s| {
        session_value(s, "goldenfs_session_open_files", "s1") == Some(1.0)
    });
    assert!(session_value(&s, "goldenfs_session_open_files", "s1") == Some(1.0));
    drop(held);
    scrape_until(&sock, "no open file after close", |s| {
        session_value(s, "goldenfs_session_open_files", "s1") == Some(0.0)
    });

    // Promotion: generation 2, two layers; the session's series are gone.
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    d.fail(&["promote", "p", "no-such-session"]);
    let s = scrape_until(&sock, "the project's bytes measured", |s| {
        prom::value(s, "goldenfs_project_bytes", &[("project", "p")]).is_some()
    });
    assert_eq!(
        prom::value(&s, "goldenfs_project_current_generation", &[("project", "p")]),
        Some(2.0)
    );
    assert_eq!(
        prom::value(&s, "goldenfs_project_layer_depth", &[("project", "p")]),
        Some(2.0)
    );
    assert_eq!(
        prom::value(&s, "goldenfs_project_generations", &[("project", "p")]),
        Some(2.0)
    );
    assert_eq!(prom::value(&s, "goldenfs_mounted_views", &[]), Some(0.0));
    assert!(session_value(&s, "goldenfs_session_copy_ups_total", "s1").is_none());
    let project_bytes = prom::value(&s, "goldenfs_project_bytes", &[("project", "p")]).unwrap();
    assert!(project_bytes >= (NEW_SIZE + 3 * LOWER_SIZE) as f64, "{project_bytes}");
    assert!(prom::value(&s, "goldenfs_store_bytes", &[]).unwrap() >= project_bytes);
    let control = |op, result| prom::value(&s, "goldenfs_control_requests_total", &[("op", op), ("result", result)]);
    assert_eq!(control("promote", "ok"), Some(1.0));
    assert_eq!(control("promote", "not_found"), Some(1.0));
    assert!(control("session_mount", "ok") == Some(1.0) && control("status", "ok").unwrap() >= 2.0);
}

#[test]
fn endpoint_serves_text_format_at_metrics_and_404_elsewhere() {
    let (_dir, sock, d) = daemon_with_metrics();
    d.create_project_with("p", |src| write(src.join("f"), "f"));
    let r = prom::get_unix(&sock, "/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        r.headers
    );
    let s = prom::parse(&r.body);
    assert_eq!(prom::value(&s, "goldenfs_build_info", &[]), Some(1.0));
    assert!(prom::value(&s, "goldenfs_uptime_seconds", &[]).is_some());
    for path in ["/", "/metric", "/metrics/x", "/status"] {
        assert_eq!(prom::get_unix(&sock, path).status, 404, "{path}");
    }
    let st = fs::metadata(&sock).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&st.permissions()) & 0o777,
        0o600
    );
    d.stop();
    assert!(!sock.exists(), "the metrics socket is removed at shutdown");
}

#[test]
fn metrics_listen_serves_on_loopback_and_refuses_other_addresses() {
    let dir = tempdir("metrics-listen-");
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    for addr in ["0.0.0.0:9000", "[::]:9000", "10.1.2.3:9000"] {
        let mut c = Command::new(BIN);
        c.args([
            "daemon",
            "--state-dir",
            state.to_str().unwrap(),
            "--metrics-listen",
            addr,
        ]);
        c.arg("--socket").arg(dir.path().join("g.sock"));
        let out = output_with_timeout(c, Duration::from_secs(60), "goldenfs daemon --metrics-listen");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{addr} accepted: {err}");
        assert!(err.contains("only loopback") && err.contains(addr), "{addr}: {err}");
        assert!(!dir.path().join("g.sock").exists(), "nothing started for {addr}");
    }

    let d = Daemon::start_with(&["--metrics-listen", "127.0.0.1:0"]);
    let log = d.log_text();
    let port = log
        .split("metrics on http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no metrics address logged:\n{log}"));
    let tcp = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    let r = prom::get(tcp, "/metrics");
    assert_eq!(r.status, 200);
    let s = prom::parse(&r.body);
    let v: Value = d.json(&["status"]);
    assert_eq!(
        prom::value(&s, "goldenfs_mounted_views", &[]),
        v["metrics"]["mounted_views"].as_f64()
    );
}

#[test]
fn scrapes_stay_valid_and_counters_only_grow_while_a_view_is_busy() {
    let (_dir, sock, d) = daemon_with_metrics();
    d.create_project_with("p", |src| {
        for i in 0..50 {
            write(src.join(format!("f{i}")), vec![b'x'; 1000]);
        }
    });
    let mnt = d.mount("p", "s1");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (mnt, stop) = (mnt.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let f = mnt.join(format!("new-{t}-{i}"));
                    write(&f, b"data");
                    let _ = fs::read(mnt.join(format!("f{}", i % 50)));
                    fs::remove_file(&f).unwrap();
                    i += 1;
                }
                i
            })
        })
        .collect();
    let mut last = 0.0;
    for _ in 0..40 {
        let s = scrape(&sock); // validates every exposition
        let total = session_value(&s, "goldenfs_session_fuse_requests_total", "s1").unwrap_or(0.0);
        assert!(total >= last, "requests went from {last} to {total}");
        last = total;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let done: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let s = scrape(&sock);
    let creates = prom::value(
        &s,
        "goldenfs_fuse_requests_total",
        &[("session", "s1"), ("op", "create")],
    );
    assert!(
        creates.unwrap_or(0.0) >= done as f64,
        "{creates:?} creates for {done} files"
    );
}
