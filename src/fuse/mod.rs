//! The FUSE side of a view: mounting, the `fuser` adapter, unmounting.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorCode, Result};
use crate::overlay::version::VersionInfo;

/// Everything needed to mount one session view.
#[derive(Clone, Debug)]
pub struct ViewConfig {
    /// Session name (for the mount's fsname and logs).
    pub session_id: String,
    /// Existing empty directory to mount on.
    pub mountpoint: PathBuf,
    /// The session's private upper directory (in the store).
    pub upper: PathBuf,
    /// The session's scratch directory for atomic copy-ups (same filesystem as `upper`).
    pub work: PathBuf,
    /// Read-only layers of the base generation, top first.
    pub lowers: Vec<PathBuf>,
    /// Content of the virtual `golden-version.json`.
    pub version: VersionInfo,
    /// FUSE worker threads (`n_threads`, each with its own cloned fd).
    pub threads: usize,
}

/// A mounted view. Dropping it without [`MountedView::unmount`] leaves the mount in place
/// until the daemon exits.
pub struct MountedView {
    mountpoint: PathBuf,
}

impl MountedView {
    /// Mounts the view; returns once the mount answers requests.
    pub fn mount(cfg: ViewConfig) -> Result<MountedView> {
        let _ = cfg;
        Err(Error::new(
            ErrorCode::Unsupported,
            "mounting is not implemented yet",
        ))
    }

    /// Unmounts. Without `lazy`, a busy mount is left mounted and handed back with an error.
    pub fn unmount(self, lazy: bool) -> std::result::Result<(), (MountedView, Error)> {
        let _ = lazy;
        Ok(())
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// False once the kernel side is gone (unmounted behind the daemon's back, aborted).
    pub fn is_alive(&self) -> bool {
        false
    }
}
