//! Stable inode numbers: `st_ino` of every kind of entry is the same before
//! and after copy-up, across unmount/remount, after promotion (in a new
//! session on the next generation) and after a daemon restart.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Paths checked, relative to the mount.
const PATHS: &[&str] = &[
    "lower-file",
    "copied-up",
    "chmodded",
    "dir",
    "dir/nested",
    "dir/nested/deep-file",
    "dir/new-in-merged",
    "new-file",
    "new-dir",
    "new-dir/inner",
    "renamed-file",
    "renamed-dir",
    "renamed-dir/kept",
    "link",
    "hard-a",
    "hard-b",
    "fifo",
];

fn inodes(m: &Path) -> BTreeMap<&'static str, u64> {
    PATHS
        .iter()
        .map(|p| {
            let md = fs::symlink_metadata(m.join(p)).unwrap_or_else(|e| panic!("stat {p}: {e}"));
            (*p, md.ino())
        })
        .collect()
}

#[test]
fn inode_numbers_survive_copy_up_remount_promotion_and_restart() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        write(s.join("lower-file"), "l");
        write(s.join("copied-up"), "l");
        write(s.join("chmodded"), "l");
        write(s.join("dir/nested/deep-file"), "l");
        write(s.join("to-rename"), "l");
        write(s.join("dir-to-rename/kept"), "l");
        std::os::unix::fs::symlink("lower-file", s.join("link")).unwrap();
    });
    let m = d.mount("p", "s1");
    let lower_before: BTreeMap<&str, u64> = ["copied-up", "chmodded", "dir/nested/deep-file", "to-rename"]
        .into_iter()
        .map(|p| (p, fs::metadata(m.join(p)).unwrap().ino()))
        .collect();
    let renamed_dir_before = fs::metadata(m.join("dir-to-rename")).unwrap().ino();

    // Change the view in every way that copies up or creates.
    write(m.join("copied-up"), "upper");
    chmod(&m.join("chmodded"), 0o600).unwrap();
    write(m.join("dir/nested/deep-file"), "upper");
    write(m.join("dir/new-in-merged"), "upper");
    write(m.join("new-file"), "upper");
    write(m.join("new-dir/inner"), "upper");
    fs::rename(m.join("to-rename"), m.join("renamed-file")).unwrap();
    fs::rename(m.join("dir-to-rename"), m.join("renamed-dir")).unwrap();
    write(m.join("hard-a"), "h");
    fs::hard_link(m.join("hard-a"), m.join("hard-b")).unwrap();
    mkfifo(&m.join("fifo"), 0o644).unwrap();

    // Copy-up and rename keep the number the entry had in the lower layer.
    let now = inodes(&m);
    assert_eq!(now["copied-up"], lower_before["copied-up"]);
    assert_eq!(now["chmodded"], lower_before["chmodded"]);
    assert_eq!(now["dir/nested/deep-file"], lower_before["dir/nested/deep-file"]);
    assert_eq!(now["renamed-file"], lower_before["to-rename"]);
    assert_eq!(now["renamed-dir"], renamed_dir_before);
    assert_eq!(now["hard-a"], now["hard-b"]);
    // Distinct entries have distinct numbers.
    let mut distinct: Vec<u64> = now.iter().filter(|(p, _)| **p != "hard-b").map(|(_, i)| *i).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), PATHS.len() - 1, "inode numbers collide: {now:?}");

    d.unmount("s1");
    let m = d.mount("p", "s1");
    assert_eq!(inodes(&m), now, "st_ino changed across unmount/remount");

    d.restart();
    let m = d.mount("p", "s1");
    assert_eq!(inodes(&m), now, "st_ino changed across a daemon restart");

    // The promoted generation shows the same numbers to a new session.
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    let m2 = d.mount("p", "s2");
    assert_eq!(generation_of(&m2), 2);
    assert_eq!(inodes(&m2), now, "st_ino changed across promotion");
    // And copy-up in the new session keeps them too.
    write(m2.join("lower-file"), "changed in s2");
    write(m2.join("renamed-dir/kept"), "changed in s2");
    assert_eq!(inodes(&m2), now, "st_ino changed by copy-up from a promoted layer");
}
