//! Merged directory listings.

use std::collections::HashSet;
use std::ffi::OsString;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::fd::AsFd;

use super::markers;
use super::version::VERSION_FILE_NAME;
use super::{DirView, Ino, Kind, Overlay, ROOT_INO, VERSION_INO};
use crate::error::Errno;
use crate::sys::{self, FileType, OFlags};

/// One entry of a merged listing. Merged names are resolved (inode number,
/// kind, attributes) only when they are served: see `Overlay::stat_listed`
/// and `Overlay::lookup_listed`.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: OsString,
    /// Inode number and kind of `.`, `..` and the version file.
    pub(super) fixed: Option<(Ino, Kind)>,
    /// Where the listing found a lower name, to resolve it cheaply.
    pub(super) hint: Option<LowerHint>,
}

impl DirEntry {
    /// Inode number and kind, known without resolving: `.`, `..` and the
    /// version file.
    pub fn fixed(&self) -> Option<(Ino, Kind)> {
        self.fixed
    }

    /// `.` or `..`, for which the kernel takes no lookup reference.
    pub fn is_dot(&self) -> bool {
        self.fixed.is_some() && self.name != VERSION_FILE_NAME
    }
}

/// Which of a directory's lower directories first held a name when it was
/// listed: `index` into its lower stack, and a hash of that stack down to
/// `index` (so a hint for a stack that has since changed is not used).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LowerHint {
    index: usize,
    stack: u64,
}

impl DirView {
    /// Hash of the lower stack's entries `..=index` (layer and inode of each).
    fn stack_hash(&self, index: usize) -> u64 {
        let mut h = DefaultHasher::new();
        for d in &self.lower[..=index] {
            (d.layer, d.ino).hash(&mut h);
        }
        h.finish()
    }

    pub(super) fn hint(&self, index: usize) -> LowerHint {
        LowerHint {
            index,
            stack: self.stack_hash(index),
        }
    }

    /// Where a lookup guided by `hint` may start in the lower stack.
    pub(super) fn hint_start(&self, hint: &LowerHint) -> usize {
        if hint.index < self.lower.len() && self.stack_hash(hint.index) == hint.stack {
            hint.index
        } else {
            0
        }
    }
}

impl Overlay {
    /// Names visible in a merged directory (no `.`/`..`, no version file),
    /// upper first, then each lower top-down; with each lower name, the
    /// index of the lower directory that first held it.
    pub(super) fn merged_names(&self, dir: &DirView) -> Result<Vec<(OsString, Option<usize>)>, Errno> {
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut out = Vec::new();
        if let Some(up) = &dir.upper {
            let rd = sys::reopen(up.as_fd(), OFlags::RDONLY | OFlags::DIRECTORY)?;
            for e in sys::read_dir_entries(&rd)? {
                let hidden = e.file_type == FileType::CharacterDevice
                    && sys::stat_at(up.as_fd(), &e.name).is_ok_and(|st| markers::looks_like_whiteout(&st))
                    && markers::is_whiteout(up.as_fd(), &e.name)?;
                if !hidden {
                    out.push((e.name.clone(), None));
                }
                seen.insert(e.name);
            }
        }
        let last = self.layers.lowers.len().saturating_sub(1);
        for (index, l) in dir.lower.iter().enumerate() {
            let rd = sys::open_dir_read(self.layers.lowers[l.layer].as_fd(), &l.path)?;
            let pathfd = (l.layer != last)
                .then(|| dir.lower_fd(&self.layers, index))
                .transpose()?;
            for e in sys::read_dir_entries(&rd)? {
                if seen.contains(&e.name) {
                    continue;
                }
                let hidden = match &pathfd {
                    Some(p) if e.file_type == FileType::CharacterDevice => {
                        sys::stat_at(p.as_fd(), &e.name).is_ok_and(|st| markers::looks_like_whiteout(&st))
                            && markers::is_whiteout(p.as_fd(), &e.name)?
                    }
                    _ => false,
                };
                if !hidden {
                    out.push((e.name.clone(), Some(index)));
                }
                seen.insert(e.name);
            }
        }
        if dir.ino == ROOT_INO {
            out.retain(|(n, _)| n != VERSION_FILE_NAME);
        }
        Ok(out)
    }

    /// A snapshot of a merged directory's names, with `.` and `..` first;
    /// the root also lists the virtual version file.
    pub fn list_dir(&self, ino: Ino) -> Result<Vec<DirEntry>, Errno> {
        let _ns = self.ns.read();
        let dir = self.dir_view(ino)?;
        let parent = if ino == ROOT_INO {
            ROOT_INO
        } else {
            self.nodes.read().get(ino)?.parent
        };
        let fixed = |name: &str, ino, kind| DirEntry {
            name: name.into(),
            fixed: Some((ino, kind)),
            hint: None,
        };
        let mut out = vec![fixed(".", ino, Kind::Dir), fixed("..", parent, Kind::Dir)];
        if ino == ROOT_INO {
            out.push(fixed(VERSION_FILE_NAME, VERSION_INO, Kind::File));
        }
        for (name, index) in self.merged_names(&dir)? {
            out.push(DirEntry {
                name,
                fixed: None,
                hint: index.map(|i| dir.hint(i)),
            });
        }
        Ok(out)
    }
}
