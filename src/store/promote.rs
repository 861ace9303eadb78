//! Promotion (a session's upper becomes a new generation) and rollback.
//!
//! Promotion order, each step durable before the next (recovery in
//! `recovery.rs` repairs a crash between any two):
//! 1. write `generations/N.json` naming the new layer id;
//! 2. rename `sessions/S/upper` to `layers/<id>` (O(1));
//! 3. under the project's write lock: check `--if-generation`, rename the
//!    prepared `current` file into place;
//! 4. remove the session record.

use serde::{Deserialize, Serialize};
use std::fs;

use super::Store;
use super::atomic;
use super::layout::{self, GenerationManifest};
use super::project::{generation_numbers, highest_generation, read_generation};
use crate::error::{Error, ErrorCode, Result};
use crate::fault;

/// What a promotion published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteReport {
    pub project: String,
    pub session: String,
    /// The new generation (now current).
    pub generation: u64,
    /// The generation the new one is built on: the session's base
    /// generation, or the generation compacted from it (same content).
    pub parent: u64,
    /// The generation that was current before.
    pub previous: u64,
    /// Id of the new top layer (the session's former upper).
    pub layer: String,
    /// Layers of the new generation, top first.
    pub layers: Vec<String>,
}

/// What a rollback did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackReport {
    pub project: String,
    pub generation: u64,
    pub previous: u64,
}

fn conflict(project: &str, current: u64, expected: u64) -> Error {
    Error::conflict(format!(
        "project {project} is at generation {current}, not {expected} (--if-generation {expected}); nothing was promoted — rebase your work on generation {current} or drop --if-generation"
    ))
}

impl Store {
    /// Promotes unmounted session `session` of `project` into generation
    /// max+1 (its upper on top of its base generation's layers) and makes it
    /// current. With `if_generation`, refuses (`Conflict`, store unchanged)
    /// unless current is that generation.
    pub fn promote(&self, project: &str, session: &str, if_generation: Option<u64>) -> Result<PromoteReport> {
        crate::names::validate("session", session)?;
        let _m = self.maintenance.read();
        let p = self.project(project)?;
        let _serial = p.promote_lock.lock();
        let rec = self.session(session)?;
        if rec.project != project {
            return Err(Error::invalid(format!(
                "session {session} belongs to project {}, not {project}; promote it with 'goldenfs promote {} {session}'",
                rec.project, rec.project
            )));
        }
        let previous = p.state.read().current;
        if let Some(expected) = if_generation
            && expected != previous
        {
            return Err(conflict(project, previous, expected));
        }
        let upper = self.layout.session_upper(session);
        if !upper.is_dir() {
            return Err(Error::internal(format!(
                "session {session} has no upper directory {}; discard it with 'goldenfs session discard {session}'",
                upper.display()
            )));
        }
        let base = self.promotion_base(project, rec.base_generation)?;
        let (n, layer_id) = self.next_generation(project, previous)?;
        let mut layers = vec![layer_id.clone()];
        layers.extend(base.layers.iter().cloned());
        let manifest = GenerationManifest {
            generation: n,
            created_at: atomic::now_rfc3339(),
            session_id: Some(session.to_string()),
            project_id: project.to_string(),
            parent: Some(base.generation),
            layers: layers.clone(),
            compacted_from: None,
        };
        // The session's writes must be on disk before they are published.
        self.sync_fs()?;
        let gen_dir = self.layout.generations(project);
        let gen_name = layout::generation_file_name(n);
        atomic::write_json_atomic(&gen_dir, &gen_name, &manifest)?;
        fault::point("promote:after-manifest")?;
        let layer = self.layout.layer(&layer_id);
        if let Err(e) = atomic::rename_noreplace(&upper, &layer) {
            let _ = fs::remove_file(gen_dir.join(&gen_name));
            return Err(e);
        }
        fault::point("promote:after-layer-rename")?;
        // Undoes steps 1 and 2: the promotion did not happen.
        let undo = |e: Error| {
            let undone = atomic::rename_noreplace(&layer, &upper)
                .and_then(|()| atomic::remove_tree(&gen_dir.join(&gen_name)))
                .and_then(|()| atomic::fsync_dir(&gen_dir));
            if let Err(u) = undone {
                log::error!(
                    "undoing promotion of {session} into {project} generation {n}: {u}; restart the daemon to repair the store"
                );
            }
            e
        };
        // Writing the pointer can fail (a full disk): the session stays intact.
        let pointer = self.prepare_pointer(project, n).map_err(undo)?;
        fault::point("promote:before-pointer-swap")?;
        fault::pause("promote:before-pointer-swap");
        let swapped = {
            let mut st = p.state.write();
            match if_generation {
                Some(expected) if expected != st.current => Err(conflict(project, st.current, expected)),
                _ if st.deleted => Err(Error::not_found(format!("project {project} was deleted"))),
                _ => pointer.commit().map(|()| st.current = n),
            }
        };
        if let Err(e) = swapped {
            return Err(undo(e));
        }
        fault::point("promote:after-pointer-swap")?;
        // The session is now part of the generation: its record goes.
        if let Err(e) = self.remove_session_dir(session) {
            log::warn!("promoted {session} but could not remove its record: {e}; it is removed at the next start");
        }
        log::info!("promoted session {session}: {project} is now at generation {n} (was {previous})");
        Ok(PromoteReport {
            project: project.to_string(),
            session: session.to_string(),
            generation: n,
            parent: base.generation,
            previous,
            layer: layer_id,
            layers,
        })
    }

    /// The number of a new generation of `project` (max+1; numbers are never
    /// reused) and a fresh id for its layer.
    pub(super) fn next_generation(&self, project: &str, current: u64) -> Result<(u64, String)> {
        let n = highest_generation(&self.layout, project)?.max(current) + 1;
        let mut id = layout::new_layer_id(project, n);
        while self.layout.layer(&id).exists() {
            id = layout::new_layer_id(project, n);
        }
        Ok((n, id))
    }

    /// `current` = `n`, written and fsynced under a temp name; commit it
    /// under the project's write lock.
    pub(super) fn prepare_pointer(&self, project: &str, n: u64) -> Result<atomic::Prepared> {
        atomic::prepare_atomic(
            &self.layout.project(project),
            layout::CURRENT,
            format!("{n}\n").as_bytes(),
        )
    }

    /// The generation a session based on `base` is promoted onto: `base`
    /// itself, or, when it was compacted, the newest complete generation
    /// compacted from it (the same content in one layer, so the new
    /// generation is shallow too).
    fn promotion_base(&self, project: &str, base: u64) -> Result<GenerationManifest> {
        for n in generation_numbers(&self.layout, project)?.into_iter().rev() {
            if n <= base {
                break;
            }
            if let Ok(m) = read_generation(&self.layout, project, n)
                && m.compacted_from == Some(base)
                && m.layers.iter().all(|l| self.layout.layer(l).is_dir())
            {
                return Ok(m);
            }
        }
        read_generation(&self.layout, project, base)
    }

    /// Points `project`'s current generation at the existing generation `n`.
    pub fn rollback(&self, project: &str, n: u64) -> Result<RollbackReport> {
        let _m = self.maintenance.read();
        let p = self.project(project)?;
        let _serial = p.promote_lock.lock();
        let m = read_generation(&self.layout, project, n)?;
        if let Some(missing) = m.layers.iter().find(|l| !self.layout.layer(l).is_dir()) {
            return Err(Error::new(
                ErrorCode::Internal,
                format!(
                    "generation {n} of {project} is incomplete (layer {missing} is missing); pick another generation"
                ),
            ));
        }
        let pointer = self.prepare_pointer(project, n)?;
        fault::point("rollback:before-pointer-swap")?;
        let mut st = p.state.write();
        if st.deleted {
            return Err(Error::not_found(format!("project {project} was deleted")));
        }
        let previous = st.current;
        pointer.commit()?;
        st.current = n;
        drop(st);
        log::info!("rolled {project} back to generation {n} (was {previous})");
        Ok(RollbackReport {
            project: project.to_string(),
            generation: n,
            previous,
        })
    }
}
