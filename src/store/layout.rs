//! Paths inside a store and the JSON manifests kept there
//! (see `docs/on-disk-format.md`).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::overlay::version::VersionInfo;

/// Current on-disk format version (`store.json`).
pub const STORE_FORMAT: u32 = 1;

/// `STATE/store.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoreMeta {
    pub format: u32,
}

/// `STATE/projects/P/project.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectMeta {
    pub name: String,
    pub created_at: String,
}

/// `STATE/projects/P/generations/N.json`: one immutable generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationManifest {
    pub generation: u64,
    pub created_at: String,
    /// The session whose promotion produced it (`null` for generation 1).
    pub session_id: Option<String>,
    pub project_id: String,
    /// The generation it was derived from (`null` for generation 1).
    pub parent: Option<u64>,
    /// Layer ids under `STATE/layers/`, top first.
    pub layers: Vec<String>,
}

impl GenerationManifest {
    /// What a view based on this generation shows in `golden-version.json`.
    pub fn version_info(&self) -> VersionInfo {
        VersionInfo {
            generation: self.generation,
            created_at: self.created_at.clone(),
            session_id: self.session_id.clone(),
            project_id: self.project_id.clone(),
            parent: self.parent,
        }
    }
}

/// `STATE/sessions/S/session.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session: String,
    pub project: String,
    pub base_generation: u64,
    /// The last mountpoint the session was mounted at (kept after unmount).
    pub mountpoint: Option<PathBuf>,
    pub created_at: String,
}

/// Every path of a store, derived from its root.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
        }
    }
    pub fn store_json(&self) -> PathBuf {
        self.root.join("store.json")
    }
    pub fn projects(&self) -> PathBuf {
        self.root.join("projects")
    }
    pub fn project(&self, p: &str) -> PathBuf {
        self.projects().join(p)
    }
    pub fn generations(&self, p: &str) -> PathBuf {
        self.project(p).join("generations")
    }
    pub fn generation_file(&self, p: &str, n: u64) -> PathBuf {
        self.generations(p).join(generation_file_name(n))
    }
    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }
    pub fn layer(&self, id: &str) -> PathBuf {
        self.layers().join(id)
    }
    pub fn sessions(&self) -> PathBuf {
        self.root.join("sessions")
    }
    pub fn session(&self, s: &str) -> PathBuf {
        self.sessions().join(s)
    }
    pub fn session_upper(&self, s: &str) -> PathBuf {
        self.session(s).join("upper")
    }
    pub fn session_work(&self, s: &str) -> PathBuf {
        self.session(s).join("work")
    }
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }
}

pub const PROJECT_JSON: &str = "project.json";
pub const CURRENT: &str = "current";
pub const SESSION_JSON: &str = "session.json";

pub fn generation_file_name(n: u64) -> String {
    format!("{n}.json")
}

/// Parses `N.json` into `N` (anything else in `generations/` is ignored).
pub fn parse_generation_file_name(name: &str) -> Option<u64> {
    let n = name.strip_suffix(".json")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
        return None;
    }
    n.parse().ok()
}

/// Parses the content of a `current` file (`"7\n"`).
pub fn parse_current(text: &str) -> Option<u64> {
    let n: u64 = text.trim_end_matches('\n').parse().ok()?;
    (n > 0).then_some(n)
}

/// A new layer id: `<project>-g<N>-<unix-nanos>`. Unique because a project
/// publishes at most one generation number at a time and the clock moves on;
/// callers still check that the directory does not exist.
pub fn new_layer_id(project: &str, generation: u64) -> String {
    format!("{project}-g{generation}-{}", super::atomic::unix_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_file_names_round_trip_and_reject_junk() {
        assert_eq!(parse_generation_file_name(&generation_file_name(7)), Some(7));
        for bad in ["0.json", "07.json", ".json", "7.json.tmp", "x.json", "7"] {
            assert_eq!(parse_generation_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn current_pointer_parses_with_and_without_newline() {
        assert_eq!(parse_current("7\n"), Some(7));
        assert_eq!(parse_current("7"), Some(7));
        assert_eq!(parse_current("0\n"), None);
        assert_eq!(parse_current("x"), None);
    }
}
