//! A strict reader of the Prometheus text exposition format 0.0.4, and a
//! tiny std-only HTTP/1.0 client, for the metrics tests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A status code, the header block and the body of one HTTP reply.
pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// `GET path` over HTTP/1.0 on a stream (Unix socket or TCP).
pub fn get(mut stream: impl Read + Write, path: &str) -> Reply {
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send request");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read reply");
    let (headers, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {raw:?}"));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {headers:?}"));
    Reply {
        status,
        headers: headers.to_string(),
        body: body.to_string(),
    }
}

/// `GET path` on a Unix socket.
pub fn get_unix(socket: &Path, path: &str) -> Reply {
    let s = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    get(s, path)
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}

/// `{a="x",b="y"}` (with escapes) → labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = s.strip_prefix('{') else {
        return Ok((labels, s));
    };
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let (name, r) = rest.split_once("=\"").ok_or("label without =\"")?;
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &r[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses and validates an exposition: every sample belongs to the family
/// declared (HELP and TYPE) just before it, no series appears twice, and
/// every histogram's buckets are cumulative, end with `le="+Inf"` and that
/// bucket equals its `_count`. Panics with the offending line otherwise.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    let mut series = HashSet::new();
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    for (n, line) in text.lines().enumerate() {
        let fail = |why: &str| -> ! { panic!("line {}: {why}: {line:?}\n{text}", n + 1) };
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, arg) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            match kw {
                Some("HELP") if !helped.insert(name.to_string()) => fail("HELP twice"),
                Some("TYPE") => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                        fail("unknown type");
                    }
                    if types.insert(name.to_string(), arg.to_string()).is_some() {
                        fail("TYPE twice");
                    }
                    current = Some(name.to_string());
                }
                _ => {}
            }
            if !is_name(name, true) {
                fail("bad metric name");
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let split = line.find(['{', ' ']).unwrap_or_else(|| fail("no value"));
        let name = &line[..split];
        let (labels, rest) = parse_labels(&line[split..]).unwrap_or_else(|e| fail(&e));
        let value = rest
            .strip_prefix(' ')
            .map(|v| v.split(' ').next().unwrap_or(""))
            .ok_or("no value")
            .and_then(|v| parse_value(v).map_err(|_| "bad value"))
            .unwrap_or_else(|e| fail(e));
        let family = current.as_deref().unwrap_or_else(|| fail("sample before any TYPE"));
        let belongs = match types[family].as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|sfx| name == format!("{family}{sfx}")),
            _ => name == family,
        };
        if !belongs {
            fail(&format!("sample not of the declared family {family}"));
        }
        if name.ends_with("_total") && types[family] == "counter" && value < 0.0 {
            fail("negative counter");
        }
        if !series.insert(format!("{name}{labels:?}")) {
            fail("series twice");
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    check_histograms(&types, &samples);
    samples
}

fn check_histograms(types: &HashMap<String, String>, samples: &[Sample]) {
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let mut groups: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for s in samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
            let mut key = s.labels.clone();
            let le = key.remove("le").unwrap_or_else(|| panic!("bucket without le: {s:?}"));
            let le = parse_value(&le).unwrap_or_else(|e| panic!("{e} in {s:?}"));
            groups.entry(format!("{key:?}")).or_default().push((le, s.value));
        }
        for (key, buckets) in groups {
            assert!(
                buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family}{key}: buckets not in increasing le order with cumulative counts: {buckets:?}"
            );
            let (last_le, last) = *buckets.last().unwrap();
            assert!(last_le.is_infinite(), "{family}{key}: last bucket is not +Inf");
            let count = samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && format!("{:?}", s.labels) == key)
                .unwrap_or_else(|| panic!("{family}{key}: no _count"));
            assert_eq!(count.value, last, "{family}{key}: +Inf bucket != _count");
            assert!(
                samples
                    .iter()
                    .any(|s| s.name == format!("{family}_sum") && format!("{:?}", s.labels) == key),
                "{family}{key}: no _sum"
            );
        }
    }
}

/// The value of the one sample named `name` whose labels include `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name}{labels:?} matches {} samples", found.len());
    found.first().map(|s| s.value)
}
