//! The motivating use: dockerd's overlay2 stacks one kernel overlayfs on the
//! view (lower, upper and work dirs all inside it). This needs the view to be
//! negotiated at stacking depth 1, to accept `trusted.*` xattrs and
//! `RENAME_WHITEOUT`, and to hard-link char 0/0 whiteout inodes.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn mount_overlay(lower: &Path, upper: &Path, work: &Path, merged: &Path) -> std::process::Output {
    Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        ))
        .arg(merged)
        .output()
        .expect("run mount")
}

/// The layer and container dirs of a dockerd-style overlay2 tree in a view:
/// (lower, upper, work, merged).
fn overlay2_dirs(view: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let base = view.join("overlay2");
    (
        base.join("l1/diff"),
        base.join("c1/diff"),
        base.join("c1/work"),
        base.join("c1/merged"),
    )
}

/// Kernel log lines logged after `marker` was written to /dev/kmsg.
fn kernel_log_since(marker: &str) -> Vec<String> {
    let out = Command::new("dmesg").output().expect("run dmesg");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().rposition(|l| l.contains(marker)).map_or(0, |i| i + 1);
    lines[start..].iter().map(|l| l.to_string()).collect()
}

fn umount(p: &Path) {
    let st = Command::new("umount").arg(p).status().expect("run umount");
    assert!(st.success(), "umount {} failed", p.display());
}

#[test]
fn a_kernel_overlayfs_can_be_stacked_on_a_view() {
    let d = Daemon::start();
    d.create_project_with("docker", |s| {
        // An overlay2-like golden: one image layer with content.
        write(s.join("overlay2/l1/diff/etc/os-release"), "golden os\n");
        write(s.join("overlay2/l1/diff/etc/hosts"), "127.0.0.1 localhost\n");
        write(s.join("overlay2/l1/diff/usr/bin/tool"), "#!/bin/sh\n");
        fs::create_dir_all(s.join("overlay2/l1/diff/var/empty")).unwrap();
    });
    let m = d.mount("docker", "s1");
    let (lower, upper, work, merged) = overlay2_dirs(&m);
    for p in [&upper, &work, &merged] {
        fs::create_dir_all(p).unwrap();
    }
    let marker = format!("goldenfs-test: mounting overlayfs on {}", m.display());
    fs::write("/dev/kmsg", &marker).expect("write a marker to /dev/kmsg");
    let out = mount_overlay(&lower, &upper, &work, &merged);
    // overlayfs checks its upper filesystem at mount time and says which
    // features it turns off; none may be turned off. (Only the lack of
    // O_TMPFILE is tolerated: fuser 0.18 has no FUSE_TMPFILE, and overlayfs
    // then copies up through its workdir, losing no feature.)
    let warnings: Vec<String> = kernel_log_since(&marker)
        .into_iter()
        .filter(|l| l.contains("overlayfs:") && !l.contains("does not support tmpfile"))
        .collect();
    assert!(warnings.is_empty(), "overlayfs warned about the view: {warnings:#?}");
    assert!(
        out.status.success(),
        "mounting overlayfs on the view failed: {}\n(dmesg usually says 'maximum fs stacking depth exceeded' \
         when the view was not negotiated at max_stack_depth 1)\n--- daemon log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log_text()
    );

    // Use the container filesystem like a container would.
    assert_eq!(read(merged.join("etc/os-release")), "golden os\n");
    write(merged.join("etc/os-release"), "container os\n");
    fs::remove_file(merged.join("etc/hosts")).unwrap();
    fs::remove_file(merged.join("usr/bin/tool")).unwrap();
    fs::remove_dir(merged.join("var/empty")).unwrap();
    fs::create_dir(merged.join("var/empty")).unwrap(); // opaque dir in the inner overlay
    write(merged.join("new/file"), "new\n");
    // (Renaming a lower dir in the inner overlay gives EXDEV unless
    // redirect_dir is on — the kernel's choice, not ours; rename a file.)
    fs::rename(merged.join("etc"), merged.join("etc2"))
        .or_else(|e| {
            if e.raw_os_error() == Some(libc::EXDEV) {
                fs::create_dir(merged.join("etc2"))?;
                fs::rename(merged.join("etc/os-release"), merged.join("etc2/os-release"))?;
                fs::remove_dir(merged.join("etc"))
            } else {
                Err(e)
            }
        })
        .unwrap();
    assert_eq!(read(merged.join("etc2/os-release")), "container os\n");
    assert!(!exists(merged.join("etc2/hosts")));
    assert!(!exists(merged.join("usr/bin/tool")));

    umount(&merged);

    // The inner overlay's upper holds its own whiteouts (char 0/0), in the
    // view's upper, as plain user data.
    let wh = fs::symlink_metadata(upper.join("usr/bin/tool")).expect("inner whiteout in the upper");
    assert_eq!(wh.mode() & libc::S_IFMT, libc::S_IFCHR);
    assert_eq!(wh.rdev(), 0);
    // The golden's layer seen through the view is untouched.
    assert_eq!(read(lower.join("etc/os-release")), "golden os\n");
    assert!(exists(lower.join("etc/hosts")));

    // Mount it again: the inner overlay's state survives and reads back.
    let out = mount_overlay(&lower, &upper, &work, &merged);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read(merged.join("etc2/os-release")), "container os\n");
    assert!(!exists(merged.join("usr/bin/tool")));
    assert_eq!(read(merged.join("new/file")), "new\n");
    assert!(ls(merged.join("var/empty")).is_empty());
    umount(&merged);

    // Promote the session: a new session on generation 2 can mount the same
    // inner overlay from the promoted layers and sees the container's state.
    d.unmount("s1");
    d.ok(&["promote", "docker", "s1"]);
    let m2 = d.mount("docker", "s2");
    let (lower, upper, work, merged) = overlay2_dirs(&m2);
    let out = mount_overlay(&lower, &upper, &work, &merged);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read(merged.join("etc2/os-release")), "container os\n");
    assert!(!exists(merged.join("usr/bin/tool")));
    assert_eq!(read(merged.join("usr/bin/../../new/file")), "new\n");
    umount(&merged);
}
