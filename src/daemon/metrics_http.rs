//! The opt-in Prometheus endpoint: `GET /metrics` over HTTP on a Unix
//! socket (`--metrics-socket`) and/or a loopback TCP port
//! (`--metrics-listen`), served by `tiny_http` on its own thread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::Daemon;
use crate::error::{Error, Result};
use crate::metrics::expo::CONTENT_TYPE;

/// Where to serve `/metrics` (nowhere by default).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct EndpointConfig {
    /// Serve Prometheus metrics (GET /metrics) over HTTP on this Unix socket (mode 0600)
    #[arg(long, value_name = "PATH")]
    pub metrics_socket: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on this loopback address, e.g. 127.0.0.1:9464
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<String>,
}

impl EndpointConfig {
    /// The TCP address to listen on, refused unless it is a loopback one.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>> {
        let Some(raw) = &self.metrics_listen else {
            return Ok(None);
        };
        let addr: SocketAddr = raw.parse().map_err(|_| {
            Error::invalid(format!(
                "--metrics-listen {raw}: not an IP address and port; use e.g. 127.0.0.1:9464 or [::1]:9464"
            ))
        })?;
        if !addr.ip().is_loopback() {
            return Err(Error::invalid(format!(
                "--metrics-listen {raw}: only loopback addresses (127.0.0.0/8, ::1) are accepted: the endpoint has \
                 no authentication and names every project and session; scrape it locally, through --metrics-socket, \
                 or behind a proxy that authenticates"
            )));
        }
        Ok(Some(addr))
    }
}

/// The running endpoint; dropping it stops serving and removes the socket.
pub struct Endpoint {
    servers: Vec<Arc<tiny_http::Server>>,
    socket: Option<PathBuf>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        for s in &self.servers {
            s.unblock();
        }
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Starts serving `/metrics` as configured (nothing if nothing is).
pub fn start(cfg: &EndpointConfig, daemon: &Arc<Daemon>) -> Result<Endpoint> {
    let mut endpoint = Endpoint {
        servers: Vec::new(),
        socket: None,
    };
    if let Some(path) = &cfg.metrics_socket {
        let listener = super::server::bind_private_socket(path, "--metrics-socket")?;
        endpoint.socket = Some(path.clone());
        let server = tiny_http::Server::from_listener(listener, None).map_err(|e| {
            Error::io(
                format!("serving metrics on {}", path.display()),
                std::io::Error::other(e),
            )
        })?;
        endpoint.servers.push(Arc::new(server));
        log::info!("metrics on http+unix://{}/metrics", path.display());
    }
    if let Some(addr) = cfg.listen_addr()? {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| Error::io(format!("listening for metrics on {addr}"), std::io::Error::other(e)))?;
        // The bound address: port 0 picks a free one.
        let bound = server.server_addr().to_ip().unwrap_or(addr);
        endpoint.servers.push(Arc::new(server));
        log::info!("metrics on http://{bound}/metrics");
    }
    for server in &endpoint.servers {
        let (server, daemon) = (server.clone(), daemon.clone());
        std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                for rq in server.incoming_requests() {
                    respond(&daemon, rq);
                }
            })
            .map_err(|e| Error::io("starting the metrics thread", e))?;
    }
    Ok(endpoint)
}

fn respond(daemon: &Daemon, rq: tiny_http::Request) {
    use tiny_http::{Header, Method, Response};
    let path = rq.url().split('?').next().unwrap_or("");
    let text = |code: u16, body: String| {
        let mut r = Response::from_string(body).with_status_code(code);
        if let Ok(h) = Header::from_bytes("Content-Type", "text/plain; charset=utf-8") {
            r = r.with_header(h);
        }
        r
    };
    let reply = match (rq.method(), path) {
        // A bug must not end the endpoint's thread: it becomes a 500.
        (Method::Get, "/metrics") => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::metrics::collect(daemon).map(|snap| super::metrics::render(&snap))
        }))
        .unwrap_or_else(|_| Err(Error::internal("the daemon hit a bug collecting metrics (see its log)")))
        {
            Ok(body) => {
                let mut r = Response::from_string(body);
                if let Ok(h) = Header::from_bytes("Content-Type", CONTENT_TYPE) {
                    r = r.with_header(h);
                }
                r
            }
            Err(e) => text(500, format!("cannot collect metrics: {e}\n")),
        },
        (_, "/metrics") => text(405, "only GET is served\n".into()),
        _ => text(404, "not found; metrics are at /metrics\n".into()),
    };
    if let Err(e) = rq.respond(reply) {
        log::debug!("metrics reply not sent: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(a: &str) -> Result<Option<SocketAddr>> {
        EndpointConfig {
            metrics_socket: None,
            metrics_listen: Some(a.into()),
        }
        .listen_addr()
    }

    #[test]
    fn metrics_listen_accepts_only_loopback_addresses() {
        assert!(listen("127.0.0.1:9464").unwrap().is_some());
        assert!(listen("[::1]:9464").unwrap().is_some());
        for bad in ["0.0.0.0:9000", "192.168.1.2:9000", "[::]:9000"] {
            let e = listen(bad).unwrap_err();
            assert!(e.message.contains("only loopback"), "{bad}: {e}");
        }
        assert!(listen("localhost").unwrap_err().message.contains("not an IP address"));
    }
}
