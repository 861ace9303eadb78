//! The control socket: accepting connections, checking peers, framing lines.
//!
//! One thread per admitted connection, at most [`Limits::max_connections`]
//! of them. The accepting thread checks each peer (`SO_PEERCRED`) before it
//! gets a slot, so a refused uid never holds one or gets a thread.
//!
//! A connection is *waiting* while the daemon reads its next request line or
//! writes a reply to it (the client's turn), and *handling* while a handler
//! runs. A request line must be complete within [`Limits::line_deadline`] of
//! the previous reply (or of the connection's start), and a reply must be
//! taken within the same time: a total, not a per-read timeout, so a client
//! dribbling bytes is closed at that point however slowly it sends.
//!
//! When every slot is taken, a newcomer evicts the connection that has been
//! waiting longest, once that one has waited [`Limits::evict_grace`] (so a
//! client that sent its request at once is read before it can be evicted):
//! idle and slow clients cannot lock others out. The evicted client gets a
//! `busy` line. Only when every slot is handling a request is the newcomer
//! refused (`busy`). One mutex guards the connection table; it is taken at
//! accept time and when a connection changes phase, never across I/O.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::Daemon;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{self, MAX_LINE, Response};

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 128;
/// Time a client has to send a complete request line, and to take a reply.
pub const LINE_DEADLINE: Duration = Duration::from_secs(30);
/// How long a connection waits before a newcomer may evict it.
pub const EVICT_GRACE: Duration = Duration::from_millis(250);
/// A repeated warning (refused peer, eviction) is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The server's limits (the constants above; tests use smaller ones).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub line_deadline: Duration,
    pub evict_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            line_deadline: LINE_DEADLINE,
            evict_grace: EVICT_GRACE,
        }
    }
}

/// A bound control socket. Dropping it removes the socket file.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    conns: Arc<Conns>,
}

impl Server {
    /// Binds `path` (mode 0600, or 0666 when other uids are allowed; every
    /// peer is still checked). Refuses when another daemon answers there;
    /// removes a stale socket file.
    pub fn bind(path: &Path, world_connectable: bool) -> Result<Server> {
        prepare_socket_path(path, "--socket")?;
        let listener = UnixListener::bind(path).map_err(|e| Error::io(format!("binding {}", path.display()), e))?;
        let server = Server {
            listener,
            path: path.to_path_buf(),
            conns: Conns::new(Limits::default()),
        };
        let mode = if world_connectable { 0o666 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
        server
            .listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("configuring the socket", e))?;
        Ok(server)
    }

    /// The same server with other limits (before it serves).
    pub fn with_limits(mut self, limits: Limits) -> Server {
        self.conns = Conns::new(limits);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until `stop` is set; one thread per connection.
    pub fn serve(&self, daemon: Arc<Daemon>, stop: &AtomicBool) {
        let euid = crate::sys::geteuid();
        let mut notes = Notes::default();
        while !stop.load(Ordering::SeqCst) {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.conns.reap(&mut self.conns.table.lock());
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("accept on {}: {e}", self.path.display());
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            self.admit(&daemon, stream, euid, stop, &mut notes);
        }
    }

    /// Checks the peer, takes a slot (evicting if need be) and starts the
    /// connection's thread; or replies why not and drops the connection.
    fn admit(&self, daemon: &Arc<Daemon>, stream: UnixStream, euid: u32, stop: &AtomicBool, notes: &mut Notes) {
        let (pid, uid, _gid) = match crate::sys::peer_cred(stream.as_fd()) {
            Ok(c) => c,
            Err(e) => {
                log::debug!("dropping a connection whose peer is unknown: {e}");
                return;
            }
        };
        if uid != 0 && uid != euid && !daemon.config.allow_uids.contains(&uid) {
            if let Some(more) = notes.refused.note() {
                log::warn!("refused connection from uid {uid} (pid {pid}){}", more_since(more));
            }
            return reply_now(
                &stream,
                &Error::new(
                    ErrorCode::PermissionDenied,
                    format!(
                        "uid {uid} may not use this goldenfs daemon; run as root or start the daemon with --allow-uid {uid}"
                    ),
                ),
            );
        }
        let stream = Arc::new(stream);
        let max = self.conns.limits.max_connections;
        let slot = match self.conns.claim(&stream, stop) {
            Claim::Admitted { slot, evicted } => {
                if evicted && let Some(more) = notes.evicted.note() {
                    log::warn!(
                        "{max} connections open: closed the one waiting longest for a request to admit a new one{}",
                        more_since(more)
                    );
                }
                slot
            }
            Claim::Full => {
                if let Some(more) = notes.full.note() {
                    log::warn!(
                        "all {max} connections are running requests: refused a new one{}",
                        more_since(more)
                    );
                }
                return reply_now(
                    &stream,
                    &Error::busy(format!(
                        "the daemon is running {max} requests already (its connection limit); retry in a moment"
                    )),
                );
            }
            Claim::Stopping => {
                return reply_now(
                    &stream,
                    &Error::busy("the daemon is shutting down; retry once it is restarted"),
                );
            }
        };
        let daemon = daemon.clone();
        let limits = self.conns.limits;
        let id = slot.id;
        let spawned = std::thread::Builder::new().name("goldenfs-conn".into()).spawn({
            let stream = stream.clone();
            move || {
                if let Err(e) = serve_connection(&daemon, &stream, &slot, limits, (uid, pid)) {
                    log::debug!("connection of uid {uid} pid {pid} closed: {e}");
                }
                // The slot goes last: nothing of the connection is left.
                drop((daemon, stream));
                drop(slot);
            }
        });
        match spawned {
            Ok(thread) => self.conns.started(id, thread),
            Err(e) => {
                log::error!("cannot start a connection thread: {e}");
                reply_now(
                    &stream,
                    &Error::busy(format!("the daemon cannot start a thread ({e}); retry in a moment")),
                );
            }
        }
    }
}

/// Makes `path` ready for a new socket: creates its directory, refuses when
/// something answers there (another daemon), removes a stale socket file.
/// `flag` names the option that chose the path, for the message.
pub(super) fn prepare_socket_path(path: &Path, flag: &str) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating the socket directory {}", dir.display()), e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            use std::os::unix::fs::FileTypeExt;
            if !m.file_type().is_socket() {
                return Err(Error::exists(format!(
                    "{} exists and is not a socket; remove it or pass another {flag}",
                    path.display()
                )));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(Error::busy(format!(
                    "another process (a goldenfs daemon?) is already answering on {}; stop it first or pass another {flag}",
                    path.display()
                )));
            }
            log::info!("removing stale socket {}", path.display());
            std::fs::remove_file(path)
                .map_err(|e| Error::io(format!("removing stale socket {}", path.display()), e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("inspecting {}", path.display()), e)),
    }
    Ok(())
}

/// A socket only root may use (mode 0600) for a side service of the daemon
/// (the Docker plugin, the metrics endpoint), bound at `path` once
/// [`prepare_socket_path`] made it ready.
pub(super) fn bind_private_socket(path: &Path, flag: &str) -> Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    prepare_socket_path(path, flag)?;
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| Error::io(format!("binding {} ({flag})", path.display()), e))?;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        let _ = std::fs::remove_file(path);
        return Err(Error::io(format!("chmod 0600 {} ({flag})", path.display()), e));
    }
    Ok(listener)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn more_since(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more like it since the last such message)")
    }
}

/// Rate limits for the accepting thread's warnings, so a flood of
/// connections cannot flood the log.
#[derive(Default)]
struct Notes {
    refused: Throttle,
    evicted: Throttle,
    full: Throttle,
}

/// Says when a repeated event should be logged: at most once per
/// [`LOG_EVERY`], with the count of events not logged since.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    unlogged: u64,
}

impl Throttle {
    fn note(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|l| now.duration_since(l) < LOG_EVERY) {
            self.unlogged += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// Replies from the accepting thread without ever blocking it: the send
/// buffer of a fresh connection has room for one short line.
fn reply_now(stream: &UnixStream, e: &Error) {
    let _ = stream.set_nonblocking(true);
    let _ = (&*stream).write(&Response::failure(e).to_line());
}

/// What a connection is doing; `since` is when the client's turn began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request line.
    Reading(Instant),
    /// Writing a reply the client has not taken yet.
    Writing(Instant),
    /// A handler runs: never evicted.
    Handling,
    /// Evicted; its thread is on its way out and still holds the slot.
    Evicted,
}

struct Conn {
    stream: Arc<UnixStream>,
    phase: Phase,
    /// Set by the accepting thread once the thread is started.
    thread: Option<JoinHandle<()>>,
}

/// A slot is taken from [`Conns::claim`] until its thread has been joined:
/// a connection's entry in `conns`, then its thread in `exited`.
#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    /// Threads whose connection ended, to be joined by the accepting thread.
    exited: Vec<JoinHandle<()>>,
}

/// The connection table shared by the accepting thread and the connections.
struct Conns {
    table: Mutex<Table>,
    /// Notified when a connection ends (a slot is free).
    freed: Condvar,
    limits: Limits,
}

enum Claim {
    Admitted {
        slot: Slot,
        evicted: bool,
    },
    /// Every slot is handling a request.
    Full,
    Stopping,
}

impl Conns {
    fn new(limits: Limits) -> Arc<Conns> {
        Arc::new(Conns {
            table: Mutex::new(Table::default()),
            freed: Condvar::new(),
            limits,
        })
    }

    /// Takes a slot for `stream`. At the limit, evicts the connection that
    /// has waited longest once it has waited `evict_grace` and takes its
    /// slot when its thread has left; waits meanwhile (while the newcomer's
    /// request, if any, sits in its socket). `Full` if every slot is
    /// handling a request.
    fn claim(self: &Arc<Self>, stream: &Arc<UnixStream>, stop: &AtomicBool) -> Claim {
        let mut evicted = false;
        let mut t = self.table.lock();
        loop {
            self.reap(&mut t);
            if t.conns.len() + t.exited.len() < self.limits.max_connections {
                let id = t.next_id;
                t.next_id += 1;
                t.conns.insert(
                    id,
                    Conn {
                        stream: stream.clone(),
                        phase: Phase::Reading(Instant::now()),
                        thread: None,
                    },
                );
                let slot = Slot {
                    conns: self.clone(),
                    id,
                };
                return Claim::Admitted { slot, evicted };
            }
            if stop.load(Ordering::SeqCst) {
                return Claim::Stopping;
            }
            // One eviction per newcomer: wait for the evicted thread to leave.
            let wait = if evicted || t.conns.values().any(|c| c.phase == Phase::Evicted) {
                Duration::from_millis(100)
            } else {
                let oldest = t
                    .conns
                    .values_mut()
                    .filter_map(|c| match c.phase {
                        Phase::Reading(since) | Phase::Writing(since) => Some((since, c)),
                        _ => None,
                    })
                    .min_by_key(|(since, _)| *since);
                let Some((since, conn)) = oldest else {
                    return Claim::Full;
                };
                let waited = since.elapsed();
                if waited >= self.limits.evict_grace {
                    evict(conn);
                    evicted = true;
                    Duration::from_millis(100)
                } else {
                    self.limits.evict_grace - waited
                }
            };
            self.freed.wait_for(&mut t, wait);
        }
    }
}

impl Conns {
    /// Records the thread serving connection `id`.
    fn started(&self, id: u64, thread: JoinHandle<()>) {
        let mut t = self.table.lock();
        match t.conns.get_mut(&id) {
            Some(c) => c.thread = Some(thread),
            None => t.exited.push(thread),
        }
    }

    /// Joins the threads whose connections ended (without holding the
    /// table: they are past their last use of it), freeing their slots.
    fn reap(&self, t: &mut MutexGuard<'_, Table>) {
        let exited = std::mem::take(&mut t.exited);
        if !exited.is_empty() {
            MutexGuard::unlocked(t, || {
                for thread in exited {
                    let _ = thread.join();
                }
            });
        }
    }
}

/// Wakes the connection's thread: a reader sees end-of-file (and then
/// replies that it was evicted), a writer gets `EPIPE`.
fn evict(conn: &mut Conn) {
    let how = match conn.phase {
        Phase::Writing(_) => Shutdown::Both,
        _ => Shutdown::Read,
    };
    conn.phase = Phase::Evicted;
    let _ = conn.stream.shutdown(how);
}

/// A connection's slot in the table, freed when dropped.
struct Slot {
    conns: Arc<Conns>,
    id: u64,
}

impl Slot {
    /// Moves to `phase`; false if the connection was evicted.
    fn enter(&self, phase: Phase) -> bool {
        let mut t = self.conns.table.lock();
        match t.conns.get_mut(&self.id) {
            Some(c) if c.phase != Phase::Evicted => {
                c.phase = phase;
                true
            }
            _ => false,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.conns.table.lock();
        if let Some(thread) = t.conns.remove(&self.id).and_then(|c| c.thread) {
            t.exited.push(thread);
        }
        drop(t);
        self.conns.freed.notify_all();
    }
}

/// Serves one admitted connection: request lines until EOF, an error that
/// closes it, or eviction.
fn serve_connection(
    daemon: &Daemon,
    stream: &UnixStream,
    slot: &Slot,
    limits: Limits,
    (uid, pid): (u32, u32),
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut reader = BufReader::new(stream);
    let mut waiting_since = Instant::now();
    loop {
        let read = read_request(&mut reader, MAX_LINE, waiting_since + limits.line_deadline);
        // Whatever was read, an evicted connection is not served.
        if !slot.enter(Phase::Handling) {
            let e = Error::busy(format!(
                "the daemon reached its limit of {} connections and closed this one, which had waited longest for a request ({:.1} s); reconnect and send each request as one line at once",
                limits.max_connections,
                waiting_since.elapsed().as_secs_f64()
            ));
            reply_now(stream, &e);
            return Ok(());
        }
        let (resp, close) = match read {
            Ok(None) => return Ok(()),
            Ok(Some(line)) => match protocol::parse_request(&line) {
                Ok(req) => {
                    log::debug!("uid {uid} pid {pid}: {req:?}");
                    (daemon.handle(req), false)
                }
                Err(e) => (Response::failure(&e), false),
            },
            Err(LineError::TooLong) => (
                Response::failure(&Error::new(
                    ErrorCode::InvalidRequest,
                    format!("request line longer than {MAX_LINE} bytes; closing the connection"),
                )),
                true,
            ),
            Err(LineError::Deadline) => (
                Response::failure(&Error::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "no complete request line within {} s; closing the connection — send each request as one line at once",
                        limits.line_deadline.as_secs_f64()
                    ),
                )),
                true,
            ),
            Err(LineError::Io(e)) => return Err(e),
        };
        waiting_since = Instant::now();
        if !slot.enter(Phase::Writing(waiting_since)) {
            return Ok(());
        }
        write_all_by(stream, &resp.to_line(), waiting_since + limits.line_deadline)?;
        waiting_since = Instant::now();
        if close || !slot.enter(Phase::Reading(waiting_since)) {
            return Ok(());
        }
    }
}

/// Writes all of `buf` by `deadline` (a slow reader cannot hold a thread longer).
fn write_all_by(stream: &UnixStream, mut buf: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match (&*stream).write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

enum LineError {
    TooLong,
    Deadline,
    Io(std::io::Error),
}

/// The next non-blank request line (see [`read_line`]); blank lines do not
/// restart the deadline.
fn read_request(
    r: &mut BufReader<&UnixStream>,
    max: usize,
    deadline: Instant,
) -> std::result::Result<Option<Vec<u8>>, LineError> {
    loop {
        match read_line(r, max, deadline)? {
            Some(line) if line.iter().all(u8::is_ascii_whitespace) => continue,
            other => return Ok(other),
        }
    }
}

/// Reads one `\n`-terminated line of at most `max` bytes (newline excluded)
/// by `deadline`; never buffers more than `max` bytes of it. `Ok(None)` at
/// EOF; a last line without newline is returned as a line.
fn read_line(
    r: &mut BufReader<&UnixStream>,
    max: usize,
    deadline: Instant,
) -> std::result::Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    loop {
        if r.buffer().is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LineError::Deadline);
            }
            r.get_ref().set_read_timeout(Some(left)).map_err(LineError::Io)?;
        }
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(LineError::Deadline);
            }
            Err(e) => return Err(LineError::Io(e)),
        };
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > max {
            return Err(LineError::TooLong);
        }
        line.extend_from_slice(chunk);
        let used = done.unwrap_or(chunk.len());
        r.consume(used);
        if done.is_some() {
            return Ok(Some(line));
        }
    }
}
