//! Sessions: records on disk, creation (the pin), reattachment, discard.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use super::Store;
use super::atomic;
use super::layout::{self, GenerationManifest, LowerLayer, SessionRecord};
use super::project::read_generation;
use crate::error::{Error, ErrorCode, Result};
use crate::overlay::version::VersionInfo;

/// Everything needed to mount a session (see `fuse::ViewConfig`).
#[derive(Clone, Debug)]
pub struct OpenedSession {
    pub record: SessionRecord,
    /// True when this call created the session (it did not exist before).
    pub created: bool,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Layers of the base generation, top first.
    pub lowers: Vec<LowerLayer>,
    pub version: VersionInfo,
}

impl Store {
    /// A session's record.
    pub fn session(&self, name: &str) -> Result<SessionRecord> {
        crate::names::validate("session", name)?;
        self.sessions
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no session named {name:?}; see 'goldenfs session list'")))
    }

    /// Every session, in name order.
    pub fn sessions(&self) -> Vec<SessionRecord> {
        self.sessions.lock().values().cloned().collect()
    }

    /// Creates session `session` on `project`'s current generation, or, when
    /// it exists, reattaches it to its own base generation and upper. Empties
    /// the session's `work/` directory. Errors if the session belongs to
    /// another project.
    pub fn open_session(&self, project: &str, session: &str) -> Result<OpenedSession> {
        crate::names::validate("project", project)?;
        crate::names::validate("session", session)?;
        let existing = self.sessions.lock().get(session).cloned();
        let (record, created) = match existing {
            Some(rec) => {
                if rec.project != project {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        format!(
                            "session {session} belongs to project {}, not {project}; pick another session name or mount it as 'goldenfs session mount {} {session} …'",
                            rec.project, rec.project
                        ),
                    ));
                }
                self.project(project)?;
                (rec, false)
            }
            None => (self.create_session(project, session)?, true),
        };
        let manifest = read_generation(&self.layout, project, record.base_generation)?;
        let upper = self.layout.session_upper(session);
        let work = self.layout.session_work(session);
        if !upper.is_dir() {
            return Err(Error::internal(format!(
                "session {session} has no upper directory {}; discard it with 'goldenfs session discard {session}'",
                upper.display()
            )));
        }
        empty_dir(&work)?;
        Ok(OpenedSession {
            lowers: self
                .layout
                .lower_layers(&manifest)
                .map_err(|e| Error::io(format!("reading the layer sidecars of session {session}"), e))?,
            version: manifest.version_info(),
            record,
            created,
            upper,
            work,
        })
    }

    /// Creates the session record pinned to the current generation: read
    /// lock, read current, build `sessions/S` in `work/`, rename it into
    /// place, release. The caller checks the names; an existing session is
    /// an `already_exists` error.
    pub fn create_session(&self, project: &str, session: &str) -> Result<SessionRecord> {
        let p = self.project(project)?;
        let st = p.state.read();
        if st.deleted {
            return Err(Error::not_found(format!("project {project} was just deleted")));
        }
        let base = st.current;
        let manifest = read_generation(&self.layout, project, base)?;
        let record = SessionRecord {
            session: session.to_string(),
            project: project.to_string(),
            base_generation: base,
            mountpoint: None,
            created_at: atomic::now_rfc3339(),
        };
        let build = self
            .layout
            .work()
            .join(atomic::unique_name(&format!("session-{session}")));
        let res = self.build_session_dir(&build, &record, &manifest).and_then(|()| {
            atomic::rename_noreplace(&build, &self.layout.session(session)).map_err(|e| {
                if e.code == ErrorCode::AlreadyExists {
                    Error::exists(format!(
                        "session {session} was created concurrently by another request; retry"
                    ))
                } else {
                    e
                }
            })
        });
        if let Err(e) = res {
            let _ = atomic::remove_tree(&build);
            return Err(e);
        }
        self.sessions.lock().insert(session.to_string(), record.clone());
        drop(st);
        log::info!("created session {session} of {project} on generation {base}");
        Ok(record)
    }

    fn build_session_dir(
        &self,
        build: &std::path::Path,
        record: &SessionRecord,
        base: &GenerationManifest,
    ) -> Result<()> {
        let io = |what: &str, e| Error::io(format!("{what} {}", build.display()), e);
        fs::create_dir(build).map_err(|e| io("creating", e))?;
        fs::set_permissions(build, fs::Permissions::from_mode(0o700)).map_err(|e| io("chmod", e))?;
        let upper = build.join("upper");
        fs::create_dir(&upper).map_err(|e| io("creating upper in", e))?;
        // The upper root takes the base generation's root attributes.
        let (mode, uid, gid) = base
            .layers
            .first()
            .and_then(|l| fs::symlink_metadata(self.layout.layer(l)).ok())
            .map(|m| (m.mode() & 0o7777, m.uid(), m.gid()))
            .unwrap_or((0o755, 0, 0));
        std::os::unix::fs::lchown(&upper, Some(uid), Some(gid)).map_err(|e| io("chown upper in", e))?;
        fs::set_permissions(&upper, fs::Permissions::from_mode(mode)).map_err(|e| io("chmod upper in", e))?;
        let work = build.join("work");
        fs::create_dir(&work).map_err(|e| io("creating work in", e))?;
        fs::set_permissions(&work, fs::Permissions::from_mode(0o700)).map_err(|e| io("chmod work in", e))?;
        atomic::write_json_atomic(build, layout::SESSION_JSON, record)
    }

    /// Records the mountpoint a session was (last) mounted at.
    pub fn set_session_mountpoint(&self, session: &str, mountpoint: Option<PathBuf>) -> Result<()> {
        let mut rec = self.session(session)?;
        rec.mountpoint = mountpoint;
        atomic::write_json_atomic(&self.layout.session(session), layout::SESSION_JSON, &rec)?;
        self.sessions.lock().insert(session.to_string(), rec);
        Ok(())
    }

    /// Whether the session's upper holds anything: an entry made, changed
    /// or deleted in the view (a change to the root directory's own
    /// metadata alone does not count).
    pub fn session_has_changes(&self, session: &str) -> Result<bool> {
        self.session(session)?;
        let upper = self.layout.session_upper(session);
        let mut entries = fs::read_dir(&upper).map_err(|e| Error::io(format!("listing {}", upper.display()), e))?;
        Ok(entries.next().is_some())
    }

    /// Deletes a session: its upper (all its changes) and its record, which
    /// drops its pin. The caller makes sure it is not mounted.
    pub fn discard_session(&self, session: &str) -> Result<SessionRecord> {
        let rec = self.session(session)?;
        self.remove_session_dir(session)?;
        log::info!("discarded session {session} of {}", rec.project);
        Ok(rec)
    }

    /// Moves `sessions/S` into `work/` (atomic), forgets it, then deletes it.
    pub(super) fn remove_session_dir(&self, session: &str) -> Result<()> {
        let trash = atomic::move_to_work(&self.layout.session(session), &self.layout.work(), "session")?;
        self.sessions.lock().remove(session);
        atomic::remove_tree(&trash)
    }
}

/// Removes everything inside `dir` (not `dir` itself).
fn empty_dir(dir: &std::path::Path) -> Result<()> {
    let rd = fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        atomic::remove_tree(&ent.path())?;
    }
    Ok(())
}
