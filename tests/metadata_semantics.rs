//! Metadata through a view: attribute changes on lower files, setuid/setgid
//! clearing on write and truncate, `O_TMPFILE` and `statfs`. Extended
//! attributes, special files and the file-attribute ioctls have their own
//! files (`xattr_semantics.rs`, `special_file_semantics.rs`,
//! `fileattr_semantics.rs`).

mod common;

use common::*;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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
