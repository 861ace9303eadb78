//! Extended attributes through a view: every namespace, every kind of object,
//! every layer; copy-up on change; large values; small buffers; user data
//! that looks like overlayfs's; goldenfs's private namespace; and the kernel
//! dropping `security.capability` on write.

mod common;

use common::*;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const NOBODY: u32 = 65534;
const CAP: &str = "security.capability";

/// The session's upper directory in the store.
fn upper_of(d: &Daemon, session: &str) -> PathBuf {
    d.state_dir().join("sessions").join(session).join("upper")
}

/// Sorted xattr names of `p` (not following a final symlink).
fn names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = xattr::list(p)
        .unwrap_or_else(|e| panic!("llistxattr {}: {e}", p.display()))
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[track_caller]
fn get(p: &Path, name: &str) -> Option<Vec<u8>> {
    xattr::get(p, name).unwrap_or_else(|e| panic!("lgetxattr {} {name}: {e}", p.display()))
}

/// `setcap cap_net_bind_service=ep FILE`; returns the blob it wrote.
fn setcap(p: &Path) -> Vec<u8> {
    let mut cmd = Command::new("setcap");
    cmd.arg("cap_net_bind_service=ep").arg(p);
    let out = output_with_timeout(cmd, Duration::from_secs(60), "setcap");
    assert!(
        out.status.success(),
        "setcap {}: {}",
        p.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let blob = get(p, CAP).expect("setcap wrote security.capability");
    // struct vfs_cap_data, revision 2: magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
    // then (permitted, inheritable) x 2; CAP_NET_BIND_SERVICE is bit 10.
    let mut want = Vec::new();
    for w in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        want.extend_from_slice(&w.to_le_bytes());
    }
    assert_eq!(blob, want, "setcap did not write the expected v2 capability blob");
    blob
}

/// A golden with xattrs of every namespace on a file, a directory and a symlink.
fn golden_with_xattrs(s: &Path) {
    fill_sample(s);
    let f = s.join("f");
    write(&f, "file\n");
    setcap(&f);
    xattr::set(&f, "user.u", b"user value").unwrap();
    xattr::set(&f, "trusted.t", &[0, 1, 2, 0xff]).unwrap();
    xattr::set(&f, "trusted.overlay.origin", b"\x00\xfb\x21").unwrap();
    let dir = s.join("dir");
    fs::create_dir(&dir).unwrap();
    write(dir.join("inside"), "inside\n");
    xattr::set(&dir, "user.d", b"dir value").unwrap();
    xattr::set(&dir, "trusted.overlay.opaque", b"y").unwrap();
    let sym = s.join("sym");
    std::os::unix::fs::symlink("f", &sym).unwrap();
    xattr::set(&sym, "trusted.s", b"symlink value").unwrap();
}

/// What `golden_with_xattrs` put where.
fn expect_golden_xattrs(m: &Path, cap: &[u8]) {
    let f = m.join("f");
    assert_eq!(
        names(&f),
        vec![CAP, "trusted.overlay.origin", "trusted.t", "user.u"],
        "xattrs of f"
    );
    assert_eq!(get(&f, CAP).as_deref(), Some(cap));
    assert_eq!(get(&f, "user.u").as_deref(), Some(&b"user value"[..]));
    assert_eq!(get(&f, "trusted.t").as_deref(), Some(&[0u8, 1, 2, 0xff][..]));
    assert_eq!(get(&f, "trusted.overlay.origin").as_deref(), Some(&b"\x00\xfb\x21"[..]));
    let dir = m.join("dir");
    assert_eq!(names(&dir), vec!["trusted.overlay.opaque", "user.d"]);
    assert_eq!(get(&dir, "user.d").as_deref(), Some(&b"dir value"[..]));
    assert_eq!(get(&dir, "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    let sym = m.join("sym");
    assert_eq!(names(&sym), vec!["trusted.s"]);
    assert_eq!(get(&sym, "trusted.s").as_deref(), Some(&b"symlink value"[..]));
}

#[test]
fn xattrs_of_every_namespace_in_the_generation_are_listed_and_readable() {
    let d = Daemon::start();
    let mut cap = Vec::new();
    d.create_project_with("p", |s| {
        golden_with_xattrs(s);
        cap = get(&s.join("f"), CAP).unwrap();
    });
    let m = d.mount("p", "s1");
    expect_golden_xattrs(&m, &cap);
    // getcap(8) reads it through the view like on any filesystem.
    let out = output_with_timeout(
        {
            let mut c = Command::new("getcap");
            c.arg(m.join("f"));
            c
        },
        Duration::from_secs(60),
        "getcap",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cap_net_bind_service=ep"),
        "getcap through the view: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // trusted.overlay.opaque is user data: the directory's content shows.
    assert_eq!(ls(m.join("dir")), vec!["inside"]);
    // Reading copied nothing up.
    let up = upper_of(&d, "s1");
    for p in ["f", "dir", "sym"] {
        assert!(!exists(up.join(p)), "reading xattrs copied {p} up");
    }
}

#[test]
fn setting_an_xattr_on_a_lower_object_copies_it_up_with_all_its_xattrs() {
    let d = Daemon::start();
    let mut cap = Vec::new();
    d.create_project_with("p", |s| {
        golden_with_xattrs(s);
        cap = get(&s.join("f"), CAP).unwrap();
    });
    let layers_before = snapshot(&d.layers_dir());
    let m = d.mount("p", "s1");
    let other = d.mount("p", "s2");

    xattr::set(&m.join("f"), "user.new", b"on file").unwrap();
    xattr::set(&m.join("dir"), "trusted.new", b"on dir").unwrap();
    xattr::set(&m.join("sym"), "trusted.new", b"on symlink").unwrap();
    // A lower directory deeper down, and a file in a never-touched lower dir.
    xattr::set(&m.join("dir1/nested"), "user.new", b"nested").unwrap();
    xattr::set(&m.join("dir1/nested/deep.txt"), "user.new", b"deep").unwrap();

    let check = |m: &Path| {
        // The copies kept every xattr they had, security.capability included.
        let f = m.join("f");
        assert_eq!(
            names(&f),
            vec![CAP, "trusted.overlay.origin", "trusted.t", "user.new", "user.u"]
        );
        assert_eq!(
            get(&f, CAP).as_deref(),
            Some(&cap[..]),
            "copy-up lost security.capability"
        );
        assert_eq!(get(&f, "user.new").as_deref(), Some(&b"on file"[..]));
        assert_eq!(
            names(&m.join("dir")),
            vec!["trusted.new", "trusted.overlay.opaque", "user.d"]
        );
        assert_eq!(get(&m.join("dir"), "trusted.new").as_deref(), Some(&b"on dir"[..]));
        assert_eq!(names(&m.join("sym")), vec!["trusted.new", "trusted.s"]);
        assert_eq!(get(&m.join("sym"), "trusted.new").as_deref(), Some(&b"on symlink"[..]));
        assert_eq!(fs::read_link(m.join("sym")).unwrap(), Path::new("f"));
        assert_eq!(get(&m.join("dir1/nested"), "user.new").as_deref(), Some(&b"nested"[..]));
        assert_eq!(
            get(&m.join("dir1/nested/deep.txt"), "user.new").as_deref(),
            Some(&b"deep"[..])
        );
        assert_eq!(read(m.join("f")), "file\n");
        assert_eq!(ls(m.join("dir")), vec!["inside"]);
    };
    check(&m);
    // The upper copies hold them, byte for byte.
    let up = upper_of(&d, "s1");
    assert_eq!(get(&up.join("f"), CAP).as_deref(), Some(&cap[..]));
    assert_eq!(get(&up.join("f"), "user.new").as_deref(), Some(&b"on file"[..]));
    assert_eq!(get(&up.join("dir"), "trusted.new").as_deref(), Some(&b"on dir"[..]));
    assert_eq!(get(&up.join("sym"), "trusted.new").as_deref(), Some(&b"on symlink"[..]));
    assert_eq!(
        get(&up.join("dir1/nested/deep.txt"), "user.new").as_deref(),
        Some(&b"deep"[..])
    );
    // The generation and other sessions are untouched.
    assert_eq!(snapshot(&d.layers_dir()), layers_before, "setxattr wrote to a layer");
    expect_golden_xattrs(&other, &cap);

    d.unmount("s1");
    let m = d.mount("p", "s1");
    check(&m);
}

#[test]
fn chmod_of_a_lower_file_keeps_its_security_capability() {
    // A metadata-only copy-up must not lose file capabilities (a chown of
    // the copy made after its xattrs would drop them).
    let d = Daemon::start();
    let mut cap = Vec::new();
    d.create_project_with("p", |s| {
        write(s.join("tool"), "#!/bin/sh\n");
        lchown(&s.join("tool"), 1000, 1000).unwrap();
        chmod(&s.join("tool"), 0o750).unwrap();
        cap = setcap(&s.join("tool"));
    });
    let m = d.mount("p", "s1");
    chmod(&m.join("tool"), 0o755).unwrap();
    let md = fs::metadata(m.join("tool")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (1000, 1000, 0o755));
    assert_eq!(get(&m.join("tool"), CAP).as_deref(), Some(&cap[..]));
    assert_eq!(get(&upper_of(&d, "s1").join("tool"), CAP).as_deref(), Some(&cap[..]));
}

#[test]
fn removing_a_lower_xattr_hides_it_in_that_view_only() {
    let d = Daemon::start();
    let mut cap = Vec::new();
    d.create_project_with("p", |s| {
        golden_with_xattrs(s);
        cap = get(&s.join("f"), CAP).unwrap();
    });
    let layers_before = snapshot(&d.layers_dir());
    let m = d.mount("p", "s1");
    let other = d.mount("p", "s2");

    xattr::remove(&m.join("f"), "user.u").unwrap();
    xattr::remove(&m.join("f"), CAP).unwrap();
    xattr::remove(&m.join("dir"), "trusted.overlay.opaque").unwrap();
    xattr::remove(&m.join("sym"), "trusted.s").unwrap();
    // Removing what is not there fails and copies nothing up.
    assert_errno(
        xattr::remove(&m.join("dir1"), "user.none"),
        &[libc::ENODATA],
        "removexattr of a missing xattr",
    );
    assert!(!exists(upper_of(&d, "s1").join("dir1")));

    let check = |m: &Path| {
        assert_eq!(names(&m.join("f")), vec!["trusted.overlay.origin", "trusted.t"]);
        assert_eq!(get(&m.join("f"), "user.u"), None);
        assert_eq!(get(&m.join("f"), CAP), None);
        assert_eq!(names(&m.join("dir")), vec!["user.d"]);
        assert!(names(&m.join("sym")).is_empty());
        assert_eq!(read(m.join("f")), "file\n");
    };
    check(&m);
    assert_eq!(snapshot(&d.layers_dir()), layers_before, "removexattr wrote to a layer");
    expect_golden_xattrs(&other, &cap);
    d.unmount("s1");
    let m = d.mount("p", "s1");
    check(&m);
}

#[test]
fn user_xattrs_on_symlinks_are_refused_with_eperm() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    std::os::unix::fs::symlink("a.txt", m.join("new-link")).unwrap();
    for l in ["link", "new-link"] {
        assert_errno(
            xattr::set(&m.join(l), "user.x", b"v"),
            &[libc::EPERM],
            &format!("lsetxattr user.x on symlink {l}"),
        );
        // trusted.* is fine on a symlink.
        xattr::set(&m.join(l), "trusted.x", b"v").unwrap();
        assert_eq!(get(&m.join(l), "trusted.x").as_deref(), Some(&b"v"[..]));
        // Neither reached the link's target.
        assert_eq!(get(&m.join("a.txt"), "trusted.x"), None);
    }
    assert!(!names(&m.join("a.txt")).iter().any(|n| n.ends_with(".x")));
}

/// `lsetxattr` straight on a backing file, for comparison with the view.
fn set_on_backing(p: &Path, name: &str, value: &[u8]) -> Result<(), i32> {
    xattr::set(p, name, value).map_err(|e| errno_of(&e))
}

#[test]
fn large_xattr_values_round_trip_up_to_the_backing_filesystem_limit() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let up = upper_of(&d, "s1");
    write(m.join("new"), "n");
    let mut largest_ok = 0;
    for size in [1usize, 255, 256, 1000, 2048, 3000, 4096, 8192, 16384, 32768, 65536] {
        let value: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        for (view, backing) in [
            (m.join("new"), up.join("new")),
            (m.join("a.txt"), up.join("a.txt")),
            (m.join("dir1"), up.join("dir1")),
        ] {
            let name = format!("user.big{size}");
            match xattr::set(&view, &name, &value) {
                Ok(()) => {
                    assert_eq!(
                        get(&view, &name).as_deref(),
                        Some(&value[..]),
                        "{size} bytes on {view:?}"
                    );
                    assert_eq!(get(&backing, &name).as_deref(), Some(&value[..]));
                    largest_ok = largest_ok.max(size);
                    xattr::remove(&view, &name).unwrap();
                }
                Err(e) => {
                    // Only the backing filesystem's own limit may refuse it
                    // (ext4 without ea_inode keeps xattrs in one block).
                    let backing_says = set_on_backing(&backing, "user.probe", &value);
                    assert_eq!(
                        Err(errno_of(&e)),
                        backing_says,
                        "setting {size} bytes on {view:?} gave {e}, the backing file says {backing_says:?}"
                    );
                    assert_ne!(errno_of(&e), libc::EIO);
                    assert_eq!(get(&view, &name), None);
                }
            }
        }
    }
    assert!(largest_ok >= 2048, "only {largest_ok}-byte values fit");
    eprintln!("largest xattr value that round-tripped: {largest_ok} bytes");
}

#[test]
fn small_buffers_get_erange_from_listxattr_and_getxattr() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        xattr::set(&s.join("a.txt"), "user.lower-name", b"0123456789").unwrap();
    });
    let m = d.mount("p", "s1");
    write(m.join("new"), "n");
    xattr::set(&m.join("new"), "user.upper-name", b"0123456789").unwrap();
    for (f, name) in [("a.txt", "user.lower-name"), ("new", "user.upper-name")] {
        let p = m.join(f);
        let need = rustix::fs::llistxattr_query(&p).unwrap();
        assert!(need > name.len(), "list size {need}");
        let mut small = vec![0u8; need - 1];
        assert_eq!(
            rustix::fs::llistxattr(&p, &mut small[..]),
            Err(rustix::io::Errno::RANGE),
            "listxattr of {f} into {} bytes",
            need - 1
        );
        let mut exact = vec![0u8; need];
        assert_eq!(rustix::fs::llistxattr(&p, &mut exact[..]), Ok(need));
        let mut small = [0u8; 4];
        assert_eq!(
            rustix::fs::lgetxattr(&p, name, &mut small[..]),
            Err(rustix::io::Errno::RANGE),
            "getxattr {name} into 4 bytes"
        );
        assert_eq!(rustix::fs::lgetxattr_query(&p, name), Ok(10));
    }
}

#[test]
fn overlayfs_xattrs_and_char_0_0_devices_set_by_the_client_are_stored_verbatim() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let up = upper_of(&d, "s1");
    let binary: Vec<u8> = vec![0x00, 0xfb, 0x21, 0x00, 0x81, 0xff, b'\n'];
    let attrs: Vec<(&str, &str, Vec<u8>)> = vec![
        ("dir1", "trusted.overlay.opaque", b"y".to_vec()),
        ("dir1", "trusted.overlay.redirect", b"/elsewhere".to_vec()),
        ("a.txt", "trusted.overlay.origin", binary.clone()),
        ("a.txt", "trusted.overlay.metacopy", Vec::new()),
        ("empty", "trusted.overlay.opaque", b"x".to_vec()),
    ];
    for (p, n, v) in &attrs {
        xattr::set(&m.join(p), n, v).unwrap();
    }
    mknod(&m.join("dir1/wh"), libc::S_IFCHR, 0).unwrap();
    xattr::set(&m.join("dir1/wh"), "trusted.overlay.whiteout", b"").unwrap();

    let check = |root: &Path| {
        for (p, n, v) in &attrs {
            assert_eq!(get(&root.join(p), n).as_deref(), Some(&v[..]), "{p} {n} in {root:?}");
        }
        let md = fs::symlink_metadata(root.join("dir1/wh")).unwrap();
        assert_eq!((md.mode() & libc::S_IFMT, md.rdev()), (libc::S_IFCHR, 0));
        assert_eq!(
            get(&root.join("dir1/wh"), "trusted.overlay.whiteout").as_deref(),
            Some(&b""[..])
        );
    };
    check(&m);
    check(&up);
    // Not interpreted: the "opaque" and "redirected" directory still shows its content.
    assert_eq!(ls(m.join("dir1")), vec!["nested", "wh", "x.txt"]);
    assert_eq!(read(m.join("dir1/x.txt")), "x\n");
    d.unmount("s1");
    let m = d.mount("p", "s1");
    check(&m);
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    let m = d.mount("p", "s2");
    check(&m);
    assert_eq!(ls(m.join("dir1")), vec!["nested", "wh", "x.txt"]);
}

#[test]
fn private_goldenfs_xattrs_stay_hidden_on_symlinks_and_directories() {
    // Complements view_semantics' test of files: directories and symlinks,
    // lower and copied up (a copied-up symlink carries an origin marker).
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    std::os::unix::fs::symlink("b.txt", m.join("new-link")).unwrap();
    lchown(&m.join("link"), 3, 3).unwrap(); // copies the lower symlink up
    let up = upper_of(&d, "s1");
    assert!(
        xattr::list(&up.join("link"))
            .unwrap()
            .iter()
            .any(|n| n.to_string_lossy().starts_with("trusted.goldenfs.")),
        "the copied-up symlink should carry goldenfs's origin marker"
    );

    for p in ["link", "new-link", "dir1", "dir1/nested", "empty"] {
        let p = m.join(p);
        assert!(
            !names(&p).iter().any(|n| n.starts_with("trusted.goldenfs.")),
            "{} lists a private xattr: {:?}",
            p.display(),
            names(&p)
        );
        for n in [
            "trusted.goldenfs.origin",
            "trusted.goldenfs.opaque",
            "trusted.goldenfs.x",
        ] {
            let got = xattr::get(&p, n);
            assert!(
                matches!(got, Ok(None)) || got.as_ref().is_err_and(|e| errno_of(e) != libc::EIO),
                "getxattr {n} on {}: {got:?}",
                p.display()
            );
            assert_errno(
                xattr::set(&p, n, b"y"),
                &[libc::EPERM, libc::EACCES, libc::EOPNOTSUPP, libc::EINVAL],
                &format!("setxattr {n} on {}", p.display()),
            );
        }
    }
    // Nothing was copied up or made opaque by the refused attempts.
    assert!(!exists(up.join("dir1")), "a refused setxattr copied dir1 up");
    assert_eq!(ls(m.join("dir1")), vec!["nested", "x.txt"]);
    assert_eq!(ls(m.join("dir1/nested")), vec!["deep.txt"]);
    assert_eq!(fs::read_link(m.join("link")).unwrap(), Path::new("a.txt"));
}

// ---------------------------------------------------------------------------
// security.capability and writes
// ---------------------------------------------------------------------------

fn as_nobody(d: &Daemon, script: &str) {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script]);
    let out = output_with_timeout(cmd, Duration::from_secs(120), "setpriv");
    assert!(
        out.status.success(),
        "as nobody: `{script}`: {}\n--- daemon log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log_text()
    );
}

#[test]
fn a_write_drops_security_capability_like_the_kernel_does() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        for f in ["lower-pt", "lower-cached", "lower-root"] {
            write(s.join(f), "bin\n");
            lchown(&s.join(f), NOBODY, NOBODY).unwrap();
            chmod(&s.join(f), 0o755).unwrap();
            setcap(&s.join(f));
        }
    });
    let layers_before = snapshot(&d.layers_dir());
    let m = d.mount("p", "s1");
    let up = upper_of(&d, "s1");
    // What the store's own filesystem does: any write drops the capability.
    let plain = d.new_dir("plain").join("f");
    write(&plain, "bin\n");
    setcap(&plain);
    fs::OpenOptions::new()
        .append(true)
        .open(&plain)
        .and_then(|mut f| io::Write::write_all(&mut f, b"x"))
        .unwrap();
    assert_eq!(get(&plain, CAP), None, "the store's filesystem keeps caps on write?");

    // Passthrough: the copied-up file is written by its unprivileged owner.
    as_nobody(&d, &format!("printf x >> '{}'", m.join("lower-pt").display()));
    // Page-cache mode: a reader of the lower copy stays open across the write.
    let mut reader = fs::File::open(m.join("lower-cached")).unwrap();
    let mut one = [0u8; 1];
    reader.read_exact(&mut one).unwrap();
    as_nobody(&d, &format!("printf x >> '{}'", m.join("lower-cached").display()));
    // By root.
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("lower-root"))
        .and_then(|mut f| io::Write::write_all(&mut f, b"x"))
        .unwrap();

    for f in ["lower-pt", "lower-cached", "lower-root"] {
        assert_eq!(
            get(&m.join(f), CAP),
            None,
            "{f}: the view still shows security.capability"
        );
        assert_eq!(
            get(&up.join(f), CAP),
            None,
            "{f}: the upper copy kept security.capability"
        );
        assert_eq!(read(m.join(f)), "bin\nx");
    }
    drop(reader);
    // The generation keeps them.
    assert_eq!(snapshot(&d.layers_dir()), layers_before);
    let other = d.mount("p", "s2");
    assert!(get(&other.join("lower-pt"), CAP).is_some());
}

#[test]
fn xattrs_in_a_promoted_layer_pass_through_without_goldenfs_markers() {
    // A promoted upper becomes a layer that carries goldenfs's markers (the
    // origin of copied-up files): the next views show its xattrs, never the
    // markers, and copy up from it.
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    xattr::set(&m.join("a.txt"), "user.gen2", b"file").unwrap(); // copied up: gets an origin marker
    xattr::set(&m.join("dir1"), "trusted.gen2", b"dir").unwrap();
    lchown(&m.join("link"), 9, 9).unwrap();
    xattr::set(&m.join("link"), "trusted.gen2", b"symlink").unwrap();
    let ino = fs::metadata(m.join("a.txt")).unwrap().ino();
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    assert!(
        xattr::list(&in_top_layer(&d, "a.txt"))
            .unwrap()
            .iter()
            .any(|n| n.to_string_lossy().starts_with("trusted.goldenfs.")),
        "expected the promoted layer to carry an origin marker on a.txt"
    );

    let m = d.mount("p", "s2");
    assert_eq!(names(&m.join("a.txt")), vec!["user.gen2"]);
    assert_eq!(names(&m.join("dir1")), vec!["trusted.gen2"]);
    assert_eq!(names(&m.join("link")), vec!["trusted.gen2"]);
    assert_eq!(get(&m.join("link"), "trusted.gen2").as_deref(), Some(&b"symlink"[..]));
    // Copy-up from the promoted layer keeps the xattrs and the inode number.
    xattr::set(&m.join("a.txt"), "user.gen3", b"more").unwrap();
    xattr::remove(&m.join("dir1"), "trusted.gen2").unwrap();
    xattr::set(&m.join("link"), "trusted.gen3", b"more").unwrap();
    assert_eq!(names(&m.join("a.txt")), vec!["user.gen2", "user.gen3"]);
    assert!(names(&m.join("dir1")).is_empty());
    assert_eq!(names(&m.join("link")), vec!["trusted.gen2", "trusted.gen3"]);
    assert_eq!(fs::metadata(m.join("a.txt")).unwrap().ino(), ino);
    let up = upper_of(&d, "s2");
    assert_eq!(get(&up.join("a.txt"), "user.gen2").as_deref(), Some(&b"file"[..]));
    assert_eq!(read(m.join("a.txt")), "alpha\n");
}

/// `rel` in the layer that generation 2 of project `p` added (ids are `<project>-g<N>-<nanos>`).
fn in_top_layer(d: &Daemon, rel: &str) -> PathBuf {
    fs::read_dir(d.layers_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("p-g2-")))
        .map(|p| p.join(rel))
        .expect("the layer of generation 2")
}
