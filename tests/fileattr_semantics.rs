//! The file-attribute ioctls through a view (`lsattr`/`chattr`, `xfs_io`):
//! `FS_IOC_GETFLAGS`/`SETFLAGS` and `FS_IOC_FSGETXATTR`/`FSSETXATTR`, which
//! kernel overlayfs also uses when it copies up from a view.

mod common;

use common::*;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

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
