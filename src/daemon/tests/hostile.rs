//! Property test: random well-formed but hostile requests against
//! [`Daemon::handle`] on a temporary store (no FUSE mount is ever made: no
//! mountpoint offered is an empty directory outside the store). No handler
//! may panic (the daemon turns a panic into an `internal` error, so none may
//! come back), and the store must stay consistent: every project and session
//! readable, their generations and layers present, nothing left in `work/`,
//! nothing created outside the store, and a restart with nothing to repair.
//!
//! 384 cases of up to 23 requests take about 10 s in a debug build;
//! `PROPTEST_CASES=N` runs N.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::*;
use crate::error::ErrorCode;
use crate::protocol::Request;

const GOOD_NAMES: &[&str] = &["p0", "p1", "s0", "s1", "s2"];

fn hostile_names() -> Vec<String> {
    vec![
        String::new(),
        ".".into(),
        "..".into(),
        "../p0".into(),
        "p0/..".into(),
        "a/b".into(),
        "/abs".into(),
        "a\0b".into(),
        ".hidden".into(),
        "-dash".into(),
        "p0\n".into(),
        "é".into(),
        "x".repeat(10 * 1024),
        "y".repeat(128),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => prop::sample::select(GOOD_NAMES).prop_map(String::from),
        2 => prop::sample::select(hostile_names()),
        1 => "[A-Za-z0-9._/-]{0,10}",
    ]
}

/// Paths offered as `from` or mountpoint; `{tmp}` and `{state}` are the
/// test's directory and the store. None is an empty directory outside the
/// store, so nothing is ever mounted.
const PATHS: &[&str] = &[
    "",
    "relative/dir",
    ".",
    "/",
    "/nonexistent/x",
    "{tmp}",
    "{tmp}/src",
    "{tmp}/file",
    "{tmp}/to-state",
    "{tmp}/src/../../state/layers",
    "{state}",
    "{state}/work",
    "{state}/sessions/s0/upper",
    "{state}/layers",
    "{tmp}/a\0b",
    "{tmp}/{long}",
    "/{verylong}",
];

fn gen_number() -> impl Strategy<Value = u64> {
    prop_oneof![0..4u64, Just(u64::MAX), any::<u64>()]
}

/// One step: a request, or a session opened directly in the store (what a
/// mount does before mounting), so promotions and discards have work.
#[derive(Clone, Debug)]
enum Step {
    Req(Request),
    OpenSession(&'static str, &'static str),
}

fn request() -> impl Strategy<Value = Request> {
    crate::protocol::fuzz::request_with(
        name().boxed(),
        prop::sample::select(PATHS).prop_map(String::from).boxed(),
        gen_number().boxed(),
    )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => request().prop_map(Step::Req),
        1 => (prop::sample::select(&GOOD_NAMES[..2]), prop::sample::select(&GOOD_NAMES[2..]))
            .prop_map(|(p, s)| Step::OpenSession(p, s)),
    ]
}

/// Replaces the `{…}` placeholders of `PATHS` in the request's paths.
fn resolve(req: Request, tmp: &Path) -> Request {
    let fill = |p: String| {
        p.replace("{tmp}", &tmp.display().to_string())
            .replace("{state}", &tmp.join("state").display().to_string())
            .replace("{long}", &"n".repeat(300))
            .replace("{verylong}", &"d/".repeat(5000))
    };
    match req {
        Request::ProjectCreate { project, from, move_ } => Request::ProjectCreate {
            project,
            from: from.map(fill),
            move_,
        },
        Request::SessionMount {
            project,
            session,
            mountpoint,
        } => Request::SessionMount {
            project,
            session,
            mountpoint: fill(mountpoint),
        },
        other => other,
    }
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

/// The store as clients and a restart see it is whole.
fn check_consistent(d: &Daemon, state: &Path) -> Result<(), TestCaseError> {
    let projects = d
        .store
        .list_projects()
        .map_err(|e| fail(format!("project list: {e}")))?;
    let mut generations = BTreeSet::new();
    for p in &projects {
        let gens = d
            .store
            .generations(&p.project)
            .map_err(|e| fail(format!("generations {}: {e}", p.project)))?;
        prop_assert!(
            gens.iter().any(|g| g.current && g.generation == p.current_generation),
            "{gens:?}"
        );
        for g in gens {
            for l in &g.layers {
                prop_assert!(
                    state.join("layers").join(l).is_dir(),
                    "layer {l} of {} is missing",
                    p.project
                );
            }
            generations.insert((p.project.clone(), g.generation));
        }
    }
    for s in d.store.sessions() {
        prop_assert!(
            generations.contains(&(s.project.clone(), s.base_generation)),
            "session {} is based on a missing generation {}/{}",
            s.session,
            s.project,
            s.base_generation
        );
        prop_assert!(state.join("sessions").join(&s.session).join("upper").is_dir());
    }
    for dir in ["projects", "sessions"] {
        for n in names_in(&state.join(dir)) {
            prop_assert!(crate::names::validate("entry", &n).is_ok(), "{dir}/{n:?} in the store");
        }
    }
    let work = names_in(&state.join("work"));
    prop_assert!(work.is_empty(), "left in work/: {work:?}");
    Ok(())
}

fn run_case(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let tmp = tmp.path().canonicalize().map_err(|e| fail(e.to_string()))?;
    let state = tmp.join("state");
    let src = tmp.join("src");
    fs::create_dir_all(src.join("dir")).map_err(|e| fail(e.to_string()))?;
    fs::write(src.join("dir/a.txt"), "a").map_err(|e| fail(e.to_string()))?;
    fs::write(tmp.join("file"), "f").map_err(|e| fail(e.to_string()))?;
    std::os::unix::fs::symlink(&state, tmp.join("to-state")).map_err(|e| fail(e.to_string()))?;
    let config = DaemonConfig {
        state_dir: state.clone(),
        socket: tmp.join("run/goldenfs.sock"),
        allow_uids: vec![],
        threads: 1,
        compact_depth: 0,
        docker_plugin: None,
        metrics: Default::default(),
    };
    let d = Daemon::open(config.clone()).map_err(|e| fail(e.to_string()))?;
    // Something to work on: p0 imported, p1 empty, s0 on p0 with a file.
    for (project, from) in [("p0", Some(src.clone())), ("p1", None)] {
        let source = from.map_or(crate::store::ImportSource::Empty, crate::store::ImportSource::Copy);
        d.store
            .create_project(project, source)
            .map_err(|e| fail(e.to_string()))?;
    }
    let opened = d.store.open_session("p0", "s0").map_err(|e| fail(e.to_string()))?;
    fs::write(opened.upper.join("new.txt"), "n").map_err(|e| fail(e.to_string()))?;
    let outside: BTreeSet<String> = names_in(&tmp);
    let top: BTreeSet<String> = names_in(&state);
    for step in steps {
        match step {
            Step::OpenSession(p, s) => {
                if let Ok(opened) = d.store.open_session(p, s) {
                    let _ = fs::write(opened.upper.join(format!("from-{s}")), s);
                }
            }
            Step::Req(req) => {
                let req = resolve(req, &tmp);
                let shown: String = format!("{req:?}").chars().take(300).collect();
                let resp = d.handle(req);
                if let Some(e) = &resp.error {
                    prop_assert!(e.code != ErrorCode::Internal, "{shown} -> {}", e.message);
                    prop_assert!(!e.message.is_empty(), "{shown}: empty message");
                } else {
                    prop_assert!(resp.ok && resp.result.is_some(), "{shown} -> {resp:?}");
                }
                prop_assert!(d.registry.mountpoints().is_empty(), "{shown} mounted something");
            }
        }
        check_consistent(&d, &state)?;
    }
    // Nothing appeared beside the store (a name like "../x" would), except
    // what an import with "move" took away.
    let now = names_in(&tmp);
    prop_assert!(
        now.is_subset(&outside),
        "created beside the store: {:?}",
        now.difference(&outside)
    );
    let extra: Vec<_> = names_in(&state)
        .into_iter()
        .filter(|n| !top.contains(n) && n != "layer-meta")
        .collect();
    prop_assert!(extra.is_empty(), "unexpected entries in the store: {extra:?}");
    drop(d);
    let again = Daemon::open(config).map_err(|e| fail(format!("reopening the store: {e}")))?;
    let actions = &again.store.recovery_report().actions;
    prop_assert!(actions.is_empty(), "the restart had to repair: {actions:?}");
    check_consistent(&again, &state)
}

proptest! {
    #![proptest_config(crate::protocol::fuzz::config(384))]

    #[test]
    fn hostile_requests_never_panic_a_handler_and_leave_the_store_consistent(
        steps in prop::collection::vec(step(), 1..24)
    ) {
        run_case(steps)?;
    }
}

/// The placeholders resolve to what the property relies on.
#[test]
fn no_offered_path_is_a_usable_mountpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path().canonicalize().unwrap();
    fs::create_dir_all(tmp.join("src/dir")).unwrap();
    fs::create_dir_all(tmp.join("state")).unwrap();
    fs::write(tmp.join("file"), "f").unwrap();
    for p in PATHS {
        let Request::SessionMount { mountpoint, .. } = resolve(
            Request::SessionMount {
                project: "p".into(),
                session: "s".into(),
                mountpoint: p.to_string(),
            },
            &tmp,
        ) else {
            unreachable!()
        };
        let path = PathBuf::from(&mountpoint);
        let empty_dir_outside = path.is_absolute()
            && !mountpoint.contains('\0')
            && fs::read_dir(&path).is_ok_and(|mut rd| rd.next().is_none())
            && !path.starts_with(tmp.join("state"));
        assert!(!empty_dir_outside, "{p} is an empty directory outside the store");
    }
}
