//! Store tests on temporary directories (no mounting).

use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::error::ErrorCode;
use crate::fault::inject_on_this_thread;

struct Fixture {
    _tmp: tempfile::TempDir,
    state: PathBuf,
    scratch: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let scratch = tmp.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    Fixture {
        state,
        scratch,
        _tmp: tmp,
    }
}

fn write(path: &Path, data: &str) {
    fs::write(path, data).unwrap();
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let fd = crate::sys::open_at(
        crate::sys::open_dir_abs(path.parent().unwrap()).unwrap().as_fd(),
        path.file_name().unwrap(),
        crate::sys::OFlags::PATH,
        0,
    )
    .unwrap();
    crate::sys::xattr::set(
        fd.as_fd(),
        OsStr::new(name),
        value,
        crate::sys::xattr::XattrFlags::empty(),
    )
    .unwrap();
}

fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let fd = crate::sys::open_at(
        crate::sys::open_dir_abs(path.parent().unwrap()).unwrap().as_fd(),
        path.file_name().unwrap(),
        crate::sys::OFlags::PATH,
        0,
    )
    .unwrap();
    let mut out: Vec<_> = crate::sys::xattr::list(fd.as_fd())
        .unwrap()
        .into_iter()
        .map(|n| {
            let v = crate::sys::xattr::get(fd.as_fd(), &n).unwrap().unwrap();
            (n.to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort();
    out
}

/// Every path under `dir` (relative), for before/after comparisons.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        out.push(p.strip_prefix(dir).unwrap().display().to_string());
        if p.is_dir() && !p.is_symlink() {
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

fn empty_project(store: &Store, name: &str) {
    store.create_project(name, ImportSource::Empty).unwrap();
}

/// Creates session `s` on the current generation, writes `file` into its upper, promotes it.
fn promote_with_file(store: &Store, p: &str, s: &str, file: &str) -> PromoteReport {
    let o = store.open_session(p, s).unwrap();
    write(&o.upper.join(file), s);
    store.promote(p, s, None).unwrap()
}

#[test]
fn open_creates_layout_and_refuses_foreign_nonempty_dir() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    for d in ["projects", "layers", "sessions", "work", "store.json"] {
        assert!(f.state.join(d).exists(), "{d}");
    }
    drop(store);
    let foreign = f.scratch.join("foreign");
    fs::create_dir(&foreign).unwrap();
    write(&foreign.join("data"), "x");
    let err = Store::open(&foreign).err().unwrap();
    assert!(err.message.contains("no store.json"), "{err}");
}

#[test]
fn empty_project_starts_at_generation_one() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    let r = store.create_project("web", ImportSource::Empty).unwrap();
    assert_eq!(r.generation, 1);
    assert_eq!(store.current_generation("web").unwrap(), 1);
    let g = store.generation("web", 1).unwrap();
    assert_eq!(g.parent, None);
    assert_eq!(g.session_id, None);
    assert_eq!(g.layers, vec![r.layer.clone()]);
    assert!(f.state.join("layers").join(&r.layer).is_dir());
    let err = store.create_project("web", ImportSource::Empty).unwrap_err();
    assert_eq!(err.code, ErrorCode::AlreadyExists);
}

#[test]
fn invalid_names_are_rejected() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    for bad in ["", "../x", "a/b", ".hidden", "a b"] {
        assert_eq!(
            store.create_project(bad, ImportSource::Empty).unwrap_err().code,
            ErrorCode::InvalidName,
            "{bad}"
        );
    }
    empty_project(&store, "web");
    assert_eq!(
        store.open_session("web", "../s").unwrap_err().code,
        ErrorCode::InvalidName
    );
    assert_eq!(
        store.promote("web", "s/1", None).unwrap_err().code,
        ErrorCode::InvalidName
    );
}

#[test]
fn import_preserves_metadata_hard_links_and_strips_private_xattrs() {
    let f = fixture();
    let src = f.scratch.join("golden");
    fs::create_dir(&src).unwrap();
    let sub = src.join("dir");
    fs::create_dir(&sub).unwrap();
    let bin = sub.join("ping");
    write(&bin, "binary");
    std::os::unix::fs::chown(&bin, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o4755)).unwrap();
    // vfs_cap_data v2, effective, CAP_NET_RAW permitted.
    let cap: [u8; 20] = [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    set_xattr(&bin, "security.capability", &cap);
    set_xattr(&bin, "user.note", b"hello");
    set_xattr(&bin, "trusted.overlay.opaque", b"y");
    set_xattr(&bin, "trusted.goldenfs.whiteout", b"1");
    set_xattr(&sub, "trusted.goldenfs.opaque", b"1");
    fs::hard_link(&bin, src.join("ping-link")).unwrap();
    std::os::unix::fs::symlink("dir/ping", src.join("link")).unwrap();
    std::os::unix::fs::lchown(src.join("link"), Some(42), Some(43)).unwrap();
    set_xattr(&src.join("link"), "trusted.overlay.origin", b"o");
    let root_fd = crate::sys::open_dir_abs(&src).unwrap();
    crate::sys::mknod_at(root_fd.as_fd(), OsStr::new("wh"), libc::S_IFCHR | 0o600, 0).unwrap();
    fs::hard_link(src.join("wh"), sub.join("wh2")).unwrap();
    crate::sys::mknod_at(root_fd.as_fd(), OsStr::new("fifo"), libc::S_IFIFO | 0o640, 0).unwrap();
    crate::sys::mknod_at(root_fd.as_fd(), OsStr::new("sock"), libc::S_IFSOCK | 0o644, 0).unwrap();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o750)).unwrap();
    let t = Some(Some((1_000_000_000i64, 123i64)));
    crate::sys::utimes_at(root_fd.as_fd(), OsStr::new("dir/ping"), t, t).unwrap();
    crate::sys::utimes_at(root_fd.as_fd(), OsStr::new("dir"), t, t).unwrap();

    let store = Store::open(&f.state).unwrap();
    let r = store.create_project("web", ImportSource::Copy(src.clone())).unwrap();
    assert_eq!((r.files, r.hard_links, r.symlinks, r.special_files), (1, 2, 1, 3));
    assert_eq!(r.stripped_xattrs, 2);
    let layer = f.state.join("layers").join(&r.layer);
    for rel in ["dir", "dir/ping", "ping-link", "link", "wh", "dir/wh2", "fifo", "sock"] {
        let (a, b) = (
            fs::symlink_metadata(src.join(rel)).unwrap(),
            fs::symlink_metadata(layer.join(rel)).unwrap(),
        );
        assert_eq!(a.mode(), b.mode(), "{rel} mode");
        assert_eq!((a.uid(), a.gid()), (b.uid(), b.gid()), "{rel} owner");
        assert_eq!(a.rdev(), b.rdev(), "{rel} rdev");
        assert_eq!(a.nlink(), b.nlink(), "{rel} nlink");
        if !a.is_symlink() {
            assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()), "{rel} mtime");
        }
    }
    let ping = layer.join("dir/ping");
    assert_eq!(fs::read_to_string(&ping).unwrap(), "binary");
    assert_eq!(fs::metadata(&ping).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(
        fs::metadata(&ping).unwrap().ino(),
        fs::metadata(layer.join("ping-link")).unwrap().ino()
    );
    assert_eq!(
        fs::metadata(layer.join("wh")).unwrap().ino(),
        fs::metadata(layer.join("dir/wh2")).unwrap().ino()
    );
    assert_eq!(fs::read_link(layer.join("link")).unwrap(), Path::new("dir/ping"));
    let names: Vec<_> = xattrs(&ping).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["security.capability", "trusted.overlay.opaque", "user.note"]);
    assert_eq!(xattrs(&ping)[0].1, cap);
    assert!(xattrs(&layer.join("dir")).is_empty());
    assert_eq!(
        xattrs(&layer.join("link")),
        vec![("trusted.overlay.origin".into(), b"o".to_vec())]
    );
    // The source is untouched.
    assert_eq!(xattrs(&sub).len(), 1);
}

#[test]
fn move_import_renames_the_directory_and_strips_private_xattrs() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    let src = f.scratch.join("golden");
    fs::create_dir(&src).unwrap();
    write(&src.join("a"), "a");
    set_xattr(&src.join("a"), "trusted.goldenfs.x", b"1");
    let ino = fs::metadata(src.join("a")).unwrap().ino();
    let r = store.create_project("web", ImportSource::Move(src.clone())).unwrap();
    assert!(r.moved);
    assert_eq!(r.stripped_xattrs, 1);
    assert!(!src.exists());
    let a = f.state.join("layers").join(&r.layer).join("a");
    assert_eq!(fs::metadata(&a).unwrap().ino(), ino);
    assert!(xattrs(&a).is_empty());
}

#[test]
fn import_refuses_a_source_overlapping_the_store() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    for dir in [
        f.state.clone(),
        f.state.join("layers"),
        f.scratch.parent().unwrap().to_path_buf(),
    ] {
        let err = store.create_project("web", ImportSource::Copy(dir)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument, "{err}");
    }
    let err = store
        .create_project("web", ImportSource::Copy("rel".into()))
        .unwrap_err();
    assert!(err.message.contains("absolute"), "{err}");
}

#[test]
fn promotion_publishes_next_generation_with_parent_and_layers() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    let g1 = store.generation("web", 1).unwrap();
    let o = store.open_session("web", "s1").unwrap();
    assert!(o.created);
    assert_eq!(o.record.base_generation, 1);
    assert_eq!(o.version.generation, 1);
    write(&o.upper.join("new"), "data");
    let r = store.promote("web", "s1", Some(1)).unwrap();
    assert_eq!((r.generation, r.parent, r.previous), (2, 1, 1));
    let g2 = store.generation("web", 2).unwrap();
    assert_eq!(g2.session_id.as_deref(), Some("s1"));
    assert_eq!(g2.parent, Some(1));
    assert_eq!(g2.layers[1..], g1.layers[..]);
    assert_eq!(g2.layers[0], r.layer);
    assert_eq!(
        fs::read_to_string(f.state.join("layers").join(&r.layer).join("new")).unwrap(),
        "data"
    );
    assert_eq!(store.current_generation("web").unwrap(), 2);
    assert_eq!(fs::read_to_string(f.state.join("projects/web/current")).unwrap(), "2\n");
    assert_eq!(store.session("s1").unwrap_err().code, ErrorCode::NotFound);
    assert!(!f.state.join("sessions/s1").exists());
    // A new session now starts on generation 2.
    assert_eq!(store.open_session("web", "s2").unwrap().record.base_generation, 2);
}

#[test]
fn if_generation_conflict_leaves_store_unchanged() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    let o = store.open_session("web", "s1").unwrap();
    write(&o.upper.join("x"), "x");
    let before = tree(&f.state);
    let err = store.promote("web", "s1", Some(7)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(err.message.contains("generation 1, not 7"), "{err}");
    assert_eq!(tree(&f.state), before);
    assert_eq!(store.current_generation("web").unwrap(), 1);
}

#[test]
fn promotion_checks_session_ownership_and_existence() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    empty_project(&store, "api");
    store.open_session("web", "s1").unwrap();
    assert_eq!(
        store.promote("api", "s1", None).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        store.promote("web", "nope", None).unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(store.promote("nope", "s1", None).unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(store.open_session("api", "s1").unwrap_err().code, ErrorCode::Conflict);
}

#[test]
fn reattaching_a_session_keeps_its_base_and_upper_and_empties_work() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    let o = store.open_session("web", "old").unwrap();
    write(&o.upper.join("mine"), "1");
    write(&o.work.join("junk"), "1");
    promote_with_file(&store, "web", "s", "f");
    let again = store.open_session("web", "old").unwrap();
    assert!(!again.created);
    assert_eq!(again.record.base_generation, 1);
    assert!(again.upper.join("mine").exists());
    assert!(!again.work.join("junk").exists());
}

#[test]
fn rollback_points_current_at_an_older_generation() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    promote_with_file(&store, "web", "s1", "a");
    let r = store.rollback("web", 1).unwrap();
    assert_eq!((r.generation, r.previous), (1, 2));
    assert_eq!(store.current_generation("web").unwrap(), 1);
    assert_eq!(store.rollback("web", 9).unwrap_err().code, ErrorCode::NotFound);
    // The next promotion is max+1, not current+1.
    let r = promote_with_file(&store, "web", "s2", "b");
    assert_eq!((r.generation, r.parent), (3, 1));
}

#[test]
fn generation_numbers_are_never_reused_after_gc_deletes_the_highest() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    promote_with_file(&store, "web", "s2", "b"); // 2
    promote_with_file(&store, "web", "s3", "c"); // 3
    store.rollback("web", 1).unwrap();
    let gens = deleted_generations(&store.gc(0).unwrap());
    assert_eq!(gens, [2, 3]);
    let r = promote_with_file(&store, "web", "s4", "d");
    assert_eq!((r.generation, r.parent), (4, 1));
    // Also after a restart (the mark is on disk).
    drop(store);
    let store = Store::open(&f.state).unwrap();
    store.rollback("web", 1).unwrap();
    assert_eq!(deleted_generations(&store.gc(0).unwrap()), [4]);
    drop(store);
    let store = Store::open(&f.state).unwrap();
    assert_eq!(promote_with_file(&store, "web", "s5", "e").generation, 5);
}

#[test]
fn gc_deletes_only_unpinned_old_generations_and_unreferenced_layers() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    let l1 = store.generation("web", 1).unwrap().layers[0].clone();
    let g2 = promote_with_file(&store, "web", "s2", "b"); // [l2, l1]
    store.rollback("web", 1).unwrap();
    promote_with_file(&store, "web", "s3", "c"); // gen 3 = [l3, l1]
    store.open_session("web", "pin4").unwrap(); // pins 3
    promote_with_file(&store, "web", "s4", "d"); // gen 4 = [l4, l3, l1]
    promote_with_file(&store, "web", "s5", "e"); // gen 5
    store.rollback("web", 4).unwrap();
    // current 4, pinned 3, newest-1 {5} → deletes 1 and 2, and layer l2 only.
    let r = store.gc(1).unwrap();
    let gens = deleted_generations(&r);
    assert_eq!(gens, [1, 2]);
    assert_eq!(r.deleted_layers, vec![g2.layer.clone()]);
    assert!(r.bytes_freed > 0);
    assert!(f.state.join("layers").join(&l1).is_dir());
    let left: Vec<_> = store.generations("web").unwrap().iter().map(|g| g.generation).collect();
    assert_eq!(left, [3, 4, 5]);
    // Nothing more to do.
    assert_eq!(store.gc(1).unwrap(), GcReport::default());
}

#[test]
fn discard_drops_the_pin_and_the_upper() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    store.open_session("web", "pin").unwrap();
    promote_with_file(&store, "web", "s", "a");
    promote_with_file(&store, "web", "t", "b");
    // Generation 1 is pinned; 2 is neither pinned nor current.
    let gens = deleted_generations(&store.gc(0).unwrap());
    assert_eq!(gens, [2]);
    store.discard_session("pin").unwrap();
    assert!(!f.state.join("sessions/pin").exists());
    let gens = deleted_generations(&store.gc(0).unwrap());
    assert_eq!(gens, [1]);
}

#[test]
fn delete_project_refuses_while_sessions_exist_and_frees_layers() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    store.open_session("web", "s").unwrap();
    assert_eq!(store.delete_project("web").unwrap_err().code, ErrorCode::Busy);
    store.discard_session("s").unwrap();
    store.delete_project("web").unwrap();
    assert!(store.list_projects().unwrap().is_empty());
    assert_eq!(fs::read_dir(f.state.join("layers")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(f.state.join("projects")).unwrap().count(), 0);
}

#[test]
fn reopening_lists_the_same_projects_generations_and_sessions() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    empty_project(&store, "api");
    promote_with_file(&store, "web", "s1", "a");
    store.open_session("web", "s2").unwrap();
    store.set_session_mountpoint("s2", Some("/mnt/s2".into())).unwrap();
    let (projects, gens, sessions) = (
        store.list_projects().unwrap(),
        store.generations("web").unwrap(),
        store.sessions(),
    );
    drop(store);
    let store = Store::open(&f.state).unwrap();
    assert!(
        store.recovery_report().actions.is_empty(),
        "{:?}",
        store.recovery_report()
    );
    assert_eq!(store.list_projects().unwrap(), projects);
    assert_eq!(store.generations("web").unwrap(), gens);
    assert_eq!(store.sessions(), sessions);
    assert_eq!(store.session("s2").unwrap().mountpoint, Some(PathBuf::from("/mnt/s2")));
}

/// Runs `op` with `point` injected (the operation stops there, like a crash),
/// then re-opens the store, which runs recovery.
fn crash_at(f: &Fixture, store: Store, point: &'static str, op: impl FnOnce(&Store) -> Result<()>) -> Store {
    inject_on_this_thread(Some(point));
    let res = op(&store);
    inject_on_this_thread(None);
    let err = res.expect_err("the fault point was not reached");
    assert!(err.message.contains("injected fault"), "{err}");
    drop(store);
    Store::open(&f.state).unwrap()
}

fn assert_promotion_undone(f: &Fixture, point: &'static str) {
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    let o = store.open_session("web", "s1").unwrap();
    write(&o.upper.join("work"), "precious");
    let store = crash_at(f, store, point, |s| s.promote("web", "s1", None).map(|_| ()));
    assert_eq!(store.current_generation("web").unwrap(), 1, "{point}");
    assert_eq!(store.generations("web").unwrap().len(), 1, "{point}");
    assert_eq!(
        fs::read_to_string(f.state.join("sessions/s1/upper/work")).unwrap(),
        "precious"
    );
    assert_eq!(fs::read_dir(f.state.join("layers")).unwrap().count(), 1, "{point}");
    // And the promotion can be retried.
    assert_eq!(store.promote("web", "s1", None).unwrap().generation, 2);
}

#[test]
fn recovery_after_crash_after_manifest_deletes_it() {
    assert_promotion_undone(&fixture(), "promote:after-manifest");
}

#[test]
fn recovery_after_crash_after_layer_rename_moves_the_layer_back() {
    assert_promotion_undone(&fixture(), "promote:after-layer-rename");
}

#[test]
fn recovery_after_crash_before_pointer_swap_moves_the_layer_back() {
    assert_promotion_undone(&fixture(), "promote:before-pointer-swap");
}

#[test]
fn recovery_after_crash_after_pointer_swap_finishes_the_promotion() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    let rec = store.open_session("web", "s1").unwrap().record;
    promote_with_file(&store, "web", "x", "f"); // gen 2 by x
    let o = store.open_session("web", "s1").unwrap();
    write(&o.upper.join("a"), "a");
    store.promote("web", "s1", None).unwrap();
    drop(store);
    // Craft the state of a crash between the pointer swap and the record removal.
    fs::create_dir(f.state.join("sessions/s1")).unwrap();
    fs::write(
        f.state.join("sessions/s1/session.json"),
        serde_json::to_vec(&rec).unwrap(),
    )
    .unwrap();
    let store = Store::open(&f.state).unwrap();
    assert_eq!(store.recovery_report().actions.len(), 1);
    assert!(store.sessions().is_empty());
    assert_eq!(store.current_generation("web").unwrap(), 3);
}

#[test]
fn recovery_after_crash_before_project_rename_leaves_no_project() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    let store = crash_at(&f, store, "import:before-project-rename", |s| {
        s.create_project("web", ImportSource::Empty).map(|_| ())
    });
    assert!(store.list_projects().unwrap().is_empty());
    assert_eq!(fs::read_dir(f.state.join("layers")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(f.state.join("work")).unwrap().count(), 0);
    store.create_project("web", ImportSource::Empty).unwrap();
}

#[test]
fn recovery_after_crash_during_move_import_keeps_the_source_in_place() {
    let f = fixture();
    let src = f.scratch.join("golden");
    fs::create_dir(&src).unwrap();
    write(&src.join("a"), "a");
    let store = Store::open(&f.state).unwrap();
    let store = crash_at(&f, store, "import:before-move-rename", |s| {
        s.create_project("web", ImportSource::Move(src.clone())).map(|_| ())
    });
    assert!(store.list_projects().unwrap().is_empty());
    assert_eq!(fs::read_to_string(src.join("a")).unwrap(), "a");
}

#[test]
fn recovery_after_crash_mid_gc_leaves_a_consistent_store() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    for i in 0..4 {
        store.rollback("web", 1).unwrap();
        promote_with_file(&store, "web", &format!("s{i}"), "f"); // gens 2..5 each [lN, l1]
    }
    let store = crash_at(&f, store, "gc:mid-delete", |s| s.gc(1).map(|_| ()));
    // Every remaining generation is complete; no unreferenced layer is left.
    let gens = store.generations("web").unwrap();
    let mut referenced: Vec<String> = gens.iter().flat_map(|g| g.layers.clone()).collect();
    referenced.sort();
    referenced.dedup();
    let mut layers: Vec<String> = fs::read_dir(f.state.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    layers.sort();
    assert_eq!(layers, referenced);
    store.gc(1).unwrap();
    let left: Vec<_> = store.generations("web").unwrap().iter().map(|g| g.generation).collect();
    assert_eq!(left, [5]);
    assert_eq!(fs::read_dir(f.state.join("layers")).unwrap().count(), 2);
}

#[test]
fn start_up_empties_work_and_removes_temp_files() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    empty_project(&store, "web");
    let s1 = store.open_session("web", "s1").unwrap();
    write(&s1.upper.join("kept"), "kept");
    drop(store);
    fs::create_dir(f.state.join("work/half-built")).unwrap();
    write(&f.state.join("work/half-built/x"), "x");
    write(&f.state.join("projects/web/.current.tmp-1"), "9\n");
    write(&s1.work.join("copyup-0"), "a copy-up the crash interrupted");
    let store = Store::open(&f.state).unwrap();
    assert_eq!(fs::read_dir(f.state.join("work")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(&s1.work).unwrap().count(), 0);
    assert_eq!(fs::read_to_string(s1.upper.join("kept")).unwrap(), "kept");
    assert!(!f.state.join("projects/web/.current.tmp-1").exists());
    assert_eq!(store.current_generation("web").unwrap(), 1);
}

#[test]
fn sessions_created_during_promotions_always_pin_a_complete_generation() {
    let f = fixture();
    let store = std::sync::Arc::new(Store::open(&f.state).unwrap());
    empty_project(&store, "web");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let name = format!("r{t}-{i}");
                    i += 1;
                    let o = store.open_session("web", &name).unwrap();
                    assert_eq!(o.version.generation, o.record.base_generation);
                    assert_eq!(o.lowers.len() as u64, o.record.base_generation);
                    assert!(o.lowers.iter().all(|l| l.dir.is_dir()), "{:?}", o.lowers);
                    seen = seen.max(o.record.base_generation);
                    store.discard_session(&name).unwrap();
                }
                seen
            })
        })
        .collect();
    for i in 0..15 {
        let r = promote_with_file(&store, "web", &format!("w{i}"), "f");
        assert_eq!(r.generation, i + 2);
        if i % 5 == 4 {
            store.gc(1).unwrap();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for r in readers {
        assert!(r.join().unwrap() >= 1);
    }
    assert_eq!(store.current_generation("web").unwrap(), 16);
}

/// The generation numbers a GC run deleted, in order.
fn deleted_generations(r: &super::gc::GcReport) -> Vec<u64> {
    r.deleted_generations.iter().map(|d| d.generation).collect()
}
