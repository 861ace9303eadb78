//! Which I/O mode each open of a view inode gets.
//!
//! The kernel (`fs/fuse/iomode.c`) lets a FUSE inode be open either through
//! one passthrough backing file or through the page cache, never both at
//! once and never on two backing files. A lower copy that is open for reading
//! when a writer copies the file up would therefore pin the inode to a backing
//! file the writer must not use, and the writer's open would fail with EIO.
//!
//! So: lower copies (immutable) are read through the page cache, kept across
//! opens; the session's own upper copies go through passthrough, unless the
//! inode still has page-cache opens, in which case the new open joins them
//! until they are all closed.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Weak};

use fuser::{BackingId, FopenFlags};
use parking_lot::Mutex;

use crate::overlay::{Ino, Opened};

/// The mode one open got.
#[derive(Clone)]
pub(crate) enum OpenMode {
    /// Reads and writes go to the backing file in the kernel.
    Passthrough(Arc<BackingId>),
    /// Served by the daemon through the page cache.
    Cached { keep_cache: bool },
}

impl OpenMode {
    pub(crate) fn backing(&self) -> Option<Arc<BackingId>> {
        match self {
            OpenMode::Passthrough(id) => Some(id.clone()),
            OpenMode::Cached { .. } => None,
        }
    }

    /// `FOPEN_*` flags for a non-passthrough reply.
    pub(crate) fn flags(&self) -> FopenFlags {
        match self {
            OpenMode::Cached { keep_cache: true } => FopenFlags::FOPEN_KEEP_CACHE,
            _ => FopenFlags::empty(),
        }
    }
}

#[derive(Default)]
struct InodeIo {
    /// Open handles in page-cache mode.
    cached: u32,
    /// The live passthrough registration, with the (dev, ino) of its backing file.
    passthrough: Option<((u64, u64), Weak<BackingId>)>,
}

/// Per-inode I/O mode bookkeeping of one view. A leaf lock.
#[derive(Default)]
pub(crate) struct IoModes {
    inodes: Mutex<HashMap<Ino, InodeIo>>,
}

impl IoModes {
    /// Chooses the mode of a new open of `ino`; `register` makes a kernel
    /// passthrough registration when one is needed.
    pub(crate) fn open(
        &self,
        ino: Ino,
        opened: &Opened,
        passthrough: bool,
        register: impl FnOnce(&OwnedFd) -> std::io::Result<BackingId>,
    ) -> OpenMode {
        let mut map = self.inodes.lock();
        let io = map.entry(ino).or_default();
        let live = io
            .passthrough
            .as_ref()
            .and_then(|(key, w)| w.upgrade().map(|id| (*key, id)));
        if passthrough && opened.upper && io.cached == 0 {
            match live {
                Some((key, id)) if key == opened.key => return OpenMode::Passthrough(id),
                Some(_) => {} // another backing file: cannot share, fall through
                None => match register(&opened.fd) {
                    Ok(id) => {
                        let id = Arc::new(id);
                        io.passthrough = Some((opened.key, Arc::downgrade(&id)));
                        return OpenMode::Passthrough(id);
                    }
                    Err(e) => log::warn!("passthrough registration failed ({e}); serving this file in the daemon"),
                },
            }
        }
        io.cached += 1;
        // Lower copies never change: their pages stay valid across opens.
        OpenMode::Cached {
            keep_cache: !opened.upper,
        }
    }

    /// An open of `ino` in `mode` was released.
    pub(crate) fn release(&self, ino: Ino, mode: &OpenMode) {
        let mut map = self.inodes.lock();
        let Some(io) = map.get_mut(&ino) else { return };
        if matches!(mode, OpenMode::Cached { .. }) {
            io.cached = io.cached.saturating_sub(1);
        }
        let pt_live = io.passthrough.as_ref().is_some_and(|(_, w)| w.strong_count() > 0);
        if io.cached == 0 && !pt_live {
            map.remove(&ino);
        }
    }
}
