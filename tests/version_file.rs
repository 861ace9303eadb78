//! The virtual, read-only `golden-version.json` at the root of every view.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

const DENIED: &[i32] = &[libc::EACCES, libc::EPERM];

#[test]
fn version_file_describes_the_base_generation() {
    let d = Daemon::start();
    d.create_project_with("web", fill_sample);
    let m = d.mount("web", "s1");
    let text = read(m.join(VERSION_FILE));
    assert!(text.ends_with("}\n"), "must end with a newline:\n{text:?}");
    assert!(text.starts_with("{\n  \""), "must be pretty-printed JSON:\n{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["generation"], Value::from(1u64), "{text}");
    assert_eq!(v["project_id"], Value::from("web"), "{text}");
    assert!(
        v.get("session_id").is_some_and(Value::is_null),
        "generation 1 from an import has session_id null:\n{text}"
    );
    let created = v["created_at"].as_str().expect("created_at is a string");
    assert!(is_rfc3339(created), "created_at {created:?} is not RFC 3339");

    // stat agrees with read.
    let md = fs::metadata(m.join(VERSION_FILE)).unwrap();
    assert!(md.is_file());
    assert_eq!(md.len(), text.len() as u64, "st_size must match the content");
    assert_eq!(md.mode() & 0o222, 0, "the version file must not look writable");

    // Reading it in small pieces gives the same bytes.
    let mut f = fs::File::open(m.join(VERSION_FILE)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, text.as_bytes());
}

#[test]
fn version_file_after_promotion_names_the_promoted_session() {
    let d = Daemon::start();
    d.create_project_with("web", fill_sample);
    let old = d.mount("web", "old");
    let w = d.mount("web", "warm");
    write(w.join("built"), "yes\n");
    d.unmount("warm");
    d.ok(&["promote", "web", "warm"]);
    let m = d.mount("web", "s2");
    let v = version_of(&m);
    assert_eq!(v["generation"], Value::from(2u64), "{v}");
    assert_eq!(v["session_id"], Value::from("warm"), "{v}");
    assert_eq!(v["project_id"], Value::from("web"), "{v}");
    assert!(is_rfc3339(v["created_at"].as_str().unwrap()));
    if let Some(parent) = v.get("parent") {
        assert_eq!(parent, &Value::from(1u64), "{v}");
    }
    // The already mounted old session still says generation 1.
    assert_eq!(generation_of(&old), 1);
    assert!(version_of(&old)["session_id"].is_null());
}

#[test]
fn version_file_cannot_be_written() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let vf = m.join(VERSION_FILE);
    let before = read(&vf);

    assert_errno(fs::OpenOptions::new().write(true).open(&vf), DENIED, "open O_WRONLY");
    assert_errno(
        fs::OpenOptions::new().read(true).write(true).open(&vf),
        DENIED,
        "open O_RDWR",
    );
    assert_errno(fs::OpenOptions::new().append(true).open(&vf), DENIED, "open O_APPEND");
    assert_errno(
        fs::OpenOptions::new().write(true).truncate(true).open(&vf),
        DENIED,
        "open O_TRUNC",
    );
    assert_errno(fs::File::create(&vf), DENIED, "creat");
    assert_errno(
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&vf),
        &[libc::EEXIST, libc::EACCES, libc::EPERM],
        "O_CREAT|O_EXCL",
    );
    assert_errno(truncate(&vf, 0), DENIED, "truncate");
    assert_errno(fs::remove_file(&vf), DENIED, "unlink");
    assert_errno(fs::rename(&vf, m.join("moved.json")), DENIED, "rename away");
    write(m.join("imposter.json"), "{}\n");
    assert_errno(fs::rename(m.join("imposter.json"), &vf), DENIED, "rename over");
    assert_errno(chmod(&vf, 0o666), DENIED, "chmod");
    assert_errno(lchown(&vf, 1000, 1000), DENIED, "chown");
    assert_errno(set_times(&vf, (1, 0), (1, 0)), DENIED, "utimensat");
    assert_errno(
        xattr::set(&vf, "user.x", b"y"),
        &[libc::EACCES, libc::EPERM, libc::EOPNOTSUPP],
        "setxattr",
    );
    assert_errno(
        fs::hard_link(m.join("a.txt"), &vf),
        &[libc::EEXIST, libc::EACCES, libc::EPERM],
        "link over",
    );
    assert_errno(
        std::os::unix::fs::symlink("a.txt", &vf),
        &[libc::EEXIST, libc::EACCES, libc::EPERM],
        "symlink over",
    );
    assert_errno(
        fs::create_dir(&vf),
        &[libc::EEXIST, libc::EACCES, libc::EPERM],
        "mkdir over",
    );
    assert_errno(
        mknod(&vf, libc::S_IFIFO | 0o644, 0),
        &[libc::EEXIST, libc::EACCES, libc::EPERM],
        "mknod over",
    );

    assert_eq!(read(&vf), before, "the version file changed");
    assert!(!exists(m.join("moved.json")));
    assert_eq!(read(m.join("imposter.json")), "{}\n");
    // Writing through an fd opened read-only is refused by the kernel anyway;
    // check the daemon does not crash on it.
    let mut f = fs::File::open(&vf).unwrap();
    assert!(f.write_all(b"x").is_err());
    drop(f);
    assert_eq!(read(&vf), before);

    // Nothing of the attempts leaked into the upper: after promotion the
    // new generation's version file is virtual too, with no stale copy.
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    let m2 = d.mount("p", "s2");
    assert_eq!(generation_of(&m2), 2);
}

#[test]
fn version_file_shadows_a_real_file_of_that_name() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        write(s.join(VERSION_FILE), "REAL FILE FROM THE GOLDEN\n");
        write(s.join("sub").join(VERSION_FILE), "nested real file\n");
    });
    let m = d.mount("p", "s1");
    let text = read(m.join(VERSION_FILE));
    assert_ne!(text, "REAL FILE FROM THE GOLDEN\n", "the real file shows through");
    assert_eq!(generation_of(&m), 1);
    // Only the root is special.
    assert_eq!(read(m.join("sub").join(VERSION_FILE)), "nested real file\n");
    write(m.join("sub").join(VERSION_FILE), "writable below the root\n");
    assert_eq!(read(m.join("sub").join(VERSION_FILE)), "writable below the root\n");
    // Listed exactly once.
    let names = ls(&m);
    assert_eq!(names.iter().filter(|n| *n == VERSION_FILE).count(), 1, "{names:?}");
    // The real file is still in the layer on disk.
    let layers = d.layers_dir();
    let snap = snapshot(&layers);
    let real: Vec<_> = snap
        .iter()
        .filter(|(k, _)| {
            k.file_name().and_then(|n| n.to_str()) == Some(VERSION_FILE)
                && k.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()) != Some("sub")
        })
        .collect();
    assert_eq!(
        real.len(),
        1,
        "expected the golden's real {VERSION_FILE} in one layer under {}",
        layers.display()
    );
    match real[0].1 {
        Node::File { content, .. } => assert_eq!(content, b"REAL FILE FROM THE GOLDEN\n"),
        other => panic!("unexpected node {other:?}"),
    }
}

#[test]
fn readdir_lists_the_version_file() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let names = ls(&m);
    assert!(names.contains(&VERSION_FILE.to_string()), "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == VERSION_FILE).count(), 1);
    // Only at the root.
    assert!(!ls(m.join("dir1")).contains(&VERSION_FILE.to_string()));
    // An empty project lists just the version file.
    d.ok(&["project", "create", "empty"]);
    let e = d.mount("empty", "s2");
    assert_eq!(ls(&e), vec![VERSION_FILE]);
    // After removing every other entry of the root it is still there.
    for n in ls(&m) {
        if n != VERSION_FILE {
            let p = m.join(&n);
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                fs::remove_dir_all(&p).unwrap();
            } else {
                fs::remove_file(&p).unwrap();
            }
        }
    }
    assert_eq!(ls(&m), vec![VERSION_FILE]);
    // And rm -rf of the root's content does not touch it (it's refused).
    assert!(exists(m.join(VERSION_FILE)));
}
