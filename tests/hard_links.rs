//! Hard links in a view: of new files, of lower files (copied up once, one
//! inode for both names), of device nodes (overlayfs whiteouts), and the hard
//! links that already exist inside the golden.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

#[test]
fn hard_links_in_a_view() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");

    // Link a new file.
    write(m.join("new.txt"), "one\n");
    fs::hard_link(m.join("new.txt"), m.join("new-link")).unwrap();
    let (a, b) = (
        fs::metadata(m.join("new.txt")).unwrap(),
        fs::metadata(m.join("new-link")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    write(m.join("new-link"), "two\n");
    assert_eq!(read(m.join("new.txt")), "two\n");

    // Link a lower file: both names share content afterwards.
    fs::hard_link(m.join("a.txt"), m.join("dir1/a-link")).unwrap();
    assert_eq!(read(m.join("dir1/a-link")), "alpha\n");
    assert_eq!(
        fs::metadata(m.join("a.txt")).unwrap().ino(),
        fs::metadata(m.join("dir1/a-link")).unwrap().ino()
    );
    assert_eq!(fs::metadata(m.join("a.txt")).unwrap().nlink(), 2);
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("dir1/a-link"))
        .unwrap()
        .write_all(b"more\n")
        .unwrap();
    assert_eq!(read(m.join("a.txt")), "alpha\nmore\n");

    // Unlink one name; the other stays.
    fs::remove_file(m.join("a.txt")).unwrap();
    assert_eq!(read(m.join("dir1/a-link")), "alpha\nmore\n");
    assert_eq!(fs::metadata(m.join("dir1/a-link")).unwrap().nlink(), 1);
}

#[test]
fn hard_links_of_device_nodes_work_like_overlayfs_whiteouts() {
    // The inner overlayfs of dockerd link()s one shared char 0/0 inode.
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    mknod(&m.join("wh"), libc::S_IFCHR | 0o600, 0).unwrap();
    for i in 0..3 {
        fs::hard_link(m.join("wh"), m.join(format!("wh{i}"))).unwrap();
    }
    let md = fs::symlink_metadata(m.join("wh2")).unwrap();
    assert_eq!(md.mode() & libc::S_IFMT, libc::S_IFCHR);
    assert_eq!(md.rdev(), 0);
    assert_eq!(md.nlink(), 4);
}

#[test]
fn hard_links_in_the_golden_are_one_inode_in_the_view() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        write(s.join("one"), "shared\n");
        fs::hard_link(s.join("one"), s.join("two")).unwrap();
    });
    let m = d.mount("p", "s1");
    let (a, b) = (
        fs::metadata(m.join("one")).unwrap(),
        fs::metadata(m.join("two")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hard links of the golden must stay one inode");
    assert_eq!(a.nlink(), 2);
    assert_eq!(read(m.join("two")), "shared\n");
}

#[test]
fn copy_up_of_a_golden_hard_link_brings_up_every_name_as_one_inode() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        write(s.join("bin/tool"), "v1\n");
        fs::create_dir_all(s.join("libexec/deep")).unwrap();
        fs::hard_link(s.join("bin/tool"), s.join("bin/tool-alias")).unwrap();
        fs::hard_link(s.join("bin/tool"), s.join("libexec/deep/tool")).unwrap();
        fs::hard_link(s.join("bin/tool"), s.join("deleted-alias")).unwrap();
        write(s.join("bin/other"), "other\n");
    });
    let layers = d.layers_dir();
    let layers_before = snapshot(&layers);
    let m = d.mount("p", "s1");
    let ino = fs::metadata(m.join("bin/tool")).unwrap().ino();
    assert_eq!(fs::metadata(m.join("bin/tool")).unwrap().nlink(), 4);
    // One name is deleted in the view first: it must stay deleted.
    fs::remove_file(m.join("deleted-alias")).unwrap();

    // Writing through one name changes what every name shows.
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("libexec/deep/tool"))
        .unwrap()
        .write_all(b"v2\n")
        .unwrap();
    let check = |m: &std::path::Path| {
        for name in ["bin/tool", "bin/tool-alias", "libexec/deep/tool"] {
            assert_eq!(read(m.join(name)), "v1\nv2\n", "{name} must show the write");
            let md = fs::metadata(m.join(name)).unwrap();
            assert_eq!(md.ino(), ino, "{name} keeps the inode number");
            assert_eq!(md.nlink(), 3, "{name}: three names remain");
        }
        assert!(!exists(m.join("deleted-alias")), "a deleted name must not come back");
        assert_eq!(read(m.join("bin/other")), "other\n");
    };
    check(&m);
    // A further change through another name reaches all of them.
    chmod(&m.join("bin/tool-alias"), 0o700).unwrap();
    for name in ["bin/tool", "libexec/deep/tool"] {
        assert_eq!(fs::metadata(m.join(name)).unwrap().mode() & 0o777, 0o700, "{name}");
    }
    // The golden is untouched.
    assert_eq!(snapshot(&layers), layers_before);

    d.unmount("s1");
    let m = d.mount("p", "s1");
    check(&m);

    // Promoted: the next generation has one inode under the three names.
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    let m2 = d.mount("p", "s2");
    check(&m2);
    write(m2.join("bin/tool-alias"), "v3\n");
    assert_eq!(read(m2.join("libexec/deep/tool")), "v3\n");
    assert_eq!(read(m2.join("bin/tool")), "v3\n");
}

/// A golden hard link below a directory the session renamed is found by
/// copy-up through the rename (its redirect), so every name stays one inode
/// with the new data: while the kernel holds the inode, after it forgets it,
/// after a remount and after promotion. Before, a write through one name
/// vanished from both names once the kernel looked the other one up.
#[test]
fn a_golden_hard_link_below_a_renamed_dir_is_copied_up_with_the_others() {
    let d = Daemon::start();
    d.create_project_with("p", |src| {
        fs::create_dir_all(src.join("d/sub")).unwrap();
        fs::write(src.join("y"), "old\n").unwrap();
        fs::hard_link(src.join("y"), src.join("d/x")).unwrap();
        fs::hard_link(src.join("y"), src.join("d/sub/z")).unwrap();
    });
    let m = d.mount("p", "s");
    fs::rename(m.join("d"), m.join("e")).unwrap();
    fs::rename(m.join("e/sub"), m.join("f")).unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(m.join("y")).unwrap();
    f.write_all(b"new\n").unwrap();
    let names = ["y", "e/x", "f/z"];
    let check = |m: &std::path::Path, want: &str, when: &str| {
        let ino = fs::metadata(m.join("y")).unwrap().ino();
        for n in names {
            assert_eq!(read(m.join(n)), want, "{n} {when}");
            let md = fs::metadata(m.join(n)).unwrap();
            assert_eq!((md.ino(), md.nlink()), (ino, 3), "{n} {when}");
        }
    };
    check(&m, "old\nnew\n", "while the inode is held");
    drop(f);
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    check(&m, "old\nnew\n", "after the kernel forgot it");
    let m = d.remount("p", "s");
    check(&m, "old\nnew\n", "after a remount");
    d.unmount("s");
    d.ok(&["promote", "p", "s"]);
    let m = d.mount("p", "next");
    check(&m, "old\nnew\n", "after promotion");
}
