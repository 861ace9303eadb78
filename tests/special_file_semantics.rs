//! Special files through a view: fifos, unix sockets, device nodes (char
//! 0/0 included, which is user data and not a whiteout), symlinks with any
//! target, and hard links to fifos and sockets.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The session's upper directory in the store.
fn upper_of(d: &Daemon, session: &str) -> PathBuf {
    d.state_dir().join("sessions").join(session).join("upper")
}

#[test]
fn fifos_and_device_nodes_made_in_a_view_are_what_they_say() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    mkfifo(&m.join("fifo"), 0o640).unwrap();
    mknod(&m.join("null2"), libc::S_IFCHR | 0o644, libc::makedev(1, 3)).unwrap();
    mknod(&m.join("zero0"), libc::S_IFCHR | 0o600, 0).unwrap();
    mknod(&m.join("blk"), libc::S_IFBLK | 0o640, libc::makedev(7, 200)).unwrap();
    mknod(
        &m.join("dir1/big-minor"),
        libc::S_IFCHR | 0o600,
        libc::makedev(4095, 1 << 19),
    )
    .unwrap();

    let check = |m: &Path| {
        let kind = |p: &str| {
            let md = fs::symlink_metadata(m.join(p)).unwrap();
            (md.mode() & libc::S_IFMT, md.mode() & 0o7777, md.rdev())
        };
        assert_eq!(kind("fifo"), (libc::S_IFIFO, 0o640, 0));
        assert_eq!(kind("null2"), (libc::S_IFCHR, 0o644, libc::makedev(1, 3)));
        assert_eq!(kind("zero0"), (libc::S_IFCHR, 0o600, 0));
        assert_eq!(kind("blk"), (libc::S_IFBLK, 0o640, libc::makedev(7, 200)));
        assert_eq!(
            kind("dir1/big-minor"),
            (libc::S_IFCHR, 0o600, libc::makedev(4095, 1 << 19))
        );
        let names = ls(m);
        for n in ["fifo", "null2", "zero0", "blk"] {
            assert!(names.contains(&n.to_string()), "{n} missing from readdir: {names:?}");
        }
        assert!(ls(m.join("dir1")).contains(&"big-minor".to_string()));
    };
    check(&m);

    // The fifo is a working pipe.
    let reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(m.join("fifo"))
        .unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(m.join("fifo"))
        .unwrap()
        .write_all(b"through the pipe")
        .unwrap();
    let mut got = String::new();
    (&reader).read_to_string(&mut got).unwrap();
    assert_eq!(got, "through the pipe");
    drop(reader);

    d.unmount("s1");
    let m = d.mount("p", "s1");
    check(&m);
}

#[test]
fn a_unix_socket_bound_in_a_view_accepts_connections() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let path = m.join("dir1/sock");
    let listener = UnixListener::bind(&path).unwrap();
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    assert!(ls(m.join("dir1")).contains(&"sock".to_string()));

    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf.map(|b| b.to_ascii_uppercase())).unwrap();
    });
    let mut c = UnixStream::connect(&path).unwrap();
    c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"PING");
    server.join().unwrap();

    // The socket inode survives remount (as a socket file; no listener).
    drop(c);
    d.unmount("s1");
    let m = d.mount("p", "s1");
    assert!(
        fs::symlink_metadata(m.join("dir1/sock"))
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert_errno(
        UnixStream::connect(m.join("dir1/sock")),
        &[libc::ECONNREFUSED],
        "connect to a socket nobody listens on",
    );
}

#[test]
fn char_0_0_devices_made_by_the_client_are_user_data_not_whiteouts() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    // At a fresh name, and at the name of a deleted lower file (over our whiteout).
    mknod(&m.join("wh-new"), libc::S_IFCHR | 0o600, 0).unwrap();
    fs::remove_file(m.join("a.txt")).unwrap();
    mknod(&m.join("a.txt"), libc::S_IFCHR | 0o600, 0).unwrap();
    fs::remove_dir_all(m.join("dir1/nested")).unwrap();
    mknod(&m.join("dir1/nested"), libc::S_IFCHR, 0).unwrap();

    let check = |m: &Path| {
        for p in ["wh-new", "a.txt", "dir1/nested"] {
            let md = fs::symlink_metadata(m.join(p)).unwrap_or_else(|e| panic!("stat {p}: {e}"));
            assert_eq!(md.mode() & libc::S_IFMT, libc::S_IFCHR, "{p}");
            assert_eq!(md.rdev(), 0, "{p}");
        }
        assert!(ls(m).contains(&"wh-new".to_string()));
        assert!(ls(m).contains(&"a.txt".to_string()));
        assert_eq!(ls(m.join("dir1")), vec!["nested", "x.txt"]);
    };
    check(&m);
    // On disk: plain devices, without goldenfs's whiteout marker.
    let up = upper_of(&d, "s1");
    for p in ["wh-new", "a.txt", "dir1/nested"] {
        assert_eq!(
            xattr::get(&up.join(p), "trusted.goldenfs.whiteout").unwrap(),
            None,
            "{p}"
        );
    }
    d.unmount("s1");
    let m = d.mount("p", "s1");
    check(&m);
    // And they become part of the next generation as they are.
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    let m = d.mount("p", "s2");
    check(&m);
}

#[test]
fn symlinks_keep_any_target_byte_for_byte() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let long: Vec<u8> = (0..4095).map(|i| b"abcdefgh/"[i % 9]).collect();
    let targets: Vec<(&str, Vec<u8>)> = vec![
        ("abs", b"/etc/hostname".to_vec()),
        ("rel", b"../dir1/./x.txt".to_vec()),
        ("dangling", b"does/not/exist".to_vec()),
        ("long", long.clone()),
        ("newlines", b"line one\nline two\n".to_vec()),
        ("binary", vec![0xff, 0xfe, b' ', 0x01, b'\t', b'x']),
        ("dots", b"..".to_vec()),
    ];
    let d = Daemon::start();
    let t2 = targets.clone();
    d.create_project_with("p", move |s| {
        fill_sample(s);
        fs::create_dir(s.join("lower")).unwrap();
        for (n, t) in &t2 {
            std::os::unix::fs::symlink(OsStr::from_bytes(t), s.join("lower").join(n)).unwrap();
        }
    });
    let m = d.mount("p", "s1");
    fs::create_dir(m.join("upper")).unwrap();
    for (n, t) in &targets {
        std::os::unix::fs::symlink(OsStr::from_bytes(t), m.join("upper").join(n))
            .unwrap_or_else(|e| panic!("symlink {n}: {e}"));
    }
    // Too long for the kernel: refused before it reaches the daemon.
    let too_long: Vec<u8> = vec![b'a'; 4096];
    assert_errno(
        std::os::unix::fs::symlink(OsStr::from_bytes(&too_long), m.join("upper/too-long")),
        &[libc::ENAMETOOLONG],
        "symlink with a 4096-byte target",
    );
    // A lower symlink copied up by a chown keeps its target.
    lchown(&m.join("lower/long"), 5, 5).unwrap();
    lchown(&m.join("lower/newlines"), 5, 5).unwrap();

    let check = |m: &Path| {
        for dir in ["lower", "upper"] {
            for (n, t) in &targets {
                let p = m.join(dir).join(n);
                let got = fs::read_link(&p).unwrap_or_else(|e| panic!("readlink {}: {e}", p.display()));
                assert_eq!(got.as_os_str().as_bytes(), &t[..], "{dir}/{n}");
                let md = fs::symlink_metadata(&p).unwrap();
                assert!(md.file_type().is_symlink(), "{dir}/{n}");
                assert_eq!(md.len(), t.len() as u64, "st_size of {dir}/{n}");
            }
        }
        assert_eq!(fs::symlink_metadata(m.join("lower/long")).unwrap().uid(), 5);
        assert_eq!(read(m.join("upper/rel")), "x\n");
        assert!(fs::metadata(m.join("upper/dangling")).is_err());
    };
    check(&m);
    d.unmount("s1");
    let m = d.mount("p", "s1");
    check(&m);
}

#[test]
fn hard_links_to_fifos_and_sockets_share_one_inode() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        mkfifo(&s.join("lower-fifo"), 0o600).unwrap();
    });
    let m = d.mount("p", "s1");
    mkfifo(&m.join("fifo"), 0o600).unwrap();
    let listener = UnixListener::bind(m.join("sock")).unwrap();
    for (src, dst) in [
        ("fifo", "fifo-link"),
        ("sock", "dir1/sock-link"),
        ("lower-fifo", "dir1/lower-fifo-link"),
    ] {
        fs::hard_link(m.join(src), m.join(dst)).unwrap_or_else(|e| panic!("link {src} -> {dst}: {e}"));
    }
    let check = |m: &Path| {
        for (src, dst, fifo) in [
            ("fifo", "fifo-link", true),
            ("sock", "dir1/sock-link", false),
            ("lower-fifo", "dir1/lower-fifo-link", true),
        ] {
            let (a, b) = (
                fs::symlink_metadata(m.join(src)).unwrap(),
                fs::symlink_metadata(m.join(dst)).unwrap(),
            );
            assert_eq!(a.ino(), b.ino(), "{src} and {dst}");
            assert_eq!((a.nlink(), b.nlink()), (2, 2), "{src} and {dst}");
            assert_eq!(b.file_type().is_fifo(), fifo, "{dst}");
            assert_eq!(b.file_type().is_socket(), !fifo, "{dst}");
        }
    };
    check(&m);
    drop(listener); // a bound socket keeps the mount busy
    d.unmount("s1");
    let m = d.mount("p", "s1");
    check(&m);
}
