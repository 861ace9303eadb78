//! The store: on-disk layout, projects, generations, the current pointer,
//! sessions (pins), promotion, rollback, GC, crash recovery and import.
//!
//! No FUSE types here. The store does not know whether a session is mounted:
//! callers (the daemon) must only promote or discard unmounted sessions.
//!
//! # Locks (in the order they may be taken)
//! 1. `maintenance` (`RwLock<()>`): GC takes it exclusively; promotion,
//!    rollback, project deletion and the publishing step of project creation
//!    take it shared. So GC never sees a half-published generation or a
//!    pointer moving under it. Mounts never take it.
//! 2. `Project::promote_lock` (`Mutex`): serializes promotions and rollbacks
//!    of one project.
//! 3. `Project::state` (`RwLock`): guards the current pointer. Readers are
//!    mounts resolving `current` (read, pin, release); the writer holds it only
//!    to swap the pointer (rename of a prepared, fsynced file).
//! 4. `projects`, `sessions`, `creating`, `compacting` maps (`Mutex`):
//!    leaves, held briefly, never while taking another lock.
//!
//! Compaction walks and builds with none of these held (its generation is
//! pinned through `compacting`); it publishes like a promotion, under
//! `maintenance` (shared) and `promote_lock`, swapping the pointer under
//! the write lock only if `current` is still the generation it flattened.

mod atomic;
pub use atomic::{now_rfc3339, tree_usage, unique_name};

mod compact;
mod gc;
mod import;
pub mod layout;
pub mod progress;
mod project;
mod promote;
mod recovery;
mod session;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_compact;
mod volumes;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, ErrorCode, Result};
use crate::sys;

pub use compact::{CompactReport, RunningCompaction};
pub use gc::{DEFAULT_KEEP, DeletedGeneration, GcReport};
pub use import::{ImportReport, ImportSource};
pub use layout::{GenerationManifest, Layout, ProjectMeta, SessionRecord};
pub use progress::{OperationKind, OperationProgress};
pub use promote::{PromoteReport, RollbackReport};
pub use recovery::RecoveryReport;
pub use session::OpenedSession;
pub use volumes::VolumeRecord;

/// One project in memory.
pub struct Project {
    meta: ProjectMeta,
    state: RwLock<ProjectState>,
    promote_lock: Mutex<()>,
}

#[derive(Clone, Copy, Debug)]
struct ProjectState {
    current: u64,
    /// Set (under the write lock) when the project is deleted, so a mount that
    /// looked the project up just before sees it is gone.
    deleted: bool,
}

/// A project as listed by `project list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectSummary {
    pub project: String,
    pub created_at: String,
    pub current_generation: u64,
    /// Number of generation manifests kept.
    pub generations: usize,
    /// Number of layers in the current generation.
    pub layer_depth: usize,
    /// Names of the sessions of this project.
    pub sessions: Vec<String>,
}

/// A generation as listed by `generations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationSummary {
    pub generation: u64,
    pub created_at: String,
    pub session_id: Option<String>,
    pub parent: Option<u64>,
    pub layers: Vec<String>,
    /// Set on a generation published by compaction (see `GenerationManifest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted_from: Option<u64>,
    pub current: bool,
    /// Sessions based on this generation (they keep it from GC).
    pub pinned_by: Vec<String>,
}

/// The store of one daemon.
pub struct Store {
    layout: Layout,
    /// Open for the store's lifetime; holds the exclusive `flock` that keeps
    /// a second daemon off this store.
    root_fd: OwnedFd,
    fs_type: String,
    maintenance: RwLock<()>,
    projects: Mutex<BTreeMap<String, Arc<Project>>>,
    creating: Mutex<HashSet<String>>,
    sessions: Mutex<BTreeMap<String, SessionRecord>>,
    /// Running compactions by project: at most one each; the generation
    /// being compacted is pinned (GC keeps it) until it finishes.
    compacting: Mutex<BTreeMap<String, RunningCompaction>>,
    /// Imports, compactions and GC runs in progress, with their counters.
    operations: progress::Operations,
    recovery: RecoveryReport,
}

impl Store {
    /// Opens (creating if needed) the store at `root`: checks that it is one
    /// filesystem, empties `work/`, repairs what a crash left behind, deletes
    /// unreferenced layers, and loads projects and sessions.
    pub fn open(root: &Path) -> Result<Store> {
        if !root.is_absolute() {
            return Err(Error::invalid(format!(
                "state directory {} is not an absolute path; pass --state-dir /absolute/path",
                root.display()
            )));
        }
        fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("creating the state directory {}", root.display()), e))?;
        let layout = Layout::new(root);
        Self::init_layout(&layout)?;
        let root_fd = sys::open_dir_abs(root).map_err(|e| Error::io(format!("opening {}", root.display()), e))?;
        let locked = sys::ctl::try_lock_exclusive(root_fd.as_fd())
            .map_err(|e| Error::io(format!("locking {}", root.display()), e))?;
        if !locked {
            return Err(Error::busy(format!(
                "the store {} is in use by another goldenfs daemon; stop it first or pick another --state-dir",
                root.display()
            )));
        }
        Self::check_one_filesystem(&layout, &root_fd)?;
        let fs_type = sys::ctl::fs_type_name(root_fd.as_fd()).unwrap_or_else(|_| "unknown".into());
        let recovery = recovery::recover(&layout)?;
        let store = Store {
            layout,
            root_fd,
            fs_type,
            maintenance: RwLock::new(()),
            projects: Mutex::new(BTreeMap::new()),
            creating: Mutex::new(HashSet::new()),
            sessions: Mutex::new(BTreeMap::new()),
            compacting: Mutex::new(BTreeMap::new()),
            operations: progress::Operations::default(),
            recovery,
        };
        store.load()?;
        Ok(store)
    }

    fn init_layout(layout: &Layout) -> Result<()> {
        let store_json = layout.store_json();
        match fs::read(&store_json) {
            Ok(bytes) => {
                let meta: layout::StoreMeta = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::internal(format!(
                        "{} is corrupt ({e}); is {} really a goldenfs store?",
                        store_json.display(),
                        layout.root.display()
                    ))
                })?;
                if meta.format != layout::STORE_FORMAT {
                    return Err(Error::new(
                        ErrorCode::Unsupported,
                        format!(
                            "store {} has format {}, this goldenfs understands format {}; use a matching goldenfs version",
                            layout.root.display(),
                            meta.format,
                            layout::STORE_FORMAT
                        ),
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let nonempty = fs::read_dir(&layout.root)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false);
                if nonempty {
                    return Err(Error::invalid(format!(
                        "{} is not empty and has no store.json; refusing to turn it into a goldenfs store — pick an empty or new --state-dir",
                        layout.root.display()
                    )));
                }
                atomic::write_json_atomic(
                    &layout.root,
                    "store.json",
                    &layout::StoreMeta {
                        format: layout::STORE_FORMAT,
                    },
                )?;
            }
            Err(e) => return Err(Error::io(format!("reading {}", store_json.display()), e)),
        }
        for dir in [
            layout.projects(),
            layout.layers(),
            layout.sessions(),
            layout.work(),
            layout.layer_metas(),
        ] {
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
            }
        }
        atomic::fsync_dir(&layout.root)
    }

    fn check_one_filesystem(layout: &Layout, root_fd: &OwnedFd) -> Result<()> {
        let root_dev =
            sys::device_of(root_fd.as_fd()).map_err(|e| Error::io(format!("stat {}", layout.root.display()), e))?;
        for dir in [layout.projects(), layout.layers(), layout.sessions(), layout.work()] {
            let fd = sys::open_dir_abs(&dir).map_err(|e| Error::io(format!("opening {}", dir.display()), e))?;
            let dev = sys::device_of(fd.as_fd()).map_err(|e| Error::io(format!("stat {}", dir.display()), e))?;
            if dev != root_dev {
                return Err(Error::new(
                    ErrorCode::Unsupported,
                    format!(
                        "{} is on a different filesystem than {}; a goldenfs store must live on one filesystem (promotion renames uppers into layers) — remove the extra mount",
                        dir.display(),
                        layout.root.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn load(&self) -> Result<()> {
        let mut projects = BTreeMap::new();
        for name in list_dir_names(&self.layout.projects())? {
            if crate::names::validate("project", &name).is_err() {
                log::warn!(
                    "ignoring {}: not a valid project name",
                    self.layout.project(&name).display()
                );
                continue;
            }
            let meta: ProjectMeta = atomic::read_json(&self.layout.project(&name).join(layout::PROJECT_JSON))?;
            let current = project::read_current(&self.layout, &name)?;
            projects.insert(
                name,
                Arc::new(Project {
                    meta,
                    state: RwLock::new(ProjectState {
                        current,
                        deleted: false,
                    }),
                    promote_lock: Mutex::new(()),
                }),
            );
        }
        let mut sessions = BTreeMap::new();
        for name in list_dir_names(&self.layout.sessions())? {
            if crate::names::validate("session", &name).is_err() {
                log::warn!(
                    "ignoring {}: not a valid session name",
                    self.layout.session(&name).display()
                );
                continue;
            }
            let rec: SessionRecord = atomic::read_json(&self.layout.session(&name).join(layout::SESSION_JSON))?;
            if !projects.contains_key(&rec.project) {
                log::warn!(
                    "session {name} belongs to project {} which does not exist; discard it with 'goldenfs session discard {name}'",
                    rec.project
                );
            }
            sessions.insert(name, rec);
        }
        *self.projects.lock() = projects;
        *self.sessions.lock() = sessions;
        Ok(())
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The backing filesystem's type name ("ext4", "xfs", ...).
    /// Imports, compactions and GC runs in progress.
    pub fn operations(&self) -> Vec<OperationProgress> {
        self.operations.snapshot()
    }

    pub fn fs_type(&self) -> &str {
        &self.fs_type
    }

    /// What start-up recovery did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    fn project(&self, name: &str) -> Result<Arc<Project>> {
        crate::names::validate("project", name)?;
        self.projects.lock().get(name).cloned().ok_or_else(|| {
            Error::not_found(format!(
                "no project named {name:?}; create it with 'goldenfs project create {name}' or see 'goldenfs project list'"
            ))
        })
    }

    /// Flushes the store's filesystem (before publishing new data).
    fn sync_fs(&self) -> Result<()> {
        sys::ctl::syncfs(self.root_fd.as_fd())
            .map_err(|e| Error::io(format!("syncing the store filesystem at {}", self.root().display()), e))
    }

    /// True when `path` is the store root, inside it, or contains it
    /// (both compared after resolving symlinks).
    pub fn overlaps(&self, path: &Path) -> bool {
        let root = fs::canonicalize(self.root()).unwrap_or_else(|_| self.root().to_path_buf());
        let p = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        p.starts_with(&root) || root.starts_with(&p)
    }
}

/// Names of the entries of a directory, sorted; hidden temp files (`.x`) skipped.
fn list_dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        match ent.file_name().into_string() {
            Ok(n) if !n.starts_with('.') => out.push(n),
            Ok(_) => {}
            Err(n) => log::warn!("ignoring {:?} in {}: not UTF-8", n, dir.display()),
        }
    }
    out.sort();
    Ok(out)
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Store>();
}
