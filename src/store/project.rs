//! Projects and their generations: reading manifests, listing, deletion.

use std::fs;

use super::atomic;
use super::layout::{self, GenerationManifest, Layout};
use super::progress::OperationKind;
use super::{GenerationSummary, ProjectSummary, Store, list_dir_names};
use crate::error::{Error, Result};

/// Reads `projects/P/current`.
pub(super) fn read_current(layout: &Layout, project: &str) -> Result<u64> {
    let path = layout.project(project).join(layout::CURRENT);
    let text = fs::read_to_string(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    layout::parse_current(&text).ok_or_else(|| {
        Error::internal(format!(
            "{} does not hold a generation number ({text:?}); write the number of an existing generation into it",
            path.display()
        ))
    })
}

/// The highest generation number `project` ever had: the newest manifest,
/// or `last-generation` if GC deleted a higher one.
pub(super) fn highest_generation(layout: &Layout, project: &str) -> Result<u64> {
    let newest = generation_numbers(layout, project)?.last().copied().unwrap_or(0);
    let path = layout.project(project).join(layout::LAST_GENERATION);
    let deleted = match fs::read_to_string(&path) {
        Ok(text) => layout::parse_current(&text).ok_or_else(|| {
            Error::internal(format!(
                "{} does not hold a generation number ({text:?}); write the highest generation number the project had into it",
                path.display()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    Ok(newest.max(deleted))
}

/// The generation numbers of a project that have a manifest, ascending.
pub(super) fn generation_numbers(layout: &Layout, project: &str) -> Result<Vec<u64>> {
    let mut out: Vec<u64> = list_dir_names(&layout.generations(project))?
        .iter()
        .filter_map(|n| layout::parse_generation_file_name(n))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Reads `projects/P/generations/N.json`.
pub(super) fn read_generation(layout: &Layout, project: &str, n: u64) -> Result<GenerationManifest> {
    let path = layout.generation_file(project, n);
    if !path.exists() {
        return Err(Error::not_found(format!(
            "project {project} has no generation {n}; see 'goldenfs generations {project}'"
        )));
    }
    atomic::read_json(&path)
}

impl Store {
    /// Every project with its current generation, in name order.
    pub fn list_projects(&self) -> Result<Vec<ProjectSummary>> {
        let projects: Vec<_> = self.projects.lock().values().cloned().collect();
        let sessions = self.sessions.lock().clone();
        let mut out = Vec::new();
        for p in projects {
            let current = {
                let st = p.state.read();
                if st.deleted {
                    continue;
                }
                st.current
            };
            let name = &p.meta.name;
            let gens = generation_numbers(&self.layout, name)?;
            let depth = read_generation(&self.layout, name, current)
                .map(|m| m.layers.len())
                .unwrap_or(0);
            out.push(ProjectSummary {
                project: name.clone(),
                created_at: p.meta.created_at.clone(),
                current_generation: current,
                generations: gens.len(),
                layer_depth: depth,
                sessions: sessions
                    .values()
                    .filter(|s| &s.project == name)
                    .map(|s| s.session.clone())
                    .collect(),
            });
        }
        Ok(out)
    }

    /// The project's current generation number.
    pub fn current_generation(&self, project: &str) -> Result<u64> {
        let p = self.project(project)?;
        Ok(p.state.read().current)
    }

    /// One generation's manifest.
    pub fn generation(&self, project: &str, n: u64) -> Result<GenerationManifest> {
        self.project(project)?;
        read_generation(&self.layout, project, n)
    }

    /// All generations of a project, ascending, with current and pins marked.
    pub fn generations(&self, project: &str) -> Result<Vec<GenerationSummary>> {
        let p = self.project(project)?;
        let current = p.state.read().current;
        let sessions = self.sessions.lock().clone();
        let mut out = Vec::new();
        for n in generation_numbers(&self.layout, project)? {
            let m = match read_generation(&self.layout, project, n) {
                Ok(m) => m,
                // Deleted by a concurrent GC between listing and reading.
                Err(e) if e.code == crate::error::ErrorCode::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.push(GenerationSummary {
                generation: m.generation,
                created_at: m.created_at,
                session_id: m.session_id,
                parent: m.parent,
                layers: m.layers,
                compacted_from: m.compacted_from,
                current: n == current,
                pinned_by: sessions
                    .values()
                    .filter(|s| s.project == project && s.base_generation == n)
                    .map(|s| s.session.clone())
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Names of the sessions of a project.
    pub fn project_sessions(&self, project: &str) -> Vec<String> {
        self.sessions
            .lock()
            .values()
            .filter(|s| s.project == project)
            .map(|s| s.session.clone())
            .collect()
    }

    /// Deletes a project with all its generations. Refused while it has
    /// sessions (discard them first). Layers no other project uses are deleted
    /// too; returns the bytes freed.
    pub fn delete_project(&self, project: &str) -> Result<u64> {
        let _m = self.maintenance.read();
        let p = self.project(project)?;
        let _promote = p.promote_lock.lock();
        let dir = {
            let mut st = p.state.write();
            if st.deleted {
                return Err(Error::not_found(format!("project {project} was just deleted")));
            }
            let sessions = self.project_sessions(project);
            if !sessions.is_empty() {
                return Err(Error::busy(format!(
                    "project {project} still has sessions ({}); discard them first or use 'goldenfs project delete {project} --force'",
                    sessions.join(", ")
                )));
            }
            let dir = atomic::move_to_work(&self.layout.project(project), &self.layout.work(), "project")?;
            st.deleted = true;
            self.projects.lock().remove(project);
            dir
        };
        atomic::remove_tree(&dir)?;
        drop(_promote);
        drop(_m);
        // Its layers are now unreferenced (unless shared): collect them.
        let progress = self
            .operations
            .start(OperationKind::DeleteProject, Some(project), "deleting layers");
        let freed = self.gc_layers(&progress)?;
        log::info!("deleted project {project}");
        Ok(freed.1)
    }
}
