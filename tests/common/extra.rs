//! Helpers of the escape, full-disk and shutdown tests: deep snapshots (with
//! times and inode numbers), relative symlink targets, a loop-mounted ext4
//! image, store invariants, and child processes that keep a view busy.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::{is_mounted, mount_points, xattr};

/// FNV-1a, enough to tell contents apart in a snapshot.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Everything about every object at and under `path`, symlinks never
/// followed: type, mode, owner, link count, inode, size, mtime, ctime, a
/// hash of the content or the symlink target, and every xattr. Only atime is
/// left out. Any change made to the tree (a new entry, a chmod, a write, an
/// xattr, a link) changes a ctime, so equal snapshots mean untouched.
pub fn deep_snapshot(path: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("deep_snapshot: lstat {}: {e}", p.display()));
        let ft = md.file_type();
        let what = if ft.is_dir() {
            let mut names: Vec<PathBuf> = fs::read_dir(&p)
                .unwrap_or_else(|e| panic!("deep_snapshot: readdir {}: {e}", p.display()))
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            stack.extend(names);
            "dir".to_string()
        } else if ft.is_file() {
            let data = fs::read(&p).unwrap_or_else(|e| panic!("deep_snapshot: read {}: {e}", p.display()));
            format!("file {:016x}", fnv(&data))
        } else if ft.is_symlink() {
            format!("symlink -> {}", fs::read_link(&p).unwrap().display())
        } else {
            format!("special rdev={}", md.rdev())
        };
        let mut xattrs: Vec<String> = xattr::list(&p)
            .unwrap_or_default()
            .into_iter()
            .map(|n| {
                let v = xattr::get(&p, &n).ok().flatten().unwrap_or_default();
                format!("{}={:016x}", n.to_string_lossy(), fnv(&v))
            })
            .collect();
        xattrs.sort();
        let rel = p.strip_prefix(path).unwrap_or(&p).to_path_buf();
        out.insert(
            rel,
            format!(
                "{what} mode={:o} uid={} gid={} nlink={} ino={} size={} mtime={}.{} ctime={}.{} xattrs={xattrs:?}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.nlink(),
                md.ino(),
                md.size(),
                md.mtime(),
                md.mtime_nsec(),
                md.ctime(),
                md.ctime_nsec()
            ),
        );
    }
    out
}

/// Asserts two [`deep_snapshot`]s are equal, listing the entries that differ.
#[track_caller]
pub fn assert_same_snapshot(what: &str, before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>) {
    if before == after {
        return;
    }
    let mut diff = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diff.push(format!("  gone:    {} ({v})", k.display())),
            Some(w) if w != v => diff.push(format!("  changed: {}\n    before {v}\n    after  {w}", k.display())),
            _ => {}
        }
    }
    for (k, v) in after {
        if !before.contains_key(k) {
            diff.push(format!("  new:     {} ({v})", k.display()));
        }
    }
    panic!("{what} changed:\n{}", diff.join("\n"));
}

/// The relative symlink target that leads from directory `from` to `to`
/// (both absolute and free of symlinks): `../..` up to their common
/// ancestor, then down.
pub fn relative_target(from: &Path, to: &Path) -> PathBuf {
    let a: Vec<_> = from.components().collect();
    let b: Vec<_> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// Where `target` leads from directory `base` by lexical resolution (`..`
/// pops a component; `base` must be free of symlinks).
pub fn resolve_lexically(base: &Path, target: &Path) -> PathBuf {
    let mut out = if target.is_absolute() {
        PathBuf::from("/")
    } else {
        base.to_path_buf()
    };
    for c in target.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Runs a command to completion (with the harness's hang guard), panicking
/// with its output unless it succeeds.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let what = format!("{program} {}", args.join(" "));
    let out = super::output_with_timeout(cmd, Duration::from_secs(120), &what);
    assert!(
        out.status.success(),
        "`{what}` failed with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small ext4 filesystem in an image file, loop-mounted. Dropping it
/// unmounts it (lazily if busy) and detaches its loop device if the kernel
/// has not already (`mount -o loop` sets autoclear).
pub struct LoopFs {
    mnt: PathBuf,
    image: PathBuf,
    device: String,
}

impl LoopFs {
    /// Makes a `mib` MiB ext4 image at `image` (`-m 0`: no blocks reserved
    /// for root, who runs the daemon; `inodes`: `-N`, to run out of inodes
    /// early) and mounts it at the existing directory `mnt`. Its
    /// `lost+found` is removed: a store refuses a non-empty directory.
    pub fn new(image: &Path, mnt: &Path, mib: u64, inodes: Option<u64>) -> LoopFs {
        for tool in ["mkfs.ext4", "losetup", "mount", "umount"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{tool} is missing: install e2fsprogs and mount (.ci/run does)"
            );
        }
        fs::File::create(image)
            .and_then(|f| f.set_len(mib << 20))
            .unwrap_or_else(|e| panic!("creating {}: {e}", image.display()));
        let img = image.to_str().unwrap();
        let n = inodes.map(|n| n.to_string());
        let mut args = vec!["-q", "-F", "-m", "0", "-E", "lazy_itable_init=0,lazy_journal_init=0"];
        if let Some(n) = &n {
            args.extend(["-N", n.as_str()]);
        }
        args.push(img);
        run_ok("mkfs.ext4", &args);
        run_ok("mount", &["-o", "loop", img, mnt.to_str().unwrap()]);
        let device =
            mount_source(mnt).unwrap_or_else(|| panic!("{} is not mounted after mount -o loop", mnt.display()));
        let disk = LoopFs {
            mnt: mnt.to_path_buf(),
            image: image.to_path_buf(),
            device,
        };
        fs::remove_dir(mnt.join("lost+found")).expect("remove lost+found");
        disk
    }

    pub fn path(&self) -> &Path {
        &self.mnt
    }

    /// (free bytes, free inodes) as `statvfs` reports them.
    pub fn free(&self) -> (u64, u64) {
        let st = rustix::fs::statvfs(&self.mnt).expect("statvfs of the loop filesystem");
        (st.f_bavail * st.f_frsize, st.f_ffree)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        for _ in 0..50 {
            if !is_mounted(&self.mnt) {
                break;
            }
            let ok = Command::new("umount")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                thread::sleep(Duration::from_millis(40));
            }
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        // Only our device: the number is reused as soon as autoclear freed it.
        let name = self.device.trim_start_matches("/dev/");
        let backing = fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).unwrap_or_default();
        if backing.starts_with(self.image.to_str().unwrap_or("\0")) {
            let _ = Command::new("losetup")
                .arg("-d")
                .arg(&self.device)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The source (device) of the mount at `path`, from `/proc/self/mountinfo`.
fn mount_source(path: &Path) -> Option<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() > 4 && Path::new(fields[4]) == path {
            let sep = fields.iter().position(|f| *f == "-")?;
            found = fields.get(sep + 2).map(|s| s.to_string());
        }
    }
    found
}

/// Whether anything is mounted at or below `path`.
pub fn anything_mounted_below(path: &Path) -> bool {
    mount_points().iter().any(|m| m.starts_with(path))
}

fn read_json_file(p: &Path) -> Value {
    let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", p.display()))
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A child process (`sleep`) with its working directory in `dir`, and
/// optionally holding `file` open on its stdin: it keeps a view busy. It is
/// killed (by its pid) and reaped on drop.
pub struct Busy(Child);

impl Busy {
    pub fn new(dir: &Path, file: Option<&Path>) -> Busy {
        let stdin = match file {
            Some(f) => Stdio::from(fs::File::open(f).unwrap_or_else(|e| panic!("open {}: {e}", f.display()))),
            None => Stdio::null(),
        };
        let child = Command::new("sleep")
            .arg("600")
            .current_dir(dir)
            .stdin(stdin)
            .spawn()
            .expect("spawn sleep");
        Busy(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Lists the process's working directory through `/proc/PID/cwd`: what
    /// the process itself would see there.
    pub fn list_cwd(&self) -> std::io::Result<Vec<String>> {
        let mut v: Vec<String> = fs::read_dir(format!("/proc/{}/cwd", self.0.id()))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()?;
        v.sort();
        Ok(v)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Mounts a new session `session` of `project`, writes `file` with
/// `content` in it, unmounts it and promotes it (the next generation).
pub fn promote_new_session(d: &super::Daemon, project: &str, session: &str, file: &str, content: &str) {
    let m = d.mount(project, session);
    super::write(m.join(file), content);
    d.unmount(session);
    d.ok(&["promote", project, session]);
}
