//! Control protocol: newline-delimited JSON over a Unix socket.
//!
//! One request per line, one response line per request (see
//! `docs/protocol.md`). A request is a [`Request`], internally tagged by
//! `"op"`; a response is `{"ok":true,"result":{…}}` or
//! `{"ok":false,"error":{"code":"…","message":"…"}}`.
//!
//! The result types below (and the store types they embed: project and
//! generation summaries, import, promote, rollback and GC reports, session
//! records) are the wire format and the `--json` output of the CLI; changing
//! them is a protocol change.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode};
pub use crate::store::{
    CompactReport, DeletedGeneration, GcReport, GenerationSummary, ImportReport, ProjectSummary, PromoteReport,
    RollbackReport, RunningCompaction,
};

/// Longest request line accepted (bytes, without the newline).
pub const MAX_LINE: usize = 1 << 20;

/// Every request a client can send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Ping {},
    ProjectCreate {
        project: String,
        /// Absolute path of the directory to import.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// Rename `from` into the store instead of copying.
        #[serde(default, rename = "move")]
        move_: bool,
    },
    ProjectList {},
    ProjectDelete {
        project: String,
        #[serde(default)]
        force: bool,
    },
    SessionMount {
        project: String,
        session: String,
        /// Absolute path of an existing empty directory.
        mountpoint: String,
    },
    SessionUnmount {
        session: String,
        #[serde(default)]
        lazy: bool,
    },
    SessionDiscard {
        session: String,
        #[serde(default)]
        force: bool,
    },
    SessionList {},
    Promote {
        project: String,
        session: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_generation: Option<u64>,
    },
    Generations {
        project: String,
    },
    Compact {
        project: String,
    },
    Rollback {
        project: String,
        generation: u64,
    },
    Gc {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep: Option<u64>,
    },
    Status {},
}

/// The error object of a failed response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// One response line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    pub fn success<T: Serialize>(result: &T) -> Response {
        match serde_json::to_value(result) {
            Ok(v) => Response {
                ok: true,
                result: Some(v),
                error: None,
            },
            Err(e) => Response::failure(&Error::internal(format!("serializing the reply: {e}"))),
        }
    }

    pub fn failure(e: &Error) -> Response {
        Response {
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code: e.code,
                message: e.message.clone(),
            }),
        }
    }

    /// One JSON line with the trailing newline.
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"ok":false,"error":{"code":"internal","message":"cannot serialize reply"}}"#.to_vec()
        });
        v.push(b'\n');
        v
    }

    /// The typed result, or the error the daemon sent.
    pub fn into_result<T: DeserializeOwned>(self) -> Result<T, Error> {
        if let Some(e) = self.error {
            return Err(Error::new(e.code, e.message));
        }
        if !self.ok {
            return Err(Error::internal("the daemon replied ok=false without an error"));
        }
        serde_json::from_value(self.result.unwrap_or(serde_json::Value::Null)).map_err(|e| {
            Error::internal(format!(
                "unexpected reply from the daemon ({e}); are client and daemon the same goldenfs version?"
            ))
        })
    }
}

/// Parses one request line; the error says what is wrong with it.
pub fn parse_request(line: &[u8]) -> Result<Request, Error> {
    serde_json::from_slice(line).map_err(|e| {
        Error::new(
            ErrorCode::InvalidRequest,
            format!("invalid request: {e}; send one JSON object per line with an \"op\" field (see docs/protocol.md)"),
        )
    })
}

/// `ping`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResult {
    pub version: String,
    pub pid: u32,
}

/// `project_list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectListResult {
    pub projects: Vec<ProjectSummary>,
}

/// `project_delete`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectDeleteResult {
    pub project: String,
    /// Sessions discarded because of `force`.
    pub discarded_sessions: Vec<String>,
    pub bytes_freed: u64,
}

/// One session as listed and reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session: String,
    pub project: String,
    pub base_generation: u64,
    pub mounted: bool,
    /// Where it is mounted, or where it was last mounted.
    pub mountpoint: Option<String>,
    pub created_at: String,
}

/// `session_mount`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountResult {
    pub session: String,
    pub project: String,
    pub base_generation: u64,
    pub mountpoint: String,
    /// True when the session was created by this request (false: reattached).
    pub created: bool,
}

/// `session_unmount`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmountResult {
    pub session: String,
    pub mountpoint: String,
    pub lazy: bool,
}

/// `session_discard`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscardResult {
    pub session: String,
    pub project: String,
    /// True when it was mounted and got unmounted (lazily) first.
    pub unmounted: bool,
}

/// `session_list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionListResult {
    pub sessions: Vec<SessionInfo>,
}

/// `generations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationsResult {
    pub project: String,
    pub current: u64,
    pub generations: Vec<GenerationSummary>,
}

/// `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResult {
    pub pid: u32,
    pub version: String,
    pub state_dir: String,
    pub socket: String,
    /// Type of the store's backing filesystem ("ext4", "xfs", …).
    pub backing_fs: String,
    pub started_at: String,
    pub projects: Vec<ProjectSummary>,
    pub sessions: Vec<SessionInfo>,
    /// Compactions in progress.
    #[serde(default)]
    pub compactions: Vec<RunningCompaction>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_use_op_tags_and_snake_case() {
        let r = parse_request(br#"{"op":"project_create","project":"web","from":"/srv/x","move":true}"#).unwrap();
        assert_eq!(
            r,
            Request::ProjectCreate {
                project: "web".into(),
                from: Some("/srv/x".into()),
                move_: true
            }
        );
        assert_eq!(parse_request(br#"{"op":"ping"}"#).unwrap(), Request::Ping {});
        assert_eq!(
            parse_request(br#"{"op":"compact","project":"web"}"#).unwrap(),
            Request::Compact { project: "web".into() }
        );
        let line = serde_json::to_string(&Request::Promote {
            project: "web".into(),
            session: "s1".into(),
            if_generation: Some(3),
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"op":"promote","project":"web","session":"s1","if_generation":3}"#
        );
    }

    #[test]
    fn bad_requests_are_invalid_request_errors() {
        for bad in [
            &br#"{"op":"nope"}"#[..],
            br#"{"op":"ping","extra":1}"#,
            br#"{"op":"rollback","project":"web","generation":"two"}"#,
            br#"{"project":"web"}"#,
            b"not json",
            b"",
        ] {
            let e = parse_request(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn responses_have_ok_and_result_or_error() {
        let ok = Response::success(&PingResult {
            version: "1".into(),
            pid: 7,
        });
        assert_eq!(
            String::from_utf8(ok.to_line()).unwrap(),
            "{\"ok\":true,\"result\":{\"pid\":7,\"version\":\"1\"}}\n"
        );
        let err = Response::failure(&Error::not_found("no project named \"x\""));
        let line = String::from_utf8(err.to_line()).unwrap();
        assert_eq!(
            line,
            "{\"ok\":false,\"error\":{\"code\":\"not_found\",\"message\":\"no project named \\\"x\\\"\"}}\n"
        );
        let back: Response = serde_json::from_str(&line).unwrap();
        assert_eq!(back.into_result::<PingResult>().unwrap_err().code, ErrorCode::NotFound);
    }
}
