//! The FUSE adapter through real mounts, without the daemon: a view over
//! temporary layers, driven with ordinary file system calls.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use goldenfs::fuse::{MountedView, ViewConfig};
use goldenfs::overlay::version::VersionInfo;
use goldenfs::store::layout::LowerLayer;

struct View {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    mnt: PathBuf,
    view: Option<MountedView>,
}

impl View {
    fn new(build: impl FnOnce(&Path)) -> View {
        assert!(Path::new("/dev/fuse").exists(), "these tests need /dev/fuse and root");
        let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
        let root = tmp.path().to_path_buf();
        for d in ["lower", "upper", "work", "mnt"] {
            fs::create_dir(root.join(d)).unwrap();
        }
        build(&root.join("lower"));
        let mnt = root.join("mnt");
        let view = MountedView::mount(ViewConfig {
            session_id: "t".into(),
            mountpoint: mnt.clone(),
            upper: root.join("upper"),
            work: root.join("work"),
            lowers: vec![LowerLayer::plain(root.join("lower"))],
            version: VersionInfo {
                generation: 1,
                created_at: "2026-11-24T10:00:00Z".into(),
                session_id: None,
                project_id: "p".into(),
                parent: None,
            },
            threads: 4,
        })
        .unwrap();
        View {
            _tmp: tmp,
            root,
            mnt,
            view: Some(view),
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if let Some(v) = self.view.take()
            && let Err((v, _)) = v.unmount(false)
        {
            let _ = v.unmount(true);
        }
    }
}

fn sample(lower: &Path) {
    fs::create_dir_all(lower.join("dir/sub")).unwrap();
    fs::write(lower.join("dir/file"), "lower content").unwrap();
    fs::write(lower.join("dir/sub/deep"), "deep").unwrap();
    fs::write(lower.join("top"), "top").unwrap();
}

#[test]
fn view_reads_lower_and_writes_to_upper() {
    let v = View::new(sample);
    assert_eq!(fs::read_to_string(v.p("dir/file")).unwrap(), "lower content");
    fs::write(v.p("dir/file"), "new").unwrap();
    assert_eq!(fs::read_to_string(v.p("dir/file")).unwrap(), "new");
    assert_eq!(
        fs::read_to_string(v.root.join("lower/dir/file")).unwrap(),
        "lower content"
    );
    assert_eq!(fs::read_to_string(v.root.join("upper/dir/file")).unwrap(), "new");
    let mut names: Vec<_> = fs::read_dir(v.p("")).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["dir", "golden-version.json", "top"]);
}

#[test]
fn inode_numbers_survive_copy_up_and_match_readdir() {
    let v = View::new(sample);
    let before = fs::metadata(v.p("dir/file")).unwrap().ino();
    fs::OpenOptions::new().append(true).open(v.p("dir/file")).unwrap();
    fs::write(v.p("dir/file"), "x").unwrap();
    assert_eq!(fs::metadata(v.p("dir/file")).unwrap().ino(), before);
    for e in fs::read_dir(v.p("dir")).unwrap() {
        let e = e.unwrap();
        assert_eq!(
            std::os::unix::fs::DirEntryExt::ino(&e),
            fs::symlink_metadata(e.path()).unwrap().ino()
        );
    }
}

#[test]
fn version_file_is_read_only() {
    let v = View::new(sample);
    let text = fs::read_to_string(v.p("golden-version.json")).unwrap();
    assert!(text.contains("\"generation\": 1") && text.ends_with("}\n"), "{text}");
    assert!(fs::write(v.p("golden-version.json"), "x").is_err());
    assert!(fs::remove_file(v.p("golden-version.json")).is_err());
    assert!(fs::rename(v.p("golden-version.json"), v.p("y")).is_err());
    assert!(fs::set_permissions(v.p("golden-version.json"), fs::Permissions::from_mode(0o666)).is_err());
}

#[test]
fn directory_rename_and_removal_in_view() {
    let v = View::new(sample);
    fs::rename(v.p("dir"), v.p("moved")).unwrap();
    assert!(!v.p("dir").exists());
    assert_eq!(fs::read_to_string(v.p("moved/sub/deep")).unwrap(), "deep");
    fs::remove_dir_all(v.p("moved")).unwrap();
    assert!(!v.p("moved").exists());
    assert!(v.root.join("lower/dir/sub/deep").exists());
    fs::create_dir(v.p("dir")).unwrap();
    assert_eq!(fs::read_dir(v.p("dir")).unwrap().count(), 0);
}

#[test]
fn metadata_operations_work_in_view() {
    use std::os::unix::fs::symlink;
    let v = View::new(sample);
    // chmod / chown / truncate of a lower file copy it up.
    fs::set_permissions(v.p("top"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(v.p("top")).unwrap().mode() & 0o7777, 0o640);
    std::os::unix::fs::chown(v.p("top"), Some(1234), Some(5678)).unwrap();
    let m = fs::metadata(v.p("top")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    fs::OpenOptions::new()
        .write(true)
        .open(v.p("dir/sub/deep"))
        .unwrap()
        .set_len(2)
        .unwrap();
    assert_eq!(fs::read_to_string(v.p("dir/sub/deep")).unwrap(), "de");
    // symlink, hard link, fifo.
    symlink("dir/file", v.p("link")).unwrap();
    assert_eq!(fs::read_link(v.p("link")).unwrap(), Path::new("dir/file"));
    assert_eq!(fs::read_to_string(v.p("link")).unwrap(), "lower content");
    fs::hard_link(v.p("dir/file"), v.p("hard")).unwrap();
    assert_eq!(fs::metadata(v.p("hard")).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(v.p("hard")).unwrap().ino(),
        fs::metadata(v.p("dir/file")).unwrap().ino()
    );
    rustix::fs::mknodat(
        rustix::fs::CWD,
        v.p("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::metadata(v.p("fifo")).unwrap().file_type()
    ));
    // xattrs, including trusted.* user data; the private namespace is refused.
    let set = |name: &str, val: &str| {
        std::process::Command::new("setfattr")
            .args(["-n", name, "-v", val])
            .arg(v.p("dir"))
            .status()
            .unwrap()
            .success()
    };
    assert!(set("user.color", "blue"));
    assert!(set("trusted.overlay.opaque", "y"));
    assert!(!set("trusted.goldenfs.opaque", "y"));
    let out = std::process::Command::new("getfattr")
        .args(["-d", "-m", "-"])
        .arg(v.p("dir"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("user.color=\"blue\"") && text.contains("trusted.overlay.opaque"),
        "{text}"
    );
    assert!(!text.contains("goldenfs"), "{text}");
    // statfs answers for the store's filesystem.
    let st = rustix::fs::statfs(&v.mnt).unwrap();
    assert!(st.f_blocks > 0);
}
