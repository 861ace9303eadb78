//! Promotion, `--if-generation`, rollback and reference-based GC.

mod common;

use common::*;
use std::fs;

/// Mounts a writer session on the current generation, lets `f` change it,
/// unmounts and promotes it; returns the new current generation.
fn promote_with(d: &Daemon, project: &str, session: &str, f: impl FnOnce(&std::path::Path)) -> u64 {
    let m = d.mount(project, session);
    f(&m);
    d.unmount(session);
    d.ok(&["promote", project, session]);
    d.current_generation(project)
}

#[test]
fn promotion_produces_the_next_generation_with_the_session_changes() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        write(s.join("tree/a/b/leaf"), "leaf\n");
    });
    let g = promote_with(&d, "p", "warm", |m| {
        write(m.join("new.txt"), "new\n");
        write(m.join("a.txt"), "alpha v2\n");
        fs::remove_file(m.join("b.txt")).unwrap();
        fs::remove_dir_all(m.join("dir1")).unwrap();
        fs::create_dir(m.join("empty/inner")).unwrap();
        fs::rename(m.join("tree/a"), m.join("renamed-a")).unwrap();
        xattr::set(&m.join("new.txt"), "user.k", b"v").unwrap();
        chmod(&m.join("link"), 0o777).ok(); // symlink modes are ignored; must not fail badly
    });
    assert_eq!(g, 2);
    assert_eq!(d.generations("p"), vec![1, 2]);

    let m = d.mount("p", "reader");
    assert_eq!(generation_of(&m), 2);
    assert_eq!(read(m.join("new.txt")), "new\n");
    assert_eq!(read(m.join("a.txt")), "alpha v2\n");
    assert!(!exists(m.join("b.txt")), "whiteout must be promoted");
    assert!(!exists(m.join("dir1")), "directory whiteout must be promoted");
    assert!(m.join("empty/inner").is_dir());
    assert!(!exists(m.join("tree/a")));
    assert_eq!(read(m.join("renamed-a/b/leaf")), "leaf\n");
    assert_eq!(
        xattr::get(&m.join("new.txt"), "user.k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        ls(&m),
        vec!["a.txt", "empty", VERSION_FILE, "link", "new.txt", "renamed-a", "tree"]
    );

    // A second promotion stacks on top: a dir recreated over a whiteout is
    // opaque across generations too.
    let g = promote_with(&d, "p", "warm2", |m| {
        fs::create_dir(m.join("dir1")).unwrap();
        write(m.join("dir1/only"), "only\n");
        write(m.join("b.txt"), "bravo is back\n");
    });
    assert_eq!(g, 3);
    let m = d.mount("p", "reader3");
    assert_eq!(ls(m.join("dir1")), vec!["only"]);
    assert_eq!(read(m.join("b.txt")), "bravo is back\n");
    assert_eq!(read(m.join("new.txt")), "new\n");
    assert_eq!(generation_of(&m), 3);
}

#[test]
fn a_mounted_session_keeps_seeing_its_generation_after_promotion() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let old = d.mount("p", "old");
    let old_before = snapshot(&old);
    promote_with(&d, "p", "warm", |m| {
        write(m.join("a.txt"), "changed\n");
        write(m.join("added"), "added\n");
        fs::remove_dir_all(m.join("dir1")).unwrap();
    });
    assert_eq!(d.current_generation("p"), 2);
    assert_eq!(read(old.join("a.txt")), "alpha\n");
    assert!(!exists(old.join("added")));
    assert_eq!(read(old.join("dir1/nested/deep.txt")), "deep\n");
    assert_eq!(generation_of(&old), 1);
    assert_eq!(snapshot(&old), old_before);
    // The old session can still write, and remounting keeps it on 1.
    write(old.join("mine"), "mine\n");
    d.unmount("old");
    let old = d.mount("p", "old");
    assert_eq!(generation_of(&old), 1);
    assert_eq!(read(old.join("mine")), "mine\n");
    assert_eq!(read(old.join("a.txt")), "alpha\n");
}

#[test]
fn promote_if_generation_refuses_a_stale_generation() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let a = d.mount("p", "a");
    let b = d.mount("p", "b");
    write(a.join("from-a"), "a\n");
    write(b.join("from-b"), "b\n");
    d.unmount("a");
    d.unmount("b");
    d.ok(&["promote", "p", "a", "--if-generation", "1"]);
    assert_eq!(d.current_generation("p"), 2);

    // b was based on 1; current is 2 now.
    let err = d.fail(&["promote", "p", "b", "--if-generation", "1"]);
    assert!(
        err.contains('1') || err.contains('2'),
        "the refusal should say which generation is current: {err}"
    );
    assert_eq!(d.current_generation("p"), 2);
    assert_eq!(d.generations("p"), vec![1, 2]);
    let m = d.mount("p", "check");
    assert!(!exists(m.join("from-b")));
    assert_eq!(read(m.join("from-a")), "a\n");

    // The refused session is intact and can still be mounted.
    let b = d.mount("p", "b");
    assert_eq!(read(b.join("from-b")), "b\n");
    d.unmount("b");
    // With the right generation it goes through.
    d.ok(&["promote", "p", "b", "--if-generation", "2"]);
    assert_eq!(d.current_generation("p"), 3);
}

#[test]
fn promote_of_a_mounted_session_is_refused() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    write(m.join("x"), "x\n");
    d.fail(&["promote", "p", "s1"]);
    assert_eq!(d.current_generation("p"), 1);
    assert!(is_mounted(&m));
    assert_eq!(read(m.join("x")), "x\n");
}

#[test]
fn promote_of_a_session_of_another_project_is_refused() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    d.ok(&["project", "create", "q"]);
    d.mount("p", "s1");
    d.unmount("s1");
    d.fail(&["promote", "q", "s1"]);
    assert_eq!(d.current_generation("q"), 1);
    assert_eq!(d.current_generation("p"), 1);
}

#[test]
fn promoting_a_session_based_on_an_older_generation_builds_on_its_base() {
    // parent = the session's base; the new generation = upper on top of the
    // base's layers (not on top of the newer current).
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let slow = d.mount("p", "slow");
    write(slow.join("slow.txt"), "slow\n");
    d.unmount("slow");
    promote_with(&d, "p", "fast", |m| write(m.join("fast.txt"), "fast\n"));
    d.ok(&["promote", "p", "slow"]);
    assert_eq!(d.current_generation("p"), 3);
    let m = d.mount("p", "r");
    assert_eq!(read(m.join("slow.txt")), "slow\n");
    assert!(
        !exists(m.join("fast.txt")),
        "generation 3 must be slow's upper on top of its base (1), not on top of 2"
    );
    let v = version_of(&m);
    if let Some(parent) = v.get("parent") {
        assert_eq!(parent, &serde_json::Value::from(1u64), "{v}");
    }
}

#[test]
fn rollback_points_new_mounts_at_the_old_generation() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    promote_with(&d, "p", "w2", |m| write(m.join("a.txt"), "v2\n"));
    promote_with(&d, "p", "w3", |m| write(m.join("a.txt"), "v3\n"));
    let on3 = d.mount("p", "on3");
    assert_eq!(read(on3.join("a.txt")), "v3\n");

    d.ok(&["rollback", "p", "1"]);
    assert_eq!(d.current_generation("p"), 1);
    assert_eq!(d.generations("p"), vec![1, 2, 3], "rollback deletes nothing");
    let m = d.mount("p", "after");
    assert_eq!(generation_of(&m), 1);
    assert_eq!(read(m.join("a.txt")), "alpha\n");
    // Already mounted sessions stay where they are.
    assert_eq!(generation_of(&on3), 3);
    assert_eq!(read(on3.join("a.txt")), "v3\n");

    d.ok(&["rollback", "p", "2"]);
    let m = d.mount("p", "after2");
    assert_eq!(read(m.join("a.txt")), "v2\n");

    // Promotion after a rollback: max+1, not current+1.
    promote_with(&d, "p", "w4", |m| write(m.join("a.txt"), "v4\n"));
    assert_eq!(d.current_generation("p"), 4);
    let m = d.mount("p", "after4");
    assert_eq!(read(m.join("a.txt")), "v4\n");

    d.fail(&["rollback", "p", "99"]);
    assert_eq!(d.current_generation("p"), 4);
}

#[test]
fn gc_deletes_only_unpinned_generations() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        write(s.join("gen1-only"), "1\n");
    });
    // A session pinned on generation 1 for the whole test (mounted), and one
    // pinned on generation 3 (unmounted: an existing session pins all the same).
    let pinned = d.mount("p", "pinned");
    for i in 2..=5u64 {
        let g = promote_with(&d, "p", &format!("w{i}"), |m| {
            if i == 2 {
                fs::remove_file(m.join("gen1-only")).unwrap();
            }
            write(m.join(format!("gen{i}")), format!("{i}\n"));
        });
        assert_eq!(g, i);
        // Discard the promoted writer sessions if they still exist (a promoted
        // session should not pin anything, but be explicit).
        let _ = d.run(&["session", "discard", &format!("w{i}")]);
        if i == 3 {
            let m = d.mount("p", "pinned3");
            write(m.join("pinned3-was-here"), "yes\n");
            d.unmount("pinned3");
        }
    }
    assert_eq!(d.generations("p"), vec![1, 2, 3, 4, 5]);
    let layers_before = count_tree(&d.layers_dir());

    d.ok(&["gc", "--keep", "1"]);
    let gens = d.generations("p");
    assert!(
        gens.contains(&1),
        "generation 1 is pinned by a mounted session: {gens:?}"
    );
    assert!(
        gens.contains(&3),
        "generation 3 is pinned by an unmounted session: {gens:?}"
    );
    assert!(gens.contains(&5), "the current generation is never collected: {gens:?}");
    assert_eq!(gens, vec![1, 3, 5], "generations 2 and 4 are unpinned and not kept");
    // The pinned views are intact.
    assert_eq!(read(pinned.join("gen1-only")), "1\n");
    assert_eq!(read(pinned.join("a.txt")), "alpha\n");
    assert_eq!(generation_of(&pinned), 1);
    let p3 = d.mount("p", "pinned3");
    assert_eq!(generation_of(&p3), 3);
    assert_eq!(read(p3.join("gen2")), "2\n");
    assert_eq!(read(p3.join("gen3")), "3\n");
    assert_eq!(read(p3.join("pinned3-was-here")), "yes\n");
    assert!(!exists(p3.join("gen4")));
    // New mounts get 5 with everything.
    let m = d.mount("p", "r5");
    for i in 2..=5 {
        assert_eq!(read(m.join(format!("gen{i}"))), format!("{i}\n"));
    }
    assert!(!exists(m.join("gen1-only")));
    d.ok(&["session", "discard", "r5", "--force"]);
    let layers_mid = count_tree(&d.layers_dir());
    assert!(
        layers_mid <= layers_before,
        "gc grew the layers dir: {layers_before} -> {layers_mid} entries"
    );

    // Unpin generations 1 and 3: after gc they are gone.
    d.unmount("pinned");
    d.ok(&["session", "discard", "pinned"]);
    d.ok(&["session", "discard", "pinned3", "--force"]);
    d.ok(&["gc", "--keep", "1"]);
    assert_eq!(d.generations("p"), vec![5]);
    // Generation 5 still needs the import layer and the uppers of 2-5
    // (unless compacted); nothing may grow, and 5 must still read completely.
    let layers_after = count_tree(&d.layers_dir());
    assert!(
        layers_after <= layers_mid,
        "layers dir grew after gc: {layers_mid} -> {layers_after} entries"
    );
    let m = d.mount("p", "r5b");
    for i in 2..=5 {
        assert_eq!(read(m.join(format!("gen{i}"))), format!("{i}\n"));
    }
    assert_eq!(read(m.join("a.txt")), "alpha\n");
    assert!(!exists(m.join("gen1-only")));
}

/// Paths (relative to the layers dir) of files named `name` anywhere in the store's layers.
fn files_named(d: &Daemon, name: &str) -> Vec<std::path::PathBuf> {
    snapshot(&d.layers_dir())
        .into_keys()
        .filter(|k| k.file_name().and_then(|n| n.to_str()) == Some(name))
        .collect()
}

#[test]
fn gc_removes_layers_that_only_deleted_generations_used() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    // Sessions discarded without promotion leave nothing in the layers.
    let before = count_tree(&d.layers_dir());
    for i in 0..3 {
        let s = format!("tmp{i}");
        let m = d.mount("p", &s);
        write(m.join("junk"), vec![1u8; 100_000]);
        d.unmount(&s);
        d.ok(&["session", "discard", &s]);
    }
    assert_eq!(count_tree(&d.layers_dir()), before);
    assert!(files_named(&d, "junk").is_empty());

    // Two siblings on generation 1: "fast" becomes 2, "slow" becomes 3 on top
    // of 1 (its base). Generation 2's layer is then used by no kept generation.
    let slow = d.mount("p", "slow");
    write(slow.join("slow-only"), vec![3u8; 100_000]);
    d.unmount("slow");
    promote_with(&d, "p", "fast", |m| write(m.join("fast-only"), vec![2u8; 100_000]));
    d.ok(&["promote", "p", "slow"]);
    assert_eq!(d.current_generation("p"), 3);
    let _ = d.run(&["session", "discard", "fast"]);
    let _ = d.run(&["session", "discard", "slow"]);
    assert_eq!(
        files_named(&d, "fast-only").len(),
        1,
        "generation 2's layer holds fast-only"
    );
    let grown = count_tree(&d.layers_dir());

    d.ok(&["gc", "--keep", "1"]);
    assert_eq!(d.generations("p"), vec![3]);
    assert!(
        files_named(&d, "fast-only").is_empty(),
        "gc must delete the layer only generation 2 used"
    );
    assert_eq!(files_named(&d, "slow-only").len(), 1);
    let after = count_tree(&d.layers_dir());
    assert!(after < grown, "layers dir did not shrink: {grown} -> {after} entries");
    let m = d.mount("p", "r");
    assert_eq!(read(m.join("a.txt")), "alpha\n");
    assert!(!exists(m.join("fast-only")));
    assert_eq!(fs::read(m.join("slow-only")).unwrap(), vec![3u8; 100_000]);
}

#[test]
fn gc_default_keeps_the_last_two_generations() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    for i in 2..=4 {
        promote_with(&d, "p", &format!("w{i}"), |m| write(m.join("f"), format!("{i}")));
        let _ = d.run(&["session", "discard", &format!("w{i}")]);
    }
    d.ok(&["gc"]);
    assert_eq!(d.generations("p"), vec![3, 4]);
    let _ = d.json(&["gc"]);
}

#[test]
fn generations_lists_metadata() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    promote_with(&d, "p", "warm", |m| write(m.join("x"), "x"));
    let v = d.json(&["generations", "p"]);
    let g2 = objects(&v)
        .into_iter()
        .find(|m| m.get("generation").and_then(|g| g.as_u64()) == Some(2))
        .unwrap_or_else(|| panic!("generation 2 not in {v}"));
    assert_eq!(g2.get("session_id").and_then(|s| s.as_str()), Some("warm"), "{v}");
    if let Some(c) = g2.get("created_at").and_then(|c| c.as_str()) {
        assert!(is_rfc3339(c), "{c}");
    }
    let plain = d.ok(&["generations", "p"]);
    assert!(plain.contains('1') && plain.contains('2'), "{plain}");
}
