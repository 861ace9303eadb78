//! The CLI's side of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::Failure;
use crate::protocol::{Request, Response};

/// A client of the control socket: one request, one reply per call.
pub(crate) struct Client<'a> {
    pub socket: &'a Path,
    /// Read and write limit; `None` waits as long as the daemon works
    /// (imports can take minutes).
    pub timeout: Option<Duration>,
}

impl Client<'_> {
    /// Sends one request and waits for its reply.
    pub(crate) fn call<T: DeserializeOwned>(&self, req: &Request) -> Result<T, Failure> {
        let unreachable = |e: std::io::Error| {
            Failure(
                3,
                format!(
                    "cannot reach the daemon at {}: {} — is 'goldenfs daemon' running?",
                    self.socket.display(),
                    io_reason(&e)
                ),
            )
        };
        let stream = UnixStream::connect(self.socket).map_err(unreachable)?;
        stream
            .set_read_timeout(self.timeout)
            .and_then(|()| stream.set_write_timeout(self.timeout))
            .map_err(unreachable)?;
        let mut line = serde_json::to_vec(req).map_err(|e| Failure(1, format!("cannot encode the request: {e}")))?;
        line.push(b'\n');
        (&stream).write_all(&line).map_err(unreachable)?;
        let mut reply = String::new();
        BufReader::new(&stream).read_line(&mut reply).map_err(unreachable)?;
        if reply.is_empty() {
            return Err(Failure(
                1,
                format!(
                    "the daemon at {} closed the connection without a reply; see its log",
                    self.socket.display()
                ),
            ));
        }
        let resp: Response = serde_json::from_str(&reply).map_err(|e| {
            Failure(
                1,
                format!("unreadable reply from the daemon ({e}); are client and daemon the same version?"),
            )
        })?;
        Ok(resp.into_result()?)
    }
}

/// "connection refused" rather than "Connection refused (os error 111)".
pub(super) fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}
