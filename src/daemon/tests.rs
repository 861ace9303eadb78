//! Daemon tests: a real server on a temporary socket, in-process.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::server::Server;
use super::*;
use crate::protocol::Response;

struct Running {
    _tmp: tempfile::TempDir,
    socket: PathBuf,
    state: PathBuf,
    daemon: Arc<Daemon>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start() -> Running {
    start_with(server::Limits::default())
}

fn start_with(limits: server::Limits) -> Running {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("run/goldenfs.sock");
    let state = tmp.path().join("state");
    let config = DaemonConfig {
        state_dir: state.clone(),
        socket: socket.clone(),
        allow_uids: vec![],
        threads: 2,
        compact_depth: 0,
        docker_plugin: None,
        metrics: Default::default(),
    };
    let server = Server::bind(&socket, false).unwrap().with_limits(limits);
    let daemon = Arc::new(Daemon::open(config).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let d2 = daemon.clone();
    let thread = std::thread::spawn(move || {
        server.serve(d2.clone(), &s2);
        drop(server);
        d2.shutdown();
    });
    Running {
        _tmp: tmp,
        socket,
        state,
        daemon,
        stop,
        thread: Some(thread),
    }
}

/// Sends raw bytes (one or more lines) and reads `n` reply lines.
fn exchange(stream: &UnixStream, bytes: &[u8], n: usize) -> Vec<Response> {
    (&*stream).write_all(bytes).unwrap();
    let mut r = BufReader::new(stream);
    (0..n)
        .map(|_| {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
        })
        .collect()
}

fn code(r: &Response) -> String {
    serde_json::to_value(r.error.as_ref().unwrap().code)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn ping_answers_with_version_and_pid() {
    let d = start();
    let s = UnixStream::connect(&d.socket).unwrap();
    let r = exchange(&s, b"{\"op\":\"ping\"}\n", 1);
    assert!(r[0].ok);
    assert_eq!(r[0].result.as_ref().unwrap()["pid"], std::process::id());
}

#[test]
fn malformed_unknown_and_mistyped_requests_get_errors_and_the_connection_keeps_serving() {
    let d = start();
    let s = UnixStream::connect(&d.socket).unwrap();
    let r = exchange(
        &s,
        b"{not json\n{\"op\":\"fly\"}\n{\"op\":\"rollback\",\"project\":\"web\",\"generation\":\"two\"}\n{\"op\":\"ping\",\"extra\":true}\n[1,2]\n\xff\xfe\n{\"op\":\"ping\"}\n",
        7,
    );
    for bad in &r[..6] {
        assert!(!bad.ok);
        assert_eq!(code(bad), "invalid_request");
    }
    assert!(r[6].ok);
}

#[test]
fn oversized_line_gets_an_error_and_the_daemon_keeps_serving() {
    let d = start();
    let s = UnixStream::connect(&d.socket).unwrap();
    let big = vec![b'x'; crate::protocol::MAX_LINE + 10];
    // The daemon replies and closes after reading just over the limit;
    // the rest of our write may fail with EPIPE, which is fine.
    let _ = (&s).write_all(&big);
    let mut reply = String::new();
    BufReader::new(&s).read_line(&mut reply).unwrap();
    let r: Response = serde_json::from_str(&reply).unwrap();
    assert_eq!(code(&r), "invalid_request");
    assert!(r.error.unwrap().message.contains("longer than"));
    let mut rest = Vec::new();
    let _ = (&s).read_to_end(&mut rest);
    let s2 = UnixStream::connect(&d.socket).unwrap();
    assert!(exchange(&s2, b"{\"op\":\"ping\"}\n", 1)[0].ok);
}

#[test]
fn store_requests_round_trip_over_the_socket() {
    let d = start();
    let s = UnixStream::connect(&d.socket).unwrap();
    let r = exchange(
        &s,
        b"{\"op\":\"project_create\",\"project\":\"web\"}\n{\"op\":\"project_list\"}\n{\"op\":\"generations\",\"project\":\"web\"}\n{\"op\":\"project_create\",\"project\":\"web\"}\n{\"op\":\"project_create\",\"project\":\"../x\"}\n{\"op\":\"rollback\",\"project\":\"web\",\"generation\":9}\n{\"op\":\"promote\",\"project\":\"web\",\"session\":\"s1\"}\n{\"op\":\"project_create\",\"project\":\"x\",\"move\":true}\n{\"op\":\"gc\"}\n{\"op\":\"status\"}\n{\"op\":\"session_list\"}\n",
        11,
    );
    assert!(r[0].ok, "{:?}", r[0]);
    assert_eq!(r[1].result.as_ref().unwrap()["projects"][0]["project"], "web");
    assert_eq!(r[2].result.as_ref().unwrap()["current"], 1);
    assert_eq!(code(&r[3]), "already_exists");
    assert_eq!(code(&r[4]), "invalid_name");
    assert_eq!(code(&r[5]), "not_found");
    assert_eq!(code(&r[6]), "not_found");
    assert_eq!(code(&r[7]), "invalid_argument");
    assert!(r[8].ok);
    let status = r[9].result.as_ref().unwrap();
    assert_eq!(status["state_dir"], d.state.display().to_string());
    assert!(status["backing_fs"].is_string());
    assert!(r[10].ok);
}

#[test]
fn mount_rejects_bad_mountpoints_without_creating_a_session() {
    let d = start();
    let s = UnixStream::connect(&d.socket).unwrap();
    let tmp = d._tmp.path();
    std::fs::create_dir(tmp.join("full")).unwrap();
    std::fs::write(tmp.join("full/x"), "x").unwrap();
    std::fs::write(tmp.join("file"), "x").unwrap();
    let req = |mp: String| {
        format!("{{\"op\":\"session_mount\",\"project\":\"web\",\"session\":\"s1\",\"mountpoint\":{mp:?}}}\n")
    };
    let mut bytes = b"{\"op\":\"project_create\",\"project\":\"web\"}\n".to_vec();
    for mp in [
        "relative/dir".to_string(),
        tmp.join("missing").display().to_string(),
        tmp.join("full").display().to_string(),
        tmp.join("file").display().to_string(),
        d.state.join("work").display().to_string(),
        tmp.display().to_string(),
    ] {
        bytes.extend(req(mp).bytes());
    }
    bytes.extend(b"{\"op\":\"session_list\"}\n");
    let r = exchange(&s, &bytes, 8);
    assert!(r[0].ok);
    let codes: Vec<_> = r[1..7].iter().map(code).collect();
    assert_eq!(
        codes,
        [
            "invalid_argument",
            "not_found",
            "invalid_argument",
            "invalid_argument",
            "invalid_argument",
            "invalid_argument"
        ]
    );
    assert_eq!(r[7].result.as_ref().unwrap()["sessions"], serde_json::json!([]));
}

#[test]
fn a_mountpoint_that_would_hide_the_control_socket_is_refused() {
    let d = start();
    let s = UnixStream::connect(&d.socket).unwrap();
    let run = d.socket.parent().unwrap();
    // Only the socket is in its directory, and the store is elsewhere.
    let link = d._tmp.path().join("to-run");
    std::os::unix::fs::symlink(run, &link).unwrap();
    let mut bytes = b"{\"op\":\"project_create\",\"project\":\"web\"}\n".to_vec();
    for mp in [run, &link] {
        bytes.extend(
            format!("{{\"op\":\"session_mount\",\"project\":\"web\",\"session\":\"s1\",\"mountpoint\":{mp:?}}}\n")
                .bytes(),
        );
    }
    let r = exchange(&s, &bytes, 3);
    assert!(r[0].ok);
    for reply in &r[1..] {
        assert_eq!(code(reply), "invalid_argument");
        let message = &reply.error.as_ref().unwrap().message;
        assert!(message.contains("would hide the daemon's control socket"), "{message}");
    }
    assert!(d.daemon.store.sessions().is_empty());
}

#[test]
fn a_second_daemon_on_the_same_socket_or_store_is_refused() {
    let d = start();
    let err = Server::bind(&d.socket, false).err().unwrap();
    assert!(err.message.contains("already answering"), "{err}");
    let err = Store::open(&d.state).err().unwrap();
    assert!(err.message.contains("in use by another goldenfs daemon"), "{err}");
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = Server::bind(&path, false).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    drop(server);
    assert!(!path.exists());
}

mod connections;
mod hostile;
