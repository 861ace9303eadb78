//! The FUSE side of a view: mounting, the `fuser` adapter, unmounting.

mod adapter;
mod iomode;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, ErrorCode, Result};
use crate::metrics::ViewMetrics;
use crate::overlay::version::VersionInfo;
use crate::overlay::{LayerDirs, Overlay};
use crate::store::layout::LowerLayer;
use crate::sys;

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
    pub lowers: Vec<LowerLayer>,
    /// Content of the virtual `golden-version.json`.
    pub version: VersionInfo,
    /// FUSE worker threads (`n_threads`, each with its own cloned fd).
    pub threads: usize,
}

/// A mounted view. Dropping it without [`MountedView::unmount`] unmounts lazily.
pub struct MountedView {
    mountpoint: PathBuf,
    /// Boxed: a view is handed back inside errors, keep that small.
    session: Option<Box<fuser::BackgroundSession>>,
    metrics: Arc<ViewMetrics>,
}

impl MountedView {
    /// Mounts the view; returns once the mount answers requests.
    pub fn mount(cfg: ViewConfig) -> Result<MountedView> {
        let layers = LayerDirs::open(&cfg.upper, &cfg.work, &cfg.lowers)
            .map_err(|e| Error::io(format!("opening the layers of session {}", cfg.session_id), e))?;
        let core = Arc::new(
            Overlay::new(layers, &cfg.version)
                .map_err(|e| Error::io(format!("preparing the view of session {}", cfg.session_id), e))?,
        );
        let mut config = fuser::Config::default();
        config.acl = fuser::SessionACL::All;
        config.n_threads = Some(cfg.threads.max(1));
        config.clone_fd = true;
        let dev_fuse = mount_at(&cfg)?;
        let metrics = Arc::new(ViewMetrics::new(core.counters.clone()));
        let fs = adapter::FuseView::new(core, metrics.clone());
        let session = fuser::Session::from_fd(fs, dev_fuse, fuser::SessionACL::All, config).map_err(|e| {
            let _ = sys::unmount(&cfg.mountpoint, true);
            Error::io(
                format!(
                    "starting the FUSE session of {} at {}",
                    cfg.session_id,
                    cfg.mountpoint.display()
                ),
                e,
            )
        })?;
        let session = session
            .spawn()
            .map_err(|e| Error::io(format!("starting the FUSE threads of session {}", cfg.session_id), e))?;
        Ok(MountedView {
            mountpoint: cfg.mountpoint,
            session: Some(Box::new(session)),
            metrics,
        })
    }

    /// Unmounts. Without `lazy`, a busy mount is left mounted and handed back with an error.
    pub fn unmount(mut self, lazy: bool) -> std::result::Result<(), (MountedView, Error)> {
        let mut detached_elsewhere = false;
        match sys::unmount(&self.mountpoint, lazy) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::ENOENT) => {
                // Not mounted any more: unmounted behind our back, perhaps
                // lazily while busy, so its FUSE session may live on.
                log::warn!(
                    "{} was no longer mounted (unmounted outside goldenfs)",
                    self.mountpoint.display()
                );
                detached_elsewhere = true;
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let msg = format!(
                    "{} is busy (a process has a file open or its working directory there); stop it, or unmount with --lazy",
                    self.mountpoint.display()
                );
                return Err((self, Error::new(ErrorCode::Busy, msg)));
            }
            Err(e) => {
                let msg = format!("unmounting {}", self.mountpoint.display());
                return Err((self, Error::io(msg, e)));
            }
        }
        if let Some(session) = self.session.take() {
            if lazy || detached_elsewhere {
                // Open files keep a lazily detached mount alive; do not wait for them.
                std::thread::spawn(move || {
                    let _ = session.join();
                });
            } else if let Err(e) = session.join() {
                log::warn!("FUSE session at {} ended with: {e}", self.mountpoint.display());
            }
        }
        Ok(())
    }

    /// The view's counters (shared with its FUSE threads).
    pub fn metrics(&self) -> Arc<ViewMetrics> {
        self.metrics.clone()
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// False once the kernel side is gone (unmounted behind the daemon's back, aborted).
    pub fn is_alive(&self) -> bool {
        self.session.as_ref().is_some_and(|s| !s.guard.is_finished())
    }
}

/// Mounts a FUSE filesystem at `cfg.mountpoint` and returns the `/dev/fuse`
/// fd that serves it. The mountpoint (checked by path beforehand, in its
/// canonical form) is opened refusing symlinks and mounted on through that
/// fd, so a path swapped for a symlink into the store between the check and
/// the mount cannot redirect it.
fn mount_at(cfg: &ViewConfig) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    let what = || format!("mounting session {} at {}", cfg.session_id, cfg.mountpoint.display());
    let dir = sys::open_dir_no_symlinks(&cfg.mountpoint).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            Error::busy(format!(
                "{}: the path changed while it was being mounted (a symlink appeared in it); retry",
                what()
            ))
        } else {
            Error::io(what(), e)
        }
    })?;
    let dev_fuse: std::os::fd::OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| Error::io(format!("{}: opening /dev/fuse (is the fuse module loaded?)", what()), e))?
        .into();
    let euid = sys::geteuid();
    // As root, device nodes and setuid binaries work in a view (dockerd's
    // data root needs them); anyone else gets nodev,nosuid, like fusermount.
    let options = format!(
        "user_id={euid},group_id={},default_permissions,allow_other",
        sys::getegid()
    );
    sys::mount_fuse(
        &format!("goldenfs:{}", cfg.session_id),
        dir.as_fd(),
        dev_fuse.as_fd(),
        euid != 0,
        &options,
    )
    .map_err(|e| Error::io(what(), e))?;
    Ok(dev_fuse)
}

impl Drop for MountedView {
    fn drop(&mut self) {
        if self.session.is_some() {
            let _ = sys::unmount(&self.mountpoint, true);
        }
    }
}
