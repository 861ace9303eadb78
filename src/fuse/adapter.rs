//! The thin `fuser` adapter: decode a request, call the overlay core, reply.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BackingId, BsdFileFlags, Errno as FErrno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;

use super::iomode::{IoModes, OpenMode};
use crate::error::Errno;
use crate::metrics::{self, Op, ViewMetrics};
use crate::overlay::{Attr, Caller, DirEntry, Kind, Opened, Overlay, SetAttr, VERSION_INO};
use crate::sys;

/// How long the kernel may cache names and attributes. Every change to a
/// view goes through this daemon on the kernel's request (the layers below
/// never change and the upper is private to the daemon), so the kernel sees
/// each change as it happens and its copy never goes stale: cache for a day.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// Directory entries handed to one readdir reply at most (a reply buffer
/// holds fewer; the kernel asks again from where it stopped).
const DIR_BATCH: usize = 256;

enum Handle {
    File {
        fd: Arc<OwnedFd>,
        ino: u64,
        /// Holds the passthrough registration (if any) while the file is open.
        mode: OpenMode,
    },
    Version,
    /// Listed at the first `readdir` (not at `opendir`: the kernel also opens
    /// directories only to ask for their attribute flags), and again on rewind.
    Dir {
        entries: Option<Vec<DirEntry>>,
    },
}

pub(crate) struct FuseView {
    core: Arc<Overlay>,
    /// Lock order: `handles` and `io` are leaves; never held across a core call.
    handles: Mutex<HashMap<u64, Handle>>,
    io: IoModes,
    next_fh: AtomicU64,
    passthrough: AtomicBool,
    /// Request counts and latencies, open handles (read by the daemon).
    metrics: Arc<ViewMetrics>,
}

impl FuseView {
    pub(crate) fn new(core: Arc<Overlay>, metrics: Arc<ViewMetrics>) -> Self {
        FuseView {
            metrics,
            core,
            handles: Mutex::new(HashMap::new()),
            io: IoModes::default(),
            next_fh: AtomicU64::new(1),
            passthrough: AtomicBool::new(false),
        }
    }

    /// Up to `DIR_BATCH` entries of the listing of an open directory from
    /// `offset`, each with the offset of the entry after it. The listing is
    /// taken at the handle's first read and again at a read from offset 0
    /// (rewinddir); the handles lock is not held while listing.
    fn dir_batch(&self, ino: u64, fh: u64, offset: u64) -> Result<Vec<(u64, DirEntry)>, FErrno> {
        let list = offset == 0 || matches!(self.handles.lock().get(&fh), Some(Handle::Dir { entries: None }));
        if list {
            let fresh = self.core.list_dir(ino).map_err(err)?;
            if let Some(Handle::Dir { entries }) = self.handles.lock().get_mut(&fh) {
                *entries = Some(fresh);
            }
        }
        let handles = self.handles.lock();
        let Some(Handle::Dir { entries: Some(entries) }) = handles.get(&fh) else {
            return Err(fail(FErrno::EBADF));
        };
        Ok(entries
            .iter()
            .enumerate()
            .skip(offset as usize)
            .take(DIR_BATCH)
            .map(|(i, e)| (i as u64 + 1, e.clone()))
            .collect())
    }

    fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, h);
        fh
    }

    fn file_fd(&self, fh: FileHandle) -> Result<Arc<OwnedFd>, Errno> {
        match self.handles.lock().get(&fh.0) {
            Some(Handle::File { fd, .. }) => Ok(fd.clone()),
            _ => Err(Errno::EBADF),
        }
    }

    /// Reads for a file handle: the backing file, or the virtual version file.
    fn read_handle(&self, fh: FileHandle, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let fd = match self.handles.lock().get(&fh.0) {
            Some(Handle::File { fd, .. }) => fd.clone(),
            Some(Handle::Version) => return Ok(self.core.read_version(offset, size)),
            _ => return Err(Errno::EBADF),
        };
        let mut buf = vec![0u8; size as usize];
        let n = sys::pread_full(fd.as_fd(), &mut buf, offset)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Registers an opened file: picks its I/O mode and makes its handle.
    fn add_file(
        &self,
        ino: u64,
        opened: Opened,
        register: impl FnOnce(&OwnedFd) -> std::io::Result<BackingId>,
    ) -> (FileHandle, OpenMode) {
        let pt = self.passthrough.load(Ordering::Relaxed);
        let mode = self.io.open(ino, &opened, pt, register);
        self.metrics.file_opened(mode.backing().is_some());
        let fh = self.add_handle(Handle::File {
            fd: Arc::new(opened.fd),
            ino,
            mode: mode.clone(),
        });
        (FileHandle(fh), mode)
    }
}

/// The reply errno of a failed request (counted as an error of it).
fn err(e: Errno) -> FErrno {
    fail(FErrno::from_i32(e.0))
}

/// Counts the request being handled as failed and returns `e`.
fn fail(e: FErrno) -> FErrno {
    metrics::mark_failed();
    e
}

fn time(t: (i64, u32)) -> SystemTime {
    if t.0 >= 0 {
        UNIX_EPOCH + Duration::new(t.0 as u64, t.1)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.0.unsigned_abs()) + Duration::from_nanos(t.1 as u64)
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

/// glibc `dev_t` → the kernel's 32-bit encoding used by FUSE.
fn encode_dev(rdev: u64) -> u32 {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// The kernel's 32-bit encoding → glibc `dev_t`.
fn decode_dev(dev: u32) -> u64 {
    let major = (dev & 0xfff00) >> 8;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    libc::makedev(major, minor)
}

fn fattr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: time(a.atime),
        mtime: time(a.mtime),
        ctime: time(a.ctime),
        crtime: time(a.ctime),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: encode_dev(a.rdev),
        blksize: a.blksize,
        flags: 0,
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn time_arg(t: Option<TimeOrNow>) -> Option<Option<(i64, i64)>> {
    t.map(|t| match t {
        TimeOrNow::Now => None,
        TimeOrNow::SpecificTime(st) => Some(match st.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
            Err(e) => {
                let d = e.duration();
                let (s, n) = (d.as_secs() as i64, d.subsec_nanos() as i64);
                if n == 0 { (-s, 0) } else { (-s - 1, 1_000_000_000 - n) }
            }
        }),
    })
}

fn reply_entry(reply: ReplyEntry, r: Result<Attr, Errno>) {
    match r {
        Ok(a) => reply.entry(&TTL, &fattr(&a), Generation(0)),
        Err(e) => reply.error(err(e)),
    }
}

fn reply_data(reply: ReplyData, r: Result<Vec<u8>, Errno>) {
    match r {
        Ok(d) => reply.data(&d),
        Err(e) => reply.error(err(e)),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(err(e)),
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, r: Result<Vec<u8>, Errno>) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(fail(FErrno::from_i32(libc::ERANGE))),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(err(e)),
    }
}

impl Filesystem for FuseView {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Depth 1: the store is a plain filesystem, and a kernel overlayfs
        // (dockerd's overlay2) must be able to stack on the view.
        let depth_ok = config.set_max_stack_depth(1).is_ok();
        let pt = depth_ok && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok();
        self.passthrough.store(pt, Ordering::Relaxed);
        for cap in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            // Always readdirplus: with READDIRPLUS_AUTO the kernel switches to
            // plain readdir after the first reply of a `find` or `ls -l`, which
            // stat the entries only after reading the whole directory.
            InitFlags::FUSE_DO_READDIRPLUS,
        ] {
            let _ = config.add_capabilities(cap);
        }
        log::info!(
            "FUSE session initialised (passthrough {})",
            if pt { "on" } else { "off" }
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _t = self.metrics.start(Op::Lookup);
        reply_entry(reply, self.core.lookup(parent.0, name));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _t = self.metrics.start(Op::Forget);
        self.core.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _t = self.metrics.start(Op::Getattr);
        match self.core.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &fattr(&a)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _t = self.metrics.start(Op::Setattr);
        let s = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: time_arg(atime),
            mtime: time_arg(mtime),
        };
        match self.core.setattr(ino.0, s) {
            Ok(a) => reply.attr(&TTL, &fattr(&a)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _t = self.metrics.start(Op::Readlink);
        reply_data(reply, self.core.readlink(ino.0));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _t = self.metrics.start(Op::Mknod);
        reply_entry(
            reply,
            self.core.mknod(parent.0, name, mode, decode_dev(rdev), caller(req)),
        );
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        let _t = self.metrics.start(Op::Mkdir);
        reply_entry(reply, self.core.mkdir(parent.0, name, mode, caller(req)));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _t = self.metrics.start(Op::Unlink);
        reply_empty(reply, self.core.unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _t = self.metrics.start(Op::Rmdir);
        reply_empty(reply, self.core.rmdir(parent.0, name));
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let _t = self.metrics.start(Op::Symlink);
        reply_entry(
            reply,
            self.core.symlink(parent.0, link_name, target.as_os_str(), caller(req)),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _t = self.metrics.start(Op::Rename);
        reply_empty(
            reply,
            self.core.rename(parent.0, name, newparent.0, newname, flags.bits()),
        );
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let _t = self.metrics.start(Op::Link);
        reply_entry(reply, self.core.link(ino.0, newparent.0, newname));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _t = self.metrics.start(Op::Open);
        if ino.0 == VERSION_INO {
            if flags.0 & libc::O_ACCMODE != libc::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
                return reply.error(fail(FErrno::EACCES));
            }
            let fh = self.add_handle(Handle::Version);
            self.metrics.version_opened();
            return reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
        }
        let opened = match self.core.open(ino.0, flags.0) {
            Ok(o) => o,
            Err(e) => return reply.error(err(e)),
        };
        let (fh, mode) = self.add_file(ino.0, opened, |fd| reply.open_backing(fd.as_fd()));
        match mode.backing() {
            Some(id) => reply.opened_passthrough(fh, FopenFlags::empty(), &id),
            None => reply.opened(fh, mode.flags()),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _t = self.metrics.start(Op::Read);
        reply_data(reply, self.read_handle(fh, offset, size));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _t = self.metrics.start(Op::Write);
        match self
            .file_fd(fh)
            .and_then(|fd| Ok(sys::pwrite_all(fd.as_fd(), data, offset)?))
        {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        let _t = self.metrics.start(Op::Flush);
        // Nothing to do at close (data goes to the backing file as written,
        // locks are the kernel's): ENOSYS makes the kernel stop sending
        // FLUSH, one synchronous round trip less per close(2).
        reply.error(FErrno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _t = self.metrics.start(Op::Release);
        let handle = self.handles.lock().remove(&fh.0);
        match handle {
            Some(Handle::File { ino, mode, .. }) => {
                self.io.release(ino, &mode);
                self.metrics.file_released();
            }
            Some(Handle::Version) => self.metrics.file_released(),
            _ => {}
        }
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let _t = self.metrics.start(Op::Fsync);
        if ino.0 == VERSION_INO {
            return reply.ok();
        }
        reply_empty(
            reply,
            self.file_fd(fh).and_then(|fd| Ok(sys::fsync(fd.as_fd(), datasync)?)),
        );
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _t = self.metrics.start(Op::Opendir);
        let fh = self.add_handle(Handle::Dir { entries: None });
        self.metrics.dir_opened();
        // Let the kernel keep listings across opens: it drops its copy
        // whenever it changes the directory itself, the only way it changes.
        reply.opened(
            FileHandle(fh),
            FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
        );
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let _t = self.metrics.start(Op::Readdir);
        let batch = match self.dir_batch(ino.0, fh.0, offset) {
            Ok(b) => b,
            Err(e) => return reply.error(e),
        };
        let merged: Vec<&DirEntry> = batch.iter().map(|(_, e)| e).filter(|e| e.fixed().is_none()).collect();
        let mut resolved = self.core.stat_listed(ino.0, &merged).into_iter();
        for (next, e) in &batch {
            let (ino, kind) = match e.fixed() {
                Some(fixed) => fixed,
                None => match resolved.next() {
                    Some(Ok(a)) => (a.ino, a.kind),
                    _ => continue, // gone since the listing was taken
                },
            };
            if reply.add(INodeNo(ino), *next, file_type(kind), &e.name) {
                break;
            }
        }
        reply.ok();
    }

    /// readdir with each entry's attributes, which spares the kernel one
    /// LOOKUP per entry (a cold `ls -l` or `find` of a big tree).
    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let _t = self.metrics.start(Op::Readdirplus);
        let batch = match self.dir_batch(ino.0, fh.0, offset) {
            Ok(b) => b,
            Err(e) => return reply.error(e),
        };
        // The kernel takes a lookup reference on every entry it is given
        // except `.` and `..`, exactly as for a LOOKUP. Entries are looked up
        // a chunk at a time: the reply's size is not known in advance, and an
        // entry that does not fit is forgotten again.
        'chunks: for chunk in batch.chunks(32) {
            let merged: Vec<&DirEntry> = chunk.iter().map(|(_, e)| e).filter(|e| e.fixed().is_none()).collect();
            let mut looked_up = self.core.lookup_listed(ino.0, &merged).into_iter();
            let mut full = false;
            for (next, e) in chunk {
                let attr = match e.fixed() {
                    Some((fixed, _)) => self.core.getattr(fixed),
                    None => looked_up.next().unwrap_or(Err(Errno::EIO)),
                };
                let Ok(a) = attr else {
                    continue; // gone since the listing was taken
                };
                if !full && !reply.add(INodeNo(a.ino), *next, &e.name, &TTL, &fattr(&a), Generation(0)) {
                    continue;
                }
                full = true;
                if !e.is_dot() {
                    self.core.forget(a.ino, 1); // the kernel never saw it
                }
            }
            if full {
                break 'chunks;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        let _t = self.metrics.start(Op::Releasedir);
        if self.handles.lock().remove(&fh.0).is_some() {
            self.metrics.dir_released();
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let _t = self.metrics.start(Op::Fsyncdir);
        reply_empty(reply, self.core.fsync_dir(ino.0, datasync));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _t = self.metrics.start(Op::Statfs);
        match self.core.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _t = self.metrics.start(Op::Setxattr);
        reply_empty(reply, self.core.setxattr(ino.0, name, value, flags));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _t = self.metrics.start(Op::Getxattr);
        reply_xattr(reply, size, self.core.getxattr(ino.0, name));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _t = self.metrics.start(Op::Listxattr);
        reply_xattr(reply, size, self.core.listxattr(ino.0));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _t = self.metrics.start(Op::Removexattr);
        reply_empty(reply, self.core.removexattr(ino.0, name));
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        let _t = self.metrics.start(Op::Access);
        // default_permissions: the kernel checks modes itself.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _t = self.metrics.start(Op::Create);
        if name.as_bytes().contains(&b'/') {
            return reply.error(fail(FErrno::EINVAL));
        }
        let (attr, opened) = match self.core.create(parent.0, name, mode, flags, caller(req)) {
            Ok(x) => x,
            Err(e) => return reply.error(err(e)),
        };
        let (fh, mode) = self.add_file(attr.ino, opened, |fd| reply.open_backing(fd.as_fd()));
        let fa = fattr(&attr);
        match mode.backing() {
            Some(id) => reply.created_passthrough(&TTL, &fa, Generation(0), fh, FopenFlags::empty(), &id),
            None => reply.created(&TTL, &fa, Generation(0), fh, mode.flags()),
        }
    }

    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        let _t = self.metrics.start(Op::Ioctl);
        match self.core.ioctl(ino.0, cmd, in_data) {
            Ok(data) if data.len() > out_size as usize => reply.error(fail(FErrno::EINVAL)),
            Ok(data) => reply.ioctl(0, &data),
            Err(e) => reply.error(err(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _t = self.metrics.start(Op::Fallocate);
        reply_empty(
            reply,
            self.file_fd(fh)
                .and_then(|fd| Ok(sys::fallocate(fd.as_fd(), mode, offset, length)?)),
        );
    }

    fn lseek(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        let _t = self.metrics.start(Op::Lseek);
        match self
            .file_fd(fh)
            .and_then(|fd| Ok(sys::lseek(fd.as_fd(), offset, whence)?))
        {
            Ok(o) => reply.offset(o as i64),
            Err(e) => reply.error(err(e)),
        }
    }
}
