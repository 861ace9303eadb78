//! Projects and sessions: create, list, mount, unmount, reattach, discard,
//! delete; daemon stop and restart on an existing store.

mod common;

use common::*;
use std::fs;

#[test]
fn project_created_from_dir_is_generation_1_with_its_content() {
    let d = Daemon::start();
    d.create_project_with("web", fill_sample);

    assert!(d.project_names().contains(&"web".to_string()));
    assert_eq!(d.generations("web"), vec![1]);
    assert_eq!(d.current_generation("web"), 1);

    let mnt = d.mount("web", "s1");
    assert_eq!(read(mnt.join("a.txt")), "alpha\n");
    assert_eq!(read(mnt.join("dir1/nested/deep.txt")), "deep\n");
    assert!(mnt.join("empty").is_dir());
    assert_eq!(fs::read_link(mnt.join("link")).unwrap().to_str(), Some("a.txt"));
    assert_eq!(ls(&mnt), vec!["a.txt", "b.txt", "dir1", "empty", VERSION_FILE, "link"]);
    assert_eq!(generation_of(&mnt), 1);
}

#[test]
fn project_created_without_from_is_an_empty_generation_1() {
    let d = Daemon::start();
    d.ok(&["project", "create", "blank"]);
    assert_eq!(d.generations("blank"), vec![1]);
    let mnt = d.mount("blank", "s1");
    assert_eq!(ls(&mnt), vec![VERSION_FILE]);
    assert_eq!(generation_of(&mnt), 1);
}

#[test]
fn project_create_from_does_not_change_the_source_dir() {
    let d = Daemon::start();
    let src = d.create_project_with("p", fill_sample);
    let before = snapshot(&src);
    let mnt = d.mount("p", "s1");
    write(mnt.join("a.txt"), "changed\n");
    fs::remove_dir_all(mnt.join("dir1")).unwrap();
    assert_eq!(snapshot(&src), before, "the import source must not change");
}

#[test]
fn project_create_with_move_takes_the_source_dir() {
    let d = Daemon::start();
    // On the store's filesystem (same temp root), so --move is a rename.
    let src = d.new_dir("moved");
    fill_sample(&src);
    d.ok(&["project", "create", "mv", "--from", src.to_str().unwrap(), "--move"]);
    assert!(
        !exists(&src),
        "--move should rename the source into the store; {} still exists",
        src.display()
    );
    let mnt = d.mount("mv", "s1");
    assert_eq!(read(mnt.join("dir1/nested/deep.txt")), "deep\n");
    assert_eq!(generation_of(&mnt), 1);
}

#[test]
fn project_create_twice_is_refused() {
    let d = Daemon::start();
    d.ok(&["project", "create", "p"]);
    d.fail(&["project", "create", "p"]);
    assert_eq!(d.project_names(), vec!["p"]);
}

#[test]
fn project_list_shows_every_project() {
    let d = Daemon::start();
    d.ok(&["project", "create", "alpha"]);
    d.ok(&["project", "create", "beta"]);
    assert_eq!(d.project_names(), vec!["alpha", "beta"]);
    let plain = d.ok(&["project", "list"]);
    assert!(
        plain.contains("alpha") && plain.contains("beta"),
        "plain `project list` should name both projects:\n{plain}"
    );
}

#[test]
fn project_delete_is_refused_while_a_session_exists() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let _mnt = d.mount("p", "s1");
    d.unmount("s1");
    // An unmounted session still exists and still pins the project.
    d.fail(&["project", "delete", "p"]);
    assert_eq!(d.project_names(), vec!["p"]);
    d.ok(&["session", "discard", "s1"]);
    d.ok(&["project", "delete", "p"]);
    assert!(d.project_names().is_empty());
    d.fail(&["generations", "p"]);
}

#[test]
fn project_delete_force_removes_project_and_its_sessions() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let mnt = d.mount("p", "s1");
    d.unmount("s1");
    assert!(!is_mounted(&mnt));
    d.ok(&["project", "delete", "p", "--force"]);
    assert!(d.project_names().is_empty());
    assert!(
        !d.session_names().contains(&"s1".to_string()),
        "--force should discard the project's sessions"
    );
}

#[test]
fn session_mount_prints_the_base_generation() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let mp = d.mountpoint("s1");
    let out = d.ok(&["session", "mount", "p", "s1", mp.to_str().unwrap()]);
    assert!(
        out.contains('1'),
        "`session mount` should print the base generation (1):\n{out}"
    );
    assert!(is_mounted(&mp));
}

#[test]
fn session_list_shows_mounted_and_unmounted_sessions() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    d.mount("p", "s1");
    d.mount("p", "s2");
    d.unmount("s2");
    assert_eq!(d.session_names(), vec!["s1", "s2"]);
    let s1 = d.session_info("s1");
    let s2 = d.session_info("s2");
    let mounted = |m: &serde_json::Map<String, serde_json::Value>| {
        m.get("mounted")
            .and_then(|v| v.as_bool())
            .unwrap_or_else(|| panic!("no boolean `mounted` in {m:?}"))
    };
    assert!(mounted(&s1), "s1 should be listed as mounted: {s1:?}");
    assert!(!mounted(&s2), "s2 should be listed as unmounted: {s2:?}");
    let plain = d.ok(&["session", "list"]);
    assert!(plain.contains("s1") && plain.contains("s2"), "{plain}");
}

#[test]
fn unmount_unmounts_the_view_and_keeps_the_session() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let mnt = d.mount("p", "s1");
    write(mnt.join("new.txt"), "mine\n");
    d.unmount("s1");
    assert!(!is_mounted(&mnt), "{} still mounted", mnt.display());
    assert!(
        !exists(mnt.join("new.txt")),
        "after unmount the mountpoint is a plain empty dir"
    );
    assert!(d.session_names().contains(&"s1".to_string()));
}

#[test]
fn remount_of_an_unmounted_session_keeps_its_writes_and_base() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let mnt = d.mount("p", "s1");
    write(mnt.join("new.txt"), "mine\n");
    write(mnt.join("a.txt"), "modified\n");
    fs::remove_file(mnt.join("b.txt")).unwrap();
    d.unmount("s1");

    // Move the project on to generation 2 in between: s1 must stay on 1.
    let w = d.mount("p", "w");
    write(w.join("gen2.txt"), "2\n");
    d.unmount("w");
    d.ok(&["promote", "p", "w"]);
    assert_eq!(d.current_generation("p"), 2);

    let mnt = d.mount("p", "s1");
    assert_eq!(read(mnt.join("new.txt")), "mine\n");
    assert_eq!(read(mnt.join("a.txt")), "modified\n");
    assert!(!exists(mnt.join("b.txt")));
    assert!(!exists(mnt.join("gen2.txt")), "s1 must stay on its base");
    assert_eq!(generation_of(&mnt), 1);
}

#[test]
fn remount_at_a_different_mountpoint_works() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let mnt = d.mount("p", "s1");
    write(mnt.join("new.txt"), "mine\n");
    d.unmount("s1");
    let other = d.mountpoint("s1-elsewhere");
    d.ok(&["session", "mount", "p", "s1", other.to_str().unwrap()]);
    assert!(is_mounted(&other));
    assert_eq!(read(other.join("new.txt")), "mine\n");
}

#[test]
fn unmount_lazy_detaches_a_busy_view() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let mnt = d.mount("p", "s1");
    let f = fs::File::open(mnt.join("a.txt")).unwrap(); // keeps the mount busy
    d.ok(&["session", "unmount", "s1", "--lazy"]);
    assert!(!is_mounted(&mnt));
    drop(f);
    // Remount works afterwards.
    let again = d.mountpoint("s1-again");
    d.ok(&["session", "mount", "p", "s1", again.to_str().unwrap()]);
    assert_eq!(read(again.join("a.txt")), "alpha\n");
}

#[test]
fn discard_drops_the_upper_so_the_name_starts_fresh() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let mnt = d.mount("p", "s1");
    write(mnt.join("new.txt"), "mine\n");
    d.unmount("s1");
    d.ok(&["session", "discard", "s1"]);
    assert!(!d.session_names().contains(&"s1".to_string()));
    let mnt = d.mount("p", "s1");
    assert!(
        !exists(mnt.join("new.txt")),
        "a discarded session's writes must be gone"
    );
    assert_eq!(read(mnt.join("a.txt")), "alpha\n");
}

#[test]
fn discard_of_a_mounted_session_needs_force() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let mnt = d.mount("p", "s1");
    d.fail(&["session", "discard", "s1"]);
    assert!(is_mounted(&mnt), "a refused discard must leave the mount");
    d.ok(&["session", "discard", "s1", "--force"]);
    assert!(!is_mounted(&mnt), "discard --force must unmount");
    assert!(!d.session_names().contains(&"s1".to_string()));
}

#[test]
fn sigterm_unmounts_every_view_and_exits_0() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m1 = d.mount("p", "s1");
    let m2 = d.mount("p", "s2");
    d.stop(); // asserts exit status 0
    assert!(!is_mounted(&m1), "{} still mounted after SIGTERM", m1.display());
    assert!(!is_mounted(&m2), "{} still mounted after SIGTERM", m2.display());
}

#[test]
fn daemon_restart_keeps_projects_generations_and_sessions() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    d.ok(&["project", "create", "q"]);
    let w = d.mount("p", "w");
    write(w.join("gen2.txt"), "2\n");
    d.unmount("w");
    d.ok(&["promote", "p", "w"]);
    // One session left mounted across the restart, one unmounted before it.
    let m1 = d.mount("p", "s1");
    write(m1.join("s1.txt"), "s1 was here\n");
    fs::remove_file(m1.join("a.txt")).unwrap();
    let m2 = d.mount("p", "s2");
    write(m2.join("s2.txt"), "s2 was here\n");
    d.unmount("s2");

    let sessions_before = d.session_names();
    d.restart();

    assert_eq!(d.project_names(), vec!["p", "q"]);
    assert_eq!(d.generations("p"), vec![1, 2]);
    assert_eq!(d.current_generation("p"), 2);
    assert_eq!(d.generations("q"), vec![1]);
    assert_eq!(d.session_names(), sessions_before);
    assert!(!is_mounted(&m1), "views do not survive a daemon restart");

    let m1 = d.mount("p", "s1");
    assert_eq!(read(m1.join("s1.txt")), "s1 was here\n");
    assert!(!exists(m1.join("a.txt")), "whiteout survived restart");
    assert_eq!(generation_of(&m1), 2);
    let m2 = d.mount("p", "s2");
    assert_eq!(read(m2.join("s2.txt")), "s2 was here\n");
    assert_eq!(read(m2.join("gen2.txt")), "2\n");
}

#[test]
fn daemon_restart_after_a_crash_keeps_the_store() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    write(m.join("s1.txt"), "before crash\n");
    // fsync so the data is in the upper whatever the daemon does with caches.
    fs::File::open(m.join("s1.txt")).unwrap().sync_all().unwrap();
    d.kill9();
    d.start_again();
    assert_eq!(d.project_names(), vec!["p"]);
    assert_eq!(d.current_generation("p"), 1);
    assert!(d.session_names().contains(&"s1".to_string()));
    let m = d.mount("p", "s1");
    assert_eq!(read(m.join("s1.txt")), "before crash\n");
}

#[test]
fn status_answers_in_plain_and_json() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    d.mount("p", "s1");
    let plain = d.ok(&["status"]);
    assert!(!plain.trim().is_empty(), "`status` printed nothing");
    let _json = d.json(&["status"]);
}

#[test]
fn global_socket_option_selects_the_daemon() {
    let d = Daemon::start();
    d.ok(&["project", "create", "p"]);
    // No GOLDENFS_SOCKET: only the flag tells where the daemon is.
    let out = output_with_timeout(
        {
            let mut c = std::process::Command::new(BIN);
            c.args(["--socket", d.socket().to_str().unwrap(), "project", "list"])
                .env_remove("GOLDENFS_SOCKET");
            c
        },
        std::time::Duration::from_secs(60),
        "goldenfs --socket S project list",
    );
    assert!(
        out.status.success(),
        "{}",
        describe(&["--socket", "S", "project", "list"], &out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains('p'));
}

#[test]
fn json_outputs_have_the_documented_shapes() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    d.mount("p", "s2");
    d.unmount("s2");

    let pl = d.json(&["project", "list"]);
    let p = &pl["projects"][0];
    assert_eq!(p["project"], "p", "{pl}");
    assert_eq!(p["current_generation"], 1, "{pl}");
    assert!(is_rfc3339(p["created_at"].as_str().unwrap_or("")), "{pl}");

    let sl = d.json(&["session", "list"]);
    let s1 = d.session_info("s1");
    assert_eq!(s1["project"], "p", "{sl}");
    assert_eq!(s1["base_generation"], 1, "{sl}");
    assert_eq!(s1["mounted"], true, "{sl}");
    assert_eq!(s1["mountpoint"].as_str(), m.to_str(), "{sl}");
    let s2 = d.session_info("s2");
    assert_eq!(s2["mounted"], false, "{sl}");

    let g = d.json(&["generations", "p"]);
    assert_eq!(g["project"], "p", "{g}");
    assert_eq!(g["current"], 1, "{g}");
    let g1 = &g["generations"][0];
    assert_eq!(g1["generation"], 1, "{g}");
    assert!(g1["session_id"].is_null(), "{g}");
    assert!(is_rfc3339(g1["created_at"].as_str().unwrap_or("")), "{g}");
    assert!(g1["layers"].as_array().is_some_and(|l| !l.is_empty()), "{g}");

    let st = d.json(&["status"]);
    assert!(
        st["pid"].is_u64() && st["projects"].is_array() && st["sessions"].is_array(),
        "{st}"
    );

    let mp = d.mountpoint("s3");
    let mo = d.json(&["session", "mount", "p", "s3", mp.to_str().unwrap()]);
    assert_eq!(mo["session"], "s3", "{mo}");
    assert_eq!(mo["base_generation"], 1, "{mo}");
    assert_eq!(mo["created"], true, "{mo}");
    assert_eq!(mo["mountpoint"].as_str(), mp.to_str(), "{mo}");
    let um = d.json(&["session", "unmount", "s3"]);
    assert_eq!(um["session"], "s3", "{um}");
    let pr = d.json(&["promote", "p", "s3"]);
    assert_eq!(
        (
            pr["generation"].as_u64(),
            pr["parent"].as_u64(),
            pr["previous"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{pr}"
    );
    assert_eq!(pr["layers"].as_array().map(|l| l.len()), Some(2), "{pr}");
    let rb = d.json(&["rollback", "p", "1"]);
    assert_eq!(
        (rb["generation"].as_u64(), rb["previous"].as_u64()),
        (Some(1), Some(2)),
        "{rb}"
    );
    let gc = d.json(&["gc", "--keep", "1"]);
    assert!(
        gc["deleted_generations"].is_array() && gc["deleted_layers"].is_array(),
        "{gc}"
    );
    assert!(gc["bytes_freed"].is_u64(), "{gc}");
    let ds = d.json(&["session", "discard", "s2"]);
    assert_eq!(ds["session"], "s2", "{ds}");
}

#[test]
fn daemon_threads_option_is_accepted() {
    let d = Daemon::start_with(&["--threads", "1"]);
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    write(m.join("x"), "x\n");
    assert_eq!(read(m.join("x")), "x\n");
}

#[test]
fn relative_paths_are_resolved_against_the_callers_cwd() {
    let d = Daemon::start();
    let src = d.new_dir("rel-src");
    fill_sample(&src);
    let parent = src.parent().unwrap().to_path_buf();
    let rel_src = src.file_name().unwrap().to_str().unwrap().to_string();
    let run_in = |dir: &std::path::Path, args: &[&str]| {
        let mut c = std::process::Command::new(BIN);
        c.args(args).current_dir(dir).env("GOLDENFS_SOCKET", d.socket());
        output_with_timeout(c, std::time::Duration::from_secs(60), "goldenfs (relative)")
    };
    let args = ["project", "create", "p", "--from", rel_src.as_str()];
    let out = run_in(&parent, &args);
    assert!(out.status.success(), "{}", describe(&args, &out));
    let mp = d.mountpoint("rel");
    let mnt_parent = mp.parent().unwrap().to_path_buf();
    let args = ["session", "mount", "p", "s1", "rel"];
    let out = run_in(&mnt_parent, &args);
    assert!(out.status.success(), "{}", describe(&args, &out));
    assert!(
        is_mounted(&mp),
        "the relative mountpoint was not resolved against the caller's cwd"
    );
    assert_eq!(read(mp.join("a.txt")), "alpha\n");
    let listed = d.session_info("s1");
    assert_eq!(
        listed["mountpoint"].as_str(),
        mp.to_str(),
        "listed mountpoint must be absolute"
    );
}

#[test]
fn unmount_of_a_busy_view_is_refused_without_lazy() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let f = fs::File::open(m.join("a.txt")).unwrap();
    let line = d.fail(&["session", "unmount", "s1"]);
    assert!(line.contains("busy") || line.contains("lazy"), "{line}");
    assert!(is_mounted(&m), "a refused unmount must leave the view mounted");
    assert_eq!(read(m.join("b.txt")), "bravo\n");
    drop(f);
    d.unmount("s1");
    assert!(!is_mounted(&m));
}

#[test]
fn promoting_a_session_without_changes_makes_an_equal_generation() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "noop");
    let before = snapshot(&m);
    d.unmount("noop");
    d.ok(&["promote", "p", "noop"]);
    assert_eq!(d.current_generation("p"), 2);
    let m2 = d.mount("p", "r");
    let mut after = snapshot(&m2);
    let mut before = before;
    // Only the version file differs.
    before.remove(std::path::Path::new(VERSION_FILE));
    after.remove(std::path::Path::new(VERSION_FILE));
    let strip = |t: &mut std::collections::BTreeMap<std::path::PathBuf, Node>| {
        for n in t.values_mut() {
            if let Node::File { mtime, .. } = n {
                *mtime = (0, 0);
            }
        }
    };
    strip(&mut before);
    strip(&mut after);
    assert_eq!(before, after);
}

#[test]
fn the_store_never_follows_symlinks_out_of_itself() {
    let d = Daemon::start();
    let outside = d.new_dir("outside");
    write(outside.join("precious"), "keep me\n");
    let before = snapshot(&outside);
    d.create_project_with("p", |s| {
        fill_sample(s);
        std::os::unix::fs::symlink(&outside, s.join("evil-dir")).unwrap();
        std::os::unix::fs::symlink(outside.join("precious"), s.join("evil-file")).unwrap();
    });
    let m = d.mount("p", "s1");
    assert!(
        fs::symlink_metadata(m.join("evil-dir"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A session plants its own symlinks too.
    std::os::unix::fs::symlink(&outside, m.join("planted")).unwrap();
    fs::remove_dir_all(m.join("dir1")).unwrap();
    std::os::unix::fs::symlink(&outside, m.join("dir1")).unwrap();
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    let m2 = d.mount("p", "s2");
    std::os::unix::fs::symlink(&outside, m2.join("planted2")).unwrap();
    d.ok(&["session", "discard", "s2", "--force"]);
    d.ok(&["project", "delete", "p", "--force"]);
    d.ok(&["gc"]);
    assert_eq!(snapshot(&outside), before, "the store touched a symlink's target");
}
