//! Checks of the store's filesystem, run in a scratch directory inside the
//! state directory (or its nearest existing parent) that is always removed.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::{Check, Status, row, unique_name};
use crate::sys::{self, FileType, OFlags, RenameFlags, probe, xattr};

/// Where the daemon would put its store: the state directory if it exists,
/// else its nearest existing parent (the daemon creates the rest).
fn locate(state_dir: &Path) -> Result<(PathBuf, Check), Check> {
    let abs = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let mut p = abs.as_path();
    loop {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() && p == abs => {
                let found = format!("{} exists", abs.display());
                return Ok((p.to_path_buf(), row("state-dir", Status::Ok, found, "")));
            }
            Ok(m) if m.is_dir() => {
                let found = format!(
                    "{} does not exist yet; checked its nearest existing parent {}",
                    abs.display(),
                    p.display()
                );
                let advice = "the daemon creates it on its first start";
                return Ok((p.to_path_buf(), row("state-dir", Status::Ok, found, advice)));
            }
            Ok(_) => {
                return Err(row(
                    "state-dir",
                    Status::Fail,
                    format!("{} is not a directory", p.display()),
                    "the store needs a directory: pass --state-dir DIR; filesystem checks skipped",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match p.parent() {
                Some(parent) => p = parent,
                None => break,
            },
            Err(e) => {
                return Err(row(
                    "state-dir",
                    Status::Fail,
                    format!("{}: {e}", p.display()),
                    "filesystem checks skipped",
                ));
            }
        }
    }
    Err(row(
        "state-dir",
        Status::Fail,
        format!("no existing parent of {}", abs.display()),
        "filesystem checks skipped",
    ))
}

/// A scratch directory removed (with everything in it) when dropped.
struct Scratch {
    path: PathBuf,
    fd: OwnedFd,
}

impl Scratch {
    fn create(parent: &Path) -> io::Result<Scratch> {
        let path = parent.join(format!(".{}", unique_name()));
        std::fs::create_dir(&path)?;
        match sys::open_dir_abs(&path) {
            Ok(fd) => Ok(Scratch { path, fd }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&path);
                Err(e)
            }
        }
    }

    fn dir(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn create_file(&self, name: &str, data: &[u8]) -> io::Result<OwnedFd> {
        let fd = sys::open_at(
            self.dir(),
            OsStr::new(name),
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
            0o600,
        )?;
        sys::pwrite_all(fd.as_fd(), data, 0)?;
        Ok(fd)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            log::warn!("cannot remove doctor scratch directory {}: {e}", self.path.display());
        }
    }
}

/// The store checks, each one row.
pub fn checks(state_dir: &Path) -> Vec<Check> {
    let (dir, located) = match locate(state_dir) {
        Ok(v) => v,
        Err(fail) => return vec![fail],
    };
    let scratch = match Scratch::create(&dir) {
        Ok(s) => s,
        Err(e) => {
            let found = format!("cannot create a scratch directory in {}: {e}", dir.display());
            return vec![
                located,
                row(
                    "store-writable",
                    Status::Fail,
                    found,
                    "the daemon must be able to write there (run as root); filesystem checks skipped",
                ),
            ];
        }
    };
    let mut out = vec![located];
    out.extend(space(&scratch));
    out.push(trusted_xattrs(&scratch));
    out.push(user_xattrs(&scratch));
    out.push(reflink(&scratch));
    out.push(d_type(&scratch));
    out.push(hard_links(&scratch));
    out.push(rename_exchange(&scratch));
    out.push(whiteout_node(&scratch));
    out
}

fn space(s: &Scratch) -> Vec<Check> {
    let fs = sys::ctl::fs_type_name(s.dir()).unwrap_or_else(|e| format!("unknown ({e})"));
    let fs_row = match fs.as_str() {
        "ext4" | "xfs" | "btrfs" => row("store-fs", Status::Ok, fs, ""),
        "tmpfs" => row(
            "store-fs",
            Status::Warn,
            fs,
            "the store lives in memory and is lost at reboot",
        ),
        _ => row(
            "store-fs",
            Status::Warn,
            fs,
            "untested store filesystem: ext4, XFS and btrfs are the tested ones",
        ),
    };
    let st = match sys::fstatfs(s.dir()) {
        Ok(st) => st,
        Err(e) => return vec![fs_row, row("store-space", Status::Warn, format!("statfs: {e}"), "")],
    };
    #[allow(clippy::unnecessary_cast)]
    let (bsize, bavail, files, ffree) = (
        st.f_bsize as u64,
        st.f_bavail as u64,
        st.f_files as u64,
        st.f_ffree as u64,
    );
    let free = bavail.saturating_mul(bsize);
    let free_text = format!("{} free", crate::cli::human_bytes(free));
    let space_row = if free < 1 << 30 {
        row(
            "store-space",
            Status::Warn,
            free_text,
            "under 1 GiB: imports, copy-ups and promotions will soon hit ENOSPC",
        )
    } else {
        row("store-space", Status::Ok, free_text, "")
    };
    let inode_row = if files == 0 {
        row(
            "store-inodes",
            Status::Ok,
            "the filesystem does not report an inode limit",
            "",
        )
    } else if ffree < 100_000 {
        row(
            "store-inodes",
            Status::Warn,
            format!("{ffree} of {files} inodes free"),
            "under 100000: every file of a session's changes and of an import needs one",
        )
    } else {
        row(
            "store-inodes",
            Status::Ok,
            format!("{ffree} of {files} inodes free"),
            "",
        )
    };
    vec![fs_row, space_row, inode_row]
}

/// Sets, reads back and removes one xattr on a scratch file.
fn xattr_roundtrip(s: &Scratch, file: &str, name: &str) -> io::Result<()> {
    let fd = s.create_file(file, b"x")?;
    let name = OsStr::new(name);
    xattr::set(fd.as_fd(), name, b"doctor", xattr::XattrFlags::empty())?;
    if xattr::get(fd.as_fd(), name)?.as_deref() != Some(&b"doctor"[..]) {
        return Err(io::Error::other("read back a different value"));
    }
    xattr::remove(fd.as_fd(), name)
}

fn trusted_xattrs(s: &Scratch) -> Check {
    xattr_check(
        s,
        "trusted",
        Status::Fail,
        "the store keeps its whiteout, opaque and origin markers in trusted.* xattrs: run as root on a filesystem with xattrs (ext4, XFS, btrfs)",
    )
}

fn user_xattrs(s: &Scratch) -> Check {
    xattr_check(s, "user", Status::Warn, "files in views cannot carry user.* xattrs")
}

/// Row `xattr-NS`: a `NS.goldenfs.doctor` round trip; `bad` and `advice` if it fails.
fn xattr_check(s: &Scratch, ns: &str, bad: Status, advice: &str) -> Check {
    let (check, name) = (format!("xattr-{ns}"), format!("{ns}.goldenfs.doctor"));
    match xattr_roundtrip(s, &check, &name) {
        Ok(()) => row(
            &check,
            Status::Ok,
            format!("{ns}.* xattrs can be set, read and removed"),
            "",
        ),
        Err(e) => row(&check, bad, format!("{name}: {e}"), advice),
    }
}

fn reflink(s: &Scratch) -> Check {
    let r = (|| {
        let a = s.create_file("reflink-a", &[7u8; 4096])?;
        let b = s.create_file("reflink-b", b"")?;
        probe::reflink(a.as_fd(), b.as_fd())
    })();
    match r {
        Ok(()) => row(
            "reflink",
            Status::Ok,
            "FICLONE works",
            "copy-ups and imports are instant (blocks are shared)",
        ),
        Err(e) => row(
            "reflink",
            Status::Warn,
            format!("FICLONE: {e}"),
            "copy-up and import copy bytes (copy_file_range): time and space grow with file size; XFS or btrfs have reflinks",
        ),
    }
}

fn d_type(s: &Scratch) -> Check {
    let r = (|| {
        s.create_file("dtype-file", b"")?;
        sys::mkdir_at(s.dir(), OsStr::new("dtype-dir"), 0o700)?;
        let rd = sys::open_dir_read(s.dir(), Path::new(""))?;
        // The types as readdir reports them (sys::read_dir_entries fills in
        // missing ones with a stat).
        let mut dir = rustix::fs::Dir::read_from(&rd).map_err(io::Error::from)?;
        let (mut file, mut sub) = (None, None);
        while let Some(e) = dir.read() {
            let e = e.map_err(io::Error::from)?;
            match e.file_name().to_bytes() {
                b"dtype-file" => file = Some(e.file_type()),
                b"dtype-dir" => sub = Some(e.file_type()),
                _ => {}
            }
        }
        Ok::<_, io::Error>((file, sub))
    })();
    match r {
        Ok((Some(FileType::RegularFile), Some(FileType::Directory))) => {
            row("d-type", Status::Ok, "readdir reports entry types", "")
        }
        Ok(kinds) => row(
            "d-type",
            Status::Warn,
            format!("readdir reports types {kinds:?} for a file and a directory"),
            "every listing costs a stat per entry to tell whiteouts and directories apart (slower); use a filesystem with d_type (XFS: ftype=1)",
        ),
        Err(e) => row("d-type", Status::Fail, format!("readdir: {e}"), ""),
    }
}

fn hard_links(s: &Scratch) -> Check {
    let r = (|| {
        let fd = s.create_file("link-a", b"")?;
        sys::link_at(s.dir(), OsStr::new("link-a"), s.dir(), OsStr::new("link-b"))?;
        Ok::<_, io::Error>(sys::fstat(fd.as_fd())?.st_nlink)
    })();
    match r {
        Ok(2) => row("hard-links", Status::Ok, "link(2) works", ""),
        Ok(n) => row(
            "hard-links",
            Status::Fail,
            format!("a linked file reports {n} links, not 2"),
            "",
        ),
        Err(e) => row(
            "hard-links",
            Status::Fail,
            format!("link: {e}"),
            "goldens keep their hard links and whiteouts share one inode: the store needs hard links",
        ),
    }
}

fn rename_exchange(s: &Scratch) -> Check {
    let r = (|| {
        let x = sys::fstat(s.create_file("exchange-x", b"")?.as_fd())?.st_ino;
        s.create_file("exchange-y", b"")?;
        let (d, xn, yn) = (s.dir(), OsStr::new("exchange-x"), OsStr::new("exchange-y"));
        sys::rename_at(d, xn, d, yn, RenameFlags::EXCHANGE)?;
        Ok::<_, io::Error>(sys::stat_at(d, yn)?.st_ino == x)
    })();
    match r {
        Ok(true) => row("rename-exchange", Status::Ok, "renameat2(RENAME_EXCHANGE) works", ""),
        Ok(false) => row(
            "rename-exchange",
            Status::Fail,
            "RENAME_EXCHANGE returned success but did not swap",
            "",
        ),
        Err(e) => row(
            "rename-exchange",
            Status::Fail,
            format!("renameat2(RENAME_EXCHANGE): {e}"),
            "views replace directories and place whiteouts atomically with RENAME_EXCHANGE",
        ),
    }
}

fn whiteout_node(s: &Scratch) -> Check {
    match sys::mknod_at(s.dir(), OsStr::new("whiteout"), libc::S_IFCHR, 0) {
        Ok(()) => row(
            "whiteout-mknod",
            Status::Ok,
            "mknod of a character device 0/0 works",
            "",
        ),
        Err(e) => row(
            "whiteout-mknod",
            Status::Fail,
            format!("mknod char 0/0: {e}"),
            "deleting a golden file in a view leaves a whiteout (a 0/0 character device): mknod needs root (CAP_MKNOD)",
        ),
    }
}
