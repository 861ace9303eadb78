//! rename(2) and renameat2(2) through a view: O(1) directory renames by
//! redirect, renames into, out of and within redirected directories, the
//! NOREPLACE / EXCHANGE / WHITEOUT flags, directories over directories, and
//! stable inode numbers. Every state is checked again after a remount and
//! after promotion.

mod common;

use common::*;
use rustix::fs::{CWD, RenameFlags, renameat_with};
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirEntryExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// renameat2(2) with `flags`.
fn rename2(from: &Path, to: &Path, flags: RenameFlags) -> Result<(), Errno> {
    renameat_with(CWD, from, CWD, to, flags)
}

/// rename(2) that must succeed; EXDEV in particular is never acceptable.
#[track_caller]
fn mv(m: &Path, from: &str, to: &str) {
    if let Err(e) = fs::rename(m.join(from), m.join(to)) {
        let hint = if errno_of(&e) == libc::EXDEV {
            " (EXDEV: a view must rename directories itself, never ask for a copy)"
        } else {
            ""
        };
        panic!("rename {from} -> {to}: {e}{hint}");
    }
}

fn ino(p: impl AsRef<Path>) -> u64 {
    let p = p.as_ref();
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
        .ino()
}

/// The whole view as relative path -> description (file content, `<dir>`,
/// `-> target`, `<chr rdev>`), without the virtual version file.
fn tree(m: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display())) {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            if rel == VERSION_FILE {
                continue;
            }
            let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
            let ft = md.file_type();
            let desc = if ft.is_dir() {
                walk(root, &p, out);
                "<dir>".to_string()
            } else if ft.is_file() {
                read(&p)
            } else if ft.is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_char_device() {
                format!("<chr {}>", md.rdev())
            } else {
                format!("<other {:o}>", md.mode())
            };
            out.insert(rel, desc);
        }
    }
    let mut out = BTreeMap::new();
    walk(m, m, &mut out);
    out
}

/// Inode number of every path of the view (version file left out).
fn inos(m: &Path) -> BTreeMap<String, u64> {
    tree(m).into_keys().map(|k| (k.clone(), ino(m.join(&k)))).collect()
}

/// `snapshot` (modes, owners, mtimes, xattrs) without the version file.
fn view_snapshot(m: &Path) -> BTreeMap<PathBuf, Node> {
    let mut s = snapshot(m);
    s.retain(|p, _| !p.starts_with(VERSION_FILE));
    s
}

/// What the view should contain: the same shape as [`tree`].
#[derive(Clone, Debug, Default, PartialEq)]
struct Model(BTreeMap<String, String>);

impl Model {
    fn file(&mut self, path: &str, content: &str) {
        let mut p = Path::new(path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            self.0.insert(d.to_string_lossy().to_string(), "<dir>".into());
            p = d.parent();
        }
        self.0.insert(path.into(), content.into());
    }

    fn dir(&mut self, path: &str) {
        self.0.insert(path.into(), "<dir>".into());
    }

    /// rename(2) of `from` to `to` (replacing `to`).
    fn mv(&mut self, from: &str, to: &str) {
        move_keys(&mut self.0, from, to);
    }

    /// renameat2(RENAME_EXCHANGE) of `a` and `b`.
    fn swap(&mut self, a: &str, b: &str) {
        swap_keys(&mut self.0, a, b);
    }
}

/// Moves the entry `from` and everything below it to `to` (replacing `to`).
fn move_keys<V: Clone>(map: &mut BTreeMap<String, V>, from: &str, to: &str) {
    let below = format!("{from}/");
    let moved: Vec<(String, V)> = map
        .iter()
        .filter(|(k, _)| *k == from || k.starts_with(&below))
        .map(|(k, v)| (format!("{to}{}", &k[from.len()..]), v.clone()))
        .collect();
    assert!(!moved.is_empty(), "model: {from} does not exist");
    let gone = |k: &String, p: &str| k == p || k.starts_with(&format!("{p}/"));
    map.retain(|k, _| !gone(k, from) && !gone(k, to));
    map.extend(moved);
}

fn swap_keys<V: Clone>(map: &mut BTreeMap<String, V>, a: &str, b: &str) {
    let tmp = "\u{1}swap";
    move_keys(map, a, tmp);
    move_keys(map, b, a);
    move_keys(map, tmp, b);
}

#[track_caller]
fn assert_view(m: &Path, model: &Model, when: &str) {
    let got = tree(m);
    if got != model.0 {
        let missing: Vec<_> = model.0.iter().filter(|(k, v)| got.get(*k) != Some(v)).collect();
        let extra: Vec<_> = got.iter().filter(|(k, v)| model.0.get(*k) != Some(v)).collect();
        panic!(
            "{when}: the view differs from the model\nexpected but not seen: {missing:#?}\nseen but not expected: {extra:#?}"
        );
    }
}

fn session_upper(d: &Daemon, session: &str) -> PathBuf {
    d.state_dir().join("sessions").join(session).join("upper")
}

/// (entries, regular files, bytes in regular files) below `dir` on disk.
fn disk_usage(dir: &Path) -> (usize, usize, u64) {
    let mut acc = (0, 0, 0);
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display())) {
        let e = e.unwrap();
        let md = fs::symlink_metadata(e.path()).unwrap();
        acc.0 += 1;
        if md.is_file() {
            acc.1 += 1;
            acc.2 += md.len();
        } else if md.is_dir() {
            let (a, b, c) = disk_usage(&e.path());
            acc = (acc.0 + a, acc.1 + b, acc.2 + c);
        }
    }
    acc
}

/// Checks `want` on `m` (session s1 of project p), again after s1 is
/// remounted, and on s2 mounted on s1's promotion; returns s2's mountpoint.
fn holds_after_remount_and_promotion(d: &Daemon, m: &Path, want: impl Fn(&Path)) -> PathBuf {
    want(m);
    let m = d.remount("p", "s1");
    want(&m);
    let m = promote_and_mount(d, "p", "s1", "s2");
    want(&m);
    m
}

/// Unmounts and promotes `session`, then mounts `next` on the new generation.
fn promote_and_mount(d: &Daemon, p: &str, session: &str, next: &str) -> PathBuf {
    d.unmount(session);
    d.ok(&["promote", p, session]);
    d.mount(p, next)
}

// ---------------------------------------------------------------------------
// O(1) directory renames
// ---------------------------------------------------------------------------

const MANY: usize = 10_000;

fn many_name(i: usize) -> String {
    format!("f{i:05}.txt")
}

#[test]
fn renaming_a_lower_dir_of_10000_files_copies_no_data() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fs::create_dir_all(s.join("big")).unwrap();
        for i in 0..MANY {
            fs::write(s.join("big").join(many_name(i)), format!("content of {i}\n")).unwrap();
        }
        write(s.join("big/sub/inner.txt"), "inner\n");
        fs::create_dir(s.join("elsewhere")).unwrap();
    });
    let m = d.mount("p", "s1");
    let dir_ino = ino(m.join("big"));
    let file_ino = ino(m.join("big").join(many_name(1234)));

    mv(&m, "big", "elsewhere/moved");

    assert!(!exists(m.join("big")), "the old name is still visible");
    let check = |m: &Path| {
        let names = ls(m.join("elsewhere/moved"));
        assert_eq!(names.len(), MANY + 1, "entries of the renamed dir");
        for i in (0..MANY).step_by(397).chain([MANY - 1]) {
            assert_eq!(
                read(m.join("elsewhere/moved").join(many_name(i))),
                format!("content of {i}\n")
            );
        }
        assert_eq!(read(m.join("elsewhere/moved/sub/inner.txt")), "inner\n");
        assert_eq!(
            ino(m.join("elsewhere/moved")),
            dir_ino,
            "the renamed dir's st_ino changed"
        );
        assert_eq!(ino(m.join("elsewhere/moved").join(many_name(1234))), file_ino);
    };
    check(&m);

    // A redirect and a whiteout, never a copy: no file data in the upper.
    let upper = session_upper(&d, "s1");
    let (entries, files, bytes) = disk_usage(&upper);
    assert_eq!(
        (files, bytes),
        (0, 0),
        "the rename copied file data into {}",
        upper.display()
    );
    assert!(
        entries <= 4,
        "the rename made {entries} entries in the upper (expected the moved dir, its new parent and a whiteout): {:?}",
        snapshot(&upper).keys().collect::<Vec<_>>()
    );

    let m = d.remount("p", "s1");
    assert!(!exists(m.join("big")));
    check(&m);
    let m = promote_and_mount(&d, "p", "s1", "s2");
    assert!(!exists(m.join("big")));
    check(&m);
}

// ---------------------------------------------------------------------------
// Redirected directories
// ---------------------------------------------------------------------------

fn deep_project(s: &Path) {
    write(s.join("l1/f1.txt"), "f1\n");
    write(s.join("l1/l2/f2.txt"), "f2\n");
    write(s.join("l1/l2/l3/f3.txt"), "f3\n");
    write(s.join("l1/l2/l3/l4/f4.txt"), "f4\n");
    write(s.join("l1/l2/l3/l4/l5/f5.txt"), "f5\n");
    write(s.join("l1/l2/l3/l4/l5/l6/f6.txt"), "f6\n");
    write(s.join("l1/l2/l3/m/mf.txt"), "mf\n");
    write(s.join("l1/l2/l3/n/nf.txt"), "nf\n");
    write(s.join("other/o.txt"), "o\n");
    write(s.join("other/sub/deep/od.txt"), "od\n");
    write(s.join("dst/keep.txt"), "keep\n");
}

/// Loads what [`deep_project`] made into a model.
fn model_of(m: &Path) -> Model {
    Model(tree(m))
}

/// Renames in the view and in the model, then compares them.
#[track_caller]
fn step(m: &Path, model: &mut Model, from: &str, to: &str) {
    mv(m, from, to);
    model.mv(from, to);
    assert_view(m, model, &format!("after rename {from} -> {to}"));
}

#[test]
fn renames_into_out_of_and_within_a_redirected_dir_survive_remount_and_promotion() {
    let d = Daemon::start();
    d.create_project_with("p", deep_project);
    let m = d.mount("p", "s1");
    let mut model = model_of(&m);
    assert!(model.0.contains_key("l1/l2/l3/l4/l5/l6/f6.txt"));
    let redirected_ino = ino(m.join("l1/l2/l3"));

    // A directory three levels down moves into another parent: now redirected.
    step(&m, &mut model, "l1/l2/l3", "dst/r");
    assert!(ls(m.join("l1/l2")).iter().all(|n| n != "l3"));
    // A file out of a lower child of the redirected dir, and one into it.
    step(&m, &mut model, "dst/r/l4/f4.txt", "other/f4-moved.txt");
    step(&m, &mut model, "other/o.txt", "dst/r/l4/l5/l6/o.txt");
    // Modify a file inside (copy-up under a redirected parent).
    write(m.join("dst/r/l4/l5/f5.txt"), "f5 changed\n");
    model.file("dst/r/l4/l5/f5.txt", "f5 changed\n");
    write(m.join("dst/r/l4/l5/l6/new.txt"), "new\n");
    model.file("dst/r/l4/l5/l6/new.txt", "new\n");
    // Nested dirs inside it, a lower-only child and one with an upper copy.
    step(&m, &mut model, "dst/r/n", "dst/r/n2");
    step(&m, &mut model, "dst/r/l4/l5", "dst/r/m/l5-renamed");
    step(&m, &mut model, "dst/r/m", "dst/r/m2");
    // A lower dir into the redirected dir, at depth.
    step(&m, &mut model, "other/sub", "dst/r/l4/sub-in");
    step(&m, &mut model, "dst/r/l4/sub-in/deep", "dst/r/m2/l5-renamed/l6/deep-in");
    // The redirected dir again: to the root, back to its original name, then
    // into a brand-new parent.
    step(&m, &mut model, "dst/r", "r2");
    step(&m, &mut model, "r2", "l1/l2/l3");
    assert_eq!(ino(m.join("l1/l2/l3")), redirected_ino);
    fs::create_dir_all(m.join("other/np/deeper")).unwrap();
    model.dir("other/np");
    model.dir("other/np/deeper");
    step(&m, &mut model, "l1/l2/l3", "other/np/deeper/r3");
    // A child of the redirected dir back to where its lower content came from.
    step(&m, &mut model, "other/np/deeper/r3/l4/sub-in", "other/sub");
    assert_eq!(ino(m.join("other/np/deeper/r3")), redirected_ino);

    let snap = view_snapshot(&m);
    let inodes = inos(&m);
    let m = d.remount("p", "s1");
    assert_view(&m, &model, "after remount");
    assert_eq!(view_snapshot(&m), snap, "metadata changed across remount");
    assert_eq!(inos(&m), inodes, "inode numbers changed across remount");

    let m = promote_and_mount(&d, "p", "s1", "s2");
    assert_view(&m, &model, "in a session on the promoted generation");
    assert_eq!(view_snapshot(&m), snap, "metadata changed by promotion");
    assert_eq!(inos(&m), inodes, "inode numbers changed by promotion");

    // Redirects now live in a lower layer; renaming on top of them chains.
    step(&m, &mut model, "other/np/deeper/r3", "l1/l2/l3");
    step(&m, &mut model, "l1/l2/l3/m2", "dst/m3");
    step(&m, &mut model, "dst/m3/l5-renamed/l6/deep-in", "other/sub/deep");
    let inodes = inos(&m);
    let m = promote_and_mount(&d, "p", "s2", "s3");
    assert_view(&m, &model, "after a second promotion");
    assert_eq!(inos(&m), inodes, "inode numbers changed by the second promotion");
}

#[test]
fn a_redirected_dir_can_be_deleted_and_its_old_name_reused() {
    let d = Daemon::start();
    d.create_project_with("p", deep_project);
    let m = d.mount("p", "s1");
    mv(&m, "l1/l2", "moved");
    fs::create_dir(m.join("l1/l2")).unwrap();
    assert!(
        ls(m.join("l1/l2")).is_empty(),
        "the old content shows through at the old name"
    );
    write(m.join("l1/l2/fresh.txt"), "fresh\n");
    fs::remove_dir_all(m.join("moved/l3/l4")).unwrap();
    assert_eq!(ls(m.join("moved/l3")), vec!["f3.txt", "m", "n"]);
    mv(&m, "moved/l3", "l3-out");
    fs::remove_dir_all(m.join("moved")).unwrap();
    let want = |m: &Path| {
        assert!(!exists(m.join("moved")));
        assert_eq!(ls(m.join("l1/l2")), vec!["fresh.txt"]);
        assert_eq!(ls(m.join("l3-out")), vec!["f3.txt", "m", "n"]);
        assert_eq!(read(m.join("l3-out/m/mf.txt")), "mf\n");
    };
    holds_after_remount_and_promotion(&d, &m, want);
}

// ---------------------------------------------------------------------------
// renameat2 flags
// ---------------------------------------------------------------------------

#[test]
fn rename_noreplace_fails_with_eexist_on_an_existing_target_and_works_otherwise() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        fs::create_dir(s.join("empty2")).unwrap();
    });
    let m = d.mount("p", "s1");
    let nr = RenameFlags::NOREPLACE;
    write(m.join("up.txt"), "up\n");
    fs::create_dir(m.join("updir")).unwrap();
    for (from, to) in [
        ("a.txt", "b.txt"),       // lower over lower
        ("up.txt", "a.txt"),      // upper over lower
        ("a.txt", "up.txt"),      // lower over upper
        ("dir1", "empty"),        // lower dir over an empty lower dir
        ("updir", "empty"),       // upper dir over an empty lower dir
        ("empty2", "updir"),      // lower dir over an empty upper dir
        ("link", "dir1/x.txt"),   // symlink over a file in a subdir
        ("a.txt", "dir1/nested"), // file over a dir
    ] {
        assert_eq!(
            rename2(&m.join(from), &m.join(to), nr),
            Err(Errno::EXIST),
            "{from} -> {to}"
        );
    }
    assert_eq!(read(m.join("a.txt")), "alpha\n");
    assert_eq!(read(m.join("b.txt")), "bravo\n");
    assert_eq!(read(m.join("dir1/x.txt")), "x\n");

    // A deleted lower name is free again.
    fs::remove_file(m.join("b.txt")).unwrap();
    rename2(&m.join("a.txt"), &m.join("b.txt"), nr).unwrap();
    fs::remove_dir(m.join("empty")).unwrap();
    rename2(&m.join("dir1"), &m.join("empty"), nr).unwrap();
    rename2(&m.join("up.txt"), &m.join("empty/nested/up.txt"), nr).unwrap();
    rename2(&m.join("updir"), &m.join("new-dir"), nr).unwrap();
    let want = |m: &Path| {
        assert!(!exists(m.join("a.txt")) && !exists(m.join("dir1")) && !exists(m.join("updir")));
        assert_eq!(read(m.join("b.txt")), "alpha\n");
        assert_eq!(ls(m.join("empty")), vec!["nested", "x.txt"]);
        assert_eq!(ls(m.join("empty/nested")), vec!["deep.txt", "up.txt"]);
        assert_eq!(read(m.join("empty/nested/up.txt")), "up\n");
        assert!(ls(m.join("new-dir")).is_empty());
    };
    holds_after_remount_and_promotion(&d, &m, want);
}

#[test]
fn rename_exchange_swaps_files_and_dirs_keeping_content_and_inode_numbers() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        write(s.join("da/inner/a1.txt"), "a1\n");
        write(s.join("da/a2.txt"), "a2\n");
        write(s.join("x/y/db/b1.txt"), "b1\n");
        write(s.join("f.txt"), "f\n");
        write(s.join("g/dir-content.txt"), "g\n");
    });
    let m = d.mount("p", "s1");
    write(m.join("dir1/up.txt"), "upper file\n");
    let ex = RenameFlags::EXCHANGE;
    let mut model = model_of(&m);
    let mut expect_inos = inos(&m);
    for (a, b) in [
        ("a.txt", "dir1/up.txt"), // lower file <-> upper file
        ("da", "x/y/db"),         // lower dir <-> lower dir, different parents and depths
        ("f.txt", "g"),           // file <-> dir
        ("dir1", "empty"),        // a merged dir (it has an upper copy now) <-> a lower dir
    ] {
        rename2(&m.join(a), &m.join(b), ex).unwrap_or_else(|e| panic!("exchange {a} <-> {b}: {e}"));
        model.swap(a, b);
        swap_keys(&mut expect_inos, a, b);
        assert_view(&m, &model, &format!("after exchanging {a} and {b}"));
        assert_eq!(inos(&m), expect_inos, "inode numbers after exchanging {a} and {b}");
    }
    let swapped = |m: &Path| assert_eq!(inos(m), expect_inos);
    let snap = view_snapshot(&m);
    let m = d.remount("p", "s1");
    assert_view(&m, &model, "after remount");
    assert_eq!(view_snapshot(&m), snap);
    swapped(&m);
    let m = promote_and_mount(&d, "p", "s1", "s2");
    assert_view(&m, &model, "after promotion");
    assert_eq!(view_snapshot(&m), snap);
    swapped(&m);

    // Exchanging with a missing name, or with invalid flag combinations.
    assert_eq!(rename2(&m.join("b.txt"), &m.join("nope"), ex), Err(Errno::NOENT));
    for bad in [ex | RenameFlags::NOREPLACE, ex | RenameFlags::WHITEOUT] {
        assert_eq!(
            rename2(&m.join("b.txt"), &m.join("f.txt"), bad),
            Err(Errno::INVAL),
            "{bad:?}"
        );
    }
    assert_view(&m, &model, "after refused exchanges");
}

#[test]
fn rename_whiteout_leaves_a_plain_char_device_at_the_source() {
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    let wh = RenameFlags::WHITEOUT;
    let a_ino = ino(m.join("a.txt"));
    // A lower file, an upper file, and NOREPLACE|WHITEOUT.
    rename2(&m.join("a.txt"), &m.join("a-moved.txt"), wh).unwrap();
    write(m.join("up.txt"), "up\n");
    rename2(&m.join("up.txt"), &m.join("dir1/up-moved.txt"), wh).unwrap();
    assert_eq!(
        rename2(&m.join("b.txt"), &m.join("dir1/x.txt"), wh | RenameFlags::NOREPLACE),
        Err(Errno::EXIST)
    );
    rename2(&m.join("b.txt"), &m.join("b-moved.txt"), wh | RenameFlags::NOREPLACE).unwrap();
    // A whiteout over an existing lower file replaces it.
    rename2(&m.join("dir1/x.txt"), &m.join("dir1/nested/deep.txt"), wh).unwrap();

    let want = |m: &Path| {
        for p in ["a.txt", "up.txt", "b.txt", "dir1/x.txt"] {
            let md = fs::symlink_metadata(m.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(md.file_type().is_char_device(), "{p} is not a char device: {md:?}");
            assert_eq!(md.rdev(), 0, "{p}");
        }
        assert!(
            ls(m).contains(&"a.txt".to_string()),
            "readdir hides the client's whiteout"
        );
        assert_eq!(read(m.join("a-moved.txt")), "alpha\n");
        assert_eq!(ino(m.join("a-moved.txt")), a_ino);
        assert_eq!(read(m.join("b-moved.txt")), "bravo\n");
        assert_eq!(read(m.join("dir1/up-moved.txt")), "up\n");
        assert_eq!(read(m.join("dir1/nested/deep.txt")), "x\n");
    };
    let m = holds_after_remount_and_promotion(&d, &m, want);
    // It is an ordinary entry: it can be removed, and the name reused.
    fs::remove_file(m.join("a.txt")).unwrap();
    assert!(!exists(m.join("a.txt")));
    write(m.join("a.txt"), "again\n");
    assert_eq!(read(m.join("a.txt")), "again\n");

    assert_eq!(
        rename2(&m.join("a.txt"), &m.join("c.txt"), wh | RenameFlags::EXCHANGE),
        Err(Errno::INVAL)
    );
    assert_eq!(read(m.join("a.txt")), "again\n");
}

// ---------------------------------------------------------------------------
// Directories over directories
// ---------------------------------------------------------------------------

#[test]
fn renaming_a_dir_over_an_empty_dir_replaces_it() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        write(s.join("src1/s1.txt"), "s1\n");
        write(s.join("src2/deep/s2.txt"), "s2\n");
        write(s.join("src3/s3.txt"), "s3\n");
        fs::create_dir_all(s.join("t/empty-lower")).unwrap();
        fs::create_dir_all(s.join("empty-lower2")).unwrap();
        write(s.join("emptied/gone1.txt"), "gone\n");
        write(s.join("emptied/sub/gone2.txt"), "gone\n");
        write(s.join("emptied2/gone3.txt"), "gone\n");
    });
    let m = d.mount("p", "s1");
    let src1 = ino(m.join("src1"));
    // Lower over lower (different parents).
    mv(&m, "src1", "t/empty-lower");
    // Upper over lower.
    fs::create_dir(m.join("newdir")).unwrap();
    write(m.join("newdir/n.txt"), "n\n");
    mv(&m, "newdir", "empty-lower2");
    // Lower over upper.
    fs::create_dir(m.join("updir")).unwrap();
    mv(&m, "src2", "updir");
    // Over merged dirs emptied by deleting their lower entries: nothing of
    // theirs may come back.
    fs::remove_dir_all(m.join("emptied/sub")).unwrap();
    fs::remove_file(m.join("emptied/gone1.txt")).unwrap();
    fs::remove_file(m.join("emptied2/gone3.txt")).unwrap();
    mv(&m, "src3", "emptied");
    fs::create_dir(m.join("newdir2")).unwrap();
    write(m.join("newdir2/n2.txt"), "n2\n");
    mv(&m, "newdir2", "emptied2");

    let want = |m: &Path| {
        for gone in ["src1", "src2", "src3", "newdir", "newdir2"] {
            assert!(!exists(m.join(gone)), "{gone} still exists");
        }
        assert_eq!(ls(m.join("t/empty-lower")), vec!["s1.txt"]);
        assert_eq!(ino(m.join("t/empty-lower")), src1);
        assert_eq!(ls(m.join("empty-lower2")), vec!["n.txt"]);
        assert_eq!(read(m.join("updir/deep/s2.txt")), "s2\n");
        assert_eq!(ls(m.join("updir")), vec!["deep"]);
        assert_eq!(ls(m.join("emptied")), vec!["s3.txt"]);
        assert_eq!(ls(m.join("emptied2")), vec!["n2.txt"]);
    };
    holds_after_remount_and_promotion(&d, &m, want);
}

#[test]
fn renaming_a_dir_over_a_dir_with_only_lower_entries_fails_with_enotempty() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        write(s.join("full/a.txt"), "a\n");
        write(s.join("full2/b.txt"), "b\n");
        write(s.join("full2/c.txt"), "c\n");
    });
    let m = d.mount("p", "s1");
    // full2 gets an upper copy (metadata) and one of its two lower entries is deleted.
    fs::remove_file(m.join("full2/b.txt")).unwrap();
    fs::create_dir(m.join("updir")).unwrap();
    let before = tree(&m);
    for (from, to) in [
        ("dir1", "full"),
        ("updir", "full"),
        ("empty", "full2"),
        ("dir1", "full2"),
    ] {
        let r = fs::rename(m.join(from), m.join(to));
        assert_errno(r, &[libc::ENOTEMPTY], &format!("rename {from} over non-empty {to}"));
    }
    assert_eq!(tree(&m), before, "a refused rename changed the view");
    let m = d.remount("p", "s1");
    assert_eq!(tree(&m), before);
}

#[test]
fn renaming_a_dir_into_its_own_subdir_fails_with_einval() {
    let d = Daemon::start();
    d.create_project_with("p", deep_project);
    let m = d.mount("p", "s1");
    fs::create_dir_all(m.join("up/a/b")).unwrap();
    mv(&m, "other", "redirected");
    let before = tree(&m);
    for (from, to) in [
        ("l1", "l1/l2/l3/inside"),          // lower dir
        ("l1/l2", "l1/l2/l3/l4/inside"),    // lower dir, not at the root
        ("up", "up/a/b/inside"),            // upper dir
        ("redirected", "redirected/sub/x"), // redirected dir
        ("l1", "l1/inside"),                // into itself directly
    ] {
        let r = fs::rename(m.join(from), m.join(to));
        assert_errno(r, &[libc::EINVAL], &format!("rename {from} -> {to}"));
    }
    assert_eq!(tree(&m), before, "a refused rename changed the view");
}

// ---------------------------------------------------------------------------
// Inode numbers
// ---------------------------------------------------------------------------

#[test]
fn renamed_files_and_dirs_keep_their_inode_numbers() {
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        fill_sample(s);
        write(s.join("tree/a/b/leaf.txt"), "leaf\n");
    });
    let m = d.mount("p", "s1");
    write(m.join("new.txt"), "new\n");
    fs::create_dir(m.join("newdir")).unwrap();
    write(m.join("b.txt"), "changed\n"); // copied up in place
    chmod(&m.join("dir1"), 0o750).unwrap(); // a merged dir (metadata copy-up)
    let moves = [
        ("a.txt", "a2.txt"),             // lower file
        ("b.txt", "dir1/nested/b2.txt"), // copied-up file
        ("new.txt", "tree/a/new2.txt"),  // upper file
        ("link", "empty/link2"),         // lower symlink
        ("dir1", "dir1-renamed"),        // merged dir
        ("tree/a", "newdir/a2"),         // lower dir with nested content
        ("newdir", "tree/newdir2"),      // upper dir holding a redirected one
        ("tree/newdir2/a2/b", "b-top"),  // child of a redirected dir
        ("tree/newdir2/a2", "a3"),       // the redirected dir again
    ];
    let mut expect = inos(&m);
    for (from, to) in moves {
        mv(&m, from, to);
        move_keys(&mut expect, from, to);
        assert_eq!(inos(&m), expect, "after rename {from} -> {to}");
    }
    // readdir's d_ino agrees with stat.
    for dir in ["", "a3", "b-top", "dir1-renamed/nested", "tree/newdir2"] {
        for e in fs::read_dir(m.join(dir)).unwrap() {
            let e = e.unwrap();
            assert_eq!(e.ino(), ino(e.path()), "d_ino of {}", e.path().display());
        }
    }
    let m = d.remount("p", "s1");
    assert_eq!(inos(&m), expect, "after remount");
    let m = promote_and_mount(&d, "p", "s1", "s2");
    assert_eq!(inos(&m), expect, "after promotion");
}

#[test]
fn dirs_held_open_keep_working_after_they_or_their_ancestors_are_renamed() {
    use rustix::fs::{Mode, OFlags, mkdirat, openat};
    let d = Daemon::start();
    d.create_project_with("p", deep_project);
    let m = d.mount("p", "s1");
    let open_dir = |p: &str| fs::File::open(m.join(p)).unwrap_or_else(|e| panic!("open {p}: {e}"));
    let (l3, l5, other) = (open_dir("l1/l2/l3"), open_dir("l1/l2/l3/l4/l5"), open_dir("other"));
    mv(&m, "l1/l2", "moved"); // an ancestor of both
    mv(&m, "moved/l3", "other/l3-here"); // one of them, into the other
    rename2(&m.join("other"), &m.join("dst"), RenameFlags::EXCHANGE).unwrap();
    let create = |dir: &fs::File, name: &str, content: &str| {
        let f = openat(
            dir,
            name,
            OFlags::CREATE | OFlags::WRONLY | OFlags::EXCL,
            Mode::from(0o644),
        )
        .unwrap_or_else(|e| panic!("create {name} through a held dir: {e}"));
        rustix::io::write(&f, content.as_bytes()).unwrap();
    };
    create(&l3, "via-l3.txt", "l3");
    create(&l5, "via-l5.txt", "l5");
    create(&other, "via-other.txt", "other");
    mkdirat(&l5, "sub", Mode::from(0o755)).unwrap();
    let f4 = openat(&l3, "l4/f4.txt", OFlags::RDONLY, Mode::empty()).unwrap();
    let mut buf = [0u8; 16];
    let n = rustix::io::read(&f4, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"f4\n");
    drop((l3, l5, other, f4));

    let want = |m: &Path| {
        assert!(!exists(m.join("l1/l2")) && !exists(m.join("moved/l3")) && !exists(m.join("other/l3-here")));
        assert_eq!(read(m.join("dst/l3-here/via-l3.txt")), "l3");
        assert_eq!(read(m.join("dst/l3-here/l4/l5/via-l5.txt")), "l5");
        assert!(m.join("dst/l3-here/l4/l5/sub").is_dir());
        assert_eq!(read(m.join("dst/l3-here/f3.txt")), "f3\n");
        assert_eq!(read(m.join("dst/via-other.txt")), "other");
        assert_eq!(ls(m.join("dst")), vec!["l3-here", "o.txt", "sub", "via-other.txt"]);
        assert_eq!(ls(m.join("other")), vec!["keep.txt"]);
    };
    want(&m);
    let m = d.remount("p", "s1");
    want(&m);
}
