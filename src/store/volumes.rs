//! Docker volume records: `STATE/docker-volumes/NAME.json`, one per volume
//! created through the Docker volume plugin (see `docs/docker.md`).
//!
//! A record outlives its session: promotion and discard remove
//! `sessions/NAME`, and the record then says what became of the volume
//! until Docker removes it. The directory is created with the first
//! record, so stores that never serve the plugin do not change.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Store;
use super::atomic;
use crate::error::{Error, Result};

/// Directory of the records, under the store root.
pub const DOCKER_VOLUMES: &str = "docker-volumes";

/// One Docker volume (the options it was created with, and its fate).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// The volume's name, also its session's name.
    pub volume: String,
    pub project: String,
    /// Promote the session when its last container unmounts it.
    #[serde(default)]
    pub promote: bool,
    pub created_at: String,
    /// The generation the plugin promoted it to (its session is then gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_to: Option<u64>,
}

impl Store {
    fn volume_dir(&self) -> PathBuf {
        self.layout.root.join(DOCKER_VOLUMES)
    }

    /// The record of volume `name`, if there is one.
    pub fn volume_record(&self, name: &str) -> Result<Option<VolumeRecord>> {
        crate::names::validate("volume", name)?;
        let path = self.volume_dir().join(format!("{name}.json"));
        match fs::symlink_metadata(&path) {
            Ok(_) => atomic::read_json(&path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Every volume record, in name order. Unreadable records are logged
    /// and skipped, so one bad file does not hide the others.
    pub fn volume_records(&self) -> Result<Vec<VolumeRecord>> {
        let dir = self.volume_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        let mut out = Vec::new();
        for ent in entries {
            let ent = ent.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            let name = ent.file_name();
            let Some(volume) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if crate::names::validate("volume", volume).is_err() {
                continue; // temp files of an interrupted write
            }
            match atomic::read_json::<VolumeRecord>(&ent.path()) {
                Ok(rec) => out.push(rec),
                Err(e) => log::warn!("skipping Docker volume {volume}: {}", e.message),
            }
        }
        out.sort_by(|a, b| a.volume.cmp(&b.volume));
        Ok(out)
    }

    /// Writes (or replaces) a record atomically: temp file, fsync, rename,
    /// fsync of the directory.
    pub fn write_volume_record(&self, rec: &VolumeRecord) -> Result<()> {
        crate::names::validate("volume", &rec.volume)?;
        let dir = self.volume_dir();
        match fs::create_dir(&dir) {
            Ok(()) => atomic::fsync_dir(&self.layout.root)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
        }
        atomic::write_json_atomic(&dir, &format!("{}.json", rec.volume), rec)
    }

    /// Deletes a record (a missing one is fine).
    pub fn remove_volume_record(&self, name: &str) -> Result<()> {
        crate::names::validate("volume", name)?;
        let dir = self.volume_dir();
        let path = dir.join(format!("{name}.json"));
        match fs::remove_file(&path) {
            Ok(()) => atomic::fsync_dir(&dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_records_round_trip_and_old_records_parse() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("s")).unwrap();
        assert_eq!(store.volume_records().unwrap(), vec![]);
        assert_eq!(store.volume_record("v1").unwrap(), None);
        let rec = VolumeRecord {
            volume: "v1".into(),
            project: "web".into(),
            promote: true,
            created_at: "2026-12-04T14:00:00Z".into(),
            promoted_to: None,
        };
        store.write_volume_record(&rec).unwrap();
        assert_eq!(store.volume_record("v1").unwrap(), Some(rec.clone()));
        assert_eq!(store.volume_records().unwrap(), vec![rec]);
        store.remove_volume_record("v1").unwrap();
        store.remove_volume_record("v1").unwrap();
        assert_eq!(store.volume_records().unwrap(), vec![]);
        let minimal: VolumeRecord =
            serde_json::from_str(r#"{"volume":"v","project":"p","created_at":"2026-12-04T14:00:00Z"}"#).unwrap();
        assert!(!minimal.promote);
        assert!(store.volume_record("../x").is_err());
    }
}
