//! The inode table: what the kernel has looked up, keyed by inode number.
//!
//! A node's inode number is the backing inode of its origin (lowest copy), so
//! it survives copy-up and remounts. Directories are located by their merged
//! path (parent chain); their lower copies by fixed paths in immutable layers.
//! Files are located by an `O_PATH` fd once in the upper (so renames and other
//! links do not matter) or by their fixed lower path.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Ino, Kind, ROOT_INO};
use crate::error::Errno;

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
    /// In the session's upper; an `O_PATH` fd on it.
    Upper(Arc<OwnedFd>),
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
    /// lock is cheap enough.
    fn shrink_if_sparse(&mut self) {
        const MIN_CAPACITY: usize = 4096;
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

    /// Like [`NodeTable::unlink_name`], keeping `keep` open for the node's lifetime.
    pub fn unlink_name_keeping(&mut self, parent: Ino, name: &OsStr, keep: Option<OwnedFd>) {
        if let Some(ino) = self.by_name.remove(&(parent, name.to_os_string()))
            && let Some(n) = self.nodes.get_mut(&ino)
            && n.parent == parent
            && n.name == name
        {
            n.unlinked = true;
            if keep.is_some() {
                n.keep = keep;
            }
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
        use std::os::fd::AsFd;
        match (self, other) {
            (FileBacking::Upper(a), FileBacking::Upper(b)) => {
                match (crate::sys::fstat(a.as_fd()), crate::sys::fstat(b.as_fd())) {
                    (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
                    _ => false,
                }
            }
            _ => false,
        }
    }
}
