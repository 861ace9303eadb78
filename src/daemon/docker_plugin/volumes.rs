//! The volume operations of the Docker plugin, on top of the daemon's
//! handlers: a volume NAME is the session NAME, created unmounted on its
//! project's current generation and mounted at `<volume-dir>/NAME` while
//! containers use it. Its options live in a store record
//! ([`crate::store::VolumeRecord`]); which containers use it (Mount IDs) is
//! kept in memory only: after a restart no volume is mounted.
//!
//! # Locks
//! Each volume has a mutex ([`Volumes::lock`]), held for a whole plugin
//! operation on it, so that mounts, unmounts and promotions of one volume do
//! not interleave. It comes before every daemon lock (a handler called
//! under it takes the session's slot, then store locks, then the registry's
//! maps). The map of volume mutexes is a leaf, held only to look one up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::super::Daemon;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{MountResult, PromoteReport, Request};
use crate::store::VolumeRecord;

/// How long the last Unmount retries a busy view before detaching it lazily.
pub const UNMOUNT_GRACE: Duration = Duration::from_secs(3);

/// Options `docker volume create -o` accepts.
const VALID_OPTIONS: &str = "project=PROJECT (required), promote=true|false (default false)";

/// What became of a volume's session.
enum Fate {
    /// It exists: the volume can be mounted.
    Session { base_generation: u64 },
    /// Promoted (by the plugin, or with `goldenfs promote`) to this generation.
    Promoted(u64),
    /// Discarded outside the plugin (or lost to a crash).
    Gone,
}

#[derive(Default)]
struct MountRefs {
    /// Mount IDs of the containers using the volume.
    ids: BTreeSet<String>,
}

pub(super) struct Volumes {
    daemon: Arc<Daemon>,
    dir: PathBuf,
    locks: Mutex<HashMap<String, Arc<Mutex<MountRefs>>>>,
}

fn no_volume(name: &str) -> Error {
    Error::not_found(format!(
        "no goldenfs volume named {name}; create it with 'docker volume create -d goldenfs -o project=PROJECT {name}'"
    ))
}

/// Runs a daemon request and returns its typed result.
fn call<T: DeserializeOwned>(d: &Daemon, req: Request) -> Result<T> {
    d.handle(req).into_result()
}

impl Volumes {
    /// Creates the volume directory (outside the store).
    pub(super) fn new(daemon: Arc<Daemon>, dir: &Path) -> Result<Volumes> {
        let overlap = |dir: &Path| {
            Error::invalid(format!(
                "--docker-volume-dir {} overlaps the state directory {}; pick a directory outside the store, e.g. {}",
                dir.display(),
                daemon.store.root().display(),
                super::DEFAULT_VOLUME_DIR
            ))
        };
        // Before creating it (nothing may appear in the store), and once
        // resolved (symlinks).
        if daemon.store.overlaps(dir) {
            return Err(overlap(dir));
        }
        let what = |e| Error::io(format!("creating --docker-volume-dir {}", dir.display()), e);
        std::fs::create_dir_all(dir).map_err(what)?;
        let dir = std::fs::canonicalize(dir).map_err(what)?;
        if daemon.store.overlaps(&dir) {
            return Err(overlap(&dir));
        }
        Ok(Volumes {
            daemon,
            dir,
            locks: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self, name: &str) -> Arc<Mutex<MountRefs>> {
        self.locks.lock().entry(name.to_string()).or_default().clone()
    }

    fn record(&self, name: &str) -> Result<VolumeRecord> {
        self.daemon.store.volume_record(name)?.ok_or_else(|| no_volume(name))
    }

    fn mount_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where session `name` is mounted, if it is.
    fn mounted_at(&self, name: &str) -> Option<PathBuf> {
        let rec = self.daemon.store.session(name).ok()?;
        let info = super::super::handlers::session_info(&self.daemon, rec);
        info.mountpoint.filter(|_| info.mounted).map(PathBuf::from)
    }

    fn fate(&self, rec: &VolumeRecord) -> Fate {
        if let Some(n) = rec.promoted_to {
            return Fate::Promoted(n);
        }
        if let Ok(s) = self.daemon.store.session(&rec.volume)
            && s.project == rec.project
        {
            return Fate::Session {
                base_generation: s.base_generation,
            };
        }
        // Promoted with 'goldenfs promote': a generation made from the
        // session since the volume was created (RFC 3339 UTC, same format).
        let promoted = self.daemon.store.generations(&rec.project).ok().and_then(|gens| {
            gens.iter()
                .filter(|g| g.session_id.as_deref() == Some(rec.volume.as_str()) && g.created_at >= rec.created_at)
                .map(|g| g.generation)
                .max()
        });
        promoted.map_or(Fate::Gone, Fate::Promoted)
    }

    /// `VolumeDriver.Create`: the record, then the session (unmounted).
    pub(super) fn create(&self, name: &str, opts: BTreeMap<String, String>) -> Result<()> {
        crate::names::validate("volume", name)?;
        let (project, promote) = parse_options(name, &opts)?;
        crate::names::validate("project", &project)?;
        self.daemon
            .store
            .current_generation(&project)
            .map_err(|e| Error::new(e.code, format!("cannot create volume {name}: {}", e.message)))?;
        let lock = self.lock(name);
        let _refs = lock.lock();
        let wanted = VolumeRecord {
            volume: name.to_string(),
            project: project.clone(),
            promote,
            created_at: crate::store::now_rfc3339(),
            promoted_to: None,
        };
        let foreign_session = |s: crate::store::SessionRecord| {
            Error::exists(format!(
                "a goldenfs session named {name} (project {}) exists and was not created by the Docker plugin; pick another volume name, or discard it first ('goldenfs session discard {name}')",
                s.project
            ))
        };
        // Whether this call writes the record (and removes it on failure).
        let fresh = match self.daemon.store.volume_record(name)? {
            Some(rec) if rec.project != project || rec.promote != promote => {
                return Err(Error::exists(format!(
                    "volume {name} already exists with options project={} promote={}; remove it first ('docker volume rm {name}') or pick another name",
                    rec.project, rec.promote
                )));
            }
            Some(rec) => match self.fate(&rec) {
                Fate::Session { .. } => return Ok(()), // Docker may create twice
                Fate::Promoted(n) => {
                    return Err(Error::exists(format!(
                        "volume {name} was promoted to generation {n} of {project}; remove it ('docker volume rm {name}') and create it again, or pick another name"
                    )));
                }
                Fate::Gone => {
                    if let Ok(s) = self.daemon.store.session(name) {
                        return Err(foreign_session(s));
                    }
                    log::warn!("volume {name}: its session is gone; creating it again");
                    self.daemon.store.write_volume_record(&wanted)?;
                    false
                }
            },
            None => {
                if let Ok(s) = self.daemon.store.session(name) {
                    return Err(foreign_session(s));
                }
                self.daemon.store.write_volume_record(&wanted)?;
                true
            }
        };
        let created = {
            let slot = self.daemon.registry.slot(name);
            let _g = slot.lock();
            self.daemon.store.create_session(&project, name)
        };
        match created {
            Ok(s) => {
                log::info!(
                    "docker volume {name} created: session of {project} on generation {} (promote={promote})",
                    s.base_generation
                );
                Ok(())
            }
            Err(e) => {
                if fresh && let Err(re) = self.daemon.store.remove_volume_record(name) {
                    log::warn!("volume {name}: {}", re.message);
                }
                self.daemon.registry.forget_idle_slot(name);
                Err(Error::new(
                    e.code,
                    format!("cannot create volume {name}: {}", e.message),
                ))
            }
        }
    }

    /// `VolumeDriver.Mount`: the first ID mounts the view, later ones share it.
    pub(super) fn mount(&self, name: &str, id: &str) -> Result<String> {
        crate::names::validate("volume", name)?;
        self.record(name)?; // no lock entry for names that are not volumes
        let lock = self.lock(name);
        let mut refs = lock.lock();
        let rec = self.record(name)?;
        match self.fate(&rec) {
            Fate::Session { .. } => {}
            Fate::Promoted(n) => {
                return Err(Error::conflict(format!(
                    "volume {name} was promoted to generation {n} of {} and cannot be mounted again; create a new volume ('docker volume create -d goldenfs -o project={} NEWNAME')",
                    rec.project, rec.project
                )));
            }
            Fate::Gone => return Err(gone(&rec)),
        }
        let path = self.mount_path(name);
        let shown = path.display().to_string();
        match self.mounted_at(name) {
            Some(mp) if mp == path && !refs.ids.is_empty() => {
                refs.ids.insert(id.to_string());
                log::info!("docker volume {name}: mounted for {id} too ({} users)", refs.ids.len());
                return Ok(shown);
            }
            Some(mp) => {
                return Err(Error::busy(format!(
                    "session {name} is mounted at {} by 'goldenfs session mount'; unmount it first ('goldenfs session unmount {name}') to use it as a Docker volume",
                    mp.display()
                )));
            }
            None => {}
        }
        if !refs.ids.is_empty() {
            log::warn!(
                "docker volume {name}: its view was unmounted outside the plugin; forgetting {} container references",
                refs.ids.len()
            );
            refs.ids.clear();
        }
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::io(
                    format!("creating the mountpoint {shown} of volume {name}"),
                    e,
                ));
            }
        }
        let mounted: Result<MountResult> = call(
            &self.daemon,
            Request::SessionMount {
                project: rec.project.clone(),
                session: name.to_string(),
                mountpoint: shown.clone(),
            },
        );
        let r = mounted.map_err(|e| {
            let _ = std::fs::remove_dir(&path);
            Error::new(e.code, format!("cannot mount volume {name}: {}", e.message))
        })?;
        refs.ids.insert(id.to_string());
        log::info!(
            "docker volume {name}: mounted at {shown} for {id} (project {}, generation {})",
            r.project,
            r.base_generation
        );
        Ok(shown)
    }

    /// `VolumeDriver.Unmount`: drops `id`'s reference; the last one
    /// unmounts the view and, for a `promote=true` volume with changes,
    /// promotes it.
    pub(super) fn unmount(&self, name: &str, id: &str) -> Result<()> {
        crate::names::validate("volume", name)?;
        self.record(name)?; // no lock entry for names that are not volumes
        let lock = self.lock(name);
        let mut refs = lock.lock();
        let mut rec = self.record(name)?;
        if !refs.ids.remove(id) {
            log::warn!(
                "docker volume {name}: unmount for {id}, which does not use it (the daemon restarted?); nothing to do"
            );
            return Ok(());
        }
        if !refs.ids.is_empty() {
            log::info!(
                "docker volume {name}: {id} is done with it; {} users left",
                refs.ids.len()
            );
            return Ok(());
        }
        let path = self.mount_path(name);
        let lazy = match self.mounted_at(name) {
            Some(mp) if mp == path => match self.unmount_view(name) {
                Ok(lazy) => lazy,
                Err(e) => {
                    refs.ids.insert(id.to_string());
                    return Err(e);
                }
            },
            _ => {
                log::warn!("docker volume {name}: its view was already unmounted outside the plugin");
                false
            }
        };
        if let Err(e) = std::fs::remove_dir(&path) {
            log::debug!("volume {name}: removing {}: {e}", path.display());
        }
        if !rec.promote {
            return Ok(());
        }
        let project = rec.project.clone();
        if lazy {
            return Err(Error::busy(format!(
                "volume {name} was still in use after {} s by a process outside its containers; it was detached lazily and NOT promoted, because that process may still write to it — once it is gone, run 'goldenfs promote {project} {name}'",
                UNMOUNT_GRACE.as_secs()
            )));
        }
        // dockerd mounts and unmounts a volume once before the container
        // starts, to copy the image's content at the mount target into an
        // empty volume (a view never is: it has golden-version.json). That
        // unmount must not promote: only a session with changes is promoted.
        if !self.daemon.store.session_has_changes(name)? {
            log::info!("docker volume {name}: unchanged since it was created; not promoted (it stays mountable)");
            return Ok(());
        }
        let report: PromoteReport = call(
            &self.daemon,
            Request::Promote {
                project: project.clone(),
                session: name.to_string(),
                if_generation: None,
            },
        )
        .map_err(|e| {
            Error::new(
                e.code,
                format!(
                    "volume {name} was unmounted but promoting it failed: {}; fix that and run 'goldenfs promote {project} {name}'",
                    e.message
                ),
            )
        })?;
        log::info!(
            "docker volume {name}: promoted; {project} is now at generation {}",
            report.generation
        );
        rec.promoted_to = Some(report.generation);
        if let Err(e) = self.daemon.store.write_volume_record(&rec) {
            // Get finds the promotion through the generation's session_id.
            log::warn!("docker volume {name}: recording its promotion: {}", e.message);
        }
        Ok(())
    }

    /// Unmounts the view; retries a busy one for [`UNMOUNT_GRACE`], then
    /// detaches it lazily. Returns whether it was lazy.
    fn unmount_view(&self, name: &str) -> Result<bool> {
        let deadline = Instant::now() + UNMOUNT_GRACE;
        loop {
            let lazy = Instant::now() >= deadline;
            let req = Request::SessionUnmount {
                session: name.to_string(),
                lazy,
            };
            match call::<Value>(&self.daemon, req) {
                Ok(_) if lazy => {
                    log::warn!(
                        "docker volume {name}: its view was still busy after {} s; detached it lazily",
                        UNMOUNT_GRACE.as_secs()
                    );
                    return Ok(true);
                }
                Ok(_) => {
                    log::info!("docker volume {name}: unmounted (no container uses it)");
                    return Ok(false);
                }
                Err(e) if e.code == ErrorCode::Busy && !lazy => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => {
                    return Err(Error::new(
                        e.code,
                        format!("cannot unmount volume {name}: {}", e.message),
                    ));
                }
            }
        }
    }

    /// `VolumeDriver.Remove`: refused while containers use it; discards
    /// the session (if it still has one) and forgets the volume.
    pub(super) fn remove(&self, name: &str) -> Result<()> {
        crate::names::validate("volume", name)?;
        self.record(name)?; // no lock entry for names that are not volumes
        let lock = self.lock(name);
        let refs = lock.lock();
        let rec = self.record(name)?;
        if !refs.ids.is_empty() {
            return Err(Error::busy(format!(
                "volume {name} is mounted by {} container(s); stop them first ('docker ps --filter volume={name}')",
                refs.ids.len()
            )));
        }
        if let Fate::Session { .. } = self.fate(&rec) {
            if let Some(mp) = self.mounted_at(name) {
                return Err(Error::busy(format!(
                    "session {name} is mounted at {} by 'goldenfs session mount'; unmount it first ('goldenfs session unmount {name}')",
                    mp.display()
                )));
            }
            call::<Value>(
                &self.daemon,
                Request::SessionDiscard {
                    session: name.to_string(),
                    force: false,
                },
            )
            .map_err(|e| Error::new(e.code, format!("cannot remove volume {name}: {}", e.message)))?;
        }
        self.daemon.store.remove_volume_record(name)?;
        drop(refs);
        self.locks.lock().remove(name);
        log::info!("docker volume {name} removed");
        Ok(())
    }

    /// The mountpoint while containers use the volume, else "".
    fn mountpoint(&self, name: &str, refs: &MountRefs) -> String {
        let path = self.mount_path(name);
        if !refs.ids.is_empty() && self.mounted_at(name).as_deref() == Some(path.as_path()) {
            path.display().to_string()
        } else {
            String::new()
        }
    }

    /// `VolumeDriver.Path`.
    pub(super) fn path(&self, name: &str) -> Result<String> {
        crate::names::validate("volume", name)?;
        self.record(name)?; // no lock entry for names that are not volumes
        let lock = self.lock(name);
        let refs = lock.lock();
        self.record(name)?;
        Ok(self.mountpoint(name, &refs))
    }

    /// `VolumeDriver.Get`: name, mountpoint, creation time and a status.
    pub(super) fn get(&self, name: &str) -> Result<Value> {
        crate::names::validate("volume", name)?;
        self.record(name)?; // no lock entry for names that are not volumes
        let lock = self.lock(name);
        let refs = lock.lock();
        let rec = self.record(name)?;
        let mountpoint = self.mountpoint(name, &refs);
        let mut status = json!({
            "project": rec.project,
            "promote": rec.promote,
            "mounts": refs.ids.len(),
        });
        let state = match self.fate(&rec) {
            Fate::Session { base_generation } => {
                status["base_generation"] = json!(base_generation);
                if mountpoint.is_empty() { "unmounted" } else { "mounted" }
            }
            Fate::Promoted(n) => {
                status["promoted_to"] = json!(n);
                "promoted"
            }
            Fate::Gone => "session gone",
        };
        status["state"] = json!(state);
        Ok(json!({
            "Name": rec.volume,
            "Mountpoint": mountpoint,
            "CreatedAt": rec.created_at,
            "Status": status,
        }))
    }

    /// `VolumeDriver.List`: the volumes created through the plugin (not the
    /// other sessions).
    pub(super) fn list(&self) -> Result<Vec<Value>> {
        let records = self.daemon.store.volume_records()?;
        Ok(records
            .into_iter()
            .map(|rec| {
                let lock = self.lock(&rec.volume);
                let refs = lock.lock();
                json!({
                    "Name": rec.volume,
                    "Mountpoint": self.mountpoint(&rec.volume, &refs),
                    "CreatedAt": rec.created_at,
                })
            })
            .collect())
    }
}

fn gone(rec: &VolumeRecord) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!(
            "volume {} has no session any more (discarded with 'goldenfs session discard'?); remove it ('docker volume rm {}') and create a new one",
            rec.volume, rec.volume
        ),
    )
}

/// `project` and `promote` from `docker volume create -o`; anything else is refused.
fn parse_options(name: &str, opts: &BTreeMap<String, String>) -> Result<(String, bool)> {
    if let Some(k) = opts.keys().find(|k| !matches!(k.as_str(), "project" | "promote")) {
        return Err(Error::invalid(format!(
            "unknown option {k:?} for goldenfs volume {name}; valid options: {VALID_OPTIONS}"
        )));
    }
    let Some(project) = opts.get("project").filter(|p| !p.is_empty()) else {
        return Err(Error::invalid(format!(
            "goldenfs volume {name} needs a project: 'docker volume create -d goldenfs -o project=PROJECT {name}' (valid options: {VALID_OPTIONS})"
        )));
    };
    let promote = match opts.get("promote").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Error::invalid(format!(
                "option promote={other:?} of volume {name}: use promote=true or promote=false"
            )));
        }
    };
    Ok((project.clone(), promote))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn options_need_a_project_and_refuse_unknown_keys() {
        assert_eq!(
            parse_options("v", &opts(&[("project", "web")])).unwrap(),
            ("web".into(), false)
        );
        assert_eq!(
            parse_options("v", &opts(&[("project", "web"), ("promote", "true")])).unwrap(),
            ("web".into(), true)
        );
        let e = parse_options("v", &opts(&[])).unwrap_err();
        assert!(e.message.contains("needs a project") && e.message.contains("promote=true|false"));
        let e = parse_options("v", &opts(&[("project", "web"), ("size", "1G")])).unwrap_err();
        assert!(e.message.contains("unknown option \"size\""), "{}", e.message);
        let e = parse_options("v", &opts(&[("project", "web"), ("promote", "yes")])).unwrap_err();
        assert!(e.message.contains("promote=true or promote=false"));
    }
}
