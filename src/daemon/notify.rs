//! systemd's service notification protocol (sd_notify(3)), for `Type=notify`
//! units: newline-separated `KEY=VALUE` assignments sent as one datagram to
//! the `AF_UNIX` socket named by `NOTIFY_SOCKET` (a path, or `@name` for an
//! abstract socket). Hand-written on std's `UnixDatagram` rather than a crate:
//! the protocol is one `sendto` per message, and the daemon needs none of
//! the rest (fd store, watchdog helpers, vsock).
//!
//! Sending is best effort: a failure is logged and the daemon goes on (under
//! systemd a lost `READY=1` fails the start by timeout, which says enough;
//! outside systemd nobody is listening).

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// How long a send may wait for room in the receiver's queue: systemd reads
/// promptly, and a stuck receiver must not hold up start-up or shutdown.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Where notifications go; does nothing when the daemon was not started by
/// a service manager (no `NOTIFY_SOCKET`).
pub struct Notifier {
    target: Option<Target>,
}

struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `NOTIFY_SOCKET` as given, for log messages.
    name: String,
}

impl Notifier {
    /// The notifier for `NOTIFY_SOCKET`. An unusable value is logged and
    /// notifications are then dropped.
    pub fn from_env() -> Notifier {
        let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { target: None };
        };
        match Self::to(&value) {
            Ok(n) => n,
            Err(e) => {
                log::warn!(
                    "NOTIFY_SOCKET={}: {e}; not notifying the service manager",
                    value.display()
                );
                Notifier { target: None }
            }
        }
    }

    /// A notifier sending to `value` (`/path` or `@abstract-name`).
    pub fn to(value: &OsStr) -> io::Result<Notifier> {
        let bytes = value.as_bytes();
        let addr = match bytes.split_first() {
            Some((b'@', name)) => SocketAddr::from_abstract_name(name)?,
            Some((b'/', _)) => SocketAddr::from_pathname(value)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not an absolute path or an @abstract name",
                ));
            }
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        Ok(Notifier {
            target: Some(Target {
                socket,
                addr,
                name: value.display().to_string(),
            }),
        })
    }

    /// Sends `state` (`KEY=VALUE` lines); a failure is logged.
    pub fn send(&self, state: &str) {
        let Some(t) = &self.target else { return };
        match t.socket.send_to_addr(state.as_bytes(), &t.addr) {
            Ok(_) => log::debug!("notified {}: {}", t.name, state.replace('\n', " ")),
            Err(e) => log::warn!(
                "cannot notify the service manager at NOTIFY_SOCKET={} ({e}): {}",
                t.name,
                state.replace('\n', " ")
            ),
        }
    }

    /// `STATUS=text`, on one line (a newline in a path or an error message
    /// must not add assignments such as `READY=1`).
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", one_line(text)));
    }

    /// `READY=1`: the socket is bound and the store open (recovery done).
    pub fn ready(&self, socket: &std::path::Path, projects: usize, sessions: usize) {
        self.send(&format!(
            "READY=1\nMAINPID={}\nSTATUS=listening on {}, {projects} projects, {sessions} sessions",
            std::process::id(),
            one_line(&socket.display().to_string())
        ));
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener on a temporary path and a notifier sending to it.
    fn pair() -> (tempfile::TempDir, UnixDatagram, Notifier) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.as_os_str()).unwrap();
        (dir, listener, n)
    }

    fn receive(listener: &UnixDatagram) -> String {
        listener.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 1024];
        let n = listener.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let (_dir, listener, n) = pair();
        n.send("STATUS=hello");
        assert_eq!(receive(&listener), "STATUS=hello");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("goldenfs-unit-{}", std::process::id());
        let listener = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        let n = Notifier::to(OsStr::new(&format!("@{name}"))).unwrap();
        n.ready(std::path::Path::new("/run/x.sock"), 2, 3);
        assert_eq!(
            receive(&listener),
            format!(
                "READY=1\nMAINPID={}\nSTATUS=listening on /run/x.sock, 2 projects, 3 sessions",
                std::process::id()
            )
        );
    }

    #[test]
    fn a_newline_in_a_status_cannot_add_an_assignment() {
        let (_dir, listener, n) = pair();
        n.status("cannot start: /srv/x\nREADY=1: not a directory");
        assert_eq!(
            receive(&listener),
            "STATUS=cannot start: /srv/x READY=1: not a directory"
        );
    }

    #[test]
    fn refuses_relative_empty_and_vsock_targets() {
        for bad in ["", "notify.sock", "vsock:2:1234"] {
            assert!(Notifier::to(OsStr::new(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
