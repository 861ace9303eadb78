//! Fault injection for crash-safety tests.
//!
//! In debug builds, `GOLDENFS_FAULT=<point>` makes the process abort when it
//! reaches `<point>`, leaving the store exactly as a crash there would. Release
//! builds never read the variable. Unit tests can instead make a point return
//! an error on the current thread ([`inject_on_this_thread`]); the operation
//! then stops there without any cleanup, which is the same on-disk state.
//!
//! Points: `promote:after-manifest`, `promote:after-layer-rename`,
//! `promote:before-pointer-swap`, `promote:after-pointer-swap` (the session
//! record is not removed yet), `gc:mid-delete`,
//! `import:before-project-rename`, `import:before-move-rename`,
//! `rollback:before-pointer-swap`, `copyup:before-rename`,
//! `compact:mid-build` (after the first entry of the new layer),
//! `compact:before-publish` (the new generation is complete, not current).
//!
//! `GOLDENFS_PAUSE=<point>=<ms>` (debug builds) makes [`pause`] at that point
//! sleep, so tests can make a race happen: `compact:built` (the layer is
//! built, nothing is locked yet), `promote:before-pointer-swap` (the
//! manifest is written and the layer renamed; `current` not yet swapped),
//! `mount:after-check` (a mountpoint is checked, not yet mounted on),
//! `daemon:before-store-open` (the control socket is bound, the store not
//! yet opened nor recovered); per entry or layer, to watch progress:
//! `import:entry`, `compact:entry`, `gc:layer`.

use crate::error::Result;

#[cfg(test)]
thread_local! {
    static INJECTED: std::cell::RefCell<Option<&'static str>> = const { std::cell::RefCell::new(None) };
}

/// Makes `point` fail (return an error) on the calling thread; `None` clears.
#[cfg(test)]
pub fn inject_on_this_thread(point: Option<&'static str>) {
    INJECTED.with(|f| *f.borrow_mut() = point);
}

/// A pause point: sleeps if `GOLDENFS_PAUSE` names it (debug builds only).
pub fn pause(name: &str) {
    #[cfg(debug_assertions)]
    if let Ok(v) = std::env::var("GOLDENFS_PAUSE")
        && let Some((point, ms)) = v.rsplit_once('=')
        && point == name
        && let Ok(ms) = ms.parse()
    {
        log::warn!("GOLDENFS_PAUSE={v}: pausing {ms} ms");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let _ = name;
}

/// A fault point: returns normally unless a fault is injected here.
pub fn point(name: &str) -> Result<()> {
    #[cfg(test)]
    if INJECTED.with(|f| *f.borrow() == Some(name)) {
        return Err(crate::error::Error::internal(format!("injected fault at {name}")));
    }
    #[cfg(debug_assertions)]
    if std::env::var("GOLDENFS_FAULT").as_deref() == Ok(name) {
        log::error!("GOLDENFS_FAULT={name}: aborting here to simulate a crash");
        std::process::abort();
    }
    let _ = name;
    Ok(())
}
