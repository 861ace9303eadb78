//! Errors.
//!
//! Two shapes of one concept:
//! - [`Errno`] is what the filesystem core returns on hot paths (a plain errno,
//!   `Copy`, no allocation), and what the FUSE adapter replies with.
//! - [`Error`] is what the control plane returns: a machine-readable
//!   [`ErrorCode`] plus a human message. It converts from [`Errno`] and
//!   `io::Error`, and [`Error::errno`] is the single place that maps a control
//!   error back to an errno.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;

/// A raw positive errno value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EXDEV: Errno = Errno(libc::EXDEV);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const EROFS: Errno = Errno(libc::EROFS);
    pub const EMLINK: Errno = Errno(libc::EMLINK);
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    pub const ELOOP: Errno = Errno(libc::ELOOP);
    pub const ENODATA: Errno = Errno(libc::ENODATA);
    pub const ENOTSUP: Errno = Errno(libc::EOPNOTSUPP);
    pub const ENOTTY: Errno = Errno(libc::ENOTTY);
    pub const ENOTCONN: Errno = Errno(libc::ENOTCONN);
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);

    pub fn code(self) -> i32 {
        self.0
    }
}

impl From<io::Error> for Errno {
    fn from(e: io::Error) -> Self {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<rustix::io::Errno> for Errno {
    fn from(e: rustix::io::Errno) -> Self {
        Errno(e.raw_os_error())
    }
}

impl From<Errno> for io::Error {
    fn from(e: Errno) -> Self {
        io::Error::from_raw_os_error(e.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for Errno {}

/// Machine-readable error codes of the control protocol (stable, documented
/// in `docs/protocol.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request could not be parsed or has wrong fields.
    InvalidRequest,
    /// A project or session name does not match the allowed pattern.
    InvalidName,
    /// An argument (path, generation, option) is not acceptable.
    InvalidArgument,
    /// The named project, session or generation does not exist.
    NotFound,
    /// The object to create exists already.
    AlreadyExists,
    /// The object is in use (mounted session, busy mountpoint, ...).
    Busy,
    /// A precondition failed (e.g. `--if-generation` mismatch).
    Conflict,
    /// The caller may not do this.
    PermissionDenied,
    /// The store's filesystem is full.
    NoSpace,
    /// The kernel or filesystem lacks a needed feature.
    Unsupported,
    /// Any other I/O failure.
    Io,
    /// A bug: the daemon hit a state it did not expect.
    Internal,
}

/// A control-plane error: code + human message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Busy, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AlreadyExists, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// Wraps an I/O error with what was being done: "importing /srv/x: No space left on device".
    pub fn io(context: impl fmt::Display, err: impl Into<Errno>) -> Self {
        let errno: Errno = err.into();
        Self::new(Self::code_for_errno(errno), format!("{context}: {errno}"))
    }

    fn code_for_errno(errno: Errno) -> ErrorCode {
        match errno.0 {
            libc::ENOENT => ErrorCode::NotFound,
            libc::EEXIST => ErrorCode::AlreadyExists,
            libc::EBUSY => ErrorCode::Busy,
            libc::EACCES | libc::EPERM => ErrorCode::PermissionDenied,
            libc::ENOSPC | libc::EDQUOT => ErrorCode::NoSpace,
            libc::EOPNOTSUPP | libc::ENOSYS | libc::EXDEV => ErrorCode::Unsupported,
            _ => ErrorCode::Io,
        }
    }

    /// The one mapping from a control error to an errno.
    pub fn errno(&self) -> Errno {
        match self.code {
            ErrorCode::InvalidRequest | ErrorCode::InvalidName | ErrorCode::InvalidArgument => Errno::EINVAL,
            ErrorCode::NotFound => Errno::ENOENT,
            ErrorCode::AlreadyExists => Errno::EEXIST,
            ErrorCode::Busy | ErrorCode::Conflict => Errno::EBUSY,
            ErrorCode::PermissionDenied => Errno::EACCES,
            ErrorCode::NoSpace => Errno::ENOSPC,
            ErrorCode::Unsupported => Errno::ENOTSUP,
            ErrorCode::Io | ErrorCode::Internal => Errno::EIO,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<Errno> for Error {
    fn from(e: Errno) -> Self {
        Error::new(Error::code_for_errno(e), e.to_string())
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Errno::from(e).into()
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Errno::from(e).into()
    }
}
