//! What the daemon reports about itself, its store and its views: the
//! `metrics` objects of `status` and the Prometheus exposition served by
//! [`super::metrics_http`]. Both are built from one [`Snapshot`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::Daemon;
use super::sizes::Sizes;
use crate::error::Result;
use crate::metrics::expo::{Exposition, Kind};
use crate::metrics::{ViewSnapshot, bucket_seconds};
use crate::protocol::*;

/// Daemon-wide counters, and the size cache.
pub struct Metrics {
    started: Instant,
    /// Control requests by op and result (`ok` or an error code): rare
    /// enough for a lock. A leaf lock.
    control: Mutex<BTreeMap<(&'static str, String), u64>>,
    pub sizes: Arc<Sizes>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            control: Mutex::default(),
            sizes: Arc::default(),
        }
    }
}

impl Metrics {
    /// Counts a handled control request.
    pub fn count_request(&self, op: &'static str, reply: &Response) {
        let result = match &reply.error {
            None => "ok".to_string(),
            Some(e) => serde_json::to_value(e.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "error".into()),
        };
        *self.control.lock().entry((op, result)).or_default() += 1;
    }
}

/// One session in a [`Snapshot`].
pub struct SessionSnapshot {
    pub info: SessionInfo,
    /// Counters of its view since it was last mounted (none if it was not
    /// mounted since the daemon started).
    pub view: Option<ViewSnapshot>,
    pub upper: Option<(u64, std::time::Duration)>,
}

/// Everything reported, read at one time.
pub struct Snapshot {
    pub projects: Vec<ProjectStatus>,
    pub sessions: Vec<SessionSnapshot>,
    pub daemon: DaemonMetrics,
}

/// Reads projects, sessions, views and the size cache (queuing the trees it
/// lacks). Walks nothing itself.
pub fn collect(d: &Daemon) -> Result<Snapshot> {
    let layout = d.store.layout();
    let sizes = &d.metrics.sizes;
    let layer_ids: HashSet<String> = std::fs::read_dir(layout.layers())
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    let mut layer_bytes = 0u64;
    let mut known = BTreeMap::new();
    for id in &layer_ids {
        if let Some(b) = sizes.layer(id, || layout.layer(id)) {
            layer_bytes += b;
            known.insert(id.as_str(), b);
        }
    }
    let projects = d
        .store
        .list_projects()?
        .into_iter()
        .map(|info| {
            let bytes = d
                .store
                .generation(&info.project, info.current_generation)
                .ok()
                .and_then(|g| g.layers.iter().map(|l| known.get(l.as_str())).sum());
            ProjectStatus {
                info,
                metrics: ProjectMetrics { bytes },
            }
        })
        .collect();
    let views = d.registry.views();
    let sessions: Vec<SessionSnapshot> = super::handlers::session_list(d)
        .into_iter()
        .map(|info| SessionSnapshot {
            view: views.get(&info.session).map(|v| v.snapshot()),
            upper: sizes.upper(&info.session, || layout.session_upper(&info.session)),
            info,
        })
        .collect();
    let names: HashSet<String> = sessions.iter().map(|s| s.info.session.clone()).collect();
    sizes.retain(&layer_ids, &names);
    d.registry.retain_views(&names);
    let upper_bytes = sessions.iter().filter_map(|s| s.upper.map(|u| u.0)).sum();
    let control = d.metrics.control.lock().clone();
    let daemon = DaemonMetrics {
        uptime_seconds: d.metrics.started.elapsed().as_secs_f64(),
        mounted_views: sessions.iter().filter(|s| s.info.mounted).count() as u64,
        store_bytes: layer_bytes + upper_bytes,
        layer_bytes,
        upper_bytes,
        sizes_pending: sizes.pending() as u64,
        control_requests: control
            .into_iter()
            .map(|((op, result), count)| ControlRequestCount {
                op: op.to_string(),
                result,
                count,
            })
            .collect(),
    };
    Ok(Snapshot {
        projects,
        sessions,
        daemon,
    })
}

impl SessionSnapshot {
    /// The `metrics` object of this session in `status`.
    pub fn status_metrics(&self) -> SessionMetrics {
        let mut m = SessionMetrics {
            upper_bytes: self.upper.map(|u| u.0),
            upper_bytes_age_seconds: self.upper.map(|u| u.1.as_secs_f64()),
            ..SessionMetrics::default()
        };
        if let Some(v) = &self.view {
            m.view = v.counters;
            m.requests = v.requests();
            m.errors = v.errors();
            m.ops = v
                .ops
                .iter()
                .map(|o| OpMetrics {
                    op: o.op.name().to_string(),
                    count: o.count,
                    errors: o.errors,
                    seconds: o.sum_seconds,
                })
                .collect();
        }
        m
    }
}

/// The Prometheus text exposition of a snapshot.
pub fn render(s: &Snapshot) -> String {
    let mut e = Exposition::default();
    let d = &s.daemon;
    e.family(
        "goldenfs_build_info",
        Kind::Gauge,
        "Version of the running daemon (always 1).",
    );
    e.sample("goldenfs_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1u32);
    e.single(
        "goldenfs_uptime_seconds",
        Kind::Gauge,
        "Seconds since the daemon started.",
        d.uptime_seconds,
    );
    e.single(
        "goldenfs_mounted_views",
        Kind::Gauge,
        "Session views mounted now.",
        d.mounted_views as f64,
    );
    e.family(
        "goldenfs_control_requests_total",
        Kind::Counter,
        "Control socket requests handled, by op and result (ok or the error code).",
    );
    for c in &d.control_requests {
        let labels = [("op", c.op.as_str()), ("result", c.result.as_str())];
        e.sample("goldenfs_control_requests_total", &labels, c.count as f64);
    }
    e.single(
        "goldenfs_store_bytes",
        Kind::Gauge,
        "Disk use (st_blocks*512) of every layer and session upper measured so far.",
        d.store_bytes as f64,
    );
    e.single(
        "goldenfs_store_layer_bytes",
        Kind::Gauge,
        "Disk use of the store's layers measured so far.",
        d.layer_bytes as f64,
    );
    e.single(
        "goldenfs_store_upper_bytes",
        Kind::Gauge,
        "Disk use of the sessions' uppers measured so far.",
        d.upper_bytes as f64,
    );
    e.single(
        "goldenfs_store_sizes_pending",
        Kind::Gauge,
        "Layers and uppers queued to be measured (missing from the byte figures).",
        d.sizes_pending as f64,
    );
    render_projects(&mut e, &s.projects);
    render_sessions(&mut e, &s.sessions);
    e.finish()
}

fn render_projects(e: &mut Exposition, projects: &[ProjectStatus]) {
    type Field = fn(&ProjectStatus) -> Option<f64>;
    let families: [(&str, &str, Field); 5] = [
        (
            "goldenfs_project_current_generation",
            "The project's current generation.",
            |p| Some(p.info.current_generation as f64),
        ),
        (
            "goldenfs_project_layer_depth",
            "Layers in the project's current generation.",
            |p| Some(p.info.layer_depth as f64),
        ),
        (
            "goldenfs_project_generations",
            "Generation manifests the project keeps.",
            |p| Some(p.info.generations as f64),
        ),
        (
            "goldenfs_project_sessions",
            "Sessions of the project (each pins its base generation).",
            |p| Some(p.info.sessions.len() as f64),
        ),
        (
            "goldenfs_project_bytes",
            "Disk use of the current generation's layers (absent until all are measured).",
            |p| p.metrics.bytes.map(|b| b as f64),
        ),
    ];
    for (name, help, field) in families {
        e.family(name, Kind::Gauge, help);
        for p in projects {
            if let Some(v) = field(p) {
                e.sample(name, &[("project", p.info.project.as_str())], v);
            }
        }
    }
}

fn render_sessions(e: &mut Exposition, sessions: &[SessionSnapshot]) {
    type Field = fn(&SessionSnapshot) -> Option<f64>;
    let families: [(&str, Kind, &str, Field); 9] = [
        (
            "goldenfs_session_mounted",
            Kind::Gauge,
            "1 if the session's view is mounted.",
            |s| Some(if s.info.mounted { 1.0 } else { 0.0 }),
        ),
        (
            "goldenfs_session_base_generation",
            Kind::Gauge,
            "The generation the session is based on.",
            |s| Some(s.info.base_generation as f64),
        ),
        (
            "goldenfs_session_upper_bytes",
            Kind::Gauge,
            "Disk use of the session's upper (measured in the background, at most about 10 s old).",
            |s| s.upper.map(|u| u.0 as f64),
        ),
        (
            "goldenfs_session_open_files",
            Kind::Gauge,
            "Files open in the view now.",
            |s| counter(s, |c| c.open_files),
        ),
        (
            "goldenfs_session_open_dirs",
            Kind::Gauge,
            "Directories open in the view now.",
            |s| counter(s, |c| c.open_dirs),
        ),
        (
            "goldenfs_session_copy_ups_total",
            Kind::Counter,
            "Files copied up since the view was mounted.",
            |s| counter(s, |c| c.copy_ups),
        ),
        (
            "goldenfs_session_copy_up_bytes_total",
            Kind::Counter,
            "File data bytes copied (or cloned) by copy-ups since the view was mounted.",
            |s| counter(s, |c| c.copy_up_bytes),
        ),
        (
            "goldenfs_session_whiteouts_total",
            Kind::Counter,
            "Whiteouts created since the view was mounted.",
            |s| counter(s, |c| c.whiteouts),
        ),
        (
            "goldenfs_session_fuse_requests_total",
            Kind::Counter,
            "FUSE requests answered since the view was mounted.",
            |s| s.view.as_ref().map(|v| v.requests() as f64),
        ),
    ];
    for (name, kind, help, field) in families {
        e.family(name, kind, help);
        for s in sessions {
            if let Some(v) = field(s) {
                e.sample(name, &session_labels(s), v);
            }
        }
    }
    e.family(
        "goldenfs_session_opens_total",
        Kind::Counter,
        "Files opened since the view was mounted, by I/O mode (passthrough: the kernel does the I/O; cached: through the daemon and the page cache).",
    );
    for s in sessions {
        for (mode, f) in [
            ("passthrough", (|c| c.opens_passthrough) as fn(&ViewCounters) -> u64),
            ("cached", |c| c.opens_cached),
        ] {
            if let Some(n) = counter(s, f) {
                let [p, x] = session_labels(s);
                e.sample("goldenfs_session_opens_total", &[p, x, ("mode", mode)], n);
            }
        }
    }
    render_ops(e, sessions);
}

/// One of a session's view counters, if it was mounted.
fn counter(s: &SessionSnapshot, f: fn(&ViewCounters) -> u64) -> Option<f64> {
    s.view.as_ref().map(|v| f(&v.counters) as f64)
}

fn session_labels(s: &SessionSnapshot) -> [(&'static str, &str); 2] {
    [
        ("project", s.info.project.as_str()),
        ("session", s.info.session.as_str()),
    ]
}

/// Per-operation families; only operations requested at least once appear.
fn render_ops(e: &mut Exposition, sessions: &[SessionSnapshot]) {
    let ops = || {
        sessions.iter().flat_map(|s| {
            let [p, x] = session_labels(s);
            s.view
                .iter()
                .flat_map(|v| v.ops.iter())
                .map(move |o| ([p, x, ("op", o.op.name())], o))
        })
    };
    e.family(
        "goldenfs_fuse_requests_total",
        Kind::Counter,
        "FUSE requests answered, by operation.",
    );
    for (labels, o) in ops() {
        e.sample("goldenfs_fuse_requests_total", &labels, o.count as f64);
    }
    e.family(
        "goldenfs_fuse_request_errors_total",
        Kind::Counter,
        "FUSE requests answered with an error, by operation.",
    );
    for (labels, o) in ops() {
        e.sample("goldenfs_fuse_request_errors_total", &labels, o.errors as f64);
    }
    let name = "goldenfs_fuse_request_duration_seconds";
    e.family(
        name,
        Kind::Histogram,
        "Time from a FUSE request's dispatch to its reply, by operation.",
    );
    let le = bucket_seconds();
    for (labels, o) in ops() {
        e.histogram(name, &labels, &le, &o.buckets, o.sum_seconds);
    }
}
