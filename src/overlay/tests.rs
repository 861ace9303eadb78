//! Unit tests of the core on temporary directories (no mount). Need root
//! for `trusted.*` xattrs, like the daemon itself.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use super::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    ov: Overlay,
}

const ME: Caller = Caller { uid: 0, gid: 0 };

/// Two lower layers: `bottom` (imported) and `top` (a promoted upper).
fn fixture(build: impl FnOnce(&Path, &Path)) -> Fixture {
    let tmp = tempfile::tempdir_in(std::env::var("GOLDENFS_TEST_TMP").unwrap_or_else(|_| "/var/tmp".into())).unwrap();
    let root = tmp.path().to_path_buf();
    for d in ["top", "bottom", "upper", "work"] {
        fs::create_dir(root.join(d)).unwrap();
    }
    build(&root.join("top"), &root.join("bottom"));
    let layers = LayerDirs::open(
        &root.join("upper"),
        &root.join("work"),
        &[
            LowerLayer::plain(root.join("top")),
            LowerLayer::plain(root.join("bottom")),
        ],
    )
    .unwrap();
    let v = VersionInfo {
        generation: 3,
        created_at: "2026-11-24T10:00:00Z".into(),
        session_id: Some("warm".into()),
        project_id: "web".into(),
        parent: Some(2),
    };
    let ov = Overlay::new(layers, &v).unwrap();
    Fixture { _tmp: tmp, root, ov }
}

impl Fixture {
    fn ino(&self, path: &str) -> Result<Ino, Errno> {
        let mut ino = ROOT_INO;
        for c in Path::new(path).components() {
            ino = self.ov.lookup(ino, c.as_os_str())?.ino;
        }
        Ok(ino)
    }

    fn split(&self, path: &str) -> (Ino, &'static OsStr) {
        let p = Path::new(path);
        let parent = p.parent().map(|x| x.to_str().unwrap()).unwrap_or("");
        let name: &'static str = Box::leak(p.file_name().unwrap().to_str().unwrap().to_string().into_boxed_str());
        (self.ino(parent).unwrap(), OsStr::new(name))
    }

    fn read(&self, path: &str) -> String {
        let o = self.ov.open(self.ino(path).unwrap(), libc::O_RDONLY).unwrap();
        let mut f = fs::File::from(o.fd);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).unwrap();
        s
    }

    fn names(&self, path: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .ov
            .list_dir(self.ino(path).unwrap())
            .unwrap()
            .into_iter()
            .map(|e| e.name.to_string_lossy().into_owned())
            .filter(|n| n != "." && n != "..")
            .collect();
        v.sort();
        v
    }

    fn write(&self, path: &str, data: &str) {
        let o = self.ov.open(self.ino(path).unwrap(), libc::O_WRONLY).unwrap();
        sys::ftruncate(o.fd.as_fd(), 0).unwrap();
        sys::pwrite_all(o.fd.as_fd(), data.as_bytes(), 0).unwrap();
    }
}

fn std_layers(top: &Path, bottom: &Path) {
    fs::create_dir_all(bottom.join("d/sub")).unwrap();
    fs::write(bottom.join("d/a"), "bottom-a").unwrap();
    fs::write(bottom.join("d/sub/deep"), "deep").unwrap();
    fs::write(bottom.join("f"), "bottom-f").unwrap();
    fs::write(bottom.join("golden-version.json"), "real").unwrap();
    fs::create_dir_all(top.join("d")).unwrap();
    fs::write(top.join("d/b"), "top-b").unwrap();
    fs::write(top.join("f"), "top-f").unwrap();
}

#[test]
fn upper_layer_shadows_lower_and_dirs_merge() {
    let fx = fixture(std_layers);
    assert_eq!(fx.read("f"), "top-f");
    assert_eq!(fx.names("d"), ["a", "b", "sub"]);
    assert_eq!(fx.read("d/sub/deep"), "deep");
}

#[test]
fn fsync_dir_flushes_upper_dirs_and_refuses_files() {
    let fx = fixture(std_layers);
    // Only in a lower layer: nothing to flush.
    fx.ov.fsync_dir(fx.ino("d/sub").unwrap(), false).unwrap();
    let made = fx.ov.mkdir(fx.ino("d").unwrap(), OsStr::new("new"), 0o755, ME).unwrap();
    fx.ov.fsync_dir(made.ino, false).unwrap();
    fx.ov.fsync_dir(ROOT_INO, true).unwrap();
    assert_eq!(fx.ov.fsync_dir(fx.ino("f").unwrap(), false), Err(Errno::ENOTDIR));
}

#[test]
fn version_file_is_virtual_and_shadows_real_file() {
    let fx = fixture(std_layers);
    let names = fx.names("");
    assert_eq!(names.iter().filter(|n| *n == "golden-version.json").count(), 1);
    let a = fx.ov.lookup(ROOT_INO, OsStr::new("golden-version.json")).unwrap();
    assert_eq!(a.ino, VERSION_INO);
    let text = String::from_utf8(fx.ov.read_version(0, 4096)).unwrap();
    assert!(text.contains("\"generation\": 3"));
    assert_eq!(
        fx.ov.unlink(ROOT_INO, OsStr::new("golden-version.json")),
        Err(Errno::EPERM)
    );
    assert_eq!(
        fx.ov.setattr(
            VERSION_INO,
            SetAttr {
                mode: Some(0o666),
                ..Default::default()
            }
        ),
        Err(Errno::EPERM)
    );
    assert_eq!(
        fx.ov.rename(
            ROOT_INO,
            OsStr::new("golden-version.json"),
            ROOT_INO,
            OsStr::new("x"),
            0
        ),
        Err(Errno::EPERM)
    );
}

#[test]
fn copy_up_leaves_lower_untouched_and_keeps_inode() {
    let fx = fixture(std_layers);
    let before = fx.ino("d/a").unwrap();
    fx.write("d/a", "changed");
    assert_eq!(fx.read("d/a"), "changed");
    assert_eq!(fs::read_to_string(fx.root.join("bottom/d/a")).unwrap(), "bottom-a");
    assert_eq!(fs::read_to_string(fx.root.join("upper/d/a")).unwrap(), "changed");
    assert_eq!(fx.ino("d/a").unwrap(), before);
    assert_eq!(before, fs::metadata(fx.root.join("bottom/d/a")).unwrap().ino());
}

#[test]
fn whiteout_hides_lower_file_and_directory() {
    let fx = fixture(std_layers);
    let (p, n) = fx.split("d/a");
    fx.ov.unlink(p, n).unwrap();
    assert_eq!(fx.ino("d/a"), Err(Errno::ENOENT));
    assert_eq!(fx.names("d"), ["b", "sub"]);
    let (p, n) = fx.split("d/sub");
    assert_eq!(fx.ov.rmdir(p, n), Err(Errno::ENOTEMPTY));
    let (sp, sn) = fx.split("d/sub/deep");
    fx.ov.unlink(sp, sn).unwrap();
    fx.ov.rmdir(p, n).unwrap();
    assert_eq!(fx.names("d"), ["b"]);
    assert!(fx.root.join("bottom/d/sub/deep").exists());
}

#[test]
fn recreated_directory_is_opaque() {
    let fx = fixture(std_layers);
    let (sp, sn) = fx.split("d/sub/deep");
    fx.ov.unlink(sp, sn).unwrap();
    let (p, n) = fx.split("d/sub");
    fx.ov.rmdir(p, n).unwrap();
    fx.ov.mkdir(p, n, 0o755, ME).unwrap();
    assert_eq!(fx.names("d/sub"), Vec::<String>::new());
}

#[test]
fn rename_of_lower_directory_copies_no_data() {
    let fx = fixture(|top, bottom| {
        std_layers(top, bottom);
        for i in 0..200 {
            fs::write(bottom.join(format!("d/sub/file{i}")), "x").unwrap();
        }
    });
    let (p, n) = fx.split("d");
    fx.ov.rename(p, n, ROOT_INO, OsStr::new("moved"), 0).unwrap();
    assert_eq!(fx.ino("d"), Err(Errno::ENOENT));
    assert_eq!(fx.read("moved/sub/file7"), "x");
    assert_eq!(fx.read("moved/b"), "top-b");
    let upper_files = walk_files(&fx.root.join("upper"));
    assert!(
        upper_files.iter().all(|f| fs::metadata(f).unwrap().len() == 0),
        "{upper_files:?}"
    );
    // Renaming again, and into the renamed directory, keeps working.
    let (p, n) = fx.split("moved/sub");
    fx.ov.rename(p, n, ROOT_INO, OsStr::new("sub2"), 0).unwrap();
    assert_eq!(fx.read("sub2/deep"), "deep");
    let (p, n) = fx.split("f");
    let dst = fx.ino("sub2").unwrap();
    fx.ov.rename(p, n, dst, OsStr::new("f"), 0).unwrap();
    assert_eq!(fx.read("sub2/f"), "top-f");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(walk_files(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn private_xattrs_are_hidden_and_refused() {
    let fx = fixture(std_layers);
    let d = fx.ino("d").unwrap();
    assert_eq!(
        fx.ov.setxattr(d, OsStr::new("trusted.goldenfs.opaque"), b"y", 0),
        Err(Errno::EPERM)
    );
    fx.ov
        .setxattr(d, OsStr::new("trusted.overlay.opaque"), b"y", 0)
        .unwrap();
    assert_eq!(fx.ov.getxattr(d, OsStr::new("trusted.overlay.opaque")).unwrap(), b"y");
    // Still merged: trusted.overlay.* is user data to us.
    assert_eq!(fx.names("d"), ["a", "b", "sub"]);
    let (p, n) = fx.split("d/a");
    fx.ov.unlink(p, n).unwrap();
    let list = fx.ov.listxattr(d).unwrap();
    assert!(!String::from_utf8_lossy(&list).contains("goldenfs"));
}

#[test]
fn user_char_device_is_data_not_whiteout() {
    let fx = fixture(std_layers);
    let d = fx.ino("d").unwrap();
    fx.ov
        .mknod(d, OsStr::new("a"), libc::S_IFCHR | 0o600, 0, ME)
        .unwrap_err();
    fx.ov.mknod(d, OsStr::new("wh"), libc::S_IFCHR | 0o600, 0, ME).unwrap();
    let a = fx.ov.lookup(d, OsStr::new("wh")).unwrap();
    assert_eq!(a.kind, Kind::CharDev);
    assert!(fx.names("d").contains(&"wh".to_string()));
}

#[test]
fn hard_link_of_lower_file_shares_one_inode() {
    let fx = fixture(std_layers);
    let a = fx.ino("d/a").unwrap();
    let attr = fx.ov.link(a, ROOT_INO, OsStr::new("a2")).unwrap();
    assert_eq!(attr.ino, a);
    assert_eq!(attr.nlink, 2);
    fx.write("a2", "via-link");
    assert_eq!(fx.read("d/a"), "via-link");
}

#[test]
fn symlinks_in_upper_are_never_followed() {
    let fx = fixture(std_layers);
    let secret = fx.root.join("secret");
    fs::write(&secret, "outside").unwrap();
    // A symlink planted where a directory is expected must not lead outside.
    symlink(&fx.root, fx.root.join("upper/escape")).unwrap();
    let e = fx.ino("escape").unwrap();
    assert_eq!(fx.ov.lookup(e, OsStr::new("secret")), Err(Errno::ENOTDIR));
}

#[test]
fn directory_can_be_recreated_after_rename_away() {
    let fx = fixture(std_layers);
    let (p, n) = fx.split("d");
    fx.ov.rename(p, n, ROOT_INO, OsStr::new("moved"), 0).unwrap();
    for f in ["moved/a", "moved/b", "moved/sub/deep"] {
        let (p, n) = fx.split(f);
        fx.ov.unlink(p, n).unwrap();
    }
    let (p, n) = fx.split("moved/sub");
    fx.ov.rmdir(p, n).unwrap();
    fx.ov.rmdir(ROOT_INO, OsStr::new("moved")).unwrap();
    fx.ov.mkdir(ROOT_INO, OsStr::new("d"), 0o755, ME).unwrap();
    assert_eq!(fx.names("d"), Vec::<String>::new());
}

#[test]
fn whiteouts_are_links_of_one_shared_marked_inode() {
    let fx = fixture(|top, bottom| {
        std_layers(top, bottom);
        for i in 0..20 {
            fs::write(bottom.join(format!("d/many{i}")), "x").unwrap();
        }
    });
    let d = fx.ino("d").unwrap();
    for i in 0..20 {
        fx.ov.unlink(d, OsStr::new(&format!("many{i}"))).unwrap();
    }
    let upper_d = fx.root.join("upper/d");
    let inos: std::collections::BTreeSet<u64> = (0..20)
        .map(|i| fs::symlink_metadata(upper_d.join(format!("many{i}"))).unwrap().ino())
        .collect();
    assert_eq!(inos.len(), 1, "every whiteout links the same inode");
    assert!(fs::symlink_metadata(upper_d.join("many0")).unwrap().nlink() > 20);
    assert_eq!(fx.names("d").iter().filter(|n| n.starts_with("many")).count(), 0);
    // Removing one whiteout (re-creating the name) leaves the others.
    fx.ov
        .mknod(d, OsStr::new("many3"), libc::S_IFREG | 0o644, 0, ME)
        .unwrap();
    assert_eq!(fx.names("d").iter().filter(|n| n.starts_with("many")).count(), 1);
}

#[test]
fn listing_hints_skip_layers_above_and_stale_hints_are_ignored() {
    let fx = fixture(std_layers);
    let d = fx.ino("d").unwrap();
    let listed = fx.ov.list_dir(d).unwrap();
    let entry = |name: &str| listed.iter().find(|e| e.name == name).unwrap();
    let (a, b) = (entry("a"), entry("b"));
    assert!(a.hint.is_some() && b.hint.is_some());
    let got = fx.ov.lookup_listed(d, &[a, b]);
    assert_eq!(
        got[0].as_ref().unwrap().ino,
        fx.ov.lookup(d, OsStr::new("a")).unwrap().ino
    );
    assert_eq!(
        got[1].as_ref().unwrap().ino,
        fx.ov.lookup(d, OsStr::new("b")).unwrap().ino
    );
    // A hint from another directory's stack (here: "bottom layer first" of
    // d) must not make the root skip its top copy of `f`.
    let top_f = fx.ov.lookup(ROOT_INO, OsStr::new("f")).unwrap().ino;
    let stale = DirEntry {
        name: "f".into(),
        fixed: None,
        hint: a.hint.clone(),
    };
    let got = fx.ov.lookup_listed(ROOT_INO, &[&stale]);
    assert_eq!(got[0].as_ref().unwrap().ino, top_f);
    assert_eq!(fx.read("f"), "top-f");
}

/// The kernel never sends `.`, `..`, an empty name or one with a `/` (it
/// splits paths itself), so such a name can only be a bug or a hostile
/// caller of the core. Resolved relative to a directory fd, `a/b` would
/// follow a symlink planted at `a` (only the last component is looked up
/// without following), and `..` would step out of the layer: every entry
/// point refuses them before touching a backing directory.
#[test]
fn names_that_are_not_one_component_are_refused() {
    let fx = fixture(std_layers);
    let outside = fx.root.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "outside").unwrap();
    symlink(&outside, fx.root.join("upper/evil")).unwrap();
    let bad = ["..", ".", "", "evil/secret", "d/a", "evil/new", "../outside", "d/../f"];
    for name in bad {
        let n = OsStr::new(name);
        let want = Err(Errno::EINVAL);
        assert_eq!(fx.ov.lookup(ROOT_INO, n).map(|_| ()), want, "lookup {name:?}");
        assert_eq!(fx.ov.mkdir(ROOT_INO, n, 0o755, ME).map(|_| ()), want, "mkdir {name:?}");
        assert_eq!(
            fx.ov.mknod(ROOT_INO, n, libc::S_IFREG | 0o644, 0, ME).map(|_| ()),
            want,
            "mknod {name:?}"
        );
        assert_eq!(
            fx.ov.create(ROOT_INO, n, 0o644, libc::O_RDWR, ME).map(|_| ()),
            want,
            "create {name:?}"
        );
        assert_eq!(
            fx.ov.symlink(ROOT_INO, n, OsStr::new("/etc"), ME).map(|_| ()),
            want,
            "symlink {name:?}"
        );
        assert_eq!(fx.ov.unlink(ROOT_INO, n), want, "unlink {name:?}");
        assert_eq!(fx.ov.rmdir(ROOT_INO, n), want, "rmdir {name:?}");
        let f = fx.ino("f").unwrap();
        assert_eq!(fx.ov.link(f, ROOT_INO, n).map(|_| ()), want, "link to {name:?}");
        assert_eq!(
            fx.ov.rename(ROOT_INO, OsStr::new("f"), ROOT_INO, n, 0),
            want,
            "rename to {name:?}"
        );
        assert_eq!(
            fx.ov.rename(ROOT_INO, n, ROOT_INO, OsStr::new("g"), 0),
            want,
            "rename from {name:?}"
        );
    }
    // Nothing was made or changed outside the view's layers, nor inside them.
    assert_eq!(fs::read_to_string(outside.join("secret")).unwrap(), "outside");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    let mut upper: Vec<_> = fs::read_dir(fx.root.join("upper"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    upper.sort();
    // `f` was copied up by the link attempts' copy-up (of a real file).
    assert!(upper.iter().all(|n| n == "evil" || n == "f"), "upper: {upper:?}");
    assert_eq!(fx.read("f"), "top-f");
}

impl Fixture {
    /// Whether the node `ino` holds its upper file by an fd (else by handle).
    fn holds_fd(&self, ino: Ino) -> bool {
        match &self.ov.nodes.read().get(ino).unwrap().data {
            NodeData::File(node::FileBacking::Upper(u)) => u.holds_fd(),
            other => panic!("node {ino} is not an upper file: {other:?}"),
        }
    }

    fn create(&self, name: &str) -> (Attr, Opened) {
        self.ov
            .create(ROOT_INO, OsStr::new(name), 0o644, libc::O_RDWR, ME)
            .unwrap()
    }

    fn size(&self, ino: Ino, size: u64) -> Attr {
        let s = SetAttr {
            size: Some(size),
            ..Default::default()
        };
        self.ov.setattr(ino, s).unwrap()
    }
}

#[test]
fn upper_files_are_held_by_handle_through_create_rename_link_and_copy_up() {
    let fx = fixture(std_layers);
    let (attr, _) = fx.create("new");
    assert!(!fx.holds_fd(attr.ino), "a created file is held by handle");
    fx.write("new", "hello");
    fx.ov
        .rename(ROOT_INO, OsStr::new("new"), ROOT_INO, OsStr::new("moved"), 0)
        .unwrap();
    assert_eq!(fx.ov.getattr(attr.ino).unwrap().size, 5);
    assert_eq!(fx.read("moved"), "hello");
    assert_eq!(fx.ov.link(attr.ino, ROOT_INO, OsStr::new("alias")).unwrap().nlink, 2);
    assert!(!fx.holds_fd(attr.ino));
    assert_eq!(fx.size(attr.ino, 2).size, 2);
    assert_eq!(fx.read("alias"), "he");
    // A lower file copied up, and an upper file looked up afresh.
    let f = fx.ino("f").unwrap();
    fx.write("f", "up");
    assert!(!fx.holds_fd(f));
    assert!(!fx.holds_fd(fx.ino("moved").unwrap()));
    assert_eq!(fx.ov.getattr(f).unwrap().ino, f);
}

#[test]
fn an_upper_file_the_kernel_holds_after_its_last_name_is_gone_keeps_working() {
    let fx = fixture(std_layers);
    let (a, _) = fx.create("a");
    fx.write("a", "data-a");
    fx.ov.unlink(ROOT_INO, OsStr::new("a")).unwrap();
    assert!(fx.holds_fd(a.ino), "a deleted file is held by fd (no handle opens it)");
    assert_eq!(fx.ov.getattr(a.ino).unwrap().nlink, 0);
    assert_eq!(fx.size(a.ino, 4).size, 4);
    let o = fx.ov.open(a.ino, libc::O_RDONLY).unwrap();
    let mut buf = [0u8; 16];
    let n = sys::pread_full(o.fd.as_fd(), &mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"data");

    // Replaced by a rename: the same.
    fx.create("b");
    let (c, _) = fx.create("c");
    fx.ov
        .rename(ROOT_INO, OsStr::new("b"), ROOT_INO, OsStr::new("c"), 0)
        .unwrap();
    assert!(fx.holds_fd(c.ino));
    assert_eq!(fx.ov.getattr(c.ino).unwrap().nlink, 0);

    // A name removed while another link remains: still by handle.
    let (d, _) = fx.create("e");
    fx.ov.link(d.ino, ROOT_INO, OsStr::new("e2")).unwrap();
    fx.ov.unlink(ROOT_INO, OsStr::new("e2")).unwrap();
    assert!(!fx.holds_fd(d.ino));
    assert_eq!(fx.ov.getattr(d.ino).unwrap().nlink, 1);
}

#[test]
fn a_file_on_a_filesystem_without_handles_stays_held_by_its_fd() {
    // procfs exports no handles (EOPNOTSUPP), like a store filesystem without export support.
    let fd = sys::open_beneath(
        sys::open_dir_abs(Path::new("/proc/self")).unwrap().as_fd(),
        Path::new("status"),
        sys::OFlags::PATH,
        0,
    )
    .unwrap();
    let u = node::UpperFile::from_fd(fd, 1).compact();
    assert!(u.holds_fd());
    let root = sys::open_dir_abs(Path::new("/")).unwrap();
    let mut f = fs::File::from(u.open(root.as_fd(), sys::OFlags::RDONLY).unwrap());
    let mut s = String::new();
    std::io::Read::read_to_string(&mut f, &mut s).unwrap();
    assert!(s.contains("Pid:"), "{s}");
}
