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
    /// Set on a generation published by compaction: the generation whose
    /// merged content its single layer holds (the same content, flattened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted_from: Option<u64>,
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

/// `STATE/layer-meta/L.json`: what the overlay must know about a layer that
/// it cannot read from the layer itself. Compacted layers have one, and so
/// does every layer a compaction linked files from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub layer: String,
    /// The layer carries origin markers (`trusted.goldenfs.origin`, on
    /// directories too) that a view must read even when it is the bottom
    /// layer: true for a compacted layer.
    pub origin_markers: bool,
    /// Every hard-link group of the layer as a view shows it: each group is
    /// the paths (relative to the layer root) of one non-directory with more
    /// than one name. A non-directory of the layer not listed has one name.
    /// The backing link count is not used: the same inode may also have
    /// names in other layers (the layers it was compacted from, or into).
    pub links: Vec<Vec<RelPath>>,
    /// The layers a compacted layer was built from. Its inode numbers (origin
    /// markers of directories and copied-up files) are inodes of those
    /// layers, so GC keeps them while this layer exists: freed, a number
    /// could be given to a new file and name two objects in one view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
}

/// A relative path in JSON: a string when it is UTF-8, else its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RelPath {
    Text(String),
    Bytes(Vec<u8>),
}

impl From<&Path> for RelPath {
    fn from(p: &Path) -> RelPath {
        match p.to_str() {
            Some(s) => RelPath::Text(s.to_string()),
            None => RelPath::Bytes(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec()),
        }
    }
}

impl From<&RelPath> for PathBuf {
    fn from(p: &RelPath) -> PathBuf {
        match p {
            RelPath::Text(s) => PathBuf::from(s),
            RelPath::Bytes(b) => PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b)),
        }
    }
}

/// A lower layer of a view: its directory and, if it has one, its sidecar
/// (read by the store, which knows where sidecars live).
#[derive(Clone, Debug)]
pub struct LowerLayer {
    pub dir: PathBuf,
    pub meta: Option<LayerMeta>,
}

impl LowerLayer {
    /// A layer directory without a sidecar (a plain tree).
    pub fn plain(dir: PathBuf) -> Self {
        LowerLayer { dir, meta: None }
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
    pub fn layer_metas(&self) -> PathBuf {
        self.root.join(LAYER_META)
    }
    pub fn layer_meta(&self, id: &str) -> PathBuf {
        self.layer_metas().join(layer_meta_file_name(id))
    }

    /// The sidecar of layer `id`, if it has one.
    pub fn read_layer_meta(&self, id: &str) -> std::io::Result<Option<LayerMeta>> {
        let path = self.layer_meta(id);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is corrupt: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The lower layers of generation `m`, top first, with their sidecars.
    pub fn lower_layers(&self, m: &GenerationManifest) -> std::io::Result<Vec<LowerLayer>> {
        m.layers
            .iter()
            .map(|id| {
                Ok(LowerLayer {
                    dir: self.layer(id),
                    meta: self.read_layer_meta(id)?,
                })
            })
            .collect()
    }
}

pub const LAYER_META: &str = "layer-meta";

pub fn layer_meta_file_name(id: &str) -> String {
    format!("{id}.json")
}

pub const PROJECT_JSON: &str = "project.json";
pub const CURRENT: &str = "current";
/// `projects/P/last-generation`: the highest generation number the project
/// ever had, written by GC before it deletes the highest-numbered manifest
/// (possible after a rollback with `--keep 0`), so numbers are never reused.
pub const LAST_GENERATION: &str = "last-generation";
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
    fn manifests_without_compacted_from_still_parse() {
        let old = r#"{"generation":2,"created_at":"2026-11-24T10:05:00Z","session_id":"s1",
            "project_id":"web","parent":1,"layers":["a","b"]}"#;
        let m: GenerationManifest = serde_json::from_str(old).unwrap();
        assert_eq!(m.compacted_from, None);
        assert!(!serde_json::to_string(&m).unwrap().contains("compacted_from"));
    }

    #[test]
    fn layer_meta_paths_round_trip_non_utf8_names() {
        use std::os::unix::ffi::OsStrExt;
        let p = PathBuf::from(std::ffi::OsStr::from_bytes(b"d/\xff\xfename"));
        let r = RelPath::from(p.as_path());
        assert!(matches!(r, RelPath::Bytes(_)));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(PathBuf::from(&serde_json::from_str::<RelPath>(&json).unwrap()), p);
        assert_eq!(
            Layout::new(Path::new("/s")).layer_meta("web-g3-1"),
            PathBuf::from("/s/layer-meta/web-g3-1.json")
        );
    }

    #[test]
    fn current_pointer_parses_with_and_without_newline() {
        assert_eq!(parse_current("7\n"), Some(7));
        assert_eq!(parse_current("7"), Some(7));
        assert_eq!(parse_current("0\n"), None);
        assert_eq!(parse_current("x"), None);
    }
}
