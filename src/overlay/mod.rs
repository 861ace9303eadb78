//! The copy-on-write core: a stack of read-only layers plus one writable upper.
//!
//! It takes opened layer directories and returns values (`Result<_, Errno>`);
//! it knows nothing of FUSE. The `fuse` module adapts it to `fuser`.
//!
//! Lock order (never taken the other way round):
//! 1. a per-inode copy-up mutex (`copyup_locks`), held across one file's data copy;
//! 2. `ns`, the namespace lock: shared for lookups and reads, exclusive for
//!    every change to the upper's names; never held across a data copy;
//! 3. `nodes`, the inode table, held only for in-memory work.

mod copyup;
mod flatten;
mod hardlinks;
mod markers;
mod meta;
mod namespace;
mod node;
mod readdir;
mod rename;
mod resolve;
#[cfg(test)]
mod tests;
pub mod version;

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::error::Errno;
use crate::store::layout::{LayerMeta, LowerLayer};
use crate::sys::{self, Stat};
pub use flatten::Flattened;
pub use hardlinks::layer_link_groups;
use node::{DirInfo, LowerDir, Node, NodeData, NodeTable};
pub use readdir::DirEntry;
use readdir::LowerHint;
use version::{VERSION_FILE_NAME, VersionInfo};

pub type Ino = u64;
/// The root of every view (FUSE's fixed root id).
pub const ROOT_INO: Ino = 1;
/// The virtual version file (no backing inode can have this number).
pub const VERSION_INO: Ino = u64::MAX - 1;

/// Who asks: new entries belong to the caller.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl Kind {
    pub fn from_mode(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            _ => Kind::File,
        }
    }
}

/// Attributes as the view reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky.
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blocks: u64,
    pub blksize: u32,
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
}

impl Attr {
    fn from_stat(ino: Ino, st: &Stat) -> Attr {
        Attr {
            ino,
            kind: Kind::from_mode(st.st_mode),
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev,
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            blksize: st.st_blksize as u32,
            atime: (st.st_atime, st.st_atime_nsec as u32),
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
            ctime: (st.st_ctime, st.st_ctime_nsec as u32),
        }
    }
}

/// Attribute changes of `setattr`; `Some(None)` in a time means "now".
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<Option<(i64, i64)>>,
    pub mtime: Option<Option<(i64, i64)>>,
}

/// Filesystem statistics (of the store's filesystem).
#[derive(Clone, Copy, Debug)]
pub struct FsStats {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// An opened backing file; `key` identifies the backing inode (for sharing
/// one kernel passthrough registration among opens of the same file).
#[derive(Debug)]
pub struct Opened {
    pub fd: OwnedFd,
    pub key: (u64, u64),
    /// The backing file is the session's own (upper) copy, not a lower layer's.
    pub upper: bool,
}

/// The directories a view is made of.
pub struct LayerDirs {
    pub upper: OwnedFd,
    pub work: OwnedFd,
    /// Top first.
    pub lowers: Vec<OwnedFd>,
    /// Per lower layer, its sidecar (`STATE/layer-meta/L.json`) if it has
    /// one: compacted layers do (see `hardlinks`). Its `links` are moved
    /// into the view's link tables when the view is built.
    pub meta: Vec<Option<LayerMeta>>,
}

impl LayerDirs {
    /// Opens the layer directories by path (paths and sidecars come from
    /// the store).
    pub fn open(upper: &Path, work: &Path, lowers: &[LowerLayer]) -> std::io::Result<LayerDirs> {
        Ok(LayerDirs {
            upper: sys::open_dir_abs(upper)?,
            work: sys::open_dir_abs(work)?,
            lowers: lowers
                .iter()
                .map(|l| sys::open_dir_abs(&l.dir))
                .collect::<Result<_, _>>()?,
            meta: lowers.iter().map(|l| l.meta.clone()).collect(),
        })
    }
}

/// Counters for status and metrics (read by `crate::metrics`).
#[derive(Default, Debug)]
pub struct Counters {
    /// Non-directories copied up.
    pub copy_ups: AtomicU64,
    /// Bytes of file data those copy-ups copied (or cloned).
    pub copy_up_bytes: AtomicU64,
    /// Whiteouts created.
    pub whiteouts: AtomicU64,
}

/// One session's copy-on-write view.
pub struct Overlay {
    layers: LayerDirs,
    /// The lower layers' root directories (the root's lower stack), fixed for
    /// the view's lifetime.
    root_lower: Arc<[LowerDir]>,
    ns: RwLock<()>,
    nodes: RwLock<NodeTable>,
    copyup_locks: Vec<Mutex<()>>,
    /// Name in the work dir of the inode every new whiteout links to.
    shared_whiteout: Mutex<Option<std::ffi::OsString>>,
    /// Per lower layer, its multiply-linked files (persisted for compacted
    /// layers, else scanned on first need).
    link_tables: Vec<std::sync::OnceLock<hardlinks::LinkTable>>,
    version: Vec<u8>,
    version_mtime: (i64, u32),
    tmp_seq: AtomicU64,
    pub counters: Arc<Counters>,
}

/// Everything needed to look names up in one directory of the view.
struct DirView {
    ino: Ino,
    /// The directory's merged path.
    path: PathBuf,
    /// `O_PATH` fd of its upper copy, if it has one.
    upper: Option<OwnedFd>,
    lower: Arc<[LowerDir]>,
    /// `O_PATH` fds of `lower`, opened on first use by this view.
    lower_fds: Box<[std::sync::OnceLock<OwnedFd>]>,
    origin: Option<Arc<Path>>,
}

impl DirView {
    fn new(ino: Ino, path: PathBuf, upper: Option<OwnedFd>, lower: Arc<[LowerDir]>, origin: Option<Arc<Path>>) -> Self {
        DirView {
            ino,
            path,
            upper,
            lower_fds: lower.iter().map(|_| Default::default()).collect(),
            lower,
            origin,
        }
    }

    /// `O_PATH` fd of lower directory `i`, opened on first use.
    fn lower_fd(&self, layers: &LayerDirs, i: usize) -> Result<&OwnedFd, Errno> {
        let l = &self.lower[i];
        cached_fd(&self.lower_fds[i], || {
            Ok(sys::open_dir_path(layers.lowers[l.layer].as_fd(), &l.path)?)
        })
    }
}

/// The fd in `cell`, opened by `open` the first time.
fn cached_fd(
    cell: &std::sync::OnceLock<OwnedFd>,
    open: impl FnOnce() -> Result<OwnedFd, Errno>,
) -> Result<&OwnedFd, Errno> {
    if let Some(fd) = cell.get() {
        return Ok(fd);
    }
    let fd = open()?;
    Ok(cell.get_or_init(|| fd))
}

impl Overlay {
    /// Builds a view over `layers`. The work directory is emptied.
    pub fn new(mut layers: LayerDirs, version: &VersionInfo) -> Result<Overlay, Errno> {
        for e in sys::read_dir_entries(sys::open_dir_read(layers.work.as_fd(), Path::new(""))?)? {
            remove_tree_at(layers.work.as_fd(), &e.name)?;
        }
        let root_lower: Arc<[LowerDir]> = layers
            .lowers
            .iter()
            .enumerate()
            .map(|(i, fd)| {
                Ok(LowerDir {
                    layer: i,
                    path: PathBuf::new(),
                    ino: sys::fstat(fd.as_fd())?.st_ino,
                })
            })
            .collect::<Result<Vec<_>, Errno>>()?
            .into();
        let root = Node {
            parent: ROOT_INO,
            name: Default::default(),
            kind: Kind::Dir,
            lookups: 1,
            unlinked: false,
            keep: None,
            data: NodeData::Dir(DirInfo {
                upper: true,
                lower: root_lower.clone(),
                origin: Some(Path::new("").into()),
            }),
        };
        let version_mtime = humantime::parse_rfc3339_weak(&version.created_at)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| (d.as_secs() as i64, d.subsec_nanos()))
            .unwrap_or((0, 0));
        Ok(Overlay {
            link_tables: layers
                .meta
                .iter_mut()
                .map(|m| {
                    m.as_mut()
                        .map(hardlinks::LinkTable::take_from_meta)
                        .map(Into::into)
                        .unwrap_or_default()
                })
                .collect(),
            layers,
            root_lower,
            ns: RwLock::new(()),
            nodes: RwLock::new(NodeTable::new(root)),
            copyup_locks: (0..64).map(|_| Mutex::new(())).collect(),
            shared_whiteout: Mutex::new(None),
            version: version.render(),
            version_mtime,
            tmp_seq: AtomicU64::new(0),
            counters: Arc::default(),
        })
    }

    fn is_version(&self, parent: Ino, name: &OsStr) -> bool {
        parent == ROOT_INO && name == VERSION_FILE_NAME
    }

    fn version_attr(&self) -> Attr {
        Attr {
            ino: VERSION_INO,
            kind: Kind::File,
            perm: 0o444,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            size: self.version.len() as u64,
            blocks: (self.version.len() as u64).div_ceil(512),
            blksize: 4096,
            atime: self.version_mtime,
            mtime: self.version_mtime,
            ctime: self.version_mtime,
        }
    }

    /// Reads the virtual version file.
    pub fn read_version(&self, offset: u64, size: u32) -> Vec<u8> {
        let start = (offset as usize).min(self.version.len());
        let end = start.saturating_add(size as usize).min(self.version.len());
        self.version[start..end].to_vec()
    }

    /// A unique name for a scratch entry in the work directory.
    fn tmp_name(&self, what: &str) -> std::ffi::OsString {
        format!("{what}-{}", self.tmp_seq.fetch_add(1, Ordering::Relaxed)).into()
    }

    /// Statistics of the store's filesystem.
    pub fn statfs(&self) -> Result<FsStats, Errno> {
        let s = sys::fstatfs(self.layers.upper.as_fd())?;
        Ok(FsStats {
            blocks: s.f_blocks,
            bfree: s.f_bfree,
            bavail: s.f_bavail,
            files: s.f_files,
            ffree: s.f_ffree,
            bsize: s.f_bsize as u32,
            namelen: s.f_namelen as u32,
            frsize: s.f_frsize as u32,
        })
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: Ino, n: u64) {
        if ino != VERSION_INO {
            self.nodes.write().forget(ino, n);
        }
    }
}

/// Removes `name` in `dir` and everything below it (scratch cleanup only).
fn remove_tree_at(dir: std::os::fd::BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    let st = sys::stat_at(dir, name)?;
    if Kind::from_mode(st.st_mode) == Kind::Dir {
        let sub = sys::open_at(dir, name, sys::OFlags::RDONLY | sys::OFlags::DIRECTORY, 0)?;
        for e in sys::read_dir_entries(&sub)? {
            remove_tree_at(sub.as_fd(), &e.name)?;
        }
        sys::rmdir_at(dir, name)?;
    } else {
        sys::unlink_at(dir, name)?;
    }
    Ok(())
}
