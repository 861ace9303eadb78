//! Fault injection for crash tests: `GOLDENFS_FAULT=<point>` aborts the
//! process when execution reaches `<point>`. Compiled in debug builds only.

/// Aborts if `GOLDENFS_FAULT` names this point (debug builds only).
#[inline]
pub fn point(name: &str) {
    #[cfg(debug_assertions)]
    {
        if std::env::var_os("GOLDENFS_FAULT").is_some_and(|v| v == name) {
            log::error!("fault injection: aborting at {name}");
            std::process::abort();
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
