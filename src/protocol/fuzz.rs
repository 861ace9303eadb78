//! Property tests of the request decoder: whatever a client sends,
//! [`parse_request`] returns a request or an `invalid_request` error with a
//! clear message, and never panics.
//!
//! Case counts are set so the whole file takes a few seconds in a debug
//! build; `PROPTEST_CASES=N` runs N cases of each property instead.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

use super::*;

/// `PROPTEST_CASES` if set, else `default`; no regression files are written
/// into the source tree (a failure prints its input).
pub(crate) fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const OPS: &[&str] = &[
    "ping",
    "project_create",
    "project_list",
    "project_delete",
    "session_mount",
    "session_unmount",
    "session_discard",
    "session_list",
    "promote",
    "generations",
    "compact",
    "rollback",
    "gc",
    "status",
    "operations",
];

const FIELDS: &[&str] = &[
    "op",
    "project",
    "session",
    "from",
    "move",
    "force",
    "mountpoint",
    "lazy",
    "if_generation",
    "generation",
    "keep",
];

/// JSON texts that are hostile as a field's value (built once).
static HOSTILE_RAW: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(hostile_raw_values);

fn hostile_raw_values() -> Vec<String> {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    vec![
        "18446744073709551616".into(),
        "18446744073709551615".into(),
        "-1".into(),
        "-0".into(),
        "1e400".into(),
        "-1e400".into(),
        "1.5".into(),
        "1e2".into(),
        "0.0".into(),
        "true".into(),
        "null".into(),
        "\"\"".into(),
        "[]".into(),
        "{}".into(),
        "\"\\u0000\"".into(),
        "\"\\ud800\"".into(),
        "\"a\\/b\"".into(),
        "\"..\"".into(),
        format!("\"{}\"", "x".repeat(10 * 1024)),
        deep(200),
        deep(100_000),
        format!("{}1{}", "{\"a\":".repeat(1000), "}".repeat(1000)),
        "01".into(),
        "NaN".into(),
        "Infinity".into(),
        "\"\u{feff}web\"".into(),
    ]
}

/// What the decoder must do with any line.
fn check(line: &[u8]) -> Result<(), TestCaseError> {
    match parse_request(line) {
        Ok(req) => {
            // A decoded request encodes back to itself.
            let again = serde_json::to_vec(&req).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parse_request(&again).ok(), Some(req));
        }
        Err(e) => {
            prop_assert_eq!(e.code, ErrorCode::InvalidRequest, "{}", e.message);
            prop_assert!(e.message.starts_with("invalid request: "), "{}", e.message);
            prop_assert!(e.message.contains("docs/protocol.md"), "{}", e.message);
            // The message quotes at most the offending value, escaped.
            prop_assert!(e.message.len() <= 2 * line.len() + 1024, "{} bytes", e.message.len());
        }
    }
    Ok(())
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        any::<String>().prop_map(Value::String),
        prop::sample::select(OPS).prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELDS).prop_map(String::from),
        1 => any::<String>(),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("web".to_string()),
        Just("..".to_string()),
        Just("a/b".to_string()),
        Just("a\0b".to_string()),
        Just(String::new()),
        Just("x".repeat(10 * 1024)),
        any::<String>(),
    ]
}

fn u64_value() -> impl Strategy<Value = u64> {
    prop_oneof![0..4u64, Just(u64::MAX), any::<u64>()]
}

/// Every request shape, with names, paths and numbers from the strategies given.
pub(crate) fn request_with(
    name: BoxedStrategy<String>,
    path: BoxedStrategy<String>,
    number: BoxedStrategy<u64>,
) -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Ping {}),
        (name.clone(), prop::option::of(path.clone()), any::<bool>())
            .prop_map(|(project, from, move_)| { Request::ProjectCreate { project, from, move_ } }),
        Just(Request::ProjectList {}),
        (name.clone(), any::<bool>()).prop_map(|(project, force)| Request::ProjectDelete { project, force }),
        (name.clone(), name.clone(), path).prop_map(|(project, session, mountpoint)| Request::SessionMount {
            project,
            session,
            mountpoint
        }),
        (name.clone(), any::<bool>()).prop_map(|(session, lazy)| Request::SessionUnmount { session, lazy }),
        (name.clone(), any::<bool>()).prop_map(|(session, force)| Request::SessionDiscard { session, force }),
        Just(Request::SessionList {}),
        (name.clone(), name.clone(), prop::option::of(number.clone())).prop_map(|(project, session, if_generation)| {
            Request::Promote {
                project,
                session,
                if_generation,
            }
        }),
        name.clone().prop_map(|project| Request::Generations { project }),
        name.clone().prop_map(|project| Request::Compact { project }),
        (name, number.clone()).prop_map(|(project, generation)| Request::Rollback { project, generation }),
        prop::option::of(number).prop_map(|keep| Request::Gc { keep }),
        Just(Request::Status {}),
        Just(Request::Operations {}),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    request_with(name().boxed(), name().boxed(), u64_value().boxed())
}

/// One change to a valid request's fields (`key`, raw JSON text).
#[derive(Clone, Debug)]
enum Mutation {
    Drop(usize),
    Add(String, Value),
    Replace(usize, Value),
    ReplaceRaw(usize, usize),
    Duplicate(usize),
    RenameOp(&'static str),
    Nest(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Drop),
        (key(), json()).prop_map(|(k, v)| Mutation::Add(k, v)),
        (any::<usize>(), json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, r)| Mutation::ReplaceRaw(i, r)),
        any::<usize>().prop_map(Mutation::Duplicate),
        prop::sample::select(OPS).prop_map(Mutation::RenameOp),
        any::<usize>().prop_map(Mutation::Nest),
    ]
}

/// The request's fields as (key, raw JSON text), `op` first.
fn fields_of(req: &Request) -> Vec<(String, String)> {
    match serde_json::to_value(req) {
        Ok(Value::Object(m)) => {
            let mut v: Vec<_> = m.into_iter().map(|(k, v)| (k, v.to_string())).collect();
            v.sort_by_key(|(k, _)| k != "op");
            v
        }
        other => panic!("a request encodes as an object: {other:?}"),
    }
}

fn line_of(fields: &[(String, String)]) -> Vec<u8> {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, raw)| format!("{}:{raw}", Value::from(k.as_str())))
        .collect();
    format!("{{{}}}", body.join(",")).into_bytes()
}

/// Applies `m`; returns the field it aimed at, if one.
fn apply(fields: &mut Vec<(String, String)>, m: &Mutation, raws: &[String]) -> Option<String> {
    let n = fields.len();
    let at = |i: usize| i % n;
    match m {
        Mutation::Drop(i) => Some(fields.remove(at(*i)).0),
        Mutation::Add(k, v) => {
            fields.push((k.clone(), v.to_string()));
            Some(k.clone())
        }
        Mutation::Replace(i, v) => {
            let f = &mut fields[at(*i)];
            f.1 = v.to_string();
            Some(f.0.clone())
        }
        Mutation::ReplaceRaw(i, r) => {
            let f = &mut fields[at(*i)];
            f.1 = raws[r % raws.len()].clone();
            Some(f.0.clone())
        }
        Mutation::Duplicate(i) => {
            let f = fields[at(*i)].clone();
            fields.push(f.clone());
            Some(f.0)
        }
        Mutation::RenameOp(op) => {
            fields[0].1 = Value::from(*op).to_string();
            None
        }
        Mutation::Nest(i) => {
            let f = &mut fields[at(*i)];
            f.1 = format!("[{}]", f.1);
            Some(f.0.clone())
        }
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_bytes_are_decoded_or_refused_clearly(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&bytes)?;
    }

    #[test]
    fn json_like_bytes_are_decoded_or_refused_clearly(
        bytes in prop::collection::vec(prop::sample::select(b"{}[]\":,0123456789-+.eE \\tnulrfaspingo_\x00\xff".to_vec()), 0..128)
    ) {
        check(&bytes)?;
    }

    #[test]
    fn arbitrary_json_values_are_decoded_or_refused_clearly(v in json()) {
        check(v.to_string().as_bytes())?;
    }

    #[test]
    fn arbitrary_objects_with_an_op_are_decoded_or_refused_clearly(
        op in prop::sample::select(OPS),
        mut m in prop::collection::btree_map(key(), json(), 0..6),
    ) {
        m.insert("op".into(), Value::from(op));
        let v = Value::Object(m.into_iter().collect());
        check(v.to_string().as_bytes())?;
    }

    #[test]
    fn valid_requests_round_trip(req in request()) {
        let line = serde_json::to_vec(&req).unwrap();
        prop_assert_eq!(parse_request(&line).unwrap(), req);
    }

    #[test]
    fn mutated_requests_are_decoded_or_refused_naming_the_field(
        req in request(),
        muts in prop::collection::vec(mutation(), 1..3),
    ) {
        let raws = &*HOSTILE_RAW;
        let mut fields = fields_of(&req);
        let mut aimed = Vec::new();
        for m in &muts {
            if fields.is_empty() {
                break;
            }
            aimed.extend(apply(&mut fields, m, raws));
        }
        let line = line_of(&fields);
        check(&line)?;
        // A refusal of a single change to a field says which field or where.
        if let ([_], [field], Err(e)) = (&muts[..], &aimed[..], parse_request(&line)) {
            let named = e.message.contains(&format!("`{field}`"))
                || e.message.contains(&format!("{field:?}"))
                || e.message.contains("line 1 column")
                || e.message.contains("unknown op")
                || e.message.contains("no \"op\" field")
                || e.message.contains("missing field");
            prop_assert!(named, "{}: {}", String::from_utf8_lossy(&line), e.message);
        }
    }
}

#[test]
fn deep_nesting_is_refused_without_recursing() {
    for depth in [10, 200, 100_000, 1_000_000] {
        let top = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let inner = format!("{{\"op\":\"ping\",\"x\":{top}}}");
        let objects = format!("{}1{}", "{\"op\":".repeat(depth), "}".repeat(depth));
        for line in [top, inner, objects] {
            let e = parse_request(line.as_bytes()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{}", e.message);
        }
    }
}

#[test]
fn errors_name_the_field_at_fault() {
    for (line, expect) in [
        (
            &br#"{"op":"rollback","project":"web","generation":"two"}"#[..],
            "field \"generation\"",
        ),
        (br#"{"op":"rollback","project":7,"generation":2}"#, "field \"project\""),
        (br#"{"op":"gc","keep":-1}"#, "field \"keep\""),
        (br#"{"op":"gc","keep":1.5}"#, "field \"keep\""),
        (
            br#"{"op":"session_unmount","session":"s","lazy":"yes"}"#,
            "field \"lazy\"",
        ),
        (br#"{"op":"generations","project":["web"]}"#, "field \"project\""),
        (br#"{"op":"generations"}"#, "missing field `project`"),
        (br#"{"op":"ping","extra":1}"#, "unknown field `extra`"),
        (br#"{"op":"ping","op":"ping"}"#, "field \"op\" appears twice"),
        (br#"{"op":"fly"}"#, "unknown op `fly`"),
        (br#"{"op":1}"#, "\"op\" must be a string"),
        (br#"{"project":"web"}"#, "no \"op\" field"),
        (br#"[1,2]"#, "expected a JSON object"),
        (br#"{"op":"gc","keep":18446744073709551616}"#, "field \"keep\""),
        (br#"{"op":"gc","keep":1e400}"#, "out of range"),
    ] {
        let e = parse_request(line).unwrap_err();
        assert!(
            e.message.contains(expect),
            "{}: {}",
            String::from_utf8_lossy(line),
            e.message
        );
    }
    let many: Vec<String> = (0..1000).map(|i| format!("\"f{i}\":0")).collect();
    let e = parse_request(format!("{{\"op\":\"ping\",{}}}", many.join(",")).as_bytes()).unwrap_err();
    assert!(
        e.message.contains(&format!("more than {MAX_FIELDS} fields")),
        "{}",
        e.message
    );
}
