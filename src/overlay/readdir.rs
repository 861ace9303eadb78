//! Merged directory listings.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::fd::AsFd;

use super::markers;
use super::version::VERSION_FILE_NAME;
use super::{DirView, Ino, Kind, Overlay, ROOT_INO, VERSION_INO};
use crate::error::Errno;
use crate::sys::{self, FileType, OFlags};

/// One entry of a merged listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: OsString,
    pub ino: Ino,
    pub kind: Kind,
}

impl Overlay {
    /// Names visible in a merged directory (no `.`/`..`, no version file),
    /// upper first, then each lower top-down.
    pub(super) fn merged_names(&self, dir: &DirView) -> Result<Vec<OsString>, Errno> {
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut out = Vec::new();
        if let Some(up) = &dir.upper {
            let rd = sys::reopen(up.as_fd(), OFlags::RDONLY | OFlags::DIRECTORY)?;
            for e in sys::read_dir_entries(&rd)? {
                let hidden = e.file_type == FileType::CharacterDevice
                    && sys::stat_at(up.as_fd(), &e.name).is_ok_and(|st| markers::looks_like_whiteout(&st))
                    && markers::is_whiteout(up.as_fd(), &e.name)?;
                if !hidden {
                    out.push(e.name.clone());
                }
                seen.insert(e.name);
            }
        }
        let last = self.layers.lowers.len().saturating_sub(1);
        for l in dir.lower.iter() {
            let rd = sys::open_dir_read(self.layers.lowers[l.layer].as_fd(), &l.path)?;
            let pathfd = (l.layer != last)
                .then(|| sys::open_dir_path(self.layers.lowers[l.layer].as_fd(), &l.path))
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
                    out.push(e.name.clone());
                }
                seen.insert(e.name);
            }
        }
        if dir.ino == ROOT_INO {
            out.retain(|n| n != VERSION_FILE_NAME);
        }
        Ok(out)
    }

    /// A snapshot of a merged directory, with `.` and `..` first; the root
    /// also lists the virtual version file.
    pub fn list_dir(&self, ino: Ino) -> Result<Vec<DirEntry>, Errno> {
        let _ns = self.ns.read();
        let dir = self.dir_view(ino)?;
        let parent = if ino == ROOT_INO {
            ROOT_INO
        } else {
            self.nodes.read().get(ino)?.parent
        };
        let mut out = vec![
            DirEntry {
                name: ".".into(),
                ino,
                kind: Kind::Dir,
            },
            DirEntry {
                name: "..".into(),
                ino: parent,
                kind: Kind::Dir,
            },
        ];
        if ino == ROOT_INO {
            out.push(DirEntry {
                name: VERSION_FILE_NAME.into(),
                ino: VERSION_INO,
                kind: Kind::File,
            });
        }
        for name in self.merged_names(&dir)? {
            // An entry that vanished between listing and resolving is skipped.
            if let Some(found) = self.resolve_in(&dir, &name)?.found {
                let a = found.attr();
                out.push(DirEntry {
                    name,
                    ino: a.ino,
                    kind: a.kind,
                });
            }
        }
        Ok(out)
    }
}
