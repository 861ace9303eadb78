//! The Docker volume plugin: Docker's legacy (unmanaged) plugin protocol,
//! JSON over HTTP on a Unix socket that dockerd discovers in
//! `/run/docker/plugins/`. Served by the daemon itself on a few threads of
//! its own; every operation goes through the daemon's request handlers
//! ([`Daemon::handle`]) or its store, like a CLI request (see
//! [`volumes`] and `docs/docker.md`).
//!
//! Errors that concern a volume are HTTP 200 with a non-empty `Err` (dockerd
//! shows it to the user); a malformed request is 400, an unknown endpoint
//! 404, another method than POST 405, a body over [`MAX_BODY`] 413, all with
//! an `Err` saying what to do.

mod volumes;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Daemon;
use crate::error::{Error, ErrorCode, Result};
use volumes::Volumes;

/// Default `--docker-plugin` socket: where dockerd looks for plugins.
pub const DEFAULT_SOCKET: &str = "/run/docker/plugins/goldenfs.sock";
/// Default `--docker-volume-dir`.
pub const DEFAULT_VOLUME_DIR: &str = "/run/goldenfs/volumes";
/// The plugin protocol's content type.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";
/// Largest request body read (dockerd's are a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;
/// Threads answering plugin requests (a mount or promotion blocks one).
const WORKERS: usize = 4;
/// How often an idle worker looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// How long shutdown waits for requests in progress.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// `--docker-plugin` and `--docker-volume-dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerPluginConfig {
    pub socket: PathBuf,
    /// Volumes are mounted at `<volume_dir>/<NAME>`.
    pub volume_dir: PathBuf,
}

/// The running plugin: its socket and worker threads. [`PluginServer::stop`]
/// (or dropping it) stops serving and removes the socket.
pub struct PluginServer {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    socket: PathBuf,
}

impl PluginServer {
    /// Binds the plugin socket (mode 0600: dockerd runs as root; a stale
    /// socket file is replaced) and starts the workers.
    pub fn start(daemon: Arc<Daemon>, cfg: &DockerPluginConfig) -> Result<PluginServer> {
        let volumes = Arc::new(Volumes::new(daemon, &cfg.volume_dir)?);
        let path = &cfg.socket;
        let listener = super::server::bind_private_socket(path, "--docker-plugin=SOCKET")?;
        let server = tiny_http::Server::from_listener(listener, None).map_err(|e| {
            let _ = std::fs::remove_file(path);
            Error::new(ErrorCode::Io, format!("serving {}: {e}", path.display()))
        })?;
        let mut plugin = PluginServer {
            server: Arc::new(server),
            stop: Arc::new(AtomicBool::new(false)),
            workers: Vec::new(),
            socket: path.clone(),
        };
        for i in 0..WORKERS {
            let (server, stop, volumes) = (plugin.server.clone(), plugin.stop.clone(), volumes.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("docker-plugin-{i}"))
                .spawn(move || worker(&server, &stop, &volumes));
            match spawned {
                Ok(t) => plugin.workers.push(t),
                Err(e) => return Err(Error::io("starting the Docker plugin threads", e)),
            }
        }
        Ok(plugin)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops taking requests, waits (at most [`STOP_GRACE`]) for those in
    /// progress, and removes the socket.
    pub fn stop(mut self) {
        self.stop_workers();
    }

    fn stop_workers(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + STOP_GRACE;
        for t in std::mem::take(&mut self.workers) {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                log::warn!("a Docker plugin request is still running after {STOP_GRACE:?}; not waiting for it");
            }
        }
    }
}

impl Drop for PluginServer {
    fn drop(&mut self) {
        self.stop_workers();
        // tiny_http removes the socket when the last reference to its server
        // goes; a worker left running may hold one.
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn worker(server: &tiny_http::Server, stop: &AtomicBool, volumes: &Volumes) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(POLL) {
            Ok(Some(rq)) => serve(volumes, rq),
            Ok(None) => {}
            Err(e) => {
                log::error!("Docker plugin socket: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// An HTTP status and a JSON body.
struct Reply(u16, Value);

fn err_reply(status: u16, message: impl Into<String>) -> Reply {
    Reply(status, json!({ "Err": message.into() }))
}

fn serve(volumes: &Volumes, mut rq: tiny_http::Request) {
    let url = rq.url().split('?').next().unwrap_or_default().to_string();
    let started = Instant::now();
    let reply = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| route(volumes, &mut rq, &url))) {
        Ok(r) => r,
        Err(_) => {
            log::error!("BUG: the Docker plugin panicked on {url}");
            err_reply(
                500,
                "the goldenfs daemon hit a bug handling this request (see its log); the request may be partially done",
            )
        }
    };
    let Reply(status, body) = reply;
    match body.get("Err").and_then(Value::as_str) {
        Some(e) if !e.is_empty() => log::info!("docker plugin {url}: {status} {e}"),
        _ => log::debug!(
            "docker plugin {url}: {status} in {:.3} s",
            started.elapsed().as_secs_f64()
        ),
    }
    let mut resp = tiny_http::Response::from_data(body.to_string()).with_status_code(status);
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], CONTENT_TYPE.as_bytes()) {
        resp = resp.with_header(h);
    }
    if let Err(e) = rq.respond(resp) {
        log::debug!("docker plugin {url}: the client left before the reply: {e}");
    }
}

/// The endpoints of a volume driver.
const ENDPOINTS: &str = "Plugin.Activate, VolumeDriver.{Create,Remove,Mount,Unmount,Path,Get,List,Capabilities}";

fn route(volumes: &Volumes, rq: &mut tiny_http::Request, url: &str) -> Reply {
    let endpoint = url.trim_start_matches('/');
    let known = matches!(
        endpoint,
        "Plugin.Activate"
            | "VolumeDriver.Create"
            | "VolumeDriver.Remove"
            | "VolumeDriver.Mount"
            | "VolumeDriver.Unmount"
            | "VolumeDriver.Path"
            | "VolumeDriver.Get"
            | "VolumeDriver.List"
            | "VolumeDriver.Capabilities"
    );
    if !known {
        return err_reply(
            404,
            format!("unknown endpoint {url:?}: the goldenfs Docker plugin serves {ENDPOINTS} (POST, JSON bodies)"),
        );
    }
    if *rq.method() != tiny_http::Method::Post {
        return err_reply(405, format!("{endpoint} takes POST, not {}", rq.method()));
    }
    let mut body = Vec::new();
    if let Err(e) = rq.as_reader().take(MAX_BODY as u64 + 1).read_to_end(&mut body) {
        return err_reply(400, format!("reading the body of {endpoint}: {e}"));
    }
    if body.len() > MAX_BODY {
        return err_reply(
            413,
            format!("the body of {endpoint} is larger than {MAX_BODY} bytes; send a small JSON object"),
        );
    }
    match endpoint {
        "Plugin.Activate" => Reply(200, json!({ "Implements": ["VolumeDriver"] })),
        "VolumeDriver.Capabilities" => Reply(200, json!({ "Capabilities": { "Scope": "local" } })),
        "VolumeDriver.List" => answer(volumes.list().map(|v| json!({ "Volumes": v }))),
        _ => match parse::<NameReq>(endpoint, &body) {
            Err(r) => r,
            Ok(req) => answer(dispatch(volumes, endpoint, req)),
        },
    }
}

fn dispatch(volumes: &Volumes, endpoint: &str, req: NameReq) -> Result<Value> {
    let id = req.id.unwrap_or_default();
    match endpoint {
        "VolumeDriver.Create" => volumes
            .create(&req.name, req.opts.unwrap_or_default())
            .map(|()| json!({})),
        "VolumeDriver.Remove" => volumes.remove(&req.name).map(|()| json!({})),
        "VolumeDriver.Mount" => volumes.mount(&req.name, &id).map(|mp| json!({ "Mountpoint": mp })),
        "VolumeDriver.Unmount" => volumes.unmount(&req.name, &id).map(|()| json!({})),
        "VolumeDriver.Path" => volumes.path(&req.name).map(|mp| json!({ "Mountpoint": mp })),
        _ => volumes.get(&req.name).map(|v| json!({ "Volume": v })),
    }
}

/// A successful answer gets `"Err": ""`; a failure is HTTP 200 with the
/// message in `Err`.
fn answer(r: Result<Value>) -> Reply {
    match r {
        Ok(mut v) => {
            if let Some(obj) = v.as_object_mut() {
                obj.insert("Err".into(), Value::String(String::new()));
            }
            Reply(200, v)
        }
        Err(e) => err_reply(200, e.message),
    }
}

/// The body of every volume request: `Name`, and `Opts` (Create) or `ID`
/// (Mount, Unmount). Other fields are ignored (newer dockerd may add some).
#[derive(Deserialize)]
struct NameReq {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(rename = "Opts", default)]
    opts: Option<std::collections::BTreeMap<String, String>>,
}

fn parse<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> std::result::Result<T, Reply> {
    let example = match endpoint {
        "VolumeDriver.Create" => r#"{"Name":"v1","Opts":{"project":"web"}}"#,
        "VolumeDriver.Mount" | "VolumeDriver.Unmount" => r#"{"Name":"v1","ID":"<container-id>"}"#,
        _ => r#"{"Name":"v1"}"#,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(err_reply(
            400,
            format!("{endpoint} needs a JSON body such as {example}; it was empty"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        err_reply(
            400,
            format!("malformed {endpoint} request ({e}); send a JSON body such as {example}"),
        )
    })
}
