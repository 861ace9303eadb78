//! goldenfs: copy-on-write FUSE views of a project's golden directory.
//!
//! Module map (see `docs/architecture.md`):
//! - [`sys`]: every system call; the only place with `unsafe`.
//! - [`store`]: on-disk layout, projects, generations, pins, promotion, GC (no FUSE).
//! - [`overlay`]: the copy-on-write core (layer lookup, whiteouts, copy-up,
//!   merged readdir, the version file); returns values, knows nothing of FUSE.
//! - [`fuse`]: the thin `fuser` adapter and the mount lifecycle of a view.
//! - [`protocol`]: control-socket request/response types.
//! - [`daemon`]: the control socket server, one handler per request.
//! - [`cli`]: the `goldenfs` command line.
#![deny(unsafe_code)]

pub mod cli;
pub mod daemon;
pub mod doctor;
pub mod error;
pub mod fault;
pub mod fuse;
pub mod metrics;
pub mod names;
pub mod overlay;
pub mod protocol;
pub mod store;
#[allow(unsafe_code)]
pub mod sys;
