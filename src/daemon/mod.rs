//! The daemon: owns the store and every mount, serves the control socket.
//!
//! # Lock order
//! Locks are only ever taken in this order (a later one may be taken while
//! holding an earlier one, never the reverse):
//! 0. a Docker volume's mutex ([`docker_plugin`]) — held across a whole
//!    plugin operation on that volume, which calls the handlers below;
//! 1. a session's [`registry::Slot`] mutex — held across that session's
//!    mount/unmount syscalls, promotion or discard;
//! 2. the store's locks, in the order documented in [`crate::store`]
//!    (maintenance → per-project promote mutex → per-project current-pointer
//!    `RwLock` → store maps);
//! 3. the registry's maps (`slots`, `mounts`, `views`) — leaves, held
//!    briefly, never across a syscall that can block on a mount;
//! 4. metrics: the control-request counts ([`metrics::Metrics`]) and the
//!    size cache (`sizes::Sizes`) — leaves, the cache never held across a
//!    tree walk. The FUSE data path takes no lock for metrics (atomics).
//!
//! Two slots are never held at once, except by `project delete --force`,
//! which holds none while it discards each session in turn.

pub mod docker_plugin;
mod handlers;
pub mod metrics;
pub mod metrics_http;
pub mod mountpoint;
pub mod notify;
pub mod registry;
pub mod server;
mod sizes;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::protocol::{Request, Response};
use crate::store::Store;
use registry::Registry;

/// Default store location.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/goldenfs";
/// Default control socket.
pub const DEFAULT_SOCKET: &str = "/run/goldenfs/goldenfs.sock";
/// How long shutdown retries busy views before detaching them lazily.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the daemon was started.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// Uids allowed besides root and the daemon's own euid.
    pub allow_uids: Vec<u32>,
    /// FUSE worker threads per view.
    pub threads: usize,
    /// Compact a project in the background when a promotion leaves its
    /// current generation deeper than this many layers (0: never).
    pub compact_depth: usize,
    /// Serve the Docker volume plugin (`--docker-plugin`).
    pub docker_plugin: Option<docker_plugin::DockerPluginConfig>,
    /// Where to serve Prometheus metrics (nowhere by default).
    pub metrics: metrics_http::EndpointConfig,
}

/// Default `--compact-depth`.
pub const DEFAULT_COMPACT_DEPTH: usize = 16;

/// The daemon's state, shared by every connection thread.
pub struct Daemon {
    /// Shared with background compactions.
    pub store: Arc<Store>,
    pub registry: Registry,
    pub config: DaemonConfig,
    started_at: String,
    shutting_down: AtomicBool,
    pub metrics: metrics::Metrics,
}

impl Daemon {
    /// Opens the store (running crash recovery) and detaches stale FUSE
    /// mounts left at the sessions' last mountpoints by a crashed daemon.
    pub fn open(config: DaemonConfig) -> Result<Daemon> {
        if config.threads == 0 {
            return Err(Error::invalid("--threads must be at least 1"));
        }
        let store = Arc::new(Store::open(&config.state_dir)?);
        for s in store.sessions() {
            if let Some(mp) = &s.mountpoint
                && let Err(e) = mountpoint::detach_if_stale(mp)
            {
                log::warn!("session {}: {e}", s.session);
            }
        }
        log::info!(
            "store {} ({}): {} projects, {} sessions",
            config.state_dir.display(),
            store.fs_type(),
            store.list_projects().map(|p| p.len()).unwrap_or(0),
            store.sessions().len()
        );
        Ok(Daemon {
            store,
            registry: Registry::default(),
            config,
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            shutting_down: AtomicBool::new(false),
            metrics: metrics::Metrics::default(),
        })
    }

    /// Answers one request. Never panics on bad input; a bug that panics in a
    /// handler becomes an `internal` error reply.
    pub fn handle(&self, req: Request) -> Response {
        let op_name = req.op_name();
        let reply = self.handle_inner(req);
        self.metrics.count_request(op_name, &reply);
        reply
    }

    fn handle_inner(&self, req: Request) -> Response {
        let op = format!("{req:?}");
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handlers::dispatch(self, req))) {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                log::debug!("request {op} failed: {e}");
                Response::failure(&e)
            }
            Err(_) => {
                log::error!("BUG: handler panicked on {op}");
                Response::failure(&Error::internal(
                    "the daemon hit a bug handling this request (see its log); the request may be partially done",
                ))
            }
        }
    }

    /// Starts a background compaction of `project` if its current generation
    /// has more than `--compact-depth` layers and none is running. Errors
    /// (including losing a race to a promotion) are logged.
    pub fn maybe_compact(&self, project: &str, depth: usize) {
        let limit = self.config.compact_depth;
        if limit == 0 || depth <= limit || self.is_shutting_down() {
            return;
        }
        if self.store.running_compactions().iter().any(|c| c.project == project) {
            log::info!("{project} is {depth} layers deep; a compaction of it is already running");
            return;
        }
        let store = self.store.clone();
        let project = project.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("compact-{project}"))
            .spawn(move || {
                log::info!("{project} is {depth} layers deep (--compact-depth {limit}): compacting in the background");
                if let Err(e) = store.compact(&project) {
                    log::warn!("background compaction of {project} did not publish: {e}");
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a background compaction: {e}");
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Stops new mounts and unmounts every view: a normal unmount first,
    /// retried for [`SHUTDOWN_GRACE`], then a lazy detach of the busy ones.
    /// Uppers stay on disk; sessions can be mounted again after a restart.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let mut pending: Vec<_> = self.registry.all_slots();
        loop {
            let mut busy = Vec::new();
            for (name, slot) in pending {
                let mut g = slot.lock();
                let Some(view) = g.view.take() else { continue };
                let mp = view.mountpoint().display().to_string();
                let lazy = Instant::now() >= deadline;
                match view.unmount(lazy) {
                    Ok(()) if lazy => {
                        log::warn!("session {name}: {mp} was still busy; detached it lazily");
                        self.registry.release_mountpoint(&name);
                    }
                    Ok(()) => {
                        log::info!("session {name}: unmounted {mp}");
                        self.registry.release_mountpoint(&name);
                    }
                    Err((view, e)) => {
                        if lazy {
                            log::error!("session {name}: cannot detach {mp}: {e}");
                        } else {
                            g.view = Some(view);
                            drop(g);
                            busy.push((name, slot));
                        }
                    }
                }
            }
            if busy.is_empty() {
                break;
            }
            if Instant::now() < deadline {
                log::info!(
                    "waiting for busy views to be released: {}",
                    busy.iter().map(|b| b.0.as_str()).collect::<Vec<_>>().join(", ")
                );
                std::thread::sleep(Duration::from_millis(250));
            }
            pending = busy;
        }
    }
}

/// glibc allocator settings the daemon runs with, so that memory freed when
/// the kernel forgets a walked view's inodes goes back to the system:
/// - no per-thread caches of freed blocks: with tens of FUSE threads they
///   pinned a page of every cached block (16 MiB stayed resident after 4
///   views were walked and forgotten; 2 MiB without them);
/// - a fixed mmap threshold: glibc otherwise raises it after the first large
///   free, and then every FUSE thread's 16 MiB request buffer (fuser's) is
///   carved from, and zeroed in, the heap, where it stays resident (20 MiB
///   per idle session);
/// - two arenas, shared by all threads.
const MALLOC_TUNABLES: [&str; 3] = [
    "glibc.malloc.tcache_count=0",
    "glibc.malloc.mmap_threshold=262144",
    "glibc.malloc.arena_max=2",
];

/// glibc reads its tunables only at program start, so the daemon re-executes
/// itself once with [`MALLOC_TUNABLES`] added to `GLIBC_TUNABLES` (same pid,
/// same arguments); a tunable the environment already sets is kept. Returns
/// only if that is not needed or the exec failed.
pub fn reexec_with_allocator_tunables() {
    use std::os::unix::process::CommandExt;
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let missing: Vec<&str> = MALLOC_TUNABLES
        .into_iter()
        .filter(|t| t.split_once('=').is_some_and(|(key, _)| !current.contains(key)))
        .collect();
    if missing.is_empty() {
        return;
    }
    let tunables = std::iter::once(current.as_str())
        .filter(|c| !c.is_empty())
        .chain(missing)
        .collect::<Vec<_>>()
        .join(":");
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", &tunables)
        .exec();
    eprintln!(
        "goldenfs: warning: cannot re-execute with GLIBC_TUNABLES={tunables} ({err}); memory use may stay higher"
    );
}

/// Runs the daemon in the foreground until SIGINT or SIGTERM. Under systemd
/// (`NOTIFY_SOCKET`, `Type=notify`) it reports `READY=1` once the socket is
/// bound and the store is open, and `STOPPING=1` when shutdown begins. Only
/// this, the final process, notifies: the allocator re-exec happens before
/// and keeps the pid.
pub fn run(config: DaemonConfig) -> Result<()> {
    let notifier = notify::Notifier::from_env();
    match crate::sys::raise_nofile_limit() {
        Ok(n) => log::debug!("open-file limit raised to {n}"),
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = (|| -> Result<(server::Server, Daemon)> {
        config.metrics.listen_addr()?; // refuse a bad address before anything starts
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // A second signal during shutdown exits at once.
            signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
                .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
                .map_err(|e| Error::io("installing signal handlers", e))?;
        }
        let server = server::Server::bind(&config.socket, !config.allow_uids.is_empty())?;
        crate::fault::pause("daemon:before-store-open");
        Ok((server, Daemon::open(config)?))
    })();
    let started = started.and_then(|(server, daemon)| {
        let daemon = Arc::new(daemon);
        let endpoint = metrics_http::start(&daemon.config.metrics, &daemon)?;
        let plugin = match &daemon.config.docker_plugin {
            Some(cfg) => Some(docker_plugin::PluginServer::start(daemon.clone(), cfg)?),
            None => None,
        };
        Ok((server, daemon, endpoint, plugin))
    });
    let (server, daemon, endpoint, plugin) = match started {
        Ok(x) => x,
        Err(e) => {
            notifier.status(&format!("cannot start: {e}"));
            return Err(e);
        }
    };
    if let Some(cfg) = &daemon.config.docker_plugin {
        log::info!(
            "Docker volume plugin on {} (volumes mounted in {})",
            cfg.socket.display(),
            cfg.volume_dir.display()
        );
    }
    log::info!(
        "goldenfs {} listening on {} (pid {})",
        env!("CARGO_PKG_VERSION"),
        daemon.config.socket.display(),
        std::process::id()
    );
    notifier.ready(
        &daemon.config.socket,
        daemon.store.list_projects().map(|p| p.len()).unwrap_or(0),
        daemon.store.sessions().len(),
    );
    server.serve(daemon.clone(), &stop);
    log::info!("shutting down: unmounting every session (uppers are kept)");
    notifier.send(&format!(
        "STOPPING=1\nSTATUS=shutting down: unmounting {} mounted sessions (uppers are kept)",
        daemon.registry.mountpoints().len()
    ));
    drop(server);
    if let Some(plugin) = plugin {
        plugin.stop();
    }
    daemon.shutdown();
    drop(endpoint);
    notifier.status("stopped: every session unmounted");
    log::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests;
