//! The mount registry: one slot per session holding its mounted view.
//!
//! A slot's mutex is held for the whole of a mount, unmount, promotion or
//! discard of that session, so those never interleave for one session, while
//! other sessions proceed. The registry's own maps are held only briefly and
//! never across a mount or unmount syscall.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fuse::MountedView;
use crate::metrics::ViewMetrics;

/// The per-session slot.
#[derive(Default)]
pub struct Slot {
    pub view: Option<MountedView>,
}

impl Slot {
    /// The mounted view, after dropping one that died behind the daemon's
    /// back (unmounted by an operator, aborted).
    pub fn live_view(&mut self, session: &str, registry: &Registry) -> Option<&MountedView> {
        if self.view.as_ref().is_some_and(|v| !v.is_alive()) {
            if let Some(v) = self.view.take() {
                log::warn!(
                    "session {session}: the view at {} is gone (unmounted outside goldenfs); forgetting it",
                    v.mountpoint().display()
                );
                let _ = v.unmount(true);
            }
            registry.release_mountpoint(session);
        }
        self.view.as_ref()
    }
}

pub type SlotRef = Arc<Mutex<Slot>>;

#[derive(Default)]
pub struct Registry {
    slots: Mutex<HashMap<String, SlotRef>>,
    /// Mountpoints claimed by sessions (being mounted or mounted).
    mounts: Mutex<BTreeMap<String, PathBuf>>,
    /// The counters of each session's latest view, kept after it is
    /// unmounted until the session is gone (for `status` and `/metrics`).
    views: Mutex<HashMap<String, Arc<ViewMetrics>>>,
}

impl Registry {
    /// The slot of `session`, created on first use. A slot is dropped only
    /// when nobody holds it (see [`Registry::forget_idle_slot`]), so two
    /// requests for one session always share one slot.
    pub fn slot(&self, session: &str) -> SlotRef {
        self.slots.lock().entry(session.to_string()).or_default().clone()
    }

    /// Forgets `session`'s slot if nothing else holds it and it has no view,
    /// so that mounts refused for names that never became sessions do not
    /// each leave an entry behind.
    pub fn forget_idle_slot(&self, session: &str) {
        let mut slots = self.slots.lock();
        // Nobody else holds the slot (count 1), so its lock is free.
        if let Some(s) = slots.get(session)
            && Arc::strong_count(s) == 1
            && s.try_lock().is_some_and(|g| g.view.is_none())
        {
            slots.remove(session);
        }
    }

    pub fn all_slots(&self) -> Vec<(String, SlotRef)> {
        let mut v: Vec<_> = self.slots.lock().iter().map(|(k, s)| (k.clone(), s.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Reserves `mountpoint` for `session`; refused if another session has it.
    pub fn claim_mountpoint(&self, session: &str, mountpoint: &Path) -> Result<()> {
        let mut mounts = self.mounts.lock();
        if let Some((other, _)) = mounts
            .iter()
            .find(|(s, m)| m.as_path() == mountpoint && s.as_str() != session)
        {
            return Err(Error::busy(format!(
                "{} is already the mountpoint of session {other}; pick another directory",
                mountpoint.display()
            )));
        }
        mounts.insert(session.to_string(), mountpoint.to_path_buf());
        Ok(())
    }

    pub fn release_mountpoint(&self, session: &str) {
        self.mounts.lock().remove(session);
    }

    /// Records the counters of `session`'s newly mounted view.
    pub fn set_view(&self, session: &str, metrics: Arc<ViewMetrics>) {
        self.views.lock().insert(session.to_string(), metrics);
    }

    /// The counters of every session's latest view.
    pub fn views(&self) -> HashMap<String, Arc<ViewMetrics>> {
        self.views.lock().clone()
    }

    /// Forgets the counters of sessions not in `sessions`.
    pub fn retain_views(&self, sessions: &std::collections::HashSet<String>) {
        self.views.lock().retain(|s, _| sessions.contains(s));
    }

    /// Sessions with a claimed mountpoint (mounted, or being mounted).
    pub fn mountpoints(&self) -> BTreeMap<String, PathBuf> {
        self.mounts.lock().clone()
    }
}
