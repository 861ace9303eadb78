//! Hard links that exist inside a lower layer.
//!
//! Every name of a multiply-linked lower file is one node in a view (node ids
//! are origin inode numbers). Copy-up must therefore bring all of them up as
//! one upper inode, or the names would share an inode number while showing
//! different data. The other names come from a per-layer table; each one is
//! linked to the new upper copy if the view still shows that lower file
//! under it.
//!
//! A layer without a sidecar has its table built by scanning the layer the
//! first time a view needs it (layers are immutable, so it never goes
//! stale). A layer with a sidecar (`LayerDirs::meta`, written by compaction)
//! has its table persisted there, and the table is also where a view's
//! `st_nlink` of the layer's non-directories comes from (the size of its
//! group, else 1): compaction hard-links files into a new layer, so their
//! backing link counts also count names in other layers. Compaction writes
//! the sidecar of the new layer (its groups as the view showed them) and of
//! every layer it links from (their own groups, from a scan made before the
//! first link), so no view mounted afterwards sees an inflated count.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::markers;
use super::node::FileBacking;
use super::resolve::Found;
use super::{Ino, Kind, Overlay, ROOT_INO};
use crate::error::Errno;
use crate::store::layout::LayerMeta;
use crate::sys::{self, FileType, Stat};

/// The hard-link groups of one layer: the paths (relative to the layer
/// root) of every non-directory with more than one name in the layer.
#[derive(Debug, Default)]
pub(super) struct LinkTable {
    groups: Vec<Arc<[PathBuf]>>,
    by_path: HashMap<PathBuf, usize>,
}

impl LinkTable {
    /// A table of `groups`; groups of fewer than two names are dropped.
    fn from_groups(groups: impl IntoIterator<Item = Vec<PathBuf>>) -> LinkTable {
        let mut t = LinkTable::default();
        for g in groups.into_iter().filter(|g| g.len() > 1) {
            for p in &g {
                t.by_path.insert(p.clone(), t.groups.len());
            }
            t.groups.push(g.into());
        }
        t
    }

    /// The table a layer's sidecar persists, moved out of it (a view keeps
    /// one copy).
    pub(super) fn take_from_meta(meta: &mut LayerMeta) -> LinkTable {
        let links = std::mem::take(&mut meta.links);
        LinkTable::from_groups(links.iter().map(|g| g.iter().map(PathBuf::from).collect()))
    }

    /// Every name of the file at `path` (including `path`), if it has several.
    fn group(&self, path: &Path) -> Option<&[PathBuf]> {
        self.by_path.get(path).map(|&i| &*self.groups[i])
    }

    /// Number of names of the non-directory at `path` in the layer.
    pub(super) fn nlink(&self, path: &Path) -> u64 {
        self.group(path).map_or(1, |g| g.len() as u64)
    }
}

/// The hard-link groups of the layer at `dir` (for its sidecar), from a scan.
pub fn layer_link_groups(dir: &Path) -> Result<Vec<Vec<PathBuf>>, Errno> {
    Ok(sorted_groups(scan_layer(sys::open_dir_abs(dir)?.as_fd())?))
}

/// `groups` with fewer than two names dropped, each sorted, in order (a
/// stable form for sidecars).
pub(super) fn sorted_groups(groups: impl IntoIterator<Item = Vec<PathBuf>>) -> Vec<Vec<PathBuf>> {
    let mut out: Vec<Vec<PathBuf>> = groups.into_iter().filter(|g| g.len() > 1).collect();
    out.iter_mut().for_each(|g| g.sort());
    out.sort();
    out
}

/// Scans a layer for the groups of names of its multiply-linked
/// non-directories (groups of one name included).
fn scan_layer(root: std::os::fd::BorrowedFd<'_>) -> Result<Vec<Vec<PathBuf>>, Errno> {
    let mut table: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    // goldenfs whiteouts are all links of a few shared inodes: ask each
    // inode once whether it is one (they are never copied up).
    let mut whiteout_inodes: HashMap<u64, bool> = HashMap::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let fd = sys::open_dir_read(root, &dir)?;
        for e in sys::read_dir_entries(&fd)? {
            let path = dir.join(&e.name);
            if e.file_type == FileType::Directory {
                dirs.push(path);
                continue;
            }
            let st = sys::stat_at(fd.as_fd(), &e.name)?;
            if st.st_nlink <= 1 {
                continue;
            }
            let ours = markers::looks_like_whiteout(&st)
                && *whiteout_inodes
                    .entry(st.st_ino)
                    .or_insert_with(|| markers::is_whiteout(fd.as_fd(), &e.name).unwrap_or(false));
            if !ours {
                table.entry(st.st_ino).or_default().push(path);
            }
        }
    }
    // Singletons are dropped by the callers: the other links are outside the
    // layer, e.g. in a layer compacted from this one.
    Ok(table.into_values().collect())
}

/// Where the view shows the lower path `path` after the directory renames
/// `renamed` (from [`Overlay::renamed_dirs`]), if one of them moved it.
fn view_path(renamed: &[(PathBuf, PathBuf)], path: &Path) -> Option<PathBuf> {
    renamed.iter().find_map(|(lower, view)| {
        path.strip_prefix(lower)
            .ok()
            .filter(|rest| !rest.as_os_str().is_empty())
            .map(|rest| view.join(rest))
    })
}

/// Another name of a lower file, found in the view: its parent directory's
/// node (holding one lookup reference per entry of `refs`) and its name.
pub(super) struct Alias {
    pub parent: Ino,
    pub name: OsString,
}

/// Aliases of one copy-up, with the lookup references taken to find them.
#[derive(Default)]
pub(super) struct Aliases {
    pub found: Vec<Alias>,
    refs: Vec<Ino>,
}

impl Overlay {
    fn link_table(&self, layer: usize) -> Result<&LinkTable, Errno> {
        if let Some(t) = self.link_tables[layer].get() {
            return Ok(t);
        }
        let table = LinkTable::from_groups(scan_layer(self.layers.lowers[layer].as_fd())?);
        Ok(self.link_tables[layer].get_or_init(|| table))
    }

    /// The layer is a compacted one: it carries origin markers (on
    /// directories too) that must be read even at the bottom of the stack.
    pub(super) fn is_compacted(&self, layer: usize) -> bool {
        self.layers
            .meta
            .get(layer)
            .is_some_and(|m| m.as_ref().is_some_and(|m| m.origin_markers))
    }

    /// Corrects the link count of lower non-directory `layer`/`path` as the
    /// view reports it: for a layer with a persisted table it comes from the
    /// table (the backing count may count names in other layers).
    pub(super) fn fix_lower_nlink(&self, layer: usize, path: &Path, st: &mut Stat) {
        if self.layers.meta.get(layer).is_some_and(Option::is_some)
            && Kind::from_mode(st.st_mode) != Kind::Dir
            && let Some(t) = self.link_tables[layer].get()
        {
            st.st_nlink = t.nlink(path) as _;
        }
    }

    /// The other names under which the view may still show the lower file
    /// `layer`/`path` (described by `st`). Takes lookup references on their
    /// parent directories; release them with `release_aliases`.
    pub(super) fn find_aliases(&self, layer: usize, path: &Path, st: &Stat) -> Aliases {
        let mut out = Aliases::default();
        if st.st_nlink <= 1 || Kind::from_mode(st.st_mode) == Kind::Dir {
            return out;
        }
        let paths = match self.link_table(layer) {
            Ok(t) => t.group(path).unwrap_or_default(),
            Err(e) => {
                log::warn!("cannot list the hard links of layer {layer}: {e:?}; copying up {path:?} alone");
                return out;
            }
        };
        // Directories this session renamed, listed the first time a name is
        // not where the layer has it (rare: a scan of the upper's dirs).
        let mut renamed: Option<Vec<(PathBuf, PathBuf)>> = None;
        for p in paths.iter().filter(|p| p.as_path() != path) {
            if let Some(alias) = self.walk_to_alias(p, &mut out.refs) {
                out.found.push(alias);
                continue;
            }
            let renamed = renamed.get_or_insert_with(|| {
                self.renamed_dirs().unwrap_or_else(|e| {
                    log::warn!("cannot list the renamed directories of the upper: {e:?}");
                    Vec::new()
                })
            });
            if let Some(moved) = view_path(renamed, p)
                && let Some(alias) = self.walk_to_alias(&moved, &mut out.refs)
            {
                out.found.push(alias);
            }
        }
        out
    }

    /// Looks up the parent directories of `path` in the view (taking a
    /// lookup reference on each, recorded in `refs`): the alias at `path`.
    fn walk_to_alias(&self, path: &Path, refs: &mut Vec<Ino>) -> Option<Alias> {
        let (parent, name) = (path.parent()?, path.file_name()?);
        let mut dir = ROOT_INO;
        for comp in parent.components() {
            let a = self.lookup(dir, comp.as_os_str()).ok()?;
            refs.push(a.ino);
            if a.kind != Kind::Dir {
                return None;
            }
            dir = a.ino;
        }
        Some(Alias {
            parent: dir,
            name: name.to_owned(),
        })
    }

    /// Every directory of the upper carrying a redirect, as (the lower path
    /// it shows, its path in the view), deepest lower path first.
    fn renamed_dirs(&self) -> Result<Vec<(PathBuf, PathBuf)>, Errno> {
        let upper = self.layers.upper.as_fd();
        let mut out = Vec::new();
        let mut dirs = vec![PathBuf::new()];
        while let Some(dir) = dirs.pop() {
            let fd = sys::open_dir_read(upper, &dir)?;
            if !dir.as_os_str().is_empty()
                && let Some(lower) = markers::dir_markers(fd.as_fd())?.redirect
            {
                out.push((lower, dir.clone()));
            }
            for e in sys::read_dir_entries(&fd)? {
                if e.file_type == FileType::Directory {
                    dirs.push(dir.join(&e.name));
                }
            }
        }
        out.sort_by_key(|(lower, _)| std::cmp::Reverse(lower.components().count()));
        Ok(out)
    }

    /// Whether the view still shows lower file `layer`/inode `lower_ino` at `a`.
    fn shows_lower(&self, a: &Alias, layer: usize, lower_ino: u64) -> Result<bool, Errno> {
        let dir = self.dir_view(a.parent)?;
        Ok(matches!(
            self.resolve_in(&dir, &a.name)?.found,
            Some(Found::File { backing: FileBacking::Lower { layer: l, .. }, stat, .. })
                if l == layer && stat.st_ino == lower_ino
        ))
    }

    /// The first of `aliases` at which the view still shows lower file
    /// `layer`/inode `lower_ino` (for a copy-up whose node lost its own
    /// name). Needs the exclusive namespace lock.
    pub(super) fn alias_showing(&self, aliases: &Aliases, layer: usize, lower_ino: u64) -> Option<(Ino, OsString)> {
        aliases
            .found
            .iter()
            .find(|a| matches!(self.shows_lower(a, layer, lower_ino), Ok(true)))
            .map(|a| (a.parent, a.name.clone()))
    }

    pub(super) fn release_aliases(&self, aliases: Aliases) {
        for ino in aliases.refs {
            self.forget(ino, 1);
        }
    }

    /// Links the new upper copy (`upper_dir`/`upper_name`) of lower file
    /// `layer`/inode `lower_ino` at every alias that still shows that lower
    /// file. Needs the exclusive namespace lock. Best effort: a name that
    /// cannot be linked keeps the lower copy (and says so in the log).
    pub(super) fn link_aliases(
        &self,
        aliases: &Aliases,
        layer: usize,
        lower_ino: u64,
        upper_dir: std::os::fd::BorrowedFd<'_>,
        upper_name: &OsStr,
    ) {
        for a in &aliases.found {
            let link = || -> Result<bool, Errno> {
                if !self.shows_lower(a, layer, lower_ino)? {
                    return Ok(false);
                }
                let pfd = self.ensure_upper_dir(a.parent)?;
                sys::link_at(upper_dir, upper_name, pfd.as_fd(), &a.name)?;
                Ok(true)
            };
            if let Err(e) = link() {
                log::warn!(
                    "copy-up: cannot link {:?} to its copied-up hard link {upper_name:?}: {e:?}",
                    a.name
                );
            }
        }
    }
}
