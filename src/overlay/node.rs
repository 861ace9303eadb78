//! The inode table: what the kernel has looked up, keyed by inode number.
//!
//! A node's inode number is the backing inode of its origin (lowest copy), so
//! it survives copy-up and remounts. Directories are located by their merged
//! path (parent chain); their lower copies by fixed paths in immutable layers.
//! Files are located by a kernel file handle once in the upper (so renames
//! and other links do not matter; see [`UpperFile`]) or by their fixed lower
//! path.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Ino, Kind, ROOT_INO};
use crate::error::Errno;
use crate::sys::handle::{self, FileHandle};
use crate::sys::{self, OFlags};

/// One directory of a lower layer that contributes to a merged directory.
#[derive(Clone, Debug)]
pub struct LowerDir {
    /// Index into the lower layers (0 = top lower).
    pub layer: usize,
    /// Path relative to that layer's root.
    pub path: PathBuf,
    /// Backing inode number of that directory.
    pub ino: u64,
}

/// Where a non-directory's content lives.
#[derive(Clone, Debug)]
pub enum FileBacking {
    /// In the session's upper.
    Upper(UpperFile),
    /// In a lower layer at a fixed path.
    Lower { layer: usize, path: Arc<Path> },
}

#[derive(Clone, Debug)]
pub struct DirInfo {
    /// The directory exists in the upper at its merged path.
    pub upper: bool,
    /// Lower directories merged below it, top first (empty: none, or opaque).
    pub lower: Arc<[LowerDir]>,
    /// Its path in the merged namespace of the lower layers (used as the
    /// redirect target when it is renamed).
    pub origin: Option<Arc<Path>>,
}

#[derive(Clone, Debug)]
pub enum NodeData {
    Dir(DirInfo),
    File(FileBacking),
}

#[derive(Debug)]
pub struct Node {
    pub parent: Ino,
    pub name: OsString,
    pub kind: Kind,
    pub lookups: u64,
    /// Its name was removed from the view (it lives on while the kernel holds it).
    pub unlinked: bool,
    pub data: NodeData,
    /// Keeps a removed directory's backing inode allocated while the kernel
    /// still holds the node, so its number (our node id) is not reused.
    pub keep: Option<OwnedFd>,
}

impl Node {
    pub fn dir(&self) -> Result<&DirInfo, Errno> {
        match &self.data {
            NodeData::Dir(d) => Ok(d),
            NodeData::File(_) => Err(Errno::ENOTDIR),
        }
    }
}

#[derive(Default)]
pub struct NodeTable {
    nodes: HashMap<Ino, Node>,
    /// Index of the current name of every linked node.
    by_name: HashMap<(Ino, OsString), Ino>,
}

impl NodeTable {
    pub fn new(root: Node) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT_INO, root);
        NodeTable {
            nodes,
            by_name: HashMap::new(),
        }
    }

    pub fn get(&self, ino: Ino) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    pub fn get_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    /// The merged path of a node (relative, "" for the root).
    pub fn path_of(&self, mut ino: Ino) -> Result<PathBuf, Errno> {
        let mut names: Vec<&OsString> = Vec::new();
        while ino != ROOT_INO {
            let n = self.get(ino)?;
            if n.unlinked {
                return Err(Errno::ENOENT);
            }
            names.push(&n.name);
            ino = n.parent;
            if names.len() > 4096 {
                return Err(Errno::ELOOP);
            }
        }
        let mut p = PathBuf::new();
        for n in names.iter().rev() {
            p.push(n);
        }
        Ok(p)
    }

    fn unindex(&mut self, ino: Ino) {
        if let Some(n) = self.nodes.get(&ino) {
            let key = (n.parent, n.name.clone());
            if self.by_name.get(&key) == Some(&ino) {
                self.by_name.remove(&key);
            }
        }
    }

    /// Records a lookup of `ino` as `parent/name`, inserting or refreshing the node.
    pub fn remember(&mut self, ino: Ino, parent: Ino, name: &OsStr, kind: Kind, data: NodeData) {
        self.unindex(ino);
        match self.nodes.get_mut(&ino) {
            Some(n) => {
                n.lookups += 1;
                n.unlinked = false;
                n.kind = kind;
                n.parent = parent;
                n.name = name.to_os_string();
                // A lower name of a file this view copied up (a golden hard
                // link copy-up could not reach, e.g. below a renamed
                // directory) is the same inode: it keeps the upper data
                // rather than switching every name back to the lower copy.
                let copied_up = matches!(
                    (&n.data, &data),
                    (
                        NodeData::File(FileBacking::Upper(_)),
                        NodeData::File(FileBacking::Lower { .. })
                    )
                );
                if !copied_up {
                    n.data = data;
                }
            }
            None => {
                self.nodes.insert(
                    ino,
                    Node {
                        parent,
                        name: name.to_os_string(),
                        kind,
                        lookups: 1,
                        unlinked: false,
                        data,
                        keep: None,
                    },
                );
            }
        }
        if let Some(old) = self.by_name.insert((parent, name.to_os_string()), ino)
            && old != ino
            && let Some(o) = self.nodes.get_mut(&old)
        {
            // A stale node held that name (its entry was replaced behind it).
            o.unlinked = true;
        }
    }

    /// Drops `n` kernel references; the node goes away at zero (never the root).
    pub fn forget(&mut self, ino: Ino, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let gone = match self.nodes.get_mut(&ino) {
            Some(node) => {
                node.lookups = node.lookups.saturating_sub(n);
                node.lookups == 0
            }
            None => false,
        };
        if gone {
            self.unindex(ino);
            self.nodes.remove(&ino);
            self.shrink_if_sparse();
        }
    }

    /// Gives back memory once the kernel has forgotten most nodes (e.g.
    /// after `drop_caches` or memory pressure): hash maps never shrink on
    /// their own, and the allocator keeps freed nodes' pages until trimmed.
    /// Rare (the table must have shrunk eightfold), so trimming under the
    /// lock is cheap enough. It goes on down to a small table: stopping at
    /// 4,096 slots left about 250 KiB per walked view (nodes and name index)
    /// after the kernel forgot every inode.
    fn shrink_if_sparse(&mut self) {
        const MIN_CAPACITY: usize = 64;
        let cap = self.nodes.capacity();
        if cap > MIN_CAPACITY && self.nodes.len() < cap / 8 {
            self.nodes.shrink_to(self.nodes.len() * 2);
            self.by_name.shrink_to(self.by_name.len() * 2);
            crate::sys::trim_allocator();
        }
    }

    /// A directory node has an upper copy now (made by copy-up or a rename).
    pub fn mark_dir_upper(&mut self, ino: Ino) {
        if let Some(n) = self.nodes.get_mut(&ino)
            && let NodeData::Dir(d) = &mut n.data
        {
            d.upper = true;
        }
    }

    /// The node currently named `parent/name`, if the kernel knows it.
    pub fn child(&self, parent: Ino, name: &OsStr) -> Option<Ino> {
        self.by_name.get(&(parent, name.to_os_string())).copied()
    }

    /// Unlinked node `ino` is known as `parent/name` now: another name of
    /// its (multiply-linked) file, where its copy-up was published.
    pub fn relink(&mut self, ino: Ino, parent: Ino, name: &OsStr) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.parent = parent;
            n.name = name.to_os_string();
            n.unlinked = false;
            if let Some(old) = self.by_name.insert((parent, name.to_os_string()), ino)
                && old != ino
                && let Some(o) = self.nodes.get_mut(&old)
            {
                o.unlinked = true;
            }
        }
    }

    /// The name `parent/name` went away: its node (if any) is unlinked.
    pub fn unlink_name(&mut self, parent: Ino, name: &OsStr) {
        self.unlink_name_keeping(parent, name, None);
    }

    /// Like [`NodeTable::unlink_name`], keeping `keep` open for the node's
    /// lifetime. Returns the node that lost its name, if the kernel knows one.
    pub fn unlink_name_keeping(&mut self, parent: Ino, name: &OsStr, keep: Option<OwnedFd>) -> Option<Ino> {
        if let Some(ino) = self.by_name.remove(&(parent, name.to_os_string()))
            && let Some(n) = self.nodes.get_mut(&ino)
            && n.parent == parent
            && n.name == name
        {
            n.unlinked = true;
            if keep.is_some() {
                n.keep = keep;
            }
            return Some(ino);
        }
        None
    }

    /// The name `parent/name` of an upper file went away, and with it the
    /// file's last link (`deleted`, an fd-holding [`UpperFile`] of it, see
    /// [`UpperFile::if_deleted`]): the node, which the kernel may still
    /// use (an open file, an `O_PATH` fd), holds the file by that fd from
    /// now on, as no handle can open a deleted inode.
    pub fn unlink_upper_name(&mut self, parent: Ino, name: &OsStr, deleted: Option<UpperFile>) {
        if let Some(ino) = self.unlink_name_keeping(parent, name, None)
            && let Some(d) = deleted
            && let Some(n) = self.nodes.get_mut(&ino)
            && let NodeData::File(FileBacking::Upper(u)) = &mut n.data
            && u.ino == d.ino
        {
            *u = d;
        }
    }

    /// The node named `parent/name` is now `new_parent/new_name` (replacing
    /// whatever had that name).
    pub fn rename(&mut self, parent: Ino, name: &OsStr, new_parent: Ino, new_name: &OsStr) {
        self.unlink_name(new_parent, new_name);
        if let Some(ino) = self.by_name.remove(&(parent, name.to_os_string())) {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.parent = new_parent;
                n.name = new_name.to_os_string();
            }
            self.by_name.insert((new_parent, new_name.to_os_string()), ino);
        }
    }

    /// Swaps the nodes named `a` and `b` (`RENAME_EXCHANGE`).
    pub fn exchange(&mut self, a: (Ino, &OsStr), b: (Ino, &OsStr)) {
        let ia = self.by_name.remove(&(a.0, a.1.to_os_string()));
        let ib = self.by_name.remove(&(b.0, b.1.to_os_string()));
        if let Some(ia) = ia
            && let Some(n) = self.nodes.get_mut(&ia)
        {
            n.parent = b.0;
            n.name = b.1.to_os_string();
            self.by_name.insert((b.0, b.1.to_os_string()), ia);
        }
        if let Some(ib) = ib
            && let Some(n) = self.nodes.get_mut(&ib)
        {
            n.parent = a.0;
            n.name = a.1.to_os_string();
            self.by_name.insert((a.0, a.1.to_os_string()), ib);
        }
    }
}

impl FileBacking {
    /// Both are the same upper inode (two hard links of one file).
    pub fn same_upper(&self, other: &FileBacking) -> bool {
        match (self, other) {
            (FileBacking::Upper(a), FileBacking::Upper(b)) => a.ino == b.ino,
            _ => false,
        }
    }
}

/// A file of the session's upper as a node remembers it: by kernel file
/// handle, so that a view holds no fd per upper file the kernel has looked
/// up (the kernel keeps those until memory pressure, and a data root holds
/// millions; one fd each ran the daemon out of `RLIMIT_NOFILE`). By an
/// `O_PATH` fd where the store's filesystem gives no handles, for a file
/// whose last name is gone (no handle opens a deleted inode), and in a
/// [`Found`](super::resolve::Found) fresh from a lookup.
#[derive(Clone, Debug)]
pub struct UpperFile {
    /// Its backing inode number (names of one file have the same).
    ino: u64,
    at: UpperAt,
}

#[derive(Clone, Debug)]
enum UpperAt {
    Fd(Arc<OwnedFd>),
    Handle(FileHandle),
}

/// Set once the store's filesystem refused a handle (logged once).
static NO_HANDLES: AtomicBool = AtomicBool::new(false);

impl UpperFile {
    /// The file behind `fd` (any `O_PATH` fd on it), backing inode `ino`.
    pub fn from_fd(fd: OwnedFd, ino: u64) -> UpperFile {
        UpperFile {
            ino,
            at: UpperAt::Fd(Arc::new(fd)),
        }
    }

    /// The same file held by handle, to be kept in a node: the fd goes.
    /// Without handles (EOPNOTSUPP and the like) the fd stays, as it must
    /// for correctness.
    pub fn compact(self) -> UpperFile {
        let UpperAt::Fd(fd) = &self.at else {
            return self;
        };
        match handle::name_to_handle(fd.as_fd()) {
            Ok(h) => UpperFile {
                ino: self.ino,
                at: UpperAt::Handle(h),
            },
            Err(e) => {
                if !NO_HANDLES.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "the store's filesystem gives no file handles ({e}): the daemon holds \
                         one fd per upper file the kernel knows, and may run out of them"
                    );
                }
                self
            }
        }
    }

    /// The same file, if the name just removed was its last: it then has
    /// to stay held by its fd (see [`NodeTable::unlink_upper_name`]).
    pub fn if_deleted(&self) -> Option<UpperFile> {
        let UpperAt::Fd(fd) = &self.at else {
            return None;
        };
        (sys::fstat(fd.as_fd()).ok()?.st_nlink == 0).then(|| self.clone())
    }

    /// An `O_PATH` fd on it. `mount` is any fd on the upper's filesystem.
    pub fn path_fd(&self, mount: BorrowedFd<'_>) -> Result<Arc<OwnedFd>, Errno> {
        match &self.at {
            UpperAt::Fd(fd) => Ok(fd.clone()),
            UpperAt::Handle(h) => Ok(Arc::new(handle::open_by_handle(mount, h, OFlags::PATH).map_err(gone)?)),
        }
    }

    /// Opens the (regular) file with `flags`.
    pub fn open(&self, mount: BorrowedFd<'_>, flags: OFlags) -> Result<OwnedFd, Errno> {
        match &self.at {
            UpperAt::Fd(fd) => Ok(sys::reopen(fd.as_fd(), flags)?),
            UpperAt::Handle(h) => handle::open_by_handle(mount, h, flags).map_err(gone),
        }
    }

    /// It is held by an fd (a test hook: which way a node holds its file).
    #[cfg(test)]
    pub fn holds_fd(&self) -> bool {
        matches!(self.at, UpperAt::Fd(_))
    }
}

/// ESTALE: the inode a handle named is gone (the session's upper is the
/// daemon's alone, so only by a deletion the view made): report it gone.
fn gone(e: std::io::Error) -> Errno {
    match e.raw_os_error() {
        Some(libc::ESTALE) => Errno::ENOENT,
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_data() -> NodeData {
        NodeData::Dir(DirInfo {
            upper: false,
            lower: Arc::from(Vec::new()),
            origin: None,
        })
    }

    #[test]
    fn table_shrinks_to_a_small_size_once_the_kernel_forgets_every_node() {
        let mut t = NodeTable::new(Node {
            parent: ROOT_INO,
            name: OsString::new(),
            kind: Kind::Dir,
            lookups: 1,
            unlinked: false,
            data: dir_data(),
            keep: None,
        });
        let n: Ino = 50_000;
        for ino in 2..n {
            t.remember(ino, ROOT_INO, OsStr::new(&format!("f{ino}")), Kind::Dir, dir_data());
        }
        assert!(t.nodes.capacity() >= n as usize - 2);
        for ino in 2..n {
            t.forget(ino, 1);
        }
        assert_eq!(t.nodes.len(), 1, "only the root is left");
        assert!(t.by_name.is_empty());
        assert!(t.nodes.capacity() <= 64, "nodes capacity {}", t.nodes.capacity());
        assert!(
            t.by_name.capacity() <= 64,
            "name index capacity {}",
            t.by_name.capacity()
        );
    }
}
