//! Garbage collection by reference: a generation survives while it is
//! current, pinned by a session, or among the `keep` highest-numbered of its
//! project; a layer survives while a surviving manifest names it or a
//! surviving compacted layer was built from it (`LayerMeta::sources`).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};

use super::atomic;
use super::layout::LAST_GENERATION;
use super::progress::{OperationKind, Progress};
use super::project::{generation_numbers, read_generation};
use super::{Store, list_dir_names};
use crate::error::Result;
use crate::fault;

/// Default number of newest generations per project that GC keeps.
pub const DEFAULT_KEEP: u64 = 2;

/// One deleted generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedGeneration {
    pub project: String,
    pub generation: u64,
}

/// What a GC run deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub deleted_generations: Vec<DeletedGeneration>,
    pub deleted_layers: Vec<String>,
    pub bytes_freed: u64,
}

impl Store {
    /// Deletes unpinned old generations, then unreferenced layers.
    pub fn gc(&self, keep: u64) -> Result<GcReport> {
        let mut report = GcReport::default();
        let progress = self.operations.start(OperationKind::Gc, None, "deleting generations");
        {
            let _m = self.maintenance.write();
            let projects: Vec<_> = self.projects.lock().values().cloned().collect();
            let sessions = self.sessions();
            let mut first = true;
            for p in projects {
                let name = p.meta.name.clone();
                let current = {
                    let st = p.state.read();
                    if st.deleted {
                        continue;
                    }
                    st.current
                };
                let numbers = generation_numbers(&self.layout, &name)?;
                let newest: HashSet<u64> = numbers.iter().rev().take(keep as usize).copied().collect();
                let mut pinned: HashSet<u64> = sessions
                    .iter()
                    .filter(|s| s.project == name)
                    .map(|s| s.base_generation)
                    .collect();
                // A generation being compacted is read until the compaction ends.
                pinned.extend(self.compacting.lock().get(&name).map(|c| c.generation));
                if let Some(&highest) = numbers.last()
                    && highest != current
                    && !pinned.contains(&highest)
                    && !newest.contains(&highest)
                {
                    // Its number must stay taken once its manifest is gone.
                    let text = format!("{highest}\n");
                    atomic::write_atomic(&self.layout.project(&name), LAST_GENERATION, text.as_bytes())?;
                }
                for n in numbers {
                    if n == current || pinned.contains(&n) || newest.contains(&n) {
                        continue;
                    }
                    let path = self.layout.generation_file(&name, n);
                    atomic::remove_tree(&path)?;
                    if !first {
                        fault::point("gc:mid-delete")?;
                    }
                    first = false;
                    log::info!("gc: deleted generation {n} of {name}");
                    report.deleted_generations.push(DeletedGeneration {
                        project: name.clone(),
                        generation: n,
                    });
                }
                atomic::fsync_dir(&self.layout.generations(&name))?;
            }
        }
        progress.set_phase("deleting layers");
        let (layers, bytes) = self.gc_layers(&progress)?;
        report.deleted_layers = layers;
        report.bytes_freed = bytes;
        Ok(report)
    }

    /// Deletes every layer that no manifest references. Each goes into
    /// `work/` first (one rename), so a crash never leaves a half-deleted
    /// layer visible. Returns the deleted ids and the bytes freed; `progress`
    /// counts the layers removed from disk and their bytes.
    pub(super) fn gc_layers(&self, progress: &Progress) -> Result<(Vec<String>, u64)> {
        let mut trash = Vec::new();
        let mut deleted = Vec::new();
        {
            let _m = self.maintenance.write();
            let referenced = referenced_layers(&self.layout)?;
            for id in list_dir_names(&self.layout.layers())? {
                if referenced.contains(&id) {
                    continue;
                }
                let path = self.layout.layer(&id);
                let bytes = atomic::tree_usage(&path);
                trash.push((atomic::move_to_work(&path, &self.layout.work(), "layer")?, bytes));
                remove_layer_meta(&self.layout, &id)?;
                fault::point("gc:mid-delete")?;
                log::info!("gc: deleted layer {id}");
                deleted.push(id);
            }
        }
        progress.set_total(trash.len() as u64, trash.iter().map(|(_, b)| b).sum());
        let mut freed = 0;
        for (path, bytes) in trash {
            fault::pause("gc:layer");
            atomic::remove_tree(&path)?;
            freed += bytes;
            progress.add(1, bytes);
        }
        Ok((deleted, freed))
    }
}

/// Layer ids named by any manifest of any project on disk, and the sources
/// of those that are compacted layers (see `LayerMeta::sources`), transitively.
pub(super) fn referenced_layers(layout: &super::Layout) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for project in list_dir_names(&layout.projects())? {
        if !layout.generations(&project).is_dir() {
            continue;
        }
        for n in generation_numbers(layout, &project)? {
            out.extend(read_generation(layout, &project, n)?.layers);
        }
    }
    let mut todo: Vec<String> = out.iter().cloned().collect();
    while let Some(id) = todo.pop() {
        let meta = layout
            .read_layer_meta(&id)
            .map_err(|e| crate::error::Error::io(format!("reading the sidecar of layer {id}"), e))?;
        for s in meta.into_iter().flat_map(|m| m.sources) {
            if out.insert(s.clone()) {
                todo.push(s);
            }
        }
    }
    Ok(out)
}

/// Removes the sidecar of layer `id` (most layers have none). Called after
/// the layer left `layers/`: a sidecar without its layer is harmless (and
/// removed at start-up), a layer without its sidecar would be misread.
pub(super) fn remove_layer_meta(layout: &super::Layout, id: &str) -> Result<()> {
    let path = layout.layer_meta(id);
    if path.exists() {
        atomic::remove_tree(&path)?;
        atomic::fsync_dir(&layout.layer_metas())?;
    }
    Ok(())
}
