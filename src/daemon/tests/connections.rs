//! The connection limit, eviction and deadlines, on a server with small limits.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::*;

/// Hang guard for one reply (not a timing assertion).
const WATCHDOG: Duration = Duration::from_secs(20);

fn limits(max_connections: usize, line_deadline: Duration, evict_grace: Duration) -> server::Limits {
    server::Limits {
        max_connections,
        line_deadline,
        evict_grace,
    }
}

fn connect(d: &Running) -> UnixStream {
    let s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    s
}

/// The next reply line, or None at end of file / reset.
fn next_reply(r: &mut BufReader<&UnixStream>) -> Option<Response> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => None,
        Ok(_) => Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
        Err(e) => panic!("reading a reply: {e}"),
    }
}

fn ping(s: &UnixStream) -> bool {
    let mut s = s;
    if s.write_all(b"{\"op\":\"ping\"}\n").is_err() {
        return false;
    }
    next_reply(&mut BufReader::new(s)).is_some_and(|r| r.ok)
}

fn message(r: &Response) -> &str {
    &r.error.as_ref().unwrap().message
}

#[test]
fn at_the_cap_the_connection_waiting_longest_is_evicted_for_a_newcomer() {
    let d = start_with(limits(4, Duration::from_secs(60), Duration::ZERO));
    let held: Vec<UnixStream> = (0..4).map(|_| connect(&d)).collect();
    // Each ping restarts that connection's wait: held[0] has waited longest.
    for s in &held {
        assert!(ping(s));
        std::thread::sleep(Duration::from_millis(20));
    }
    let newcomer = connect(&d);
    assert!(ping(&newcomer), "the newcomer must be served at the cap");
    let mut r = BufReader::new(&held[0]);
    let evicted = next_reply(&mut r).expect("the evicted connection gets one line");
    assert_eq!(code(&evicted), "busy");
    assert!(message(&evicted).contains("limit of 4 connections"), "{evicted:?}");
    assert!(next_reply(&mut r).is_none(), "and is closed");
    for s in &held[1..] {
        assert!(ping(s), "the other connections keep being served");
    }
}

#[test]
fn a_request_sent_before_eviction_is_never_run() {
    let d = start_with(limits(1, Duration::from_secs(60), Duration::ZERO));
    let first = connect(&d);
    assert!(ping(&first));
    // A complete request without its newline: at end of file the daemon
    // would take it as the last line, but eviction must not run it.
    (&first)
        .write_all(b"{\"op\":\"project_create\",\"project\":\"evicted\"}")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let newcomer = connect(&d);
    assert!(ping(&newcomer));
    let r = next_reply(&mut BufReader::new(&first)).expect("an eviction line");
    assert_eq!(code(&r), "busy", "{r:?}");
    let projects = d.daemon.store.list_projects().unwrap();
    assert!(projects.is_empty(), "the evicted request ran: {projects:?}");
}

#[test]
fn a_client_that_does_not_read_its_replies_is_evicted_for_a_newcomer() {
    let d = start_with(limits(1, Duration::from_secs(60), Duration::ZERO));
    let greedy = connect(&d);
    let g2 = greedy.try_clone().unwrap();
    // Pipelines requests without reading: the daemon blocks writing replies.
    let writer = std::thread::spawn(move || {
        let mut g2 = &g2;
        for _ in 0..200_000 {
            if g2.write_all(b"{\"op\":\"status\"}\n").is_err() {
                return true;
            }
        }
        false
    });
    std::thread::sleep(Duration::from_millis(300));
    let newcomer = connect(&d);
    assert!(ping(&newcomer), "a slow reader must not hold the only slot");
    assert!(
        writer.join().unwrap(),
        "the evicted client's writes fail once the daemon closed it"
    );
}

#[test]
fn at_the_cap_with_every_connection_running_a_request_a_newcomer_gets_busy() {
    let d = start_with(limits(2, Duration::from_secs(60), Duration::ZERO));
    d.daemon
        .store
        .create_project("p", crate::store::ImportSource::Empty)
        .unwrap();
    d.daemon.store.open_session("p", "s").unwrap();
    // Both connections' handlers wait for the session's slot, held here.
    let slot = d.daemon.registry.slot("s");
    let guard = slot.lock();
    let running: Vec<UnixStream> = (0..2).map(|_| connect(&d)).collect();
    for s in &running {
        (&*s)
            .write_all(b"{\"op\":\"session_discard\",\"session\":\"s\"}\n")
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let newcomer = connect(&d);
    let r = next_reply(&mut BufReader::new(&newcomer)).expect("a busy line");
    assert_eq!(code(&r), "busy");
    assert!(message(&r).contains("running 2 requests"), "{r:?}");
    drop(guard);
    let replies: Vec<Response> = running
        .iter()
        .map(|s| next_reply(&mut BufReader::new(s)).expect("a reply once the slot is free"))
        .collect();
    assert_eq!(replies.iter().filter(|r| r.ok).count(), 1, "{replies:?}");
    assert!(ping(&connect(&d)));
}

#[test]
fn a_request_line_must_be_complete_within_the_deadline_however_slowly_it_is_sent() {
    let d = start_with(limits(8, Duration::from_secs(1), Duration::from_secs(60)));
    // A byte every 100 ms (each read well within any per-read timeout), or
    // blank lines, or nothing at all: each is closed after 1 s.
    for (what, prefix, drip) in [
        ("dribbled line", &b"{\"op\":"[..], &b" "[..]),
        ("blank lines", b"", b"\n"),
        ("idle connection", b"", b""),
    ] {
        let s = connect(&d);
        (&s).write_all(prefix).unwrap();
        let start = Instant::now();
        let mut closed = false;
        while start.elapsed() < Duration::from_secs(15) {
            if !drip.is_empty() && (&s).write_all(drip).is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            s.set_nonblocking(true).unwrap();
            let mut probe = [0u8; 1];
            let got = std::io::Read::read(&mut &s, &mut probe);
            s.set_nonblocking(false).unwrap();
            if !matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                closed = true;
                break;
            }
        }
        assert!(closed, "{what}: the daemon kept the connection open for 15 s");
        let s2 = connect(&d);
        assert!(ping(&s2), "{what}: the daemon keeps serving");
    }
    // The reply says why.
    let s = connect(&d);
    let r = next_reply(&mut BufReader::new(&s)).expect("a deadline line");
    assert_eq!(code(&r), "invalid_request");
    assert!(message(&r).contains("within 1 s"), "{r:?}");
}

#[test]
fn failed_mounts_do_not_leave_a_registry_slot_per_session_name() {
    let d = start();
    let s = connect(&d);
    let mut bytes = b"{\"op\":\"project_create\",\"project\":\"p\"}\n".to_vec();
    for i in 0..500 {
        bytes.extend(
            format!(
                "{{\"op\":\"session_mount\",\"project\":\"p\",\"session\":\"s{i}\",\"mountpoint\":\"/nonexistent/{i}\"}}\n"
            )
            .bytes(),
        );
    }
    let r = exchange(&s, &bytes, 501);
    assert!(r[0].ok);
    assert!(r[1..].iter().all(|r| code(r) == "not_found"));
    let slots = d.daemon.registry.all_slots();
    assert!(slots.is_empty(), "{} slots left behind", slots.len());
}
