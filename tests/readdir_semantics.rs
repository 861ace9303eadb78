//! Merged readdir: offsets stay valid while the directory changes
//! (telldir/seekdir), `rm -rf` of a big merged directory sees every entry
//! exactly once, and `d_ino` agrees with `stat`.

mod common;

use common::*;
use rustix::fs::{Dir, Mode, OFlags};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

fn open_dir(path: &Path) -> Dir {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    Dir::new(fd).expect("Dir::new")
}

/// Reads up to `n` entries (all if `n` is None) other than `.` and `..`:
/// (name, d_ino, offset after the entry).
fn read_entries(dir: &mut Dir, n: Option<usize>) -> Vec<(String, u64, i64)> {
    let mut out = Vec::new();
    while n.is_none_or(|n| out.len() < n) {
        let Some(e) = dir.read() else { break };
        let e = e.expect("readdir");
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        out.push((name, e.ino(), e.offset()));
    }
    out
}

/// A directory of lower files, some copied up, some removed, some new.
fn merged_dir(d: &Daemon, lower: usize) -> std::path::PathBuf {
    d.create_project_with("p", |s| {
        for i in 0..lower {
            write(s.join(format!("big/l{i:05}")), "lower");
        }
        fs::create_dir_all(s.join("big/lower-subdir/x")).unwrap();
    });
    let m = d.mount("p", "s1");
    let big = m.join("big");
    for i in (0..lower).step_by(10) {
        write(big.join(format!("l{i:05}")), "copied up"); // copy-up
        fs::remove_file(big.join(format!("l{:05}", i + 1))).unwrap(); // whiteout
    }
    for i in 0..lower / 2 {
        write(big.join(format!("u{i:05}")), "upper");
    }
    big
}

#[test]
fn seekdir_returns_to_the_same_entry_while_the_directory_changes() {
    let d = Daemon::start();
    let big = merged_dir(&d, 1000);
    let expected = ls(&big);

    let mut dir = open_dir(&big);
    let first = read_entries(&mut dir, Some(400));
    assert_eq!(first.len(), 400);
    // The directory changes under the open stream: creates, removals of
    // entries already read and of entries not read yet, a copy-up, a rename.
    for i in 0..200 {
        write(big.join(format!("new{i:03}")), "new");
    }
    for (name, _, _) in first.iter().step_by(3) {
        fs::remove_file(big.join(name)).unwrap();
    }
    let not_yet_read: Vec<&String> = expected
        .iter()
        .filter(|n| !first.iter().any(|(f, _, _)| f == *n))
        .collect();
    fs::remove_file(big.join(not_yet_read[10])).unwrap();
    fs::rename(big.join(not_yet_read[20]), big.join("renamed-while-listing")).unwrap();
    write(big.join(not_yet_read[30]), "copied up while listing");

    // Every position remembered (telldir) leads back to the entry after it.
    for k in [0usize, 1, 57, 200, 398] {
        let (_, _, off) = first[k];
        dir.seek(off).expect("seekdir");
        let next = read_entries(&mut dir, Some(1));
        assert_eq!(next[0].0, first[k + 1].0, "seekdir to the offset after entry {k}");
        assert_eq!(next[0].1, first[k + 1].1, "d_ino after seekdir to entry {k}");
    }
    // Continuing from where the first read stopped yields the rest of the
    // listing as of opendir: nothing skipped, nothing repeated.
    dir.seek(first[399].2).unwrap();
    let rest = read_entries(&mut dir, None);
    let mut all: Vec<String> = first.iter().chain(rest.iter()).map(|(n, _, _)| n.clone()).collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "an entry was repeated");
    assert_eq!(all, expected, "the stream must list the directory as it was at opendir");

    // rewinddir starts a fresh listing that reflects the changes.
    dir.rewind();
    let fresh: BTreeSet<String> = read_entries(&mut dir, None).into_iter().map(|(n, _, _)| n).collect();
    let now: BTreeSet<String> = ls(&big).into_iter().collect();
    assert_eq!(fresh, now, "rewinddir must show the current directory");
    assert!(fresh.contains("new000") && fresh.contains("renamed-while-listing"));
}

#[test]
fn removing_entries_while_listing_skips_and_repeats_nothing() {
    let d = Daemon::start();
    let big = merged_dir(&d, 6000);
    let expected: BTreeSet<String> = ls(&big).into_iter().collect();
    assert!(expected.len() > 8000, "{}", expected.len());

    // What `rm -rf` does: read a batch, unlink what was read, read on.
    let mut dir = open_dir(&big);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let batch = read_entries(&mut dir, Some(100));
        if batch.is_empty() {
            break;
        }
        for (name, _, _) in batch {
            let p = big.join(&name);
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                fs::remove_dir_all(&p).unwrap();
            } else {
                fs::remove_file(&p).unwrap();
            }
            *seen.entry(name).or_default() += 1;
        }
    }
    let repeated: Vec<_> = seen.iter().filter(|&(_, &c)| c > 1).collect();
    assert!(repeated.is_empty(), "entries listed twice: {repeated:?}");
    let seen: BTreeSet<String> = seen.into_keys().collect();
    assert_eq!(seen, expected, "every entry must be listed exactly once");
    assert!(ls(&big).is_empty(), "the directory must be empty: {:?}", ls(&big));
    fs::remove_dir(&big).unwrap();
    assert!(!exists(&big));
}

#[test]
fn rm_rf_of_a_large_merged_directory_removes_everything() {
    let d = Daemon::start();
    let big = merged_dir(&d, 6000);
    let out = Command::new("rm").arg("-rf").arg(&big).output().unwrap();
    assert!(out.status.success(), "rm -rf: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!exists(&big));
    // And the removal holds after remount (whiteouts, not a cached listing).
    d.unmount("s1");
    let m = d.mount("p", "s1");
    assert!(!exists(m.join("big")));
    assert!(!ls(&m).contains(&"big".to_string()));
}

#[test]
fn readdir_d_ino_agrees_with_stat_in_every_kind_of_directory() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        write(s.join("dir/lower-file"), "l");
        write(s.join("dir/to-copy-up"), "l");
        write(s.join("dir/to-rename"), "l");
        fs::create_dir_all(s.join("dir/lower-sub/deeper")).unwrap();
        fs::create_dir_all(s.join("dir/dir-to-rename/inner")).unwrap();
        std::os::unix::fs::symlink("lower-file", s.join("dir/link")).unwrap();
        write(s.join("untouched/f"), "l");
    });
    let m = d.mount("p", "s1");
    write(m.join("dir/to-copy-up"), "upper");
    write(m.join("dir/new-file"), "upper");
    fs::create_dir(m.join("dir/new-dir")).unwrap();
    fs::rename(m.join("dir/to-rename"), m.join("dir/renamed")).unwrap();
    fs::rename(m.join("dir/dir-to-rename"), m.join("dir/dir-renamed")).unwrap();
    fs::hard_link(m.join("dir/lower-file"), m.join("dir/hard-link")).unwrap();

    let check = |m: &Path| {
        for dir in [
            m.to_path_buf(),
            m.join("dir"),
            m.join("dir/dir-renamed"),
            m.join("untouched"),
        ] {
            let mut stream = open_dir(&dir);
            for (name, d_ino, _) in read_entries(&mut stream, None) {
                let st = fs::symlink_metadata(dir.join(&name)).unwrap();
                assert_eq!(d_ino, st.ino(), "d_ino of {}/{name} differs from st_ino", dir.display());
            }
        }
        // `.` is the directory itself.
        let mut stream = open_dir(&m.join("dir"));
        let dot = std::iter::from_fn(|| stream.read())
            .map(|e| e.unwrap())
            .find(|e| e.file_name().to_bytes() == b".")
            .expect("`.` is listed");
        assert_eq!(dot.ino(), fs::metadata(m.join("dir")).unwrap().ino());
    };
    check(&m);
    d.unmount("s1");
    let m = d.mount("p", "s1");
    check(&m);
}
