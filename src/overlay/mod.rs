//! The copy-on-write core: a stack of read-only layers plus one writable upper.
pub mod version;
