//! Start-up recovery: brings a store that a crash interrupted back to a
//! consistent state. Runs before the store is loaded, on disk only.
//!
//! Repairs, in order:
//! 1. `work/` is emptied (half-built layers, sessions, projects, trash).
//! 2. Temp files of interrupted atomic writes (`.NAME.tmp-…`) are removed,
//!    and every session's `work/` (its view's scratch) is emptied.
//! 3. Interrupted promotions (a session record without `upper/`): if the
//!    promoted generation is current, the promotion completed and the record
//!    is removed; otherwise the layer is moved back to the session's upper
//!    and the manifest deleted (the promotion did not happen).
//! 4. Manifests whose layers are missing (crash after step 1 of a promotion)
//!    are deleted unless current. A project whose current generation is
//!    incomplete and that has nothing else (an interrupted `--move` import)
//!    is removed; the source directory was never moved.
//! 5. Layers no manifest references are deleted, with their sidecars; a
//!    sidecar (`layer-meta/L.json`) whose layer does not exist (an
//!    interrupted compaction or GC) is deleted.

use serde::{Deserialize, Serialize};
use std::fs;

use super::atomic;
use super::gc::referenced_layers;
use super::layout::{self, Layout, SessionRecord};
use super::list_dir_names;
use super::project::{generation_numbers, read_current, read_generation};
use crate::error::Result;

/// What recovery repaired (each entry is a human sentence; also logged).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryReport {
    pub actions: Vec<String>,
}

impl RecoveryReport {
    fn note(&mut self, msg: String) {
        log::warn!("recovery: {msg}");
        self.actions.push(msg);
    }
}

pub(super) fn recover(layout: &Layout) -> Result<RecoveryReport> {
    let mut r = RecoveryReport::default();
    // 1. work/
    let work = layout.work();
    for name in fs::read_dir(&work)
        .map_err(|e| crate::error::Error::io(format!("listing {}", work.display()), e))?
        .flatten()
        .map(|e| e.file_name())
    {
        atomic::remove_tree(&work.join(&name))?;
        log::debug!("recovery: removed {:?} from work/", name);
    }
    // 2. temp files in project dirs
    for p in list_dir_names(&layout.projects())? {
        for dir in [layout.project(&p), layout.generations(&p)] {
            if let Ok(rd) = fs::read_dir(&dir) {
                for ent in rd.flatten() {
                    if ent.file_name().to_string_lossy().starts_with('.') {
                        atomic::remove_tree(&ent.path())?;
                    }
                }
            }
        }
    }
    for s in list_dir_names(&layout.sessions())? {
        if let Ok(rd) = fs::read_dir(layout.session(&s)) {
            for ent in rd.flatten() {
                if ent.file_name().to_string_lossy().starts_with('.') {
                    atomic::remove_tree(&ent.path())?;
                }
            }
        }
        // A view's scratch: a copy-up the crash interrupted (as big as the
        // file), the shared whiteout inode. Emptied before every mount too,
        // but a crashed session may never be mounted again.
        if let Ok(rd) = fs::read_dir(layout.session_work(&s)) {
            for ent in rd.flatten() {
                atomic::remove_tree(&ent.path())?;
                log::debug!("recovery: removed {:?} from the work/ of session {s}", ent.file_name());
            }
        }
    }
    // 3. interrupted promotions
    for s in list_dir_names(&layout.sessions())? {
        let rec_path = layout.session(&s).join(layout::SESSION_JSON);
        let Ok(rec) = atomic::read_json::<SessionRecord>(&rec_path) else {
            continue;
        };
        if layout.session_upper(&s).exists() || !layout.project(&rec.project).is_dir() {
            continue;
        }
        recover_promotion(layout, &rec, &mut r)?;
    }
    // 4. incomplete manifests and projects
    for p in list_dir_names(&layout.projects())? {
        recover_project(layout, &p, &mut r)?;
    }
    // 5. unreferenced layers
    let referenced = referenced_layers(layout)?;
    for id in list_dir_names(&layout.layers())? {
        if !referenced.contains(&id) {
            // Its sidecar, now an orphan, goes in step 6.
            let trash = atomic::move_to_work(&layout.layer(&id), &work, "layer")?;
            atomic::remove_tree(&trash)?;
            r.note(format!("deleted layer {id}: no generation references it"));
        }
    }
    // 6. sidecars of layers that do not exist
    if let Ok(rd) = fs::read_dir(layout.layer_metas()) {
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            let orphan = match name.strip_suffix(".json") {
                Some(id) if !name.starts_with('.') => !layout.layer(id).is_dir(),
                _ => true,
            };
            if orphan {
                atomic::remove_tree(&ent.path())?;
                r.note(format!("deleted layer-meta/{name}: its layer does not exist"));
            }
        }
    }
    Ok(r)
}

fn recover_promotion(layout: &Layout, rec: &SessionRecord, r: &mut RecoveryReport) -> Result<()> {
    let (s, p) = (&rec.session, &rec.project);
    let current = read_current(layout, p).ok();
    let mut candidate = None;
    for n in generation_numbers(layout, p)? {
        if let Ok(m) = read_generation(layout, p, n)
            && m.session_id.as_deref() == Some(s.as_str())
            && m.layers.first().is_some_and(|l| layout.layer(l).is_dir())
        {
            candidate = Some(m);
        }
    }
    let Some(m) = candidate else {
        r.note(format!(
            "session {s} has no upper directory and no generation holds it; discard it with 'goldenfs session discard {s}'"
        ));
        return Ok(());
    };
    if current == Some(m.generation) {
        let trash = atomic::move_to_work(&layout.session(s), &layout.work(), "session")?;
        atomic::remove_tree(&trash)?;
        r.note(format!(
            "finished promotion of session {s}: {p} generation {} is current; removed the session record",
            m.generation
        ));
    } else {
        let layer = layout.layer(&m.layers[0]);
        atomic::rename_noreplace(&layer, &layout.session_upper(s))?;
        atomic::remove_tree(&layout.generation_file(p, m.generation))?;
        atomic::fsync_dir(&layout.generations(p))?;
        r.note(format!(
            "undid interrupted promotion of session {s} into {p} generation {}: its changes are back in the session",
            m.generation
        ));
    }
    Ok(())
}

fn recover_project(layout: &Layout, p: &str, r: &mut RecoveryReport) -> Result<()> {
    let current = read_current(layout, p).ok();
    let numbers = generation_numbers(layout, p)?;
    let complete = |n: u64| {
        read_generation(layout, p, n)
            .map(|m| m.layers.iter().all(|l| layout.layer(l).is_dir()))
            .unwrap_or(false)
    };
    let mut kept = Vec::new();
    for &n in &numbers {
        if complete(n) {
            kept.push(n);
        } else if Some(n) != current {
            atomic::remove_tree(&layout.generation_file(p, n))?;
            r.note(format!(
                "deleted generation {n} of {p}: its layers are missing (interrupted promotion)"
            ));
        }
    }
    if let Some(c) = current
        && kept.contains(&c)
    {
        return Ok(());
    }
    let has_sessions = list_dir_names(&layout.sessions())?.iter().any(|s| {
        atomic::read_json::<SessionRecord>(&layout.session(s).join(layout::SESSION_JSON))
            .is_ok_and(|rec| rec.project == p)
    });
    match kept.last() {
        None if !has_sessions => {
            let trash = atomic::move_to_work(&layout.project(p), &layout.work(), "project")?;
            atomic::remove_tree(&trash)?;
            r.note(format!(
                "removed project {p}: its creation was interrupted (no complete generation); create it again"
            ));
        }
        None => r.note(format!(
            "project {p} has no complete generation but has sessions; discard them and delete the project"
        )),
        Some(&n) => {
            atomic::write_atomic(&layout.project(p), layout::CURRENT, format!("{n}\n").as_bytes())?;
            r.note(format!(
                "project {p}: current generation {current:?} was missing or incomplete; pointed it at generation {n}"
            ));
        }
    }
    Ok(())
}
