//! What a process sees and can do inside a mounted view: isolation, copy-up,
//! whiteouts, opaque directories, renames, and every kind of modification.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};

#[test]
fn two_sessions_of_one_project_are_isolated() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m1 = d.mount("p", "s1");
    let m2 = d.mount("p", "s2");

    write(m1.join("only-in-s1.txt"), "s1\n");
    write(m1.join("a.txt"), "s1 changed a\n");
    fs::remove_file(m1.join("b.txt")).unwrap();
    fs::create_dir(m1.join("dir-s1")).unwrap();
    write(m2.join("only-in-s2.txt"), "s2\n");

    assert!(!exists(m2.join("only-in-s1.txt")));
    assert!(!exists(m2.join("dir-s1")));
    assert_eq!(read(m2.join("a.txt")), "alpha\n");
    assert_eq!(read(m2.join("b.txt")), "bravo\n");
    assert!(!exists(m1.join("only-in-s2.txt")));
    assert_eq!(read(m1.join("a.txt")), "s1 changed a\n");
    assert!(!exists(m1.join("b.txt")));
}

#[test]
fn copy_up_leaves_the_generation_untouched() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        write(s.join("big.bin"), vec![7u8; 1 << 20]);
        fs::set_permissions(s.join("b.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    });
    let layers = d.layers_dir();
    assert!(
        layers.is_dir(),
        "expected the store's layers under {}",
        layers.display()
    );
    let before = snapshot(&layers);
    assert!(
        before.keys().any(|k| k.ends_with("a.txt")),
        "the imported tree should be in a layer under {}: {:?}",
        layers.display(),
        before.keys().collect::<Vec<_>>()
    );

    let other = d.mount("p", "other");
    let m = d.mount("p", "writer");
    // Overwrite, append, truncate, partial write, chmod, utime, xattr on lower files.
    write(m.join("a.txt"), "rewritten\n");
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("dir1/x.txt"))
        .unwrap()
        .write_all(b"appended\n")
        .unwrap();
    truncate(&m.join("dir1/nested/deep.txt"), 2).unwrap();
    {
        let mut f = fs::OpenOptions::new().write(true).open(m.join("big.bin")).unwrap();
        f.seek(SeekFrom::Start(4096)).unwrap();
        f.write_all(b"XYZ").unwrap();
        f.sync_all().unwrap();
    }
    chmod(&m.join("b.txt"), 0o600).unwrap();
    set_times(&m.join("empty"), (1, 0), (2, 0)).unwrap();
    xattr::set(&m.join("dir1"), "user.test", b"v").unwrap();

    // The writer sees its changes.
    assert_eq!(read(m.join("a.txt")), "rewritten\n");
    assert_eq!(read(m.join("dir1/x.txt")), "x\nappended\n");
    assert_eq!(read(m.join("dir1/nested/deep.txt")), "de");
    let big = fs::read(m.join("big.bin")).unwrap();
    assert_eq!(big.len(), 1 << 20);
    assert_eq!(&big[4096..4099], b"XYZ");
    assert_eq!(big[4095], 7);
    assert_eq!(big[4099], 7);
    assert_eq!(
        fs::metadata(m.join("b.txt")).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A session mounted before, and one mounted after, see the old content.
    let newer = d.mount("p", "newer");
    for v in [&other, &newer] {
        assert_eq!(read(v.join("a.txt")), "alpha\n");
        assert_eq!(read(v.join("dir1/x.txt")), "x\n");
        assert_eq!(read(v.join("dir1/nested/deep.txt")), "deep\n");
        assert_eq!(fs::read(v.join("big.bin")).unwrap(), vec![7u8; 1 << 20]);
        assert_eq!(
            fs::metadata(v.join("b.txt")).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(xattr::get(&v.join("dir1"), "user.test").unwrap(), None);
    }
    // And the layer on disk is byte for byte what it was.
    assert_eq!(snapshot(&layers), before, "writes in a view changed the store's layers");
}

#[test]
fn copy_up_keeps_the_inode_number() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let ino = fs::metadata(m.join("a.txt")).unwrap().ino();
    let dir_ino = fs::metadata(m.join("dir1/nested")).unwrap().ino();
    write(m.join("a.txt"), "changed\n");
    write(m.join("dir1/nested/new.txt"), "new\n");
    assert_eq!(
        fs::metadata(m.join("a.txt")).unwrap().ino(),
        ino,
        "st_ino must survive copy-up"
    );
    assert_eq!(
        fs::metadata(m.join("dir1/nested")).unwrap().ino(),
        dir_ino,
        "st_ino of a directory must survive copy-up"
    );
    d.unmount("s1");
    let m = d.mount("p", "s1");
    assert_eq!(
        fs::metadata(m.join("a.txt")).unwrap().ino(),
        ino,
        "st_ino must survive remount"
    );
}

#[test]
fn a_file_open_before_copy_up_reads_consistently() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let mut reader = fs::File::open(m.join("a.txt")).unwrap();
    write(m.join("a.txt"), "new content\n");
    let mut s = String::new();
    reader.read_to_string(&mut s).unwrap();
    // POSIX would say "new content"; an overlay may give the old bytes. Either
    // is one complete version, never a mixture or an error.
    assert!(
        s == "new content\n" || s == "alpha\n",
        "a reader open across copy-up got {s:?}"
    );
    assert_eq!(read(m.join("a.txt")), "new content\n");
}

#[test]
fn removing_a_lower_file_hides_it_only_in_that_view() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m1 = d.mount("p", "s1");
    let m2 = d.mount("p", "s2");
    fs::remove_file(m1.join("a.txt")).unwrap();
    fs::remove_file(m1.join("dir1/nested/deep.txt")).unwrap();
    fs::remove_file(m1.join("link")).unwrap();

    assert!(!exists(m1.join("a.txt")));
    assert_errno(fs::read(m1.join("a.txt")), &[libc::ENOENT], "read removed file");
    assert!(!ls(&m1).contains(&"a.txt".to_string()));
    assert!(!ls(&m1).contains(&"link".to_string()));
    assert!(ls(m1.join("dir1/nested")).is_empty());

    assert_eq!(read(m2.join("a.txt")), "alpha\n");
    assert_eq!(read(m2.join("dir1/nested/deep.txt")), "deep\n");
    let m3 = d.mount("p", "s3");
    assert_eq!(read(m3.join("a.txt")), "alpha\n");

    // Recreating the name gives a new file, not the old content.
    write(m1.join("a.txt"), "reborn\n");
    assert_eq!(read(m1.join("a.txt")), "reborn\n");
    // A whiteout survives remount.
    d.unmount("s1");
    let m1 = d.mount("p", "s1");
    assert_eq!(read(m1.join("a.txt")), "reborn\n");
    assert!(!exists(m1.join("dir1/nested/deep.txt")));
}

#[test]
fn removing_a_lower_dir_hides_it_and_a_recreated_dir_is_empty() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m1 = d.mount("p", "s1");
    let m2 = d.mount("p", "s2");

    fs::remove_dir_all(m1.join("dir1")).unwrap();
    fs::remove_dir(m1.join("empty")).unwrap();
    assert!(!exists(m1.join("dir1")));
    assert!(!exists(m1.join("empty")));
    assert!(!ls(&m1).contains(&"dir1".to_string()));

    assert_eq!(read(m2.join("dir1/nested/deep.txt")), "deep\n");
    assert!(m2.join("empty").is_dir());

    // Recreate: a fresh, empty (opaque) directory.
    fs::create_dir(m1.join("dir1")).unwrap();
    assert!(ls(m1.join("dir1")).is_empty(), "old content shows through");
    assert!(!exists(m1.join("dir1/x.txt")));
    assert!(!exists(m1.join("dir1/nested")));
    write(m1.join("dir1/fresh.txt"), "fresh\n");
    assert_eq!(ls(m1.join("dir1")), vec!["fresh.txt"]);

    // Still so after remount.
    d.unmount("s1");
    let m1 = d.mount("p", "s1");
    assert_eq!(ls(m1.join("dir1")), vec!["fresh.txt"]);
    assert!(!exists(m1.join("empty")));
    assert_eq!(read(m2.join("dir1/x.txt")), "x\n");
}

#[test]
fn rmdir_of_a_non_empty_lower_dir_fails_with_enotempty() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    assert_errno(
        fs::remove_dir(m.join("dir1")),
        &[libc::ENOTEMPTY, libc::EEXIST],
        "rmdir dir1",
    );
    // Empty it in the view, then rmdir works.
    fs::remove_file(m.join("dir1/x.txt")).unwrap();
    fs::remove_file(m.join("dir1/nested/deep.txt")).unwrap();
    fs::remove_dir(m.join("dir1/nested")).unwrap();
    fs::remove_dir(m.join("dir1")).unwrap();
    assert!(!exists(m.join("dir1")));
}

#[test]
fn renaming_a_lower_file_moves_its_content() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let other = d.mount("p", "s2");
    fs::rename(m.join("a.txt"), m.join("renamed.txt")).unwrap();
    fs::rename(m.join("dir1/x.txt"), m.join("moved-x.txt")).unwrap();
    // Rename over an existing lower file replaces it.
    fs::rename(m.join("b.txt"), m.join("dir1/nested/deep.txt")).unwrap();

    assert!(!exists(m.join("a.txt")));
    assert_eq!(read(m.join("renamed.txt")), "alpha\n");
    assert!(!exists(m.join("dir1/x.txt")));
    assert_eq!(read(m.join("moved-x.txt")), "x\n");
    assert!(!exists(m.join("b.txt")));
    assert_eq!(read(m.join("dir1/nested/deep.txt")), "bravo\n");

    assert_eq!(read(other.join("a.txt")), "alpha\n");
    assert!(!exists(other.join("renamed.txt")));
    assert_eq!(read(other.join("dir1/nested/deep.txt")), "deep\n");

    d.unmount("s1");
    let m = d.mount("p", "s1");
    assert_eq!(read(m.join("renamed.txt")), "alpha\n");
    assert!(!exists(m.join("a.txt")));
}

#[test]
fn renaming_a_lower_dir_moves_its_nested_content() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        write(s.join("tree/a/b/c/leaf.txt"), "leaf\n");
        write(s.join("tree/a/top.txt"), "top\n");
        std::os::unix::fs::symlink("b/c/leaf.txt", s.join("tree/a/rel-link")).unwrap();
    });
    let m = d.mount("p", "s1");
    let other = d.mount("p", "s2");

    fs::rename(m.join("tree/a"), m.join("moved")).unwrap();
    fs::rename(m.join("dir1"), m.join("empty/dir1-inside")).unwrap();

    assert!(!exists(m.join("tree/a")));
    assert!(ls(m.join("tree")).is_empty());
    assert_eq!(read(m.join("moved/b/c/leaf.txt")), "leaf\n");
    assert_eq!(read(m.join("moved/top.txt")), "top\n");
    assert_eq!(read(m.join("moved/rel-link")), "leaf\n");
    assert_eq!(ls(m.join("moved")), vec!["b", "rel-link", "top.txt"]);
    assert!(!exists(m.join("dir1")));
    assert_eq!(read(m.join("empty/dir1-inside/nested/deep.txt")), "deep\n");

    // Modify inside the renamed dir; then a new dir at the old name is empty.
    write(m.join("moved/b/c/leaf.txt"), "leaf2\n");
    fs::create_dir(m.join("tree/a")).unwrap();
    assert!(ls(m.join("tree/a")).is_empty(), "old content shows through");

    // Renaming back and forth keeps content.
    fs::rename(m.join("moved"), m.join("moved-again")).unwrap();
    assert_eq!(read(m.join("moved-again/b/c/leaf.txt")), "leaf2\n");
    assert_eq!(read(m.join("moved-again/top.txt")), "top\n");

    assert_eq!(read(other.join("tree/a/b/c/leaf.txt")), "leaf\n");
    assert!(!exists(other.join("moved")));

    d.unmount("s1");
    let m = d.mount("p", "s1");
    assert_eq!(read(m.join("moved-again/b/c/leaf.txt")), "leaf2\n");
    assert_eq!(read(m.join("moved-again/top.txt")), "top\n");
    assert_eq!(read(m.join("empty/dir1-inside/x.txt")), "x\n");
    assert!(ls(m.join("tree/a")).is_empty());
}

#[test]
fn rename_noreplace_refuses_to_replace_an_existing_entry() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    let r = renameat_with(CWD, m.join("a.txt"), CWD, m.join("b.txt"), RenameFlags::NOREPLACE);
    assert_eq!(
        r,
        Err(rustix::io::Errno::EXIST),
        "RENAME_NOREPLACE over an existing file must fail with EEXIST"
    );
    assert_eq!(read(m.join("a.txt")), "alpha\n");
    assert_eq!(read(m.join("b.txt")), "bravo\n");
}

#[test]
fn create_write_read_truncate_in_a_view() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let f = m.join("new.txt");
    write(&f, "hello world\n");
    assert_eq!(read(&f), "hello world\n");
    truncate(&f, 5).unwrap();
    assert_eq!(read(&f), "hello");
    truncate(&f, 8).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"hello\0\0\0");
    {
        let mut h = fs::OpenOptions::new().read(true).write(true).open(&f).unwrap();
        h.set_len(0).unwrap();
        h.write_all(b"abc").unwrap();
        h.seek(SeekFrom::Start(1)).unwrap();
        let mut buf = [0u8; 2];
        h.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"bc");
        h.sync_all().unwrap();
        h.sync_data().unwrap();
    }
    // O_TRUNC on a lower file.
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.join("b.txt"))
        .unwrap();
    assert_eq!(fs::metadata(m.join("b.txt")).unwrap().len(), 0);
    // O_EXCL on an existing lower file fails.
    assert_errno(
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(m.join("a.txt")),
        &[libc::EEXIST],
        "O_CREAT|O_EXCL on a lower file",
    );
    // Large sparse write.
    {
        let mut h = fs::File::create(m.join("sparse")).unwrap();
        h.seek(SeekFrom::Start(10 << 20)).unwrap();
        h.write_all(b"end").unwrap();
    }
    assert_eq!(fs::metadata(m.join("sparse")).unwrap().len(), (10 << 20) + 3);
}

#[test]
fn chmod_chown_and_utime_in_a_view() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let other = d.mount("p", "s2");

    chmod(&m.join("a.txt"), 0o751).unwrap();
    assert_eq!(fs::metadata(m.join("a.txt")).unwrap().mode() & 0o7777, 0o751);
    chmod(&m.join("dir1"), 0o700).unwrap();
    assert_eq!(fs::metadata(m.join("dir1")).unwrap().mode() & 0o7777, 0o700);

    lchown(&m.join("a.txt"), 1234, 5678).unwrap();
    let md = fs::metadata(m.join("a.txt")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    lchown(&m.join("link"), 42, 43).unwrap();
    let md = fs::symlink_metadata(m.join("link")).unwrap();
    assert_eq!((md.uid(), md.gid()), (42, 43));
    // chown of a lower directory.
    lchown(&m.join("dir1/nested"), 7, 8).unwrap();
    let md = fs::metadata(m.join("dir1/nested")).unwrap();
    assert_eq!((md.uid(), md.gid()), (7, 8));

    set_times(&m.join("b.txt"), (1_000_000_000, 5), (1_500_000_000, 123_456_789)).unwrap();
    let md = fs::metadata(m.join("b.txt")).unwrap();
    assert_eq!((md.atime(), md.atime_nsec()), (1_000_000_000, 5));
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_500_000_000, 123_456_789));
    // Content untouched by metadata-only copy-up.
    assert_eq!(read(m.join("b.txt")), "bravo\n");
    assert_eq!(read(m.join("a.txt")), "alpha\n");

    // The other view is unaffected.
    let md = fs::metadata(other.join("a.txt")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    assert_ne!(md.mode() & 0o7777, 0o751);
    assert_ne!(fs::metadata(other.join("b.txt")).unwrap().mtime(), 1_500_000_000);

    // Persisted across remount.
    d.unmount("s1");
    let m = d.mount("p", "s1");
    let md = fs::metadata(m.join("a.txt")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (1234, 5678, 0o751));
    assert_eq!(fs::metadata(m.join("b.txt")).unwrap().mtime(), 1_500_000_000);
}

#[test]
fn symlinks_in_a_view() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    std::os::unix::fs::symlink("dir1/x.txt", m.join("to-x")).unwrap();
    assert_eq!(fs::read_link(m.join("to-x")).unwrap().to_str(), Some("dir1/x.txt"));
    assert_eq!(read(m.join("to-x")), "x\n");
    // Lower symlink resolves and reads through.
    assert_eq!(read(m.join("link")), "alpha\n");
    // A dangling and an absolute symlink are just stored.
    std::os::unix::fs::symlink("/nonexistent/target", m.join("abs")).unwrap();
    assert_eq!(
        fs::read_link(m.join("abs")).unwrap().to_str(),
        Some("/nonexistent/target")
    );
    assert!(fs::metadata(m.join("abs")).is_err());
    // Replace a lower symlink.
    fs::remove_file(m.join("link")).unwrap();
    std::os::unix::fs::symlink("b.txt", m.join("link")).unwrap();
    assert_eq!(read(m.join("link")), "bravo\n");
}

#[test]
fn mkdir_and_rmdir_in_a_view() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    fs::create_dir(m.join("newdir")).unwrap();
    fs::create_dir_all(m.join("dir1/nested/more/levels")).unwrap();
    write(m.join("dir1/nested/more/levels/f"), "f\n");
    assert!(m.join("newdir").is_dir());
    assert_eq!(ls(m.join("dir1/nested")), vec!["deep.txt", "more"]);
    assert_errno(fs::create_dir(m.join("dir1")), &[libc::EEXIST], "mkdir over lower dir");
    fs::remove_dir(m.join("newdir")).unwrap();
    assert!(!exists(m.join("newdir")));
    fs::remove_dir_all(m.join("dir1/nested/more")).unwrap();
    assert_eq!(ls(m.join("dir1/nested")), vec!["deep.txt"]);
    // rmdir of a lower empty dir.
    fs::remove_dir(m.join("empty")).unwrap();
    assert!(!exists(m.join("empty")));
    // Directory link counts are never 0; like overlayfs, a merged directory
    // may report 1 ("not counted", which find(1) and fts understand).
    for dir in ["dir1", "dir1/nested", ""] {
        let n = fs::metadata(m.join(dir)).unwrap().nlink();
        assert!(n >= 1, "{dir:?} has nlink {n}");
    }
}

#[test]
fn mknod_fifo_and_device_nodes_in_a_view() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    mkfifo(&m.join("fifo"), 0o644).unwrap();
    assert!(is_fifo(&m.join("fifo")));
    mknod(&m.join("null2"), libc::S_IFCHR | 0o666, libc::makedev(1, 3)).unwrap();
    let md = fs::symlink_metadata(m.join("null2")).unwrap();
    assert_eq!(md.mode() & libc::S_IFMT, libc::S_IFCHR);
    assert_eq!(md.rdev(), libc::makedev(1, 3));
    // The view is mounted `dev` (daemon is root): the device node works.
    let mut buf = Vec::new();
    fs::File::open(m.join("null2")).unwrap().read_to_end(&mut buf).unwrap();
    assert!(buf.is_empty());
    d.unmount("s1");
    let m = d.mount("p", "s1");
    assert!(is_fifo(&m.join("fifo")));
}

#[test]
fn xattrs_set_get_list_remove_in_a_view() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        xattr::set(&s.join("b.txt"), "user.lower", b"from golden").unwrap();
        xattr::set(&s.join("b.txt"), "trusted.overlay.opaque", b"y").unwrap();
    });
    let m = d.mount("p", "s1");
    let other = d.mount("p", "s2");

    // Lower xattrs pass through, including trusted.overlay.* (user data).
    assert_eq!(
        xattr::get(&m.join("b.txt"), "user.lower").unwrap().as_deref(),
        Some(&b"from golden"[..])
    );
    assert_eq!(
        xattr::get(&m.join("b.txt"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );

    let f = m.join("a.txt");
    xattr::set(&f, "user.one", b"1").unwrap();
    xattr::set(&f, "user.two", b"").unwrap();
    xattr::set(&f, "trusted.overlay.origin", &[0u8, 1, 2, 255]).unwrap();
    assert_eq!(xattr::get(&f, "user.one").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(xattr::get(&f, "user.two").unwrap().as_deref(), Some(&b""[..]));
    assert_eq!(
        xattr::get(&f, "trusted.overlay.origin").unwrap().as_deref(),
        Some(&[0u8, 1, 2, 255][..])
    );
    let mut names: Vec<String> = xattr::list(&f)
        .unwrap()
        .into_iter()
        .map(|n| n.to_string_lossy().to_string())
        .filter(|n| !n.starts_with("security."))
        .collect();
    names.sort();
    assert_eq!(names, vec!["trusted.overlay.origin", "user.one", "user.two"]);
    xattr::remove(&f, "user.one").unwrap();
    assert_eq!(xattr::get(&f, "user.one").unwrap(), None);
    assert_errno(xattr::remove(&f, "user.one"), &[libc::ENODATA], "remove twice");
    xattr::remove(&m.join("b.txt"), "user.lower").unwrap();
    assert_eq!(xattr::get(&m.join("b.txt"), "user.lower").unwrap(), None);

    // On a directory and a new file.
    xattr::set(&m.join("dir1"), "user.d", b"dir").unwrap();
    assert_eq!(
        xattr::get(&m.join("dir1"), "user.d").unwrap().as_deref(),
        Some(&b"dir"[..])
    );

    // Other view unaffected.
    assert_eq!(xattr::get(&other.join("a.txt"), "user.two").unwrap(), None);
    assert_eq!(
        xattr::get(&other.join("b.txt"), "user.lower").unwrap().as_deref(),
        Some(&b"from golden"[..])
    );
    assert_eq!(xattr::get(&other.join("dir1"), "user.d").unwrap(), None);
}

#[test]
fn private_goldenfs_xattrs_are_hidden_and_cannot_be_set() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    // Make the upper carry whiteouts, an opaque dir and a renamed dir.
    fs::remove_file(m.join("dir1/x.txt")).unwrap();
    fs::remove_dir_all(m.join("dir1/nested")).unwrap();
    fs::create_dir(m.join("dir1/nested")).unwrap();
    fs::rename(m.join("dir1"), m.join("dir2")).unwrap();
    write(m.join("a.txt"), "copied up\n");

    for p in [m.clone(), m.join("dir2"), m.join("dir2/nested"), m.join("a.txt")] {
        for n in xattr::list(&p).unwrap() {
            let n = n.to_string_lossy();
            assert!(
                !n.starts_with("trusted.goldenfs."),
                "{} lists private xattr {n}",
                p.display()
            );
        }
        assert_errno(
            xattr::get(&p, "trusted.goldenfs.opaque").and_then(|v| match v {
                None => Err(std::io::Error::from_raw_os_error(libc::ENODATA)),
                Some(v) => Ok(v),
            }),
            &[libc::ENODATA, libc::EPERM, libc::EACCES, libc::EOPNOTSUPP],
            "getxattr trusted.goldenfs.opaque",
        );
    }
    assert_errno(
        xattr::set(&m.join("a.txt"), "trusted.goldenfs.whiteout", b"y"),
        &[libc::EPERM, libc::EACCES, libc::EOPNOTSUPP, libc::EINVAL],
        "setxattr trusted.goldenfs.whiteout",
    );
    assert_errno(
        xattr::set(&m.join("b.txt"), "trusted.goldenfs.whiteout", b"y"),
        &[libc::EPERM, libc::EACCES, libc::EOPNOTSUPP, libc::EINVAL],
        "setxattr trusted.goldenfs.whiteout on a lower file",
    );
    // b.txt was not hidden by that attempt.
    assert_eq!(read(m.join("b.txt")), "bravo\n");
    assert_errno(
        xattr::remove(&m.join("dir2/nested"), "trusted.goldenfs.opaque"),
        &[libc::EPERM, libc::EACCES, libc::EOPNOTSUPP, libc::ENODATA, libc::EINVAL],
        "removexattr trusted.goldenfs.opaque",
    );
    // The opaque dir is still opaque.
    assert!(ls(m.join("dir2/nested")).is_empty());
}

#[test]
fn overlayfs_user_data_passes_through_byte_for_byte() {
    // The golden of the motivating system is a docker data-root: char 0/0
    // whiteouts and trusted.overlay.* xattrs are plain user data here.
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        fs::create_dir_all(s.join("overlay2/l1/diff/etc")).unwrap();
        mknod(&s.join("overlay2/l1/diff/etc/deleted"), libc::S_IFCHR, 0).unwrap();
        xattr::set(&s.join("overlay2/l1/diff/etc"), "trusted.overlay.opaque", b"y").unwrap();
        write(s.join("overlay2/l1/diff/etc/kept"), "kept\n");
    });
    let m = d.mount("p", "s1");
    let md = fs::symlink_metadata(m.join("overlay2/l1/diff/etc/deleted")).unwrap();
    assert_eq!(md.mode() & libc::S_IFMT, libc::S_IFCHR);
    assert_eq!(md.rdev(), 0);
    assert_eq!(
        xattr::get(&m.join("overlay2/l1/diff/etc"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(ls(m.join("overlay2/l1/diff/etc")), vec!["deleted", "kept"]);
    // And a user can create them in the view too.
    mknod(&m.join("wh"), libc::S_IFCHR, 0).unwrap();
    xattr::set(&m.join("dir1"), "trusted.overlay.redirect", b"/x").unwrap();
    assert!(exists(m.join("wh")));
    assert_eq!(
        xattr::get(&m.join("dir1"), "trusted.overlay.redirect")
            .unwrap()
            .as_deref(),
        Some(&b"/x"[..])
    );
}

#[test]
fn new_files_belong_to_the_calling_uid() {
    use std::os::unix::process::CommandExt;
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        fs::create_dir(s.join("shared")).unwrap();
        chmod(&s.join("shared"), 0o1777).unwrap();
    });
    let m = d.mount("p", "s1");
    let target = m.join("shared/by-1000");
    // allow_other: a non-root process can use the view.
    let st = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo hi > '{}' && mkdir '{}'",
            target.display(),
            m.join("shared/dir-1000").display()
        ))
        .uid(1000)
        .gid(1000)
        .status()
        .unwrap();
    assert!(st.success(), "uid 1000 could not write in the view");
    let md = fs::metadata(&target).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    let md = fs::metadata(m.join("shared/dir-1000")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    // default_permissions: uid 1000 cannot write a root-owned 0644 file.
    let st = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("echo x > '{}'", m.join("a.txt").display()))
        .uid(1000)
        .gid(1000)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!st.success(), "uid 1000 wrote a root-owned 0644 file");
    assert_eq!(read(m.join("a.txt")), "alpha\n");
}

#[test]
fn statfs_and_fsync_work_in_a_view() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let (bsize, blocks) = statvfs(&m).unwrap();
    assert!(bsize > 0 && blocks > 0, "statfs: bsize {bsize} blocks {blocks}");
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(m.join("synced"))
        .unwrap();
    f.sync_all().unwrap();
    fs::File::open(&m).unwrap().sync_all().unwrap();
    assert_eq!(mount_fstype(&m).as_deref().map(|t| t.starts_with("fuse")), Some(true));
}

#[test]
fn readdir_of_a_large_directory_lists_every_entry_once() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        for i in 0..1500 {
            write(s.join(format!("many/f{i:04}")), "x");
        }
    });
    let m = d.mount("p", "s1");
    // Mix upper and lower entries, and whiteouts.
    for i in 0..100 {
        write(m.join(format!("many/u{i:03}")), "u");
        fs::remove_file(m.join(format!("many/f{:04}", i * 7))).unwrap();
    }
    let names = ls(m.join("many"));
    assert_eq!(names.len(), 1500 - 100 + 100);
    let mut dedup = names.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), names.len(), "duplicate entries in readdir");
    assert!(!names.contains(&"f0007".to_string()));
    assert!(names.contains(&"f0008".to_string()));
    assert!(names.contains(&"u099".to_string()));
}

#[test]
fn symlinks_planted_in_a_view_never_lead_the_daemon_out_of_the_store() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let outside = d.new_dir("outside");
    write(outside.join("secret"), "secret\n");
    let before = snapshot(&outside);
    let m = d.mount("p", "s1");
    // A symlink named like a lower directory, then operations through that name.
    fs::remove_dir_all(m.join("dir1")).unwrap();
    std::os::unix::fs::symlink(&outside, m.join("dir1")).unwrap();
    // Following the link is the client's business (it's a plain symlink to
    // an absolute path); what matters is that the daemon's own view of
    // "dir1" is the symlink, not a directory.
    let md = fs::symlink_metadata(m.join("dir1")).unwrap();
    assert!(md.file_type().is_symlink());
    d.unmount("s1");
    let m = d.mount("p", "s1");
    assert!(fs::symlink_metadata(m.join("dir1")).unwrap().file_type().is_symlink());
    // Promote it: the store must not follow it either.
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    let m2 = d.mount("p", "s2");
    assert!(fs::symlink_metadata(m2.join("dir1")).unwrap().file_type().is_symlink());
    assert_eq!(snapshot(&outside), before);
}

#[test]
fn a_view_is_mounted_allow_other_default_permissions_dev_suid() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let (per_mount, sup) = mount_options(&m).expect("view in mountinfo");
    assert!(
        mount_fstype(&m).is_some_and(|t| t.starts_with("fuse")),
        "{:?}",
        mount_fstype(&m)
    );
    for bad in ["nodev", "nosuid", "ro"] {
        assert!(
            !per_mount.iter().any(|o| o == bad),
            "the view is mounted {bad}: {per_mount:?}"
        );
    }
    for want in ["allow_other", "default_permissions"] {
        assert!(sup.iter().any(|o| o == want), "the view lacks {want}: {sup:?}");
    }
}

#[test]
fn a_directory_recreated_while_the_old_one_is_open_is_usable() {
    // ext4 reuses a freed inode number at once; the kernel still holds the old
    // directory's inode (open fd, or a cached dentry as overlayfs keeps for
    // its work dir). The new directory must still work.
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    for i in 0..3 {
        let dir = m.join("x");
        fs::create_dir(&dir).unwrap();
        let old = fs::File::open(&dir).unwrap();
        fs::remove_dir(&dir).unwrap();
        fs::create_dir(&dir).unwrap();
        let r = fs::write(dir.join("f"), "new");
        assert!(
            r.is_ok(),
            "round {i}: creating a file in a directory recreated while the old one is open: {r:?}"
        );
        assert_eq!(read(dir.join("f")), "new");
        assert_eq!(ls(&dir), vec!["f"]);
        drop(old);
        fs::remove_file(dir.join("f")).unwrap();
        fs::remove_dir(&dir).unwrap();
    }
}

#[test]
fn a_file_recreated_while_the_old_one_is_open_is_independent() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let mut old = fs::File::open(m.join("a.txt")).unwrap();
    fs::remove_file(m.join("a.txt")).unwrap();
    write(m.join("a.txt"), "new\n");
    let mut s = String::new();
    old.read_to_string(&mut s).unwrap();
    assert_eq!(s, "alpha\n", "the unlinked file's open fd keeps its content");
    assert_eq!(read(m.join("a.txt")), "new\n");
}

#[test]
fn whiteouts_allow_a_different_type_at_the_same_name() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    // dir -> file
    fs::remove_dir_all(m.join("dir1")).unwrap();
    write(m.join("dir1"), "now a file\n");
    assert_eq!(read(m.join("dir1")), "now a file\n");
    // file -> dir
    fs::remove_file(m.join("a.txt")).unwrap();
    fs::create_dir(m.join("a.txt")).unwrap();
    assert!(ls(m.join("a.txt")).is_empty());
    // symlink -> dir, dir -> symlink
    fs::remove_file(m.join("link")).unwrap();
    fs::create_dir(m.join("link")).unwrap();
    fs::remove_dir(m.join("empty")).unwrap();
    std::os::unix::fs::symlink("b.txt", m.join("empty")).unwrap();
    assert_eq!(read(m.join("empty")), "bravo\n");
    // Survives remount, and promotion.
    d.unmount("s1");
    let m = d.mount("p", "s1");
    assert_eq!(read(m.join("dir1")), "now a file\n");
    assert!(m.join("a.txt").is_dir() && ls(m.join("a.txt")).is_empty());
    assert!(m.join("link").is_dir());
    assert!(fs::symlink_metadata(m.join("empty")).unwrap().file_type().is_symlink());
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    let m = d.mount("p", "s2");
    assert_eq!(read(m.join("dir1")), "now a file\n");
    assert!(m.join("a.txt").is_dir() && ls(m.join("a.txt")).is_empty());
    assert_eq!(read(m.join("empty")), "bravo\n");
}

#[test]
fn copy_up_preserves_mode_owner_and_xattrs() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        write(s.join("f"), "data\n");
        chmod(&s.join("f"), 0o640).unwrap();
        lchown(&s.join("f"), 1234, 4321).unwrap();
        xattr::set(&s.join("f"), "user.keep", b"me").unwrap();
        fs::create_dir(s.join("dd")).unwrap();
        chmod(&s.join("dd"), 0o750).unwrap();
        lchown(&s.join("dd"), 55, 66).unwrap();
    });
    let m = d.mount("p", "s1");
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("f"))
        .unwrap()
        .write_all(b"more\n")
        .unwrap();
    write(m.join("dd/new"), "n");
    let md = fs::metadata(m.join("f")).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o640, 1234, 4321));
    assert_eq!(
        xattr::get(&m.join("f"), "user.keep").unwrap().as_deref(),
        Some(&b"me"[..])
    );
    assert_eq!(read(m.join("f")), "data\nmore\n");
    let md = fs::metadata(m.join("dd")).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o750, 55, 66));
}

#[test]
fn concurrent_writers_to_one_lower_file_all_land() {
    // Several threads open the same lower file for writing at once: copy-up
    // must happen once, and every write must land in the one copy.
    use std::os::unix::fs::FileExt;
    let d = Daemon::start();
    d.create_project_with("p", |s| write(s.join("shared.bin"), vec![b'.'; 64 * 1024]));
    let m = d.mount("p", "s1");
    let path = m.join("shared.bin");
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.write_all_at(&[b'A' + t; 100], t as u64 * 4096).unwrap();
                f.sync_all().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    let data = fs::read(&path).unwrap();
    assert_eq!(data.len(), 64 * 1024);
    for t in 0..8u8 {
        let at = t as usize * 4096;
        assert!(
            data[at..at + 100].iter().all(|b| *b == b'A' + t),
            "thread {t}'s write is lost"
        );
        assert_eq!(data[at + 100], b'.');
    }
}

#[test]
fn concurrent_creates_in_one_view_are_all_kept() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    // Each thread creates in its own and in a shared lower dir.
                    write(m.join(format!("t{t}/f{i}")), format!("{t}-{i}"));
                    write(m.join(format!("dir1/t{t}-{i}")), format!("{t}-{i}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    for t in 0..4 {
        assert_eq!(ls(m.join(format!("t{t}"))).len(), 100);
        for i in 0..100 {
            assert_eq!(read(m.join(format!("dir1/t{t}-{i}"))), format!("{t}-{i}"));
        }
    }
    assert_eq!(ls(m.join("dir1")).len(), 400 + 2);
}
