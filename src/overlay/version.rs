//! The virtual `golden-version.json` at the root of every view.

use serde::{Deserialize, Serialize};

/// File name of the virtual version file at the root of a view.
pub const VERSION_FILE_NAME: &str = "golden-version.json";

/// What a view tells about the generation it is based on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The generation number the view is based on.
    pub generation: u64,
    /// When that generation was published (RFC 3339, UTC).
    pub created_at: String,
    /// The session whose promotion produced the generation (`null` for an import).
    pub session_id: Option<String>,
    /// The project the generation belongs to.
    pub project_id: String,
    /// The generation it was derived from (`null` for generation 1).
    pub parent: Option<u64>,
}

impl VersionInfo {
    /// Pretty-printed JSON with a trailing newline: the bytes of the file.
    pub fn render(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_else(|_| b"{}".to_vec());
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_file_is_pretty_json_with_newline() {
        let v = VersionInfo {
            generation: 2,
            created_at: "2026-11-24T10:00:00Z".into(),
            session_id: Some("warm".into()),
            project_id: "web".into(),
            parent: Some(1),
        };
        let bytes = v.render();
        assert!(bytes.ends_with(b"}\n"));
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\n  \"generation\": 2,"));
        let back: VersionInfo = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, v);
    }
}
