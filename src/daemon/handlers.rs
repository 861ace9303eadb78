//! One handler per request. Each returns a typed result or an [`Error`]
//! whose message says what was wrong and what to do.

use std::path::PathBuf;

use super::Daemon;
use super::mountpoint;
use crate::error::{Error, ErrorCode, Result};
use crate::fuse::{MountedView, ViewConfig};
use crate::protocol::*;
use crate::store::{DEFAULT_KEEP, ImportSource, SessionRecord};

pub(super) fn dispatch(d: &Daemon, req: Request) -> Result<Response> {
    Ok(match req {
        Request::Ping {} => Response::success(&ping()),
        Request::ProjectCreate { project, from, move_ } => {
            Response::success(&project_create(d, &project, from, move_)?)
        }
        Request::ProjectList {} => Response::success(&ProjectListResult {
            projects: d.store.list_projects()?,
        }),
        Request::ProjectDelete { project, force } => Response::success(&project_delete(d, &project, force)?),
        Request::SessionMount {
            project,
            session,
            mountpoint,
        } => {
            let mounted = session_mount(d, &project, &session, &mountpoint);
            if mounted.is_err() {
                d.registry.forget_idle_slot(&session);
            }
            Response::success(&mounted?)
        }
        Request::SessionUnmount { session, lazy } => Response::success(&session_unmount(d, &session, lazy)?),
        Request::SessionDiscard { session, force } => Response::success(&session_discard(d, &session, force)?),
        Request::SessionList {} => Response::success(&SessionListResult {
            sessions: session_list(d),
        }),
        Request::Promote {
            project,
            session,
            if_generation,
        } => Response::success(&promote(d, &project, &session, if_generation)?),
        Request::Compact { project } => Response::success(&d.store.compact(&project)?),
        Request::Generations { project } => Response::success(&generations(d, &project)?),
        Request::Rollback { project, generation } => Response::success(&d.store.rollback(&project, generation)?),
        Request::Gc { keep } => Response::success(&d.store.gc(keep.unwrap_or(DEFAULT_KEEP))?),
        Request::Status {} => Response::success(&status(d)?),
        Request::Operations {} => Response::success(&OperationsResult {
            operations: d.store.operations(),
        }),
    })
}

fn ping() -> PingResult {
    PingResult {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
    }
}

fn project_create(d: &Daemon, project: &str, from: Option<String>, move_: bool) -> Result<ImportReport> {
    crate::names::validate("project", project)?;
    if let Some(dir) = &from {
        let path = mountpoint::check_request_path("source directory", dir)?;
        if std::fs::metadata(path).is_ok_and(|m| !m.is_dir()) {
            return Err(Error::invalid(format!(
                "source directory {dir} is not a directory; pass the directory to import"
            )));
        }
    }
    let source = match (from, move_) {
        (None, true) => {
            return Err(Error::invalid(format!(
                "--move needs --from DIR: 'goldenfs project create {project} --from DIR --move'"
            )));
        }
        (None, false) => ImportSource::Empty,
        (Some(dir), false) => ImportSource::Copy(PathBuf::from(dir)),
        (Some(dir), true) => ImportSource::Move(PathBuf::from(dir)),
    };
    d.store.create_project(project, source)
}

fn project_delete(d: &Daemon, project: &str, force: bool) -> Result<ProjectDeleteResult> {
    d.store.current_generation(project)?; // NotFound early, with the usual message
    let mut discarded = Vec::new();
    if force {
        for s in d.store.project_sessions(project) {
            session_discard(d, &s, true)?;
            discarded.push(s);
        }
    }
    let bytes_freed = d.store.delete_project(project)?;
    Ok(ProjectDeleteResult {
        project: project.to_string(),
        discarded_sessions: discarded,
        bytes_freed,
    })
}

fn session_mount(d: &Daemon, project: &str, session: &str, raw_mountpoint: &str) -> Result<MountResult> {
    crate::names::validate("project", project)?;
    crate::names::validate("session", session)?;
    let slot = d.registry.slot(session);
    let mut g = slot.lock();
    if d.is_shutting_down() {
        return Err(Error::busy(
            "the daemon is shutting down; mount again once it is restarted",
        ));
    }
    if let Some(v) = g.live_view(session, &d.registry) {
        return Err(Error::busy(format!(
            "session {session} is already mounted at {}; unmount it first ('goldenfs session unmount {session}')",
            v.mountpoint().display()
        )));
    }
    // Check ownership before touching the mountpoint.
    if let Ok(rec) = d.store.session(session)
        && rec.project != project
    {
        return Err(Error::conflict(format!(
            "session {session} belongs to project {}, not {project}; pick another session name",
            rec.project
        )));
    }
    let mp = mountpoint::check(raw_mountpoint, &d.store, &d.config.socket, &d.registry.mountpoints())?;
    crate::fault::pause("mount:after-check");
    d.registry.claim_mountpoint(session, &mp)?;
    let mounted = (|| {
        let opened = d.store.open_session(project, session)?;
        let cfg = ViewConfig {
            session_id: session.to_string(),
            mountpoint: mp.clone(),
            upper: opened.upper.clone(),
            work: opened.work.clone(),
            lowers: opened.lowers.clone(),
            version: opened.version.clone(),
            threads: d.config.threads,
        };
        match MountedView::mount(cfg) {
            Ok(v) => Ok((v, opened)),
            Err(e) => {
                if opened.created
                    && let Err(de) = d.store.discard_session(session)
                {
                    log::warn!("removing session {session} after its failed mount: {de}");
                }
                Err(Error::new(
                    e.code,
                    format!("mounting session {session} at {}: {}", mp.display(), e.message),
                ))
            }
        }
    })();
    let (view, opened) = match mounted {
        Ok(x) => x,
        Err(e) => {
            d.registry.release_mountpoint(session);
            return Err(e);
        }
    };
    d.registry.set_view(session, view.metrics());
    g.view = Some(view);
    if let Err(e) = d.store.set_session_mountpoint(session, Some(mp.clone())) {
        log::warn!("session {session}: cannot record its mountpoint: {e}");
    }
    log::info!(
        "mounted session {session} of {project} (generation {}) at {}",
        opened.record.base_generation,
        mp.display()
    );
    Ok(MountResult {
        session: session.to_string(),
        project: project.to_string(),
        base_generation: opened.record.base_generation,
        mountpoint: mp.display().to_string(),
        created: opened.created,
    })
}

fn not_mounted(session: &str) -> Error {
    Error::new(
        ErrorCode::InvalidArgument,
        format!("session {session} is not mounted; mount it with 'goldenfs session mount PROJECT {session} DIR'"),
    )
}

fn session_unmount(d: &Daemon, session: &str, lazy: bool) -> Result<UnmountResult> {
    d.store.session(session)?;
    let slot = d.registry.slot(session);
    let mut g = slot.lock();
    if g.live_view(session, &d.registry).is_none() {
        return Err(not_mounted(session));
    }
    let Some(view) = g.view.take() else {
        return Err(not_mounted(session));
    };
    let mp = view.mountpoint().display().to_string();
    match view.unmount(lazy) {
        Ok(()) => {
            d.registry.release_mountpoint(session);
            log::info!(
                "unmounted session {session} from {mp}{}",
                if lazy { " (lazily)" } else { "" }
            );
            Ok(UnmountResult {
                session: session.to_string(),
                mountpoint: mp,
                lazy,
            })
        }
        Err((view, e)) => {
            g.view = Some(view);
            Err(Error::new(
                e.code,
                format!(
                    "cannot unmount session {session} at {mp}: {}; close the files and processes using it, or use --lazy",
                    e.message
                ),
            ))
        }
    }
}

fn session_discard(d: &Daemon, session: &str, force: bool) -> Result<DiscardResult> {
    d.store.session(session)?;
    let slot = d.registry.slot(session);
    let mut g = slot.lock();
    let mut unmounted = false;
    if let Some(v) = g.live_view(session, &d.registry) {
        if !force {
            return Err(Error::busy(format!(
                "session {session} is mounted at {}; unmount it first, or use 'goldenfs session discard {session} --force'",
                v.mountpoint().display()
            )));
        }
        if let Some(view) = g.view.take()
            && let Err((view, e)) = view.unmount(true)
        {
            g.view = Some(view);
            return Err(Error::new(
                e.code,
                format!("cannot detach session {session}: {}", e.message),
            ));
        }
        d.registry.release_mountpoint(session);
        unmounted = true;
    }
    let rec = d.store.discard_session(session)?;
    Ok(DiscardResult {
        session: session.to_string(),
        project: rec.project,
        unmounted,
    })
}

pub(super) fn session_info(d: &Daemon, rec: SessionRecord) -> SessionInfo {
    let slot = d.registry.slot(&rec.session);
    // A slot busy with a mount or unmount: report what the registry claims.
    let mounted_at = match slot.try_lock() {
        Some(mut g) => g
            .live_view(&rec.session, &d.registry)
            .map(|v| v.mountpoint().to_path_buf()),
        None => d.registry.mountpoints().get(&rec.session).cloned(),
    };
    SessionInfo {
        mounted: mounted_at.is_some(),
        mountpoint: mounted_at.or(rec.mountpoint).map(|p| p.display().to_string()),
        session: rec.session,
        project: rec.project,
        base_generation: rec.base_generation,
        created_at: rec.created_at,
    }
}

pub(super) fn session_list(d: &Daemon) -> Vec<SessionInfo> {
    d.store.sessions().into_iter().map(|r| session_info(d, r)).collect()
}

fn promote(d: &Daemon, project: &str, session: &str, if_generation: Option<u64>) -> Result<PromoteReport> {
    d.store.session(session)?;
    let slot = d.registry.slot(session);
    let mut g = slot.lock();
    if let Some(v) = g.live_view(session, &d.registry) {
        return Err(Error::busy(format!(
            "session {session} is mounted at {}; unmount it first ('goldenfs session unmount {session}') so its writers are done",
            v.mountpoint().display()
        )));
    }
    let report = d.store.promote(project, session, if_generation)?;
    d.maybe_compact(project, report.layers.len());
    Ok(report)
}

fn generations(d: &Daemon, project: &str) -> Result<GenerationsResult> {
    let generations = d.store.generations(project)?;
    let current = generations
        .iter()
        .find(|g| g.current)
        .map(|g| g.generation)
        .unwrap_or(d.store.current_generation(project)?);
    Ok(GenerationsResult {
        project: project.to_string(),
        current,
        generations,
    })
}

fn status(d: &Daemon) -> Result<StatusResult> {
    let snap = super::metrics::collect(d)?;
    Ok(StatusResult {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        state_dir: d.store.root().display().to_string(),
        socket: d.config.socket.display().to_string(),
        backing_fs: d.store.fs_type().to_string(),
        started_at: d.started_at.clone(),
        sessions: snap
            .sessions
            .iter()
            .map(|s| SessionStatus {
                metrics: s.status_metrics(),
                info: s.info.clone(),
            })
            .collect(),
        projects: snap.projects,
        compactions: d.store.running_compactions(),
        operations: d.store.operations(),
        docker_plugin: d.config.docker_plugin.as_ref().map(|p| DockerPluginStatus {
            socket: p.socket.display().to_string(),
            volume_dir: p.volume_dir.display().to_string(),
            volumes: d.store.volume_records().map(|v| v.len()).unwrap_or(0),
        }),
        metrics: snap.daemon,
    })
}
