//! Progress of the store's long operations (import, compaction, GC).
//!
//! An operation registers itself for as long as it runs and bumps relaxed
//! atomic counters as it goes; `goldenfs status` and the CLI's progress
//! bars read snapshots (the `operations` request). Nothing here blocks the
//! operation: the registry's mutex is held only to add, remove or list.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Which operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// `project create --from` (a copy; a `--move` is a rename).
    Import,
    Compact,
    Gc,
    /// `project delete`: its layers are removed.
    DeleteProject,
}

/// A snapshot of a running operation (wire format).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationProgress {
    /// Unique while the daemon runs.
    pub id: u64,
    pub kind: OperationKind,
    /// The project (none for GC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// What it is doing now, e.g. "copying", "deleting layers".
    pub phase: String,
    pub started_at: String,
    pub seconds: f64,
    /// Entries (files, directories, layers for GC) done so far.
    pub done: u64,
    /// Entries in all; absent until known (an import counts its source
    /// while it copies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Bytes done so far (file data copied, layer bytes freed).
    pub done_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
}

const UNKNOWN: u64 = u64::MAX;

/// The live counters of one operation.
pub struct Progress {
    id: u64,
    kind: OperationKind,
    project: Option<String>,
    started_at: String,
    started: Instant,
    phase: Mutex<&'static str>,
    done: AtomicU64,
    done_bytes: AtomicU64,
    total: AtomicU64,
    total_bytes: AtomicU64,
}

impl Progress {
    /// One more entry done, with `bytes` of data.
    pub fn add(&self, entries: u64, bytes: u64) {
        self.done.fetch_add(entries, Ordering::Relaxed);
        if bytes > 0 {
            self.done_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    pub fn set_total(&self, entries: u64, bytes: u64) {
        self.total.store(entries, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn set_phase(&self, phase: &'static str) {
        *self.phase.lock() = phase;
    }

    /// The entries-done counter, for code that counts by itself (the
    /// overlay core's flatten walk knows nothing of the store).
    pub fn done_counter(&self) -> &AtomicU64 {
        &self.done
    }

    fn snapshot(&self) -> OperationProgress {
        let known = |v: u64| (v != UNKNOWN).then_some(v);
        OperationProgress {
            id: self.id,
            kind: self.kind,
            project: self.project.clone(),
            phase: self.phase.lock().to_string(),
            started_at: self.started_at.clone(),
            seconds: self.started.elapsed().as_secs_f64(),
            done: self.done.load(Ordering::Relaxed),
            total: known(self.total.load(Ordering::Relaxed)),
            done_bytes: self.done_bytes.load(Ordering::Relaxed),
            total_bytes: known(self.total_bytes.load(Ordering::Relaxed)),
        }
    }
}

/// The operations running in a store.
#[derive(Default)]
pub struct Operations {
    next_id: AtomicU64,
    running: Mutex<Vec<Arc<Progress>>>,
}

impl Operations {
    /// Registers an operation until the returned guard is dropped.
    pub fn start(&self, kind: OperationKind, project: Option<&str>, phase: &'static str) -> Running<'_> {
        let p = Arc::new(Progress {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            kind,
            project: project.map(str::to_string),
            started_at: super::atomic::now_rfc3339(),
            started: Instant::now(),
            phase: Mutex::new(phase),
            done: AtomicU64::new(0),
            done_bytes: AtomicU64::new(0),
            total: AtomicU64::new(UNKNOWN),
            total_bytes: AtomicU64::new(UNKNOWN),
        });
        self.running.lock().push(p.clone());
        Running { ops: self, progress: p }
    }

    /// Snapshots of the running operations, oldest first.
    pub fn snapshot(&self) -> Vec<OperationProgress> {
        self.running.lock().iter().map(|p| p.snapshot()).collect()
    }
}

/// A registered operation; unregisters it when dropped, however it ends.
pub struct Running<'a> {
    ops: &'a Operations,
    progress: Arc<Progress>,
}

impl std::ops::Deref for Running<'_> {
    type Target = Progress;
    fn deref(&self) -> &Progress {
        &self.progress
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.ops.running.lock().retain(|p| !Arc::ptr_eq(p, &self.progress));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_is_listed_while_it_runs() {
        let ops = Operations::default();
        {
            let a = ops.start(OperationKind::Import, Some("web"), "copying");
            let _b = ops.start(OperationKind::Gc, None, "deleting generations");
            a.add(3, 100);
            a.add(1, 0);
            let snap = ops.snapshot();
            assert_eq!(snap.len(), 2);
            assert_eq!(snap[0].kind, OperationKind::Import);
            assert_eq!(snap[0].project.as_deref(), Some("web"));
            assert_eq!((snap[0].done, snap[0].done_bytes), (4, 100));
            assert_eq!((snap[0].total, snap[0].total_bytes), (None, None));
            assert_ne!(snap[0].id, snap[1].id);
            a.set_total(10, 1000);
            a.set_phase("syncing");
            let snap = ops.snapshot();
            assert_eq!((snap[0].total, snap[0].total_bytes), (Some(10), Some(1000)));
            assert_eq!(snap[0].phase, "syncing");
        }
        assert!(ops.snapshot().is_empty());
    }

    #[test]
    fn unknown_totals_are_absent_on_the_wire() {
        let ops = Operations::default();
        let _a = ops.start(OperationKind::Compact, Some("web"), "flattening");
        let json = serde_json::to_value(&ops.snapshot()[0]).unwrap();
        assert_eq!(json["kind"], "compact");
        assert!(json.get("total").is_none());
        assert!(json.get("total_bytes").is_none());
    }
}
