//! Compaction: the current generation N, however deep, is flattened into
//! one new layer and published as generation max+1 with `layers: [new]`,
//! `parent: N`, `compacted_from: N` (the same content, one layer deep).
//!
//! 1. Under the read lock, read `current` (N) and pin it (`compacting`; GC
//!    keeps a pinned generation). At most one compaction per project.
//! 2. With no lock held, build the layer in `work/compact-…/layer`: a view
//!    of N over an empty scratch upper is flattened into it
//!    (`Overlay::flatten_into`: directories created, everything else
//!    hard-linked from its topmost copy). Mounts and promotions go on.
//! 3. `syncfs`, then under `maintenance` (shared) and the project's
//!    `promote_lock`: if `current` is no longer N, discard the build
//!    (`Conflict`). Else write the sidecar `layer-meta/L.json` (the layer's
//!    hard-link groups), write `generations/M.json`, rename the layer into
//!    `layers/L`, and swap `current` under the write lock — the order of a
//!    promotion, so recovery needs nothing new: a crash before the manifest
//!    leaves scratch in `work/` and maybe an orphan sidecar (both removed at
//!    start-up); a crash after it leaves a complete, unpublished generation
//!    (harmless, GC removes it) or one whose layer is missing (deleted).

use serde::{Deserialize, Serialize};
use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use super::layout::{self, GenerationManifest, LayerMeta, RelPath};
use super::progress::OperationKind;
use super::project::read_generation;
use super::{Project, Store, atomic};
use crate::error::{Error, Result};
use crate::overlay::{Flattened, LayerDirs, Overlay, layer_link_groups};
use crate::{fault, sys};

/// What a compaction did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompactReport {
    pub project: String,
    /// False when there was nothing to do (the generation has one layer).
    pub compacted: bool,
    /// The generation flattened (current when the compaction started).
    pub compacted_from: u64,
    /// The generation published, now current (`compacted_from` if nothing was done).
    pub generation: u64,
    /// Id of the new layer.
    pub layer: Option<String>,
    pub layers_before: usize,
    pub layers_after: usize,
    /// Directories and other objects in the new layer (the root not counted).
    pub entries: u64,
    /// Hard-link groups recorded in the layer's sidecar.
    pub link_groups: usize,
    pub seconds: f64,
}

/// A compaction in progress (shown by `status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningCompaction {
    pub project: String,
    /// The generation being flattened.
    pub generation: u64,
    pub started_at: String,
}

/// Unpins the generation when the compaction ends, however it ends.
pub(super) struct Running<'a> {
    store: &'a Store,
    project: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.store.compacting.lock().remove(&self.project);
    }
}

impl Store {
    /// Compacts `project`'s current generation (see the module docs). Fails
    /// with `Busy` if a compaction of it runs already and with `Conflict`
    /// (nothing published, nothing left behind) if a promotion or rollback
    /// moved `current` while it built.
    pub fn compact(&self, project: &str) -> Result<CompactReport> {
        let start = Instant::now();
        let p = self.project(project)?;
        let (from, _running) = self.pin_for_compaction(&p, project)?;
        let manifest = read_generation(&self.layout, project, from)?;
        let mut report = CompactReport {
            project: project.to_string(),
            compacted: false,
            compacted_from: from,
            generation: from,
            layer: None,
            layers_before: manifest.layers.len(),
            layers_after: manifest.layers.len(),
            entries: 0,
            link_groups: 0,
            seconds: 0.0,
        };
        if manifest.layers.len() <= 1 {
            log::info!("compaction of {project}: generation {from} has one layer; nothing to do");
            return Ok(report);
        }
        log::info!(
            "compaction of {project}: flattening generation {from} ({} layers)",
            manifest.layers.len()
        );
        let build = self
            .layout
            .work()
            .join(atomic::unique_name(&format!("compact-{project}")));
        let progress = self
            .operations
            .start(OperationKind::Compact, Some(project), "flattening");
        let res = self
            .persist_link_tables(&manifest)
            .and_then(|()| self.build_flat(&build, &manifest, progress.done_counter()))
            .and_then(|flat| {
                progress.set_phase("syncing");
                self.sync_fs()?;
                progress.set_phase("publishing");
                fault::pause("compact:built");
                self.publish_compacted(&p, &manifest, &build.join("layer"), &flat)
                    .map(|(n, id)| (n, id, flat))
            });
        if let Err(e) = atomic::remove_tree(&build) {
            log::warn!(
                "compaction of {project}: cannot remove its scratch {}: {e}",
                build.display()
            );
        }
        let (n, id, flat) = res?;
        report.compacted = true;
        report.generation = n;
        report.layer = Some(id);
        report.layers_after = 1;
        report.entries = flat.entries;
        report.link_groups = flat.links.len();
        report.seconds = start.elapsed().as_secs_f64();
        log::info!(
            "compaction of {project}: generation {n} is generation {from} in one layer ({} entries, {:.1} s)",
            flat.entries,
            report.seconds
        );
        Ok(report)
    }

    /// Compactions in progress, by project.
    pub fn running_compactions(&self) -> Vec<RunningCompaction> {
        self.compacting.lock().values().cloned().collect()
    }

    /// Reads `current` and pins it for the compaction, under the read lock
    /// (so GC, which sees pins, cannot miss it).
    pub(super) fn pin_for_compaction(&self, p: &Project, project: &str) -> Result<(u64, Running<'_>)> {
        let st = p.state.read();
        if st.deleted {
            return Err(Error::not_found(format!("project {project} was just deleted")));
        }
        let mut running = self.compacting.lock();
        if let Some(r) = running.get(project) {
            return Err(Error::busy(format!(
                "a compaction of {project} (generation {}) is already running since {}; wait for it to finish (see 'goldenfs status')",
                r.generation, r.started_at
            )));
        }
        running.insert(
            project.to_string(),
            RunningCompaction {
                project: project.to_string(),
                generation: st.current,
                started_at: atomic::now_rfc3339(),
            },
        );
        Ok((
            st.current,
            Running {
                store: self,
                project: project.to_string(),
            },
        ))
    }

    /// Writes the sidecar of every layer of `m` that has none, from a scan
    /// made now, before the compaction links anything from it: then views
    /// read their link counts from it, not from the backing files, whose
    /// counts the new layer's links inflate.
    fn persist_link_tables(&self, m: &GenerationManifest) -> Result<()> {
        for id in &m.layers {
            if self.layout.layer_meta(id).exists() {
                continue;
            }
            let dir = self.layout.layer(id);
            let links = layer_link_groups(&dir)
                .map_err(|e| Error::io(format!("listing the hard links of {}", dir.display()), e))?;
            let meta = LayerMeta {
                layer: id.clone(),
                origin_markers: false,
                links: rel_paths(&links),
                sources: Vec::new(),
            };
            atomic::write_json_atomic(&self.layout.layer_metas(), &layout::layer_meta_file_name(id), &meta)?;
        }
        Ok(())
    }

    /// Flattens generation `m` into `build/layer` through a view of it over
    /// the empty scratch upper `build/upper`.
    pub(super) fn build_flat(&self, build: &Path, m: &GenerationManifest, done: &AtomicU64) -> Result<Flattened> {
        let ctx = |what: &str, p: &Path| format!("compaction of {}: {what} {}", m.project_id, p.display());
        for dir in [
            build.to_path_buf(),
            build.join("upper"),
            build.join("work"),
            build.join("layer"),
        ] {
            fs::create_dir(&dir).map_err(|e| Error::io(ctx("creating", &dir), e))?;
        }
        let lowers = self
            .layout
            .lower_layers(m)
            .map_err(|e| Error::io(ctx("reading the layer sidecars of", build), e))?;
        let dirs = LayerDirs::open(&build.join("upper"), &build.join("work"), &lowers).map_err(|e| {
            Error::io(
                ctx("opening the layers of generation", Path::new(&m.generation.to_string())),
                e,
            )
        })?;
        let view = Overlay::new(dirs, &m.version_info()).map_err(|e| Error::io(ctx("opening a view in", build), e))?;
        let layer = build.join("layer");
        let dest = sys::open_dir_abs(&layer).map_err(|e| Error::io(ctx("opening", &layer), e))?;
        view.flatten_into(dest.as_fd(), done)
            .map_err(|e| Error::io(ctx("flattening generation into", &layer), e))
    }

    /// Publishes the built layer as generation max+1 if `current` is still
    /// `from.generation`. Returns the new generation and layer id.
    pub(super) fn publish_compacted(
        &self,
        p: &Project,
        from: &GenerationManifest,
        built: &Path,
        flat: &Flattened,
    ) -> Result<(u64, String)> {
        let project = from.project_id.as_str();
        let _m = self.maintenance.read();
        let _serial = p.promote_lock.lock();
        let moved_on = |now: u64| {
            Error::conflict(format!(
                "project {project} moved from generation {} to {now} while the compaction ran; nothing was published — run 'goldenfs compact {project}' again",
                from.generation
            ))
        };
        // With the promote lock held, nothing else moves `current` or
        // deletes the project (promotion, rollback and deletion all take it)
        // until this returns: checked once, here.
        let (now, deleted) = {
            let st = p.state.read();
            (st.current, st.deleted)
        };
        if deleted {
            return Err(Error::not_found(format!("project {project} was deleted")));
        }
        if now != from.generation {
            return Err(moved_on(now));
        }
        let (n, id) = self.next_generation(project, now)?;
        let meta = LayerMeta {
            layer: id.clone(),
            origin_markers: true,
            links: rel_paths(&flat.links),
            sources: from.layers.clone(),
        };
        atomic::write_json_atomic(&self.layout.layer_metas(), &layout::layer_meta_file_name(&id), &meta)?;
        let manifest = GenerationManifest {
            generation: n,
            created_at: atomic::now_rfc3339(),
            session_id: None,
            project_id: project.to_string(),
            parent: Some(from.generation),
            layers: vec![id.clone()],
            compacted_from: Some(from.generation),
        };
        let gen_dir = self.layout.generations(project);
        let gen_name = layout::generation_file_name(n);
        let layer = self.layout.layer(&id);
        let undo = |renamed: bool| {
            let res = (|| {
                if renamed {
                    atomic::rename_noreplace(&layer, built)?;
                }
                atomic::remove_tree(&gen_dir.join(&gen_name))?;
                atomic::fsync_dir(&gen_dir)?;
                super::gc::remove_layer_meta(&self.layout, &id)
            })();
            if let Err(u) = res {
                log::error!(
                    "undoing compaction of {project} into generation {n}: {u}; restart the daemon to repair the store"
                );
            }
        };
        if let Err(e) = atomic::write_json_atomic(&gen_dir, &gen_name, &manifest) {
            undo(false);
            return Err(e);
        }
        if let Err(e) = atomic::rename_noreplace(built, &layer) {
            undo(false);
            return Err(e);
        }
        // A crash from here on leaves a complete generation that is not current.
        fault::point("compact:before-publish")?;
        let swapped = self.prepare_pointer(project, n).and_then(|pointer| {
            let mut st = p.state.write();
            pointer.commit().map(|()| st.current = n)
        });
        if let Err(e) = swapped {
            undo(true);
            return Err(e);
        }
        Ok((n, id))
    }
}

fn rel_paths(groups: &[Vec<PathBuf>]) -> Vec<Vec<RelPath>> {
    groups
        .iter()
        .map(|g| g.iter().map(|p| RelPath::from(p.as_path())).collect())
        .collect()
}
