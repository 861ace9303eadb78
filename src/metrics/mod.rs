//! Metrics: per-view counters kept on the FUSE data path, and the
//! Prometheus text exposition writer.
//!
//! The data path only does relaxed atomic adds on a view's [`ViewMetrics`]
//! (shared by the `fuser` adapter and the daemon's registry): no lock and no
//! allocation per request. Readers (`status`, the `/metrics` endpoint) take
//! snapshots; a snapshot of a busy view is not one instant, but each
//! histogram's count is derived from its own buckets, so it is consistent.
//! This module knows nothing of FUSE.

pub mod expo;

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use crate::overlay::Counters;
use crate::protocol::ViewCounters;

macro_rules! ops {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// A FUSE request type, as counted per view.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Op { $($variant),* }

        impl Op {
            /// Every operation, in label order.
            pub const ALL: &'static [Op] = &[$(Op::$variant),*];

            /// The `op` label.
            pub fn name(self) -> &'static str {
                match self { $(Op::$variant => $name),* }
            }
        }
    };
}

ops! {
    Lookup => "lookup", Forget => "forget", Getattr => "getattr", Setattr => "setattr",
    Readlink => "readlink", Mknod => "mknod", Mkdir => "mkdir", Unlink => "unlink",
    Rmdir => "rmdir", Symlink => "symlink", Rename => "rename", Link => "link",
    Open => "open", Read => "read", Write => "write", Flush => "flush", Release => "release",
    Fsync => "fsync", Opendir => "opendir", Readdir => "readdir", Readdirplus => "readdirplus",
    Releasedir => "releasedir", Fsyncdir => "fsyncdir", Statfs => "statfs",
    Setxattr => "setxattr", Getxattr => "getxattr", Listxattr => "listxattr",
    Removexattr => "removexattr", Access => "access", Create => "create", Ioctl => "ioctl",
    Fallocate => "fallocate", Lseek => "lseek",
}

/// Upper bounds of the latency histogram buckets, in nanoseconds (10 µs …
/// 1 s); a last, implicit bucket takes everything slower (`le="+Inf"`).
pub const BUCKET_NANOS: [u64; 16] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// The bucket bounds in seconds, as exported (`le`).
pub fn bucket_seconds() -> [f64; BUCKET_NANOS.len()] {
    BUCKET_NANOS.map(|n| n as f64 / 1e9)
}
/// Buckets including the overflow one.
pub const BUCKETS: usize = BUCKET_NANOS.len() + 1;

/// The counters of one operation of one view.
#[derive(Default)]
struct OpStats {
    /// Per bucket (not cumulative), the last one is the overflow.
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
    errors: AtomicU64,
}

/// Counters of one operation at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct OpSnapshot {
    pub op: Op,
    /// Requests answered (the sum of `buckets`).
    pub count: u64,
    /// Requests answered with an error.
    pub errors: u64,
    pub sum_seconds: f64,
    /// Per bucket, not cumulative, overflow last.
    pub buckets: [u64; BUCKETS],
}

/// Everything counted about one mounted view since it was mounted.
pub struct ViewMetrics {
    ops: Box<[OpStats]>,
    /// File handles open now (the version file included; directories not).
    open_files: AtomicI64,
    /// Directory handles open now.
    open_dirs: AtomicI64,
    opens_passthrough: AtomicU64,
    opens_cached: AtomicU64,
    /// Copy-ups and whiteouts, counted by the overlay core.
    pub overlay: Arc<Counters>,
}

/// A view's counters at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewSnapshot {
    /// Only operations that were requested at least once.
    pub ops: Vec<OpSnapshot>,
    pub counters: ViewCounters,
}

impl ViewSnapshot {
    pub fn requests(&self) -> u64 {
        self.ops.iter().map(|o| o.count).sum()
    }

    pub fn errors(&self) -> u64 {
        self.ops.iter().map(|o| o.errors).sum()
    }
}

thread_local! {
    /// Set when the request being handled on this thread is answered with
    /// an error (a FUSE request is handled start to end on one thread).
    static FAILED: Cell<bool> = const { Cell::new(false) };
}

/// Marks the request being handled on this thread as failed.
pub fn mark_failed() {
    FAILED.with(|f| f.set(true));
}

/// Times one request from [`ViewMetrics::start`] until it is dropped, and
/// counts it (as an error if [`mark_failed`] was called meanwhile).
pub struct Timer<'a> {
    stats: &'a OpStats,
    start: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKET_NANOS.iter().position(|&b| nanos <= b).unwrap_or(BUCKETS - 1);
        self.stats.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.stats.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        if FAILED.with(|f| f.replace(false)) {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Adds `delta` to a gauge.
fn gauge(g: &AtomicI64, delta: i64) {
    g.fetch_add(delta, Ordering::Relaxed);
}

impl ViewMetrics {
    pub fn new(overlay: Arc<Counters>) -> ViewMetrics {
        ViewMetrics {
            ops: Op::ALL.iter().map(|_| OpStats::default()).collect(),
            open_files: AtomicI64::new(0),
            open_dirs: AtomicI64::new(0),
            opens_passthrough: AtomicU64::new(0),
            opens_cached: AtomicU64::new(0),
            overlay,
        }
    }

    /// Starts timing a request of type `op`.
    pub fn start(&self, op: Op) -> Timer<'_> {
        FAILED.with(|f| f.set(false));
        Timer {
            stats: &self.ops[op as usize],
            start: Instant::now(),
        }
    }

    /// A file was opened (`passthrough`: its I/O bypasses the daemon).
    pub fn file_opened(&self, passthrough: bool) {
        gauge(&self.open_files, 1);
        let c = if passthrough {
            &self.opens_passthrough
        } else {
            &self.opens_cached
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The virtual version file was opened (counted as an open file only).
    pub fn version_opened(&self) {
        gauge(&self.open_files, 1);
    }

    pub fn file_released(&self) {
        gauge(&self.open_files, -1);
    }

    pub fn dir_opened(&self) {
        gauge(&self.open_dirs, 1);
    }

    pub fn dir_released(&self) {
        gauge(&self.open_dirs, -1);
    }

    pub fn snapshot(&self) -> ViewSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let ops = Op::ALL
            .iter()
            .zip(self.ops.iter())
            .filter_map(|(&op, s)| {
                let buckets: [u64; BUCKETS] = std::array::from_fn(|i| load(&s.buckets[i]));
                let count = buckets.iter().sum();
                (count > 0).then(|| OpSnapshot {
                    op,
                    count,
                    errors: load(&s.errors),
                    sum_seconds: load(&s.sum_nanos) as f64 / 1e9,
                    buckets,
                })
            })
            .collect();
        let counters = ViewCounters {
            open_files: self.open_files.load(Ordering::Relaxed).max(0) as u64,
            open_dirs: self.open_dirs.load(Ordering::Relaxed).max(0) as u64,
            opens_passthrough: load(&self.opens_passthrough),
            opens_cached: load(&self.opens_cached),
            copy_ups: load(&self.overlay.copy_ups),
            copy_up_bytes: load(&self.overlay.copy_up_bytes),
            whiteouts: load(&self.overlay.whiteouts),
        };
        ViewSnapshot { ops, counters }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_request_lands_in_one_bucket_and_failures_count_as_errors() {
        let m = ViewMetrics::new(Arc::default());
        drop(m.start(Op::Lookup));
        {
            let _t = m.start(Op::Lookup);
            mark_failed();
        }
        // A failure marked outside any request does not leak into the next one.
        mark_failed();
        drop(m.start(Op::Getattr));
        let s = m.snapshot();
        assert_eq!(s.ops.len(), 2, "only requested ops are listed: {s:?}");
        let lookup = &s.ops[0];
        assert_eq!((lookup.op, lookup.count, lookup.errors), (Op::Lookup, 2, 1));
        assert_eq!(lookup.buckets.iter().sum::<u64>(), 2);
        assert_eq!((s.ops[1].op, s.ops[1].errors), (Op::Getattr, 0));
        assert_eq!((s.requests(), s.errors()), (3, 1));
    }

    #[test]
    fn open_handle_gauges_go_up_and_down() {
        let m = ViewMetrics::new(Arc::default());
        m.file_opened(true);
        m.file_opened(false);
        m.version_opened();
        m.dir_opened();
        let s = m.snapshot().counters;
        assert_eq!(
            (s.open_files, s.open_dirs, s.opens_passthrough, s.opens_cached),
            (3, 1, 1, 1)
        );
        m.file_released();
        m.file_released();
        m.file_released();
        m.dir_released();
        let s = m.snapshot().counters;
        assert_eq!((s.open_files, s.open_dirs), (0, 0));
    }

    #[test]
    fn op_names_are_unique_snake_case() {
        let mut names: Vec<_> = Op::ALL.iter().map(|o| o.name()).collect();
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase())));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Op::ALL.len());
        let le = bucket_seconds();
        assert_eq!((le[0], le[1], le[15]), (0.00001, 0.000025, 1.0));
    }
}
