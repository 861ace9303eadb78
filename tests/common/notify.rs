//! A stand-in for systemd's notification socket (`NOTIFY_SOCKET`): a datagram
//! socket on a path or an abstract name that records every message with the
//! pid of its sender (`SCM_CREDENTIALS`, what `NotifyAccess=main` checks).

use std::collections::BTreeMap;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// One datagram: its `KEY=VALUE` lines and the sender's pid.
#[derive(Clone, Debug)]
pub struct Notification {
    pub fields: BTreeMap<String, String>,
    pub sender_pid: Option<u32>,
}

impl Notification {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    pub fn is_ready(&self) -> bool {
        self.get("READY") == Some("1")
    }
}

/// A fake service manager's notification socket.
pub struct NotifyListener {
    socket: UnixDatagram,
    env_value: String,
    _dir: Option<tempfile::TempDir>,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl NotifyListener {
    /// Bound on a path in a fresh temporary directory.
    pub fn on_path() -> NotifyListener {
        let dir = super::tempdir("notify-");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Self::with(socket, path.display().to_string(), Some(dir))
    }

    /// Bound on an abstract name (`NOTIFY_SOCKET=@name`).
    pub fn on_abstract_name() -> NotifyListener {
        let name = format!(
            "goldenfs-test-notify-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket");
        Self::with(socket, format!("@{name}"), None)
    }

    fn with(socket: UnixDatagram, env_value: String, dir: Option<tempfile::TempDir>) -> NotifyListener {
        rustix::net::sockopt::set_socket_passcred(&socket, true).expect("SO_PASSCRED");
        NotifyListener {
            socket,
            env_value,
            _dir: dir,
        }
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn env_value(&self) -> &str {
        &self.env_value
    }

    /// The next message, or `None` if none arrives within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Notification> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("set the read timeout");
        let mut buf = [0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            &self.socket,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::empty(),
        );
        let msg = match got {
            Ok(m) => m,
            Err(rustix::io::Errno::AGAIN) => return None,
            Err(e) => panic!("receiving on the notify socket: {e}"),
        };
        let sender_pid = control.drain().find_map(|m| match m {
            RecvAncillaryMessage::ScmCredentials(c) => Some(c.pid.as_raw_nonzero().get() as u32),
            _ => None,
        });
        let text = String::from_utf8_lossy(&buf[..msg.bytes]).to_string();
        let fields = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Notification { fields, sender_pid })
    }

    /// Every message until one has `key` set (that one last); panics if none
    /// does within `timeout` (a hang guard).
    pub fn wait_for(&self, key: &str, timeout: Duration) -> Vec<Notification> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Some(n) => {
                    let done = n.get(key).is_some();
                    got.push(n);
                    if done {
                        return got;
                    }
                }
                None => panic!("no notification with {key}= within {timeout:?}; got {got:?}"),
            }
        }
    }

    /// The messages already queued (none is waited for).
    pub fn drain(&self) -> Vec<Notification> {
        std::iter::from_fn(|| self.recv(Duration::from_millis(1))).collect()
    }
}
