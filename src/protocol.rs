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

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::{Error, ErrorCode};
pub use crate::store::{
    CompactReport, DeletedGeneration, GcReport, GenerationSummary, ImportReport, OperationKind, OperationProgress,
    ProjectSummary, PromoteReport, RollbackReport, RunningCompaction,
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
    /// Imports, compactions, GC runs and project deletions in progress
    /// (polled by the CLI's progress bars).
    Operations {},
}

impl Request {
    /// The `op` field (a metrics label).
    pub fn op_name(&self) -> &'static str {
        match self {
            Request::Ping {} => "ping",
            Request::ProjectCreate { .. } => "project_create",
            Request::ProjectList {} => "project_list",
            Request::ProjectDelete { .. } => "project_delete",
            Request::SessionMount { .. } => "session_mount",
            Request::SessionUnmount { .. } => "session_unmount",
            Request::SessionDiscard { .. } => "session_discard",
            Request::SessionList {} => "session_list",
            Request::Promote { .. } => "promote",
            Request::Generations { .. } => "generations",
            Request::Compact { .. } => "compact",
            Request::Rollback { .. } => "rollback",
            Request::Gc { .. } => "gc",
            Request::Status {} => "status",
            Request::Operations {} => "operations",
        }
    }
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

/// Most fields a request line may have (the largest request has four).
pub const MAX_FIELDS: usize = 16;

/// Parses one request line; the error says what is wrong with it and names
/// the field at fault. A request is a flat object of at most
/// [`MAX_FIELDS`] fields with string, number, boolean or null values, so
/// the decoder refuses nested arrays and objects as soon as it meets them:
/// it never builds more than the line's own size in memory, whatever the
/// line holds.
pub fn parse_request(line: &[u8]) -> Result<Request, Error> {
    let invalid = |what: String| {
        Error::new(
            ErrorCode::InvalidRequest,
            format!(
                "invalid request: {what}; send one JSON object per line with an \"op\" field and that operation's fields (see docs/protocol.md)"
            ),
        )
    };
    let Fields(fields) = serde_json::from_slice(line).map_err(|e| invalid(e.to_string()))?;
    let mut value = Value::Object(fields.into_iter().collect());
    match value.get("op") {
        None => return Err(invalid("no \"op\" field".into())),
        Some(Value::String(_)) => {}
        Some(other) => {
            return Err(invalid(format!(
                "\"op\" must be a string naming the operation, e.g. \"ping\", not {other}"
            )));
        }
    }
    Request::deserialize(&value).map_err(|e| {
        let message = e.to_string();
        if message.starts_with("unknown variant") {
            return invalid(message.replacen("unknown variant", "unknown op", 1));
        }
        match field_at_fault(&mut value, &message) {
            Some(field) => invalid(format!("field {field:?}: {message}")),
            None => invalid(message),
        }
    })
}

/// For a type or value error (whose message does not say which field), the
/// field whose removal makes that error go away.
fn field_at_fault(value: &mut Value, message: &str) -> Option<String> {
    if !message.starts_with("invalid type") && !message.starts_with("invalid value") {
        return None;
    }
    let keys: Vec<String> = value.as_object()?.keys().filter(|k| *k != "op").cloned().collect();
    for key in keys {
        let removed = value.as_object_mut()?.remove(&key)?;
        let without = Request::deserialize(&*value).map_err(|e| e.to_string());
        value.as_object_mut()?.insert(key.clone(), removed);
        if without.as_ref().err().is_none_or(|m| m != message) {
            return Some(key);
        }
    }
    None
}

/// The fields of a request line, in order (see [`parse_request`]).
struct Fields(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Obj;
        impl<'de> Visitor<'de> for Obj {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut out: Vec<(String, Value)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.len() == MAX_FIELDS {
                        return Err(de::Error::custom(format_args!("more than {MAX_FIELDS} fields")));
                    }
                    if out.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format_args!("field {key:?} appears twice")));
                    }
                    let value = map.next_value_seed(Scalar(&key))?;
                    out.push((key, value));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(Obj)
    }
}

/// One field's value: a string, number, boolean or null (`key` names the
/// field in the error).
struct Scalar<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for Scalar<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scalar<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "field {:?} to be a string, number, boolean or null", self.0)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusResult {
    pub pid: u32,
    pub version: String,
    pub state_dir: String,
    pub socket: String,
    /// Type of the store's backing filesystem ("ext4", "xfs", …).
    pub backing_fs: String,
    pub started_at: String,
    pub projects: Vec<ProjectStatus>,
    pub sessions: Vec<SessionStatus>,
    /// Compactions in progress.
    #[serde(default)]
    pub compactions: Vec<RunningCompaction>,
    /// Long operations in progress, with their counters.
    #[serde(default)]
    pub operations: Vec<OperationProgress>,
    /// The Docker volume plugin, when the daemon serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_plugin: Option<DockerPluginStatus>,
    /// Daemon-wide metrics (docs/metrics.md).
    /// Absent from a daemon older than the metrics.
    #[serde(default)]
    pub metrics: DaemonMetrics,
}

/// `status.docker_plugin`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerPluginStatus {
    pub socket: String,
    /// Where volumes are mounted.
    pub volume_dir: String,
    /// Volumes created through the plugin (see `VolumeDriver.List`).
    pub volumes: usize,
}

/// A project in `status`: its summary plus `metrics`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectStatus {
    #[serde(flatten)]
    pub info: ProjectSummary,
    /// Absent from a daemon older than the metrics (docs/metrics.md).
    #[serde(default)]
    pub metrics: ProjectMetrics,
}

/// Per-project metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectMetrics {
    /// Disk use of the current generation's layers; `null` until each of
    /// them has been measured once.
    pub bytes: Option<u64>,
}

/// A session in `status`: its listing plus `metrics`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionStatus {
    #[serde(flatten)]
    pub info: SessionInfo,
    /// Absent from a daemon older than the metrics (docs/metrics.md).
    #[serde(default)]
    pub metrics: SessionMetrics,
}

/// Per-session metrics. Counters count since the session's last mount by
/// this daemon (zero if it was not mounted since the daemon started).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionMetrics {
    /// Disk use of the upper; `null` until first measured, then at most
    /// `upper_bytes_age_seconds` old.
    pub upper_bytes: Option<u64>,
    pub upper_bytes_age_seconds: Option<f64>,
    #[serde(flatten)]
    pub view: ViewCounters,
    /// FUSE requests answered, and how many of them with an error.
    pub requests: u64,
    pub errors: u64,
    /// Per FUSE operation requested at least once.
    pub ops: Vec<OpMetrics>,
}

/// A view's handle gauges and copy-on-write counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewCounters {
    /// Files (the version file included) and directories open now.
    pub open_files: u64,
    pub open_dirs: u64,
    /// Opens whose I/O the kernel does (passthrough), or the daemon.
    pub opens_passthrough: u64,
    pub opens_cached: u64,
    /// Files copied up, and the data bytes they copied.
    pub copy_ups: u64,
    pub copy_up_bytes: u64,
    pub whiteouts: u64,
}

/// Counters of one FUSE operation of one session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpMetrics {
    pub op: String,
    pub count: u64,
    pub errors: u64,
    pub seconds: f64,
}

/// Daemon-wide metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonMetrics {
    pub uptime_seconds: f64,
    pub mounted_views: u64,
    /// Disk use of every layer plus every session's upper, as far as measured.
    pub store_bytes: u64,
    pub layer_bytes: u64,
    pub upper_bytes: u64,
    /// Layers and uppers not measured yet (their bytes are missing above).
    pub sizes_pending: u64,
    /// Control requests handled, by `op` and `result` (`ok` or the error code).
    pub control_requests: Vec<ControlRequestCount>,
}

/// How many control requests of one `op` ended with one `result`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequestCount {
    pub op: String,
    pub result: String,
    pub count: u64,
}

/// Result of `operations`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationsResult {
    pub operations: Vec<OperationProgress>,
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
    fn status_objects_keep_their_fields_flat_and_read_an_older_daemon_without_metrics() {
        let old = r#"{"pid":1,"version":"0.1.0","state_dir":"/s","socket":"/x","backing_fs":"ext4",
            "started_at":"2026-01-01T00:00:00Z","sessions":[{"session":"s1","project":"web",
            "base_generation":1,"mounted":true,"mountpoint":"/m","created_at":"2026-01-01T00:00:00Z"}],
            "projects":[{"project":"web","created_at":"2026-01-01T00:00:00Z","current_generation":2,
            "generations":2,"layer_depth":2,"sessions":["s1"]}]}"#;
        let st: StatusResult = serde_json::from_str(old).unwrap();
        assert_eq!(st.sessions[0].metrics, SessionMetrics::default());
        assert_eq!(st.projects[0].info.layer_depth, 2);
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["sessions"][0]["session"], "s1");
        assert_eq!(v["sessions"][0]["metrics"]["copy_ups"], 0);
        assert!(v["sessions"][0]["metrics"]["upper_bytes"].is_null());
        assert_eq!(v["projects"][0]["current_generation"], 2);
        assert!(v["metrics"]["control_requests"].is_array());
    }

    #[test]
    fn op_name_is_the_serialized_op_tag() {
        for r in [
            Request::Ping {},
            Request::ProjectList {},
            Request::SessionList {},
            Request::Status {},
            Request::Operations {},
            Request::Gc { keep: None },
            Request::Compact { project: "p".into() },
            Request::Generations { project: "p".into() },
        ] {
            let v = serde_json::to_value(&r).unwrap();
            assert_eq!(v["op"], r.op_name());
        }
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

#[cfg(test)]
pub(crate) mod fuzz;
