//! Metadata through a view: attribute changes on lower files, setuid/setgid
//! clearing on write, special files, `O_TMPFILE`, `statfs` and the
//! file-attribute ioctls. Extended attributes are in `xattr_semantics.rs`.

mod common;

use common::*;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NOBODY: u32 = 65534;

/// The session's upper directory in the store.
fn upper_of(d: &Daemon, session: &str) -> PathBuf {
    d.state_dir().join("sessions").join(session).join("upper")
}

/// `rel` in whichever of the store's layers holds it.
fn in_layer(d: &Daemon, rel: &str) -> PathBuf {
    for e in fs::read_dir(d.layers_dir()).expect("read layers dir") {
        let p = e.expect("layer entry").path().join(rel);
        if exists(&p) {
            return p;
        }
    }
    panic!("{rel} is in none of the layers under {}", d.layers_dir().display());
}

/// Permission bits (with setuid/setgid/sticky), not following a final symlink.
fn perm(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
        .mode()
        & 0o7777
}

/// Runs `script` with `sh -c` as uid/gid 65534 with no supplementary groups
/// (and therefore no capabilities).
fn as_nobody(script: &str) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script]);
    output_with_timeout(
        cmd,
        Duration::from_secs(120),
        &format!("setpriv (nobody) sh -c {script:?}"),
    )
}

#[track_caller]
fn nobody_ok(d: &Daemon, script: &str) {
    let out = as_nobody(script);
    assert!(
        out.status.success(),
        "as nobody: `{script}` failed with {}: {}\n--- daemon log ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        d.log_text()
    );
}

/// A lower file owned by nobody with mode 06755, as the golden holds them.
fn setuid_file(path: &Path, content: &str) {
    write(path, content);
    lchown(path, NOBODY, NOBODY).unwrap();
    chmod(path, 0o6755).unwrap();
}

fn now() -> (i64, i64) {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    (d.as_secs() as i64, d.subsec_nanos() as i64)
}

/// `utimensat(path, [atime, mtime], AT_SYMLINK_NOFOLLOW)` with raw timespecs
/// (so `UTIME_NOW` and `UTIME_OMIT` can be passed).
fn utimensat(path: &Path, atime: (i64, i64), mtime: (i64, i64)) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
    let ts = |(tv_sec, tv_nsec): (i64, i64)| Timespec {
        tv_sec,
        tv_nsec: tv_nsec as _,
    };
    let times = Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

fn fallocate(path: &Path, mode: rustix::fs::FallocateFlags, offset: u64, len: u64) -> io::Result<()> {
    let f = fs::OpenOptions::new().read(true).write(true).open(path)?;
    rustix::fs::fallocate(&f, mode, offset, len).map_err(io::Error::from)
}

/// Kernel-style expectation: what a plain file on the store's filesystem
/// does under the same operation (`op` gets the scratch file's path).
fn on_plain_file(d: &Daemon, mode: u32, op: impl FnOnce(&Path)) -> u32 {
    let p = d.new_dir("plain").join("f");
    write(&p, "x");
    chmod(&p, mode).unwrap();
    op(&p);
    perm(&p)
}

// ---------------------------------------------------------------------------
// 1. Metadata changes on lower files
// ---------------------------------------------------------------------------

#[test]
fn chmod_and_chown_of_lower_objects_copy_them_up_and_persist() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        setuid_file(&s.join("suid"), "suid\n");
    });
    let layers_before = snapshot(&d.layers_dir());
    let m = d.mount("p", "s1");
    let other = d.mount("p", "s2");
    let up = upper_of(&d, "s1");

    chmod(&m.join("a.txt"), 0o640).unwrap();
    lchown(&m.join("b.txt"), 1000, 2000).unwrap();
    chmod(&m.join("dir1/nested"), 0o711).unwrap();
    lchown(&m.join("link"), 7, 8).unwrap();
    // A chown clears setuid and setgid (group-executable) even for root,
    // exactly as on the store's own filesystem.
    lchown(&m.join("suid"), 1, 1).unwrap();
    let expected_suid_perm = on_plain_file(&d, 0o6755, |p| lchown(p, 1, 1).unwrap());
    assert_eq!(
        expected_suid_perm, 0o755,
        "the store's filesystem clears setuid on chown"
    );

    let check = |m: &Path| {
        assert_eq!(perm(&m.join("a.txt")), 0o640);
        let md = fs::metadata(m.join("b.txt")).unwrap();
        assert_eq!((md.uid(), md.gid()), (1000, 2000));
        assert_eq!(perm(&m.join("dir1/nested")), 0o711);
        let md = fs::symlink_metadata(m.join("link")).unwrap();
        assert_eq!((md.uid(), md.gid()), (7, 8));
        assert_eq!(fs::read_link(m.join("link")).unwrap(), Path::new("a.txt"));
        assert_eq!(perm(&m.join("suid")), expected_suid_perm);
        assert_eq!(read(m.join("a.txt")), "alpha\n");
        assert_eq!(read(m.join("b.txt")), "bravo\n");
        assert_eq!(read(m.join("dir1/nested/deep.txt")), "deep\n");
    };
    check(&m);
    // Each object was copied up, with the change on the upper copy.
    assert_eq!(perm(&up.join("a.txt")), 0o640);
    assert_eq!(fs::metadata(up.join("b.txt")).unwrap().uid(), 1000);
    assert_eq!(perm(&up.join("dir1/nested")), 0o711);
    assert_eq!(fs::symlink_metadata(up.join("link")).unwrap().uid(), 7);
    assert_eq!(perm(&up.join("suid")), expected_suid_perm);
    // The generation and other sessions are untouched.
    assert_eq!(
        snapshot(&d.layers_dir()),
        layers_before,
        "a metadata change wrote to a layer"
    );
    assert_eq!(perm(&other.join("a.txt")), 0o644);
    assert_eq!(perm(&other.join("suid")), 0o6755);
    assert_eq!(fs::symlink_metadata(other.join("link")).unwrap().uid(), 0);

    d.unmount("s1");
    let m = d.mount("p", "s1");
    check(&m);
}

#[test]
fn utimensat_of_a_lower_file_honours_utime_now_and_utime_omit() {
    use rustix::fs::{UTIME_NOW, UTIME_OMIT};
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        for f in ["t1", "t2", "t3"] {
            write(s.join(f), f);
            set_times(&s.join(f), (1_000_000_000, 1), (1_100_000_000, 2)).unwrap();
        }
    });
    let layers_before = snapshot(&d.layers_dir());
    let m = d.mount("p", "s1");
    let times = |p: &Path| {
        let md = fs::symlink_metadata(p).unwrap();
        ((md.atime(), md.atime_nsec()), (md.mtime(), md.mtime_nsec()))
    };

    // (The view's times before each call: taking the layer snapshot read the
    // lower files, and reading may move their atime.)
    // Specific atime, mtime left alone.
    let (_, m1) = times(&m.join("t1"));
    utimensat(&m.join("t1"), (1_200_000_000, 3), (0, UTIME_OMIT)).unwrap();
    assert_eq!(times(&m.join("t1")), ((1_200_000_000, 3), m1));
    // atime left alone, specific mtime.
    let (a2, _) = times(&m.join("t2"));
    utimensat(&m.join("t2"), (0, UTIME_OMIT), (1_300_000_000, 4)).unwrap();
    assert_eq!(times(&m.join("t2")), (a2, (1_300_000_000, 4)));
    // mtime = now, atime left alone. The kernel's clock is coarse: allow a
    // second of slack below the time read before the call.
    let (a3, _) = times(&m.join("t3"));
    let before = now();
    utimensat(&m.join("t3"), (0, UTIME_OMIT), (0, UTIME_NOW)).unwrap();
    let after = now();
    let (a, mt) = times(&m.join("t3"));
    assert_eq!(a, a3, "UTIME_OMIT changed atime");
    assert!(
        mt.0 >= before.0 - 1 && mt <= after,
        "UTIME_NOW gave mtime {mt:?}, not between {before:?} and {after:?}"
    );
    // Both now (what `touch` does).
    utimensat(&m.join("a.txt"), (0, UTIME_NOW), (0, UTIME_NOW)).unwrap();
    let (a, m4) = times(&m.join("a.txt"));
    assert!(a.0 >= before.0 - 1 && m4.0 >= before.0 - 1, "touch gave {a:?} {m4:?}");
    // Both omitted: a no-op that still succeeds.
    let b = times(&m.join("b.txt"));
    utimensat(&m.join("b.txt"), (0, UTIME_OMIT), (0, UTIME_OMIT)).unwrap();
    assert_eq!(times(&m.join("b.txt")), b);

    let up = upper_of(&d, "s1");
    assert_eq!(times(&up.join("t1")), ((1_200_000_000, 3), m1));
    assert_eq!(times(&up.join("t2")), (a2, (1_300_000_000, 4)));
    assert_eq!(snapshot(&d.layers_dir()), layers_before, "utimensat wrote to a layer");
    assert_eq!(times(&in_layer(&d, "t3")).1, (1_100_000_000, 2));

    d.unmount("s1");
    let m = d.mount("p", "s1");
    assert_eq!(times(&m.join("t1")), ((1_200_000_000, 3), m1));
    assert_eq!(times(&m.join("t2")), (a2, (1_300_000_000, 4)));
    assert_eq!(times(&m.join("t3")).1, mt);
    assert_eq!(read(m.join("t3")), "t3");
}

#[test]
fn truncate_of_a_lower_file_grows_and_shrinks_its_copy() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        write(s.join("grow"), "0123456789");
        write(s.join("shrink"), "0123456789");
        write(s.join("by-fd"), vec![b'z'; 100_000]);
    });
    let layers_before = snapshot(&d.layers_dir());
    let m = d.mount("p", "s1");

    truncate(&m.join("grow"), 20_000).unwrap();
    truncate(&m.join("shrink"), 3).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(m.join("by-fd"))
        .unwrap()
        .set_len(5)
        .unwrap();

    let check = |m: &Path| {
        let g = fs::read(m.join("grow")).unwrap();
        assert_eq!(g.len(), 20_000);
        assert_eq!(&g[..10], b"0123456789");
        assert!(g[10..].iter().all(|b| *b == 0), "the grown part is not zeros");
        assert_eq!(fs::metadata(m.join("grow")).unwrap().len(), 20_000);
        assert_eq!(read(m.join("shrink")), "012");
        assert_eq!(fs::metadata(m.join("shrink")).unwrap().len(), 3);
        assert_eq!(read(m.join("by-fd")), "zzzzz");
    };
    check(&m);
    let up = upper_of(&d, "s1");
    assert_eq!(fs::metadata(up.join("grow")).unwrap().len(), 20_000);
    assert_eq!(read(up.join("shrink")), "012");
    assert_eq!(snapshot(&d.layers_dir()), layers_before, "truncate wrote to a layer");

    d.unmount("s1");
    let m = d.mount("p", "s1");
    check(&m);
}

#[test]
fn fallocate_on_a_lower_file_allocates_keeps_size_and_punches_holes() {
    use rustix::fs::FallocateFlags;
    const MIB: u64 = 1 << 20;
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        write(s.join("extend"), "head");
        write(s.join("keep"), "head");
        write(s.join("punch"), vec![b'd'; 4 * MIB as usize]);
    });
    let layers_before = snapshot(&d.layers_dir());
    let m = d.mount("p", "s1");
    let up = upper_of(&d, "s1");

    // Mode 0 past the end: the file grows.
    fallocate(&m.join("extend"), FallocateFlags::empty(), 0, 2 * MIB).unwrap();
    // KEEP_SIZE: blocks are reserved, the size stays.
    fallocate(&m.join("keep"), FallocateFlags::KEEP_SIZE, 0, 2 * MIB).unwrap();
    // PUNCH_HOLE (always with KEEP_SIZE): the range reads as zeros.
    fallocate(
        &m.join("punch"),
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        MIB,
        2 * MIB,
    )
    .unwrap();

    let check = |m: &Path| {
        let e = fs::read(m.join("extend")).unwrap();
        assert_eq!(e.len() as u64, 2 * MIB);
        assert_eq!(&e[..4], b"head");
        assert!(e[4..].iter().all(|b| *b == 0));
        assert_eq!(read(m.join("keep")), "head");
        let p = fs::read(m.join("punch")).unwrap();
        assert_eq!(p.len() as u64, 4 * MIB);
        let (a, b) = (MIB as usize, 3 * MIB as usize);
        assert!(p[..a].iter().all(|x| *x == b'd'), "data before the hole changed");
        assert!(p[a..b].iter().all(|x| *x == 0), "the punched range is not zeros");
        assert!(p[b..].iter().all(|x| *x == b'd'), "data after the hole changed");
    };
    check(&m);
    // The upper copies carry the allocation changes.
    let blocks = |p: &Path| fs::metadata(p).unwrap().blocks() * 512;
    assert_eq!(fs::metadata(up.join("extend")).unwrap().len(), 2 * MIB);
    assert_eq!(fs::metadata(up.join("keep")).unwrap().len(), 4);
    assert!(
        blocks(&up.join("keep")) >= 2 * MIB,
        "KEEP_SIZE allocated only {} bytes",
        blocks(&up.join("keep"))
    );
    assert!(
        blocks(&up.join("punch")) <= 2 * MIB + 64 * 1024,
        "the hole was not punched: {} bytes allocated",
        blocks(&up.join("punch"))
    );
    assert_eq!(snapshot(&d.layers_dir()), layers_before, "fallocate wrote to a layer");
    assert!(blocks(&in_layer(&d, "punch")) >= 4 * MIB);

    d.unmount("s1");
    let m = d.mount("p", "s1");
    check(&m);
}

#[test]
fn reading_and_copying_up_lower_files_leaves_the_layer_atime_alone() {
    // atime older than mtime: under relatime any read would move it.
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        for f in ["read-me", "copy-me"] {
            write(s.join(f), vec![b'r'; 100_000]);
            set_times(&s.join(f), (1_000_000_000, 0), (1_100_000_000, 0)).unwrap();
        }
    });
    let atime = |p: &Path| {
        let md = fs::symlink_metadata(p).unwrap();
        (md.atime(), md.atime_nsec())
    };
    let (read_me, copy_me) = (in_layer(&d, "read-me"), in_layer(&d, "copy-me"));
    assert_eq!(atime(&read_me), (1_000_000_000, 0));
    let m = d.mount("p", "s1");
    assert_eq!(fs::read(m.join("read-me")).unwrap().len(), 100_000);
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("copy-me"))
        .unwrap()
        .write_all(b"more")
        .unwrap();
    assert_eq!(
        atime(&read_me),
        (1_000_000_000, 0),
        "a read through the view moved the layer's atime"
    );
    assert_eq!(atime(&copy_me), (1_000_000_000, 0), "copy-up moved the layer's atime");
    assert_eq!(
        atime(&m.join("copy-me")),
        (1_000_000_000, 0),
        "copy-up did not keep atime"
    );
}

// ---------------------------------------------------------------------------
// 2. setuid/setgid clearing on write and truncate
// ---------------------------------------------------------------------------

/// The three files of a setuid test, and their expected fate.
struct SuidCase<'a> {
    view: &'a Path,
    upper: &'a Path,
}

impl SuidCase<'_> {
    #[track_caller]
    fn assert_perm(&self, name: &str, want: u32, what: &str) {
        let got = perm(&self.view.join(name));
        assert_eq!(got, want, "{what}: {name} in the view has mode {got:o}, want {want:o}");
        let got = perm(&self.upper.join(name));
        assert_eq!(
            got, want,
            "{what}: the upper copy of {name} has mode {got:o}, want {want:o}"
        );
    }
}

#[test]
fn unprivileged_write_clears_setuid_in_passthrough_mode() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let up = upper_of(&d, "s1");
    // Upper files: the session's own copies, opened through passthrough.
    for f in ["w-nobody", "w-root", "t-nobody"] {
        write(m.join(f), "data\n");
        lchown(&m.join(f), NOBODY, NOBODY).unwrap();
        chmod(&m.join(f), 0o6755).unwrap();
        assert_eq!(perm(&m.join(f)), 0o6755);
    }
    let c = SuidCase { view: &m, upper: &up };

    nobody_ok(&d, &format!("printf more >> '{}'", m.join("w-nobody").display()));
    c.assert_perm("w-nobody", 0o755, "after a write by its unprivileged owner");
    assert_eq!(read(m.join("w-nobody")), "data\nmore");

    fs::OpenOptions::new()
        .append(true)
        .open(m.join("w-root"))
        .unwrap()
        .write_all(b"root")
        .unwrap();
    c.assert_perm("w-root", 0o6755, "after a write by root (CAP_FSETID)");

    nobody_ok(&d, &format!("truncate -s 2 '{}'", m.join("t-nobody").display()));
    c.assert_perm("t-nobody", 0o755, "after a truncate by its unprivileged owner");
    assert_eq!(read(m.join("t-nobody")), "da");
}

#[test]
fn unprivileged_write_clears_setuid_of_a_lower_file_it_copies_up() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        for f in ["w-nobody", "w-root", "t-nobody"] {
            setuid_file(&s.join(f), "data\n");
        }
    });
    let layers_before = snapshot(&d.layers_dir());
    let m = d.mount("p", "s1");
    let up = upper_of(&d, "s1");
    for f in ["w-nobody", "w-root", "t-nobody"] {
        assert_eq!(perm(&m.join(f)), 0o6755, "{f} in the golden");
    }
    let c = SuidCase { view: &m, upper: &up };

    nobody_ok(&d, &format!("printf more >> '{}'", m.join("w-nobody").display()));
    c.assert_perm("w-nobody", 0o755, "after a write by its unprivileged owner");
    assert_eq!(read(m.join("w-nobody")), "data\nmore");

    fs::OpenOptions::new()
        .append(true)
        .open(m.join("w-root"))
        .unwrap()
        .write_all(b"root")
        .unwrap();
    c.assert_perm("w-root", 0o6755, "after a write by root (CAP_FSETID)");

    nobody_ok(&d, &format!("truncate -s 2 '{}'", m.join("t-nobody").display()));
    c.assert_perm("t-nobody", 0o755, "after a truncate by its unprivileged owner");

    assert_eq!(
        snapshot(&d.layers_dir()),
        layers_before,
        "clearing setuid wrote to a layer"
    );
    d.unmount("s1");
    let m = d.mount("p", "s1");
    assert_eq!(perm(&m.join("w-nobody")), 0o755);
    assert_eq!(perm(&m.join("w-root")), 0o6755);
}

#[test]
fn unprivileged_write_clears_setuid_in_page_cache_mode() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        setuid_file(&s.join("w-nobody"), "data\n");
        setuid_file(&s.join("w-root"), "data\n");
    });
    let m = d.mount("p", "s1");
    let up = upper_of(&d, "s1");
    let c = SuidCase { view: &m, upper: &up };

    // A reader of the lower copy keeps the inode in page-cache mode, so the
    // copied-up file's writes go through the daemon.
    let mut reader = fs::File::open(m.join("w-nobody")).unwrap();
    let mut first = [0u8; 1];
    reader.read_exact(&mut first).unwrap();
    nobody_ok(&d, &format!("printf more >> '{}'", m.join("w-nobody").display()));
    c.assert_perm("w-nobody", 0o755, "after a page-cache write by its unprivileged owner");

    let root_reader = fs::File::open(m.join("w-root")).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("w-root"))
        .unwrap()
        .write_all(b"root")
        .unwrap();
    c.assert_perm("w-root", 0o6755, "after a page-cache write by root (CAP_FSETID)");

    drop(reader);
    drop(root_reader);
    assert_eq!(read(m.join("w-nobody")), "data\nmore");
    assert_eq!(read(m.join("w-root")), "data\nroot");
    assert_eq!(perm(&m.join("w-nobody")), 0o755);
}

// ---------------------------------------------------------------------------
// 3. Special files and symlinks
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 4. O_TMPFILE, 5. statfs
// ---------------------------------------------------------------------------

#[test]
fn o_tmpfile_fails_cleanly_with_eopnotsupp() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let tmpfile = |dir: &Path| {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(dir)
    };
    // Twice: the kernel remembers the first answer; both must be clean.
    for dir in [m.clone(), m.join("dir1"), m.join("dir1/nested"), m.clone()] {
        assert_errno(
            tmpfile(&dir),
            &[libc::EOPNOTSUPP],
            &format!("open({}, O_TMPFILE)", dir.display()),
        );
    }
    // The daemon keeps serving.
    write(m.join("after"), "still here\n");
    assert_eq!(read(m.join("after")), "still here\n");
    assert_eq!(read(m.join("a.txt")), "alpha\n");
    d.ok(&["status"]);
}

#[test]
fn statfs_of_a_view_reports_the_store_filesystem() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let view = rustix::fs::statvfs(&m).unwrap();
    let store = rustix::fs::statvfs(d.state_dir()).unwrap();
    assert_eq!(view.f_bsize, store.f_bsize, "f_bsize");
    assert_eq!(view.f_frsize, store.f_frsize, "f_frsize");
    assert_eq!(view.f_blocks, store.f_blocks, "f_blocks");
    assert_eq!(view.f_files, store.f_files, "f_files");
    assert_eq!(view.f_namemax, store.f_namemax, "f_namemax");
    // Free space is live; it must at least be plausible.
    assert!(view.f_bfree <= view.f_blocks && view.f_bavail <= view.f_bfree);
    // Also through a subdirectory and a lower file.
    assert_eq!(
        rustix::fs::statvfs(m.join("dir1/x.txt")).unwrap().f_blocks,
        store.f_blocks
    );
}

// ---------------------------------------------------------------------------
// 6. File-attribute ioctls
// ---------------------------------------------------------------------------

/// `FS_IOC_FSGETXATTR`'s opcode: `_IOR('X', 31, struct fsxattr)`.
const FS_IOC_FSGETXATTR: rustix::ioctl::Opcode = rustix::ioctl::opcode::read::<[u8; 28]>(b'X', 31);
/// `FS_IOC_FSSETXATTR`'s opcode: `_IOW('X', 32, struct fsxattr)`.
const FS_IOC_FSSETXATTR: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<[u8; 28]>(b'X', 32);
const FS_NODUMP_FL: u32 = 0x40;
const FS_NOATIME_FL: u32 = 0x80;
const FS_XFLAG_NODUMP: u32 = 0x80;

fn getflags(p: &Path) -> io::Result<u32> {
    let f = fs::File::open(p)?;
    rustix::fs::ioctl_getflags(&f)
        .map(|f| f.bits())
        .map_err(io::Error::from)
}

fn setflags(p: &Path, flags: u32) -> io::Result<()> {
    let f = fs::File::open(p)?;
    rustix::fs::ioctl_setflags(&f, rustix::fs::IFlags::from_bits_retain(flags)).map_err(io::Error::from)
}

/// Adds `flag` to the flags of `p` (a backing object: test set-up).
fn add_flag(p: &Path, flag: u32) {
    setflags(p, getflags(p).unwrap() | flag).unwrap_or_else(|e| panic!("chattr {}: {e}", p.display()));
}

/// `FS_IOC_FSGETXATTR`: the raw `struct fsxattr`.
fn fsgetxattr_raw(p: &Path) -> io::Result<[u8; 28]> {
    let f = fs::File::open(p)?;
    // SAFETY: FS_IOC_FSGETXATTR writes exactly one 28-byte `struct fsxattr`,
    // which is the Getter's output type.
    Ok(unsafe { rustix::ioctl::ioctl(&f, rustix::ioctl::Getter::<FS_IOC_FSGETXATTR, [u8; 28]>::new()) }?)
}

/// `FS_IOC_FSGETXATTR`: (fsx_xflags, fsx_projid).
fn fsgetxattr(p: &Path) -> io::Result<(u32, u32)> {
    let raw = fsgetxattr_raw(p)?;
    let word = |i: usize| u32::from_ne_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
    Ok((word(0), word(12)))
}

fn fssetxattr_raw(p: &Path, attr: [u8; 28]) -> io::Result<()> {
    let f = fs::File::open(p)?;
    // SAFETY: FS_IOC_FSSETXATTR reads exactly one 28-byte `struct fsxattr`
    // through the pointer the Setter passes.
    Ok(unsafe { rustix::ioctl::ioctl(&f, rustix::ioctl::Setter::<FS_IOC_FSSETXATTR, [u8; 28]>::new(attr)) }?)
}

#[test]
fn file_attribute_ioctls_report_the_top_copy_or_enotty_never_eio() {
    assert_eq!(FS_IOC_FSGETXATTR as u64, 0x801c_581f);
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    // Flags the backing objects would not have by chance.
    add_flag(&in_layer(&d, "a.txt"), FS_NOATIME_FL);
    add_flag(&in_layer(&d, "dir1/nested"), FS_NODUMP_FL);
    let m = d.mount("p", "s1");
    let up = upper_of(&d, "s1");
    write(m.join("new.txt"), "upper\n");
    write(m.join("dir1/made-merged"), "m\n");
    add_flag(&up.join("new.txt"), FS_NODUMP_FL);
    let layers_before = snapshot(&d.layers_dir());

    // (what, path in the view, the backing object it must report)
    let cases: Vec<(&str, PathBuf, Option<PathBuf>)> = vec![
        ("lower file", m.join("a.txt"), Some(in_layer(&d, "a.txt"))),
        ("upper file", m.join("new.txt"), Some(up.join("new.txt"))),
        ("lower dir", m.join("dir1/nested"), Some(in_layer(&d, "dir1/nested"))),
        ("merged dir", m.join("dir1"), Some(up.join("dir1"))),
        ("root", m.clone(), Some(up.clone())),
        ("version file", m.join(VERSION_FILE), None),
    ];
    for (what, p, backing) in &cases {
        match (getflags(p), backing) {
            (Ok(flags), Some(b)) => assert_eq!(flags, getflags(b).unwrap(), "FS_IOC_GETFLAGS of the {what}"),
            (Ok(flags), None) => assert_eq!(flags, 0, "FS_IOC_GETFLAGS of the {what}"),
            (Err(e), _) => assert_eq!(errno_of(&e), libc::ENOTTY, "FS_IOC_GETFLAGS of the {what}: {e}"),
        }
        match (fsgetxattr(p), backing) {
            (Ok(x), Some(b)) => assert_eq!(x, fsgetxattr(b).unwrap(), "FS_IOC_FSGETXATTR of the {what}"),
            (Ok(x), None) => assert_eq!(x, (0, 0), "FS_IOC_FSGETXATTR of the {what}"),
            (Err(e), _) => assert_eq!(errno_of(&e), libc::ENOTTY, "FS_IOC_FSGETXATTR of the {what}: {e}"),
        }
    }
    assert_ne!(getflags(&m.join("a.txt")).unwrap() & FS_NOATIME_FL, 0);
    assert_ne!(getflags(&m.join("dir1/nested")).unwrap() & FS_NODUMP_FL, 0);
    assert_ne!(getflags(&m.join("new.txt")).unwrap() & FS_NODUMP_FL, 0);
    // Asking copied nothing up or changed nothing.
    assert!(!exists(up.join("a.txt")) && !exists(up.join("dir1/nested")));
    assert_eq!(snapshot(&d.layers_dir()), layers_before, "an ioctl changed a layer");
    assert_eq!(read(m.join("a.txt")), "alpha\n");
}

#[test]
fn chattr_of_harmless_flags_copies_up_and_immutable_is_refused() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let other = d.mount("p", "s2");
    let up = upper_of(&d, "s1");
    let layer_a = in_layer(&d, "a.txt");
    let (layer_a_flags, layers_before) = (getflags(&layer_a).unwrap(), snapshot(&d.layers_dir()));

    // noatime on a lower file and a lower directory: copied up, then set.
    setflags(&m.join("a.txt"), getflags(&m.join("a.txt")).unwrap() | FS_NOATIME_FL).unwrap();
    setflags(
        &m.join("dir1/nested"),
        getflags(&m.join("dir1/nested")).unwrap() | FS_NOATIME_FL,
    )
    .unwrap();
    // nodump through FS_IOC_FSSETXATTR.
    let mut fsx = fsgetxattr_raw(&m.join("b.txt")).unwrap();
    let xflags = u32::from_ne_bytes([fsx[0], fsx[1], fsx[2], fsx[3]]) | FS_XFLAG_NODUMP;
    fsx[..4].copy_from_slice(&xflags.to_ne_bytes());
    fssetxattr_raw(&m.join("b.txt"), fsx).unwrap();
    // Setting what is already set is a no-op that copies nothing up.
    setflags(&m.join("b.txt"), getflags(&m.join("b.txt")).unwrap()).unwrap();
    setflags(&m.join("dir1/x.txt"), getflags(&m.join("dir1/x.txt")).unwrap()).unwrap();
    assert!(!exists(up.join("dir1/x.txt")), "a no-op chattr copied x.txt up");

    let check = |m: &Path| {
        assert_ne!(getflags(&m.join("a.txt")).unwrap() & FS_NOATIME_FL, 0);
        assert_ne!(getflags(&m.join("dir1/nested")).unwrap() & FS_NOATIME_FL, 0);
        assert_ne!(getflags(&m.join("b.txt")).unwrap() & FS_NODUMP_FL, 0);
        assert_eq!(read(m.join("a.txt")), "alpha\n");
    };
    check(&m);
    assert_ne!(getflags(&up.join("a.txt")).unwrap() & FS_NOATIME_FL, 0);
    assert_ne!(getflags(&up.join("b.txt")).unwrap() & FS_NODUMP_FL, 0);
    // Clearing works too.
    setflags(&m.join("a.txt"), getflags(&m.join("a.txt")).unwrap() & !FS_NOATIME_FL).unwrap();
    assert_eq!(getflags(&m.join("a.txt")).unwrap() & FS_NOATIME_FL, 0);
    setflags(&m.join("a.txt"), getflags(&m.join("a.txt")).unwrap() | FS_NOATIME_FL).unwrap();

    // Immutable and append-only would stop the daemon from renaming and
    // removing the session's files: refused, before any copy-up.
    for flag in [rustix::fs::IFlags::IMMUTABLE, rustix::fs::IFlags::APPEND] {
        for p in ["dir1/x.txt", "a.txt", "dir1"] {
            let r = setflags(&m.join(p), getflags(&m.join(p)).unwrap() | flag.bits());
            assert_errno(r, &[libc::EOPNOTSUPP], &format!("chattr {flag:?} {p}"));
        }
    }
    assert!(!exists(up.join("dir1/x.txt")), "a refused chattr copied x.txt up");
    fs::remove_file(m.join("a.txt")).unwrap();
    // The virtual version file takes no flags.
    assert_errno(
        setflags(&m.join(VERSION_FILE), FS_NOATIME_FL),
        &[libc::EPERM],
        "chattr +A golden-version.json",
    );

    // Layers and other sessions are untouched.
    assert_eq!(getflags(&layer_a).unwrap(), layer_a_flags);
    assert_eq!(getflags(&other.join("a.txt")).unwrap(), layer_a_flags);
    assert_eq!(snapshot(&d.layers_dir()), layers_before, "chattr changed a layer");
    d.unmount("s1");
    let m = d.mount("p", "s1");
    assert_ne!(getflags(&m.join("dir1/nested")).unwrap() & FS_NOATIME_FL, 0);
    assert_ne!(getflags(&m.join("b.txt")).unwrap() & FS_NODUMP_FL, 0);
}

#[test]
fn copy_up_keeps_harmless_inode_flags() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    add_flag(&in_layer(&d, "a.txt"), FS_NOATIME_FL | FS_NODUMP_FL);
    add_flag(&in_layer(&d, "dir1"), FS_NOATIME_FL);
    let m = d.mount("p", "s1");
    let before = (getflags(&m.join("a.txt")).unwrap(), getflags(&m.join("dir1")).unwrap());
    chmod(&m.join("a.txt"), 0o600).unwrap();
    write(m.join("dir1/new"), "n");
    let up = upper_of(&d, "s1");
    assert!(exists(up.join("a.txt")) && exists(up.join("dir1")));
    assert_eq!(
        (getflags(&m.join("a.txt")).unwrap(), getflags(&m.join("dir1")).unwrap()),
        before,
        "copy-up changed the inode flags"
    );
}

#[test]
fn a_kernel_overlayfs_on_the_view_copies_up_files_with_inode_flags() {
    // Kernel overlayfs copies noatime/sync from its lower (the view) to its
    // upper (also in the view) on copy-up; that must not fail. A store made
    // `chattr -R +A` gives every new layer file noatime.
    let d = Daemon::start();
    fn chattr_r(dir: &Path) {
        add_flag(dir, FS_NOATIME_FL);
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                chattr_r(&e.path());
            }
        }
    }
    chattr_r(d.state_dir());
    d.create_project_with("docker", |s| {
        write(s.join("overlay2/l1/diff/etc/os-release"), "golden os\n");
        write(s.join("overlay2/l1/diff/etc/hosts"), "127.0.0.1 localhost\n");
    });
    assert_ne!(
        getflags(&in_layer(&d, "overlay2/l1/diff/etc/hosts")).unwrap() & FS_NOATIME_FL,
        0
    );
    let m = d.mount("docker", "s1");
    let base = m.join("overlay2");
    let (lower, upper, work, merged) = (
        base.join("l1/diff"),
        base.join("c1/diff"),
        base.join("c1/work"),
        base.join("c1/merged"),
    );
    for p in [&upper, &work, &merged] {
        fs::create_dir_all(p).unwrap();
    }
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        ))
        .arg(&merged)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount overlay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = fs::OpenOptions::new()
        .append(true)
        .open(merged.join("etc/hosts"))
        .and_then(|mut f| f.write_all(b"10.0.0.1 db\n"));
    let unmounted = Command::new("umount").arg(&merged).status().unwrap();
    r.unwrap_or_else(|e| panic!("writing a noatime file through overlayfs on the view: {e}"));
    assert!(unmounted.success());
    assert_eq!(read(upper.join("etc/hosts")), "127.0.0.1 localhost\n10.0.0.1 db\n");
    assert_ne!(getflags(&upper.join("etc/hosts")).unwrap() & FS_NOATIME_FL, 0);
}

#[test]
fn an_open_directory_lists_at_its_first_read_and_again_after_rewind() {
    // The kernel opens directories also just to ask for their flags, so the
    // view lists a directory when it is first read, not when it is opened.
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let names = |dir: &mut rustix::fs::Dir| {
        let mut v: Vec<String> = std::iter::from_fn(|| dir.read())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "." && n != "..")
            .collect();
        v.sort();
        v
    };
    let fd = rustix::fs::open(
        m.join("dir1"),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    assert_ne!(getflags(&m.join("dir1")).unwrap(), u32::MAX); // an open only for flags
    write(m.join("dir1/after-open"), "a");
    let mut dir = rustix::fs::Dir::new(fd).unwrap();
    assert_eq!(names(&mut dir), vec!["after-open", "nested", "x.txt"]);
    fs::remove_file(m.join("dir1/x.txt")).unwrap();
    write(m.join("dir1/after-read"), "b");
    dir.rewind();
    assert_eq!(names(&mut dir), vec!["after-open", "after-read", "nested"]);
}
