//! Checks of the test harness's own helpers (no daemon, no root needed).

mod common;

use common::*;

#[test]
fn rfc3339_recognizer_accepts_and_rejects_the_right_strings() {
    for ok in [
        "2026-11-24T10:00:00Z",
        "2026-11-24T10:00:00.123456789Z",
        "2026-11-24T10:00:00+01:00",
        "2026-11-24t10:00:00.5-05:30",
    ] {
        assert!(is_rfc3339(ok), "{ok}");
    }
    for bad in [
        "",
        "2026-11-24",
        "2026-11-24 10:00:00Z",
        "2026-11-24T10:00:00",
        "2026-11-24T10:00:00.Z",
        "1700000000",
        "2026-11-24T10:00:00+0100",
    ] {
        assert!(!is_rfc3339(bad), "{bad}");
    }
}

#[test]
fn mount_table_lists_the_root() {
    assert!(is_mounted(std::path::Path::new("/")));
    assert!(!is_mounted(std::path::Path::new("/definitely/not/mounted")));
}

#[test]
fn scratch_root_is_not_tmpfs_and_tempdirs_are_removed() {
    let root = scratch_root();
    assert!(root.is_dir());
    let p = {
        let t = tempdir("selftest-");
        write(t.path().join("x/y"), "z");
        t.path().to_path_buf()
    };
    assert!(!exists(&p));
}

#[test]
fn loose_json_lookup_finds_named_objects() {
    let v: serde_json::Value = serde_json::json!({
        "projects": [{"name": "a", "current": 3}, {"name": "b", "current_generation": 7}]
    });
    let b = find_named(&v, &["name"], "b").unwrap();
    assert_eq!(
        field(b, &["current", "current_generation"]).and_then(|x| x.as_u64()),
        Some(7)
    );
    assert!(find_named(&v, &["name"], "c").is_none());
}
