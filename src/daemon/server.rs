//! The control socket: accepting connections, checking peers, framing lines.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::Daemon;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{self, MAX_LINE, Response};

/// Most connections served at once; more get an error reply.
pub const MAX_CONNECTIONS: usize = 128;
/// A connection that sends no complete line for this long is closed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound control socket. Dropping it removes the socket file.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    connections: Arc<AtomicUsize>,
}

impl Server {
    /// Binds `path` (mode 0600, or 0666 when other uids are allowed; every
    /// peer is still checked). Refuses when another daemon answers there;
    /// removes a stale socket file.
    pub fn bind(path: &Path, world_connectable: bool) -> Result<Server> {
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
                        "{} exists and is not a socket; remove it or pass another --socket",
                        path.display()
                    )));
                }
                if UnixStream::connect(path).is_ok() {
                    return Err(Error::busy(format!(
                        "another goldenfs daemon is already answering on {}; stop it first or pass another --socket",
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
        let listener = UnixListener::bind(path).map_err(|e| Error::io(format!("binding {}", path.display()), e))?;
        let server = Server {
            listener,
            path: path.to_path_buf(),
            connections: Arc::new(AtomicUsize::new(0)),
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until `stop` is set; one thread per connection.
    pub fn serve(&self, daemon: Arc<Daemon>, stop: &AtomicBool) {
        let euid = crate::sys::geteuid();
        while !stop.load(Ordering::SeqCst) {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
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
            let n = self.connections.fetch_add(1, Ordering::SeqCst);
            let guard = ConnectionGuard(self.connections.clone());
            if n >= MAX_CONNECTIONS {
                let mut s = stream;
                let _ = s.set_nonblocking(false);
                let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = s.write_all(
                    &Response::failure(&Error::busy(format!(
                        "the daemon is serving {MAX_CONNECTIONS} connections already; retry later"
                    )))
                    .to_line(),
                );
                continue;
            }
            let daemon = daemon.clone();
            let spawned = std::thread::Builder::new().name("goldenfs-conn".into()).spawn(move || {
                let _guard = guard;
                if let Err(e) = serve_connection(&daemon, stream, euid) {
                    log::debug!("connection closed: {e}");
                }
            });
            if let Err(e) = spawned {
                log::error!("cannot start a connection thread: {e}");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct ConnectionGuard(Arc<AtomicUsize>);
impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn send(stream: &mut &UnixStream, resp: &Response) -> std::io::Result<()> {
    stream.write_all(&resp.to_line())
}

/// Serves one connection: peer check, then request lines until EOF.
fn serve_connection(daemon: &Daemon, stream: UnixStream, euid: u32) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut w = &stream;
    let (pid, uid, _gid) = crate::sys::peer_cred(stream.as_fd())?;
    if uid != 0 && uid != euid && !daemon.config.allow_uids.contains(&uid) {
        log::warn!("refused connection from uid {uid} (pid {pid})");
        let e = Error::new(
            ErrorCode::PermissionDenied,
            format!(
                "uid {uid} may not use this goldenfs daemon; run as root or start the daemon with --allow-uid {uid}"
            ),
        );
        return send(&mut w, &Response::failure(&e));
    }
    let mut reader = BufReader::new(&stream);
    loop {
        let line = match read_line(&mut reader, MAX_LINE) {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(()),
            Err(LineError::TooLong) => {
                let e = Error::new(
                    ErrorCode::InvalidRequest,
                    format!("request line longer than {MAX_LINE} bytes; closing the connection"),
                );
                return send(&mut w, &Response::failure(&e));
            }
            Err(LineError::Io(e)) => {
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                    let e = Error::new(
                        ErrorCode::InvalidRequest,
                        format!(
                            "no complete request within {} s; closing the connection",
                            READ_TIMEOUT.as_secs()
                        ),
                    );
                    let _ = send(&mut w, &Response::failure(&e));
                }
                return Err(e);
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let resp = match protocol::parse_request(&line) {
            Ok(req) => {
                log::debug!("uid {uid} pid {pid}: {req:?}");
                daemon.handle(req)
            }
            Err(e) => Response::failure(&e),
        };
        send(&mut w, &resp)?;
    }
}

enum LineError {
    TooLong,
    Io(std::io::Error),
}

/// Reads one `\n`-terminated line of at most `max` bytes (newline excluded).
/// `Ok(None)` at EOF; a last line without newline is returned as a line.
fn read_line(r: &mut impl BufRead, max: usize) -> std::result::Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
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
