//! Compaction tests on temporary directories: sessions are changed through
//! the overlay core (no mount), generations compared through views.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::error::ErrorCode;
use crate::fault::inject_on_this_thread;
use crate::overlay::{Caller, Ino, Kind, LayerDirs, Overlay, ROOT_INO, SetAttr};

const ME: Caller = Caller { uid: 0, gid: 0 };

struct Fixture {
    tmp: tempfile::TempDir,
    state: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    Fixture {
        state: tmp.path().join("state"),
        tmp,
    }
}

/// A view over a session's upper and its base generation.
fn session_view(store: &Store, project: &str, session: &str) -> Overlay {
    let o = store.open_session(project, session).unwrap();
    Overlay::new(LayerDirs::open(&o.upper, &o.work, &o.lowers).unwrap(), &o.version).unwrap()
}

/// A read-only look at generation `n` (scratch upper and work under `tmp`).
fn generation_view(f: &Fixture, store: &Store, project: &str, n: u64) -> Overlay {
    let m = store.generation(project, n).unwrap();
    let scratch = f.tmp.path().join(format!("view-{n}-{}", atomic::unique_name("v")));
    for d in ["upper", "work"] {
        fs::create_dir_all(scratch.join(d)).unwrap();
    }
    let lowers = store.layout().lower_layers(&m).unwrap();
    Overlay::new(
        LayerDirs::open(&scratch.join("upper"), &scratch.join("work"), &lowers).unwrap(),
        &m.version_info(),
    )
    .unwrap()
}

fn ino(ov: &Overlay, path: &str) -> Ino {
    Path::new(path)
        .components()
        .fold(ROOT_INO, |dir, c| ov.lookup(dir, c.as_os_str()).unwrap().ino)
}

fn split<'a>(ov: &Overlay, path: &'a str) -> (Ino, &'a OsStr) {
    let p = Path::new(path);
    (ino(ov, p.parent().unwrap().to_str().unwrap()), p.file_name().unwrap())
}

fn create(ov: &Overlay, path: &str, data: &str) {
    let (dir, name) = split(ov, path);
    let (_, o) = ov.create(dir, name, 0o644, libc::O_RDWR, ME).unwrap();
    fs::File::from(o.fd).write_all(data.as_bytes()).unwrap();
}

fn overwrite(ov: &Overlay, path: &str, data: &str) {
    let o = ov.open(ino(ov, path), libc::O_WRONLY | libc::O_TRUNC).unwrap();
    fs::File::from(o.fd).write_all(data.as_bytes()).unwrap();
}

fn mkdir(ov: &Overlay, path: &str) {
    let (dir, name) = split(ov, path);
    ov.mkdir(dir, name, 0o755, ME).unwrap();
}

fn unlink(ov: &Overlay, path: &str) {
    let (dir, name) = split(ov, path);
    ov.unlink(dir, name).unwrap();
}

fn rename(ov: &Overlay, from: &str, to: &str) {
    let (a, an) = split(ov, from);
    let (b, bn) = split(ov, to);
    ov.rename(a, an, b, bn, 0).unwrap();
}

/// Everything a view shows (but times other than mtime, and the link count
/// and size of directories, which say whether a directory is merged).
fn view_snapshot(ov: &Overlay) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(ROOT_INO, PathBuf::new())];
    while let Some((dir, path)) = stack.pop() {
        for e in ov.list_dir(dir).unwrap() {
            if e.name == "." || e.name == ".." || e.name == crate::overlay::version::VERSION_FILE_NAME {
                continue;
            }
            let a = ov.lookup(dir, &e.name).unwrap();
            let p = path.join(&e.name);
            let mut desc = format!(
                "ino={} kind={:?} perm={:o} uid={} gid={} rdev={} mtime={:?}",
                a.ino, a.kind, a.perm, a.uid, a.gid, a.rdev, a.mtime
            );
            match a.kind {
                Kind::Dir => stack.push((a.ino, p.clone())),
                Kind::File => {
                    let mut s = String::new();
                    fs::File::from(ov.open(a.ino, libc::O_RDONLY).unwrap().fd)
                        .read_to_string(&mut s)
                        .unwrap();
                    desc += &format!(" nlink={} content={s:?}", a.nlink);
                }
                Kind::Symlink => desc += &format!(" target={:?}", ov.readlink(a.ino).unwrap()),
                _ => desc += &format!(" nlink={}", a.nlink),
            }
            for name in ov
                .listxattr(a.ino)
                .unwrap()
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
            {
                let name = std::str::from_utf8(name).unwrap();
                desc += &format!(" {name}={:?}", ov.getxattr(a.ino, OsStr::new(name)).unwrap());
            }
            out.insert(p, desc);
        }
    }
    out
}

fn set_user_xattr(ov: &Overlay, path: &str, value: &[u8]) {
    ov.setxattr(ino(ov, path), OsStr::new("user.k"), value, 0).unwrap();
}

/// Generation 1 from a source tree with the usual kinds of objects.
fn golden(f: &Fixture, store: &Store) {
    let src = f.tmp.path().join("src");
    for d in ["d/deep", "e", "keep"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    for (p, data) in [
        ("a", "alpha"),
        ("b", "bravo"),
        ("d/x", "x"),
        ("d/deep/y", "y"),
        ("e/f", "f"),
        ("h1", "h"),
    ] {
        fs::write(src.join(p), data).unwrap();
    }
    fs::hard_link(src.join("h1"), src.join("keep/h2")).unwrap();
    std::os::unix::fs::symlink("a", src.join("l")).unwrap();
    crate::sys::mknod_at(
        crate::sys::open_dir_abs(&src).unwrap().as_fd(),
        OsStr::new("null"),
        libc::S_IFCHR | 0o600,
        libc::makedev(1, 3),
    )
    .unwrap();
    fs::set_permissions(src.join("b"), std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(src.join("d/x"), Some(1000), Some(1000)).unwrap();
    store.create_project("web", ImportSource::Copy(src)).unwrap();
}

/// Four generations whose top layers hold whiteouts, opaque directories,
/// redirects, copied-up files (origin markers) and upper hard links.
fn deep_project(f: &Fixture, store: &Store) {
    golden(f, store);
    let ov = session_view(store, "web", "s2");
    overwrite(&ov, "a", "alpha v2");
    unlink(&ov, "b");
    unlink(&ov, "e/f");
    let (root, e) = split(&ov, "e");
    ov.rmdir(root, e).unwrap();
    mkdir(&ov, "e");
    create(&ov, "e/g", "g");
    rename(&ov, "d", "d2");
    create(&ov, "n", "new");
    ov.link(ino(&ov, "n"), ROOT_INO, OsStr::new("n2")).unwrap();
    set_user_xattr(&ov, "a", b"on-a");
    drop(ov);
    store.promote("web", "s2", None).unwrap();

    let ov = session_view(store, "web", "s3");
    ov.setattr(
        ino(&ov, "d2/x"),
        SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
    )
    .unwrap();
    unlink(&ov, "n2");
    set_user_xattr(&ov, "d2", b"on-d2");
    mkdir(&ov, "newdir");
    mkdir(&ov, "newdir/sub");
    drop(ov);
    store.promote("web", "s3", None).unwrap();

    let ov = session_view(store, "web", "s4");
    create(&ov, "newdir/sub/z", "z");
    rename(&ov, "newdir", "nd");
    rename(&ov, "d2/deep", "deep-moved");
    drop(ov);
    assert_eq!(store.promote("web", "s4", None).unwrap().layers.len(), 4);
}

/// A store whose project `web` is at generation 4 (see [`deep_project`]).
fn deep_store() -> (Fixture, Store) {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    deep_project(&f, &store);
    (f, store)
}

/// Every path of a layer with its private xattrs.
fn private_markers(layer: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![layer.to_path_buf()];
    while let Some(p) = stack.pop() {
        let fd = crate::sys::open_at(
            crate::sys::open_dir_abs(p.parent().unwrap()).unwrap().as_fd(),
            p.file_name().unwrap(),
            crate::sys::OFlags::PATH,
            0,
        )
        .unwrap();
        for n in crate::sys::xattr::list(fd.as_fd()).unwrap() {
            if n.to_string_lossy().starts_with("trusted.goldenfs.") {
                out.push(format!(
                    "{} {}",
                    p.strip_prefix(layer).unwrap().display(),
                    n.to_string_lossy()
                ));
            }
        }
        if p.is_dir() && !p.is_symlink() {
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

use std::os::fd::AsFd;

#[test]
fn compacted_generation_shows_what_the_deep_generation_shows() {
    let (f, store) = deep_store();
    let deep = view_snapshot(&generation_view(&f, &store, "web", 4));
    let r = store.compact("web").unwrap();
    assert!(r.compacted);
    assert_eq!(
        (r.compacted_from, r.generation, r.layers_before, r.layers_after),
        (4, 5, 4, 1)
    );
    let m = store.generation("web", 5).unwrap();
    assert_eq!(
        (m.parent, m.compacted_from, m.session_id.clone()),
        (Some(4), Some(4), None)
    );
    assert_eq!(m.layers, vec![r.layer.clone().unwrap()]);
    assert_eq!(store.current_generation("web").unwrap(), 5);
    assert_eq!(store.generations("web").unwrap()[4].compacted_from, Some(4));

    let mut flat = view_snapshot(&generation_view(&f, &store, "web", 5));
    // One difference, on purpose: `n2` was deleted above `n`'s layer, so the
    // deep view reports the backing count (2, as overlayfs would); the
    // compacted layer knows its real groups.
    assert!(deep[Path::new("n")].contains("nlink=2"));
    let n = flat.get_mut(Path::new("n")).unwrap();
    *n = n.replace("nlink=1", "nlink=2");
    assert_eq!(flat, deep);
    assert!(flat.contains_key(Path::new("nd/sub/z")) && flat.contains_key(Path::new("deep-moved/y")));
    assert!(!flat.contains_key(Path::new("b")) && !flat.contains_key(Path::new("e/f")));

    // No whiteouts, opaque or redirect markers: only origins.
    let layer = store.layout().layer(&m.layers[0]);
    let markers = private_markers(&layer);
    assert!(
        markers.iter().all(|m| m.ends_with("trusted.goldenfs.origin")),
        "{markers:?}"
    );
    // Files are links of their topmost copy, not copies.
    let top = store.generation("web", 2).unwrap().layers[0].clone();
    assert_eq!(
        fs::metadata(layer.join("a")).unwrap().ino(),
        fs::metadata(store.layout().layer(&top).join("a")).unwrap().ino()
    );
    // The sidecar holds the golden's hard-link group.
    let meta: layout::LayerMeta = atomic::read_json(&store.layout().layer_meta(&m.layers[0])).unwrap();
    assert_eq!(
        meta.links,
        vec![vec![
            layout::RelPath::Text("h1".into()),
            layout::RelPath::Text("keep/h2".into())
        ]]
    );
    assert!(meta.origin_markers);
}

#[test]
fn compacted_link_counts_come_from_the_sidecar_and_copy_up_keeps_groups() {
    let (f, store) = deep_store();
    let c = store.compact("web").unwrap();
    let layer = store.layout().layer(&c.layer.unwrap());
    assert_eq!(
        fs::metadata(layer.join("a")).unwrap().nlink(),
        2,
        "a name here and in its source layer"
    );
    assert_eq!(fs::metadata(layer.join("h1")).unwrap().nlink(), 4);
    let ov = session_view(&store, "web", "s5");
    // Backing counts are inflated by the other layers' names; the views' are
    // not, in the compacted generation and in the deep one it came from.
    let deep = generation_view(&f, &store, "web", 4);
    for v in [&ov, &deep] {
        assert_eq!(v.lookup(ROOT_INO, OsStr::new("a")).unwrap().nlink, 1);
        assert_eq!(v.lookup(ROOT_INO, OsStr::new("h1")).unwrap().nlink, 2);
        assert_eq!(v.getattr(ino(v, "keep/h2")).unwrap().nlink, 2);
    }
    // Copying one name of the group up brings the other along.
    overwrite(&ov, "keep/h2", "changed");
    let mut s = String::new();
    fs::File::from(ov.open(ino(&ov, "h1"), libc::O_RDONLY).unwrap().fd)
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "changed");
}

#[test]
fn compaction_of_a_one_layer_generation_does_nothing() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    golden(&f, &store);
    let r = store.compact("web").unwrap();
    assert!(!r.compacted);
    assert_eq!((r.generation, r.layers_before), (1, 1));
    assert_eq!(store.generations("web").unwrap().len(), 1);
}

#[test]
fn compaction_does_not_publish_when_a_promotion_won_the_race() {
    let (_f, store) = deep_store();
    let p = store.project("web").unwrap();
    let build = store.layout().work().join("compact-test");
    let m = store.generation("web", 4).unwrap();
    let (from, running) = store.pin_for_compaction(&p, "web").unwrap();
    assert_eq!(from, 4);
    assert_eq!(store.compact("web").unwrap_err().code, ErrorCode::Busy, "one at a time");
    let flat = store
        .build_flat(&build, &m, &std::sync::atomic::AtomicU64::new(0))
        .unwrap();
    // Meanwhile a promotion publishes generation 5.
    let o = store.open_session("web", "late").unwrap();
    fs::write(o.upper.join("late"), "late").unwrap();
    store.promote("web", "late", None).unwrap();
    let err = store
        .publish_compacted(&p, &m, &build.join("layer"), &flat)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "{err}");
    assert!(err.message.contains("compact web"), "{err}");
    drop(running);
    assert_eq!(store.current_generation("web").unwrap(), 5);
    assert_eq!(store.generations("web").unwrap().len(), 5);
    assert_eq!(fs::read_dir(store.layout().layer_metas()).unwrap().count(), 0);
    assert!(store.running_compactions().is_empty());
    // The next compaction takes generation 5.
    assert_eq!(store.compact("web").unwrap().compacted_from, 5);
}

#[test]
fn promotion_of_a_session_based_on_the_compacted_generation_lands_on_the_compacted_layer() {
    let (f, store) = deep_store();
    let ov = session_view(&store, "web", "old");
    create(&ov, "from-old", "old");
    unlink(&ov, "a");
    rename(&ov, "nd", "nd2");
    drop(ov);
    let mut expected = view_snapshot(&session_view(&store, "web", "old"));
    // The deep view's stale count of `n` (see above); generation 6 is right.
    let n = expected.get_mut(Path::new("n")).unwrap();
    *n = n.replace("nlink=2", "nlink=1");
    let c = store.compact("web").unwrap();
    let r = store.promote("web", "old", None).unwrap();
    assert_eq!((r.generation, r.parent), (6, 5));
    assert_eq!(r.layers.len(), 2);
    assert_eq!(r.layers[1], c.layer.unwrap());
    assert_eq!(view_snapshot(&generation_view(&f, &store, "web", 6)), expected);
}

#[test]
fn gc_keeps_generations_pinned_by_sessions_and_removes_sidecars_with_layers() {
    let (f, store) = deep_store();
    store.open_session("web", "pinned").unwrap();
    let c = store.compact("web").unwrap();
    store.gc(0).unwrap();
    let kept: Vec<u64> = store.generations("web").unwrap().iter().map(|g| g.generation).collect();
    assert_eq!(kept, vec![4, 5]);
    assert_eq!(
        view_snapshot(&session_view(&store, "web", "pinned")).len(),
        view_snapshot(&generation_view(&f, &store, "web", 5)).len()
    );
    // Roll back to 4 and collect 5: its layer and sidecar go.
    store.rollback("web", 4).unwrap();
    store.gc(0).unwrap();
    let id = c.layer.unwrap();
    assert!(!store.layout().layer(&id).exists());
    assert!(!store.layout().layer_meta(&id).exists());
}

#[test]
fn gc_keeps_the_layers_a_compacted_layer_takes_its_inode_numbers_from() {
    let (f, store) = deep_store();
    let sources = store.generation("web", 4).unwrap().layers;
    let before = view_snapshot(&generation_view(&f, &store, "web", 4));
    let c = store.compact("web").unwrap();
    let twice = promote_empty_and_compact(&store);
    store.gc(0).unwrap();
    let kept: Vec<u64> = store.generations("web").unwrap().iter().map(|g| g.generation).collect();
    assert_eq!(kept, vec![twice]);
    // The directories' and copied-up files' numbers are inodes of the
    // source layers: they stay allocated, transitively.
    for id in sources.iter().chain([c.layer.as_ref().unwrap()]) {
        assert!(store.layout().layer(id).is_dir(), "{id}");
    }
    let mut after = view_snapshot(&generation_view(&f, &store, "web", twice));
    after.remove(Path::new("again"));
    let n = after.get_mut(Path::new("n")).unwrap();
    *n = n.replace("nlink=1", "nlink=2");
    assert_eq!(after, before);
}

/// Promotes a session adding `again`, compacts, returns the new generation.
fn promote_empty_and_compact(store: &Store) -> u64 {
    let o = store.open_session("web", "again").unwrap();
    fs::write(o.upper.join("again"), "again").unwrap();
    store.promote("web", "again", None).unwrap();
    store.compact("web").unwrap().generation
}

#[test]
fn layer_sidecars_without_sources_parse() {
    let m: layout::LayerMeta =
        serde_json::from_str(r#"{"layer":"web-g9-1","origin_markers":false,"links":[]}"#).unwrap();
    assert!(m.sources.is_empty());
    assert!(!serde_json::to_string(&m).unwrap().contains("sources"));
}

#[test]
fn crash_before_publish_leaves_a_complete_unpublished_generation() {
    let (f, store) = deep_store();
    inject_on_this_thread(Some("compact:before-publish"));
    let err = store.compact("web").unwrap_err();
    inject_on_this_thread(None);
    assert!(err.message.contains("injected fault"), "{err}");
    drop(store);
    let store = Store::open(&f.state).unwrap();
    assert_eq!(store.current_generation("web").unwrap(), 4);
    let m = store.generation("web", 5).unwrap();
    assert!(store.layout().layer(&m.layers[0]).is_dir());
    assert!(store.layout().layer_meta(&m.layers[0]).is_file());
    assert_eq!(fs::read_dir(store.layout().work()).unwrap().count(), 0);
    // A compaction run again publishes the next number.
    assert_eq!(store.compact("web").unwrap().generation, 6);
}

#[test]
fn crash_mid_build_leaves_nothing_after_recovery() {
    let (f, store) = deep_store();
    // Leave the scratch as a crash would: a half-built tree in work/.
    fs::create_dir_all(store.layout().work().join("compact-web-x/layer/d")).unwrap();
    inject_on_this_thread(Some("compact:mid-build"));
    assert!(store.compact("web").is_err());
    inject_on_this_thread(None);
    // An orphan sidecar, as a crash between sidecar and manifest leaves.
    fs::write(store.layout().layer_meta("web-g5-1"), "{}").unwrap();
    drop(store);
    let store = Store::open(&f.state).unwrap();
    assert_eq!(store.current_generation("web").unwrap(), 4);
    assert_eq!(store.generations("web").unwrap().len(), 4);
    assert_eq!(fs::read_dir(store.layout().work()).unwrap().count(), 0);
    // The sidecars written for the source layers stay (their layers exist).
    let metas: Vec<_> = fs::read_dir(store.layout().layer_metas())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(metas.len(), 4, "{metas:?}");
    for name in metas {
        let id = name.to_str().unwrap().strip_suffix(".json").unwrap().to_string();
        assert!(store.layout().layer(&id).is_dir(), "{id}");
    }
    assert!(
        store
            .recovery_report()
            .actions
            .iter()
            .any(|a| a.contains("layer-meta/web-g5-1.json"))
    );
}

#[test]
fn a_source_at_the_link_limit_is_copied_once_and_its_names_stay_one_file() {
    let f = fixture();
    let store = Store::open(&f.state).unwrap();
    let src = f.tmp.path().join("src");
    fs::create_dir_all(src.join("many")).unwrap();
    fs::write(src.join("f"), "linked").unwrap();
    let mut names = 1u64;
    while names < 70_000 {
        match fs::hard_link(src.join("f"), src.join(format!("many/{names}"))) {
            Ok(()) => names += 1,
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => break,
            Err(e) => panic!("{e}"),
        }
    }
    store.create_project("web", ImportSource::Copy(src)).unwrap();
    let o = store.open_session("web", "s").unwrap();
    fs::write(o.upper.join("top"), "top").unwrap();
    store.promote("web", "s", None).unwrap();
    let deep = generation_view(&f, &store, "web", 2);
    let want = deep.lookup(ROOT_INO, OsStr::new("f")).unwrap();
    let c = store.compact("web").unwrap();
    let flat = generation_view(&f, &store, "web", c.generation);
    for path in ["f", "many/1", &format!("many/{}", names - 1)] {
        let a = flat.getattr(ino(&flat, path)).unwrap();
        assert_eq!((a.ino, a.nlink), (want.ino, names as u32), "{path}");
    }
    let layer = store.layout().layer(&c.layer.unwrap());
    let (a, b) = (
        fs::metadata(layer.join("f")).unwrap(),
        fs::metadata(layer.join("many/1")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "the names are one inode in the new layer");
    if names < 70_000 {
        // The limit was reached (ext4): the new layer holds a copy.
        let import = store.layout().layer(&store.generation("web", 1).unwrap().layers[0]);
        assert_ne!(a.ino(), fs::metadata(import.join("f")).unwrap().ino());
        assert_eq!(a.nlink(), names);
        assert_eq!(fs::read_to_string(layer.join("many/1")).unwrap(), "linked");
    }
}
