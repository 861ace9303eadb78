//! Escape attempts from inside a view: symlinks (made through the view,
//! planted on disk in an upper or in a layer) pointing at `/etc`, at a
//! sentinel directory outside the store, at another session's upper and at
//! the store itself; hard links across the view's edge; races between a
//! directory and a symlink swapped under operations. None may let the daemon
//! read or write anything outside the session's layers and upper: every
//! outside target is snapshotted (content, mode, owner, link count, inode,
//! mtime, ctime, xattrs) before and compared after.
//!
//! Symlinks with relative targets are built so that, followed from where
//! the daemon keeps them on disk, they reach the sentinel, but followed from
//! the view (by the client's kernel, which is the client's business) they
//! lead nowhere: a daemon that followed one would show up in the sentinel's
//! snapshot, while the client's own operations through them fail ENOENT.
//! Symlinks with absolute targets (`/etc/passwd`) only get operations that
//! do not follow them on the client side.

mod common;

use common::extra::*;
use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ENOENT: i32 = libc::ENOENT;

/// The sentinel directory outside the store: `ROOT/outside`.
fn make_outside(d: &Daemon) -> PathBuf {
    let o = d.root().join("outside");
    write(o.join("secret"), "secret\n");
    write(o.join("sub/inner"), "inner\n");
    xattr::set(&o.join("secret"), "user.tag", b"sentinel").unwrap();
    o
}

/// A daemon with project `p` (the sample tree) and the sentinel.
fn sample_project_and_outside() -> (Daemon, PathBuf) {
    let d = Daemon::start();
    let outside = make_outside(&d);
    d.create_project_with("p", fill_sample);
    (d, outside)
}

/// Everything outside session `own` that the daemon must leave alone: the
/// sentinel, `/etc/passwd` and the other sessions (outside the store's
/// reach), then the store's layers and projects.
struct Watched {
    paths: Vec<PathBuf>,
    before: Vec<BTreeMap<PathBuf, String>>,
}

const OUTSIDE_THE_STORE: usize = 2;

impl Watched {
    fn new(d: &Daemon, outside: &Path, own: &str) -> Watched {
        let state = d.state_dir();
        let mut paths = vec![outside.to_path_buf(), PathBuf::from("/etc/passwd")];
        for s in ls(state.join("sessions")) {
            if s != own {
                paths.insert(OUTSIDE_THE_STORE, state.join("sessions").join(s));
            }
        }
        paths.extend([state.join("layers"), state.join("projects")]);
        let before = paths.iter().map(|p| deep_snapshot(p)).collect();
        Watched { paths, before }
    }

    #[track_caller]
    fn assert_untouched(&self) {
        for (p, before) in self.paths.iter().zip(&self.before) {
            assert_same_snapshot(&p.display().to_string(), before, &deep_snapshot(p));
        }
    }

    /// All but the store's layers and projects (a promotion changes those).
    #[track_caller]
    fn assert_outside_untouched(&self) {
        let n = self.paths.len() - 2;
        for (p, before) in self.paths.iter().zip(&self.before).take(n) {
            assert_same_snapshot(&p.display().to_string(), before, &deep_snapshot(p));
        }
    }
}

/// A relative symlink target that leads from `on_disk` (a directory in the
/// store) to `to`, and asserts that from `in_view` (where the view shows
/// the link) it leads to nothing.
fn evil_target(on_disk: &Path, in_view: &Path, to: &Path) -> PathBuf {
    let t = relative_target(on_disk, to);
    let client_side = resolve_lexically(in_view, &t);
    assert!(
        !exists(&client_side),
        "test setup: {} (where {} leads from the view) must not exist",
        client_side.display(),
        t.display()
    );
    t
}

fn errno<T>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => errno_of(&e),
    }
}

fn append(path: &Path, data: &[u8]) {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} for appending: {e}", path.display()));
    f.write_all(data).unwrap();
}

fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

/// Every operation that does not follow the symlink `link` on the client
/// side; the daemon gets each one for the symlink itself.
fn poke_symlink_name(view: &Path, link: &Path) {
    let target = fs::read_link(link).unwrap();
    let name = link.file_name().unwrap().to_string_lossy().into_owned();
    lchown(link, 4321, 4321).unwrap();
    set_times(link, (1_000_000, 0), (2_000_000, 0)).unwrap();
    xattr::set(link, "trusted.test", b"v").unwrap();
    assert_eq!(xattr::get(link, "trusted.test").unwrap().as_deref(), Some(&b"v"[..]));
    assert!(xattr::list(link).unwrap().iter().any(|n| n == "trusted.test"));
    xattr::remove(link, "trusted.test").unwrap();
    for write in [false, true] {
        let open = fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(libc::O_NOFOLLOW)
            .open(link);
        assert_errno(open, &[libc::ELOOP], "open O_NOFOLLOW of a symlink");
    }
    // link(2) does not follow: a second name of the symlink itself.
    let hard = view.join(format!("{name}.hard"));
    fs::hard_link(link, &hard).unwrap();
    assert_eq!(fs::read_link(&hard).unwrap(), target);
    fs::remove_file(&hard).unwrap();
    // Renamed away and back, exchanged with a directory and back.
    let moved = view.join(format!("{name}.moved"));
    fs::rename(link, &moved).unwrap();
    fs::rename(&moved, link).unwrap();
    let xdir = view.join(format!("{name}.xdir"));
    fs::create_dir(&xdir).unwrap();
    write(xdir.join("f"), "in xdir\n");
    exchange(link, &xdir).unwrap();
    assert_eq!(read(link.join("f")), "in xdir\n");
    exchange(link, &xdir).unwrap();
    assert_eq!(fs::read_link(link).unwrap(), target);
    fs::remove_dir_all(&xdir).unwrap();
    // A file renamed over it replaces the symlink, not its target.
    let victim = view.join(format!("{name}.victim"));
    write(&victim, "victim\n");
    fs::rename(&victim, link).unwrap();
    assert_eq!(read(link), "victim\n");
    fs::remove_file(link).unwrap();
    symlink(&target, link).unwrap();
}

/// Operations that follow `link` on the client side; for a relative
/// `evil_target` they all meet a missing path there.
fn follow_symlink_name(link: &Path) {
    let client_side = resolve_lexically(link.parent().unwrap(), &fs::read_link(link).unwrap());
    assert!(!exists(&client_side), "test setup: {} exists", client_side.display());
    let r = |what: &str, e: i32| assert_eq!(e, ENOENT, "{what} through {}", link.display());
    r("stat", errno(fs::metadata(link)));
    r("open", errno(fs::File::open(link.join("secret"))));
    r("creat", errno(fs::File::create(link.join("new"))));
    r("mkdir", errno(fs::create_dir(link.join("x"))));
    r("chmod", errno(chmod(link, 0o777)));
    r("truncate", errno(truncate(link, 0)));
    r("readdir", errno(fs::read_dir(link)));
    r(
        "setxattr",
        errno(
            rustix::fs::setxattr(link, "user.x", b"v", rustix::fs::XattrFlags::empty()).map_err(std::io::Error::from),
        ),
    );
}

#[test]
fn symlinks_made_in_a_view_never_lead_the_daemon_outside_the_session() {
    let d = Daemon::start();
    let outside = make_outside(&d);
    let state = d.state_dir().to_path_buf();
    let layer_dir = state.join("layers/L"); // only its depth matters
    let src = d.create_project_with("p", |s| {
        fill_sample(s);
        // Symlinks in the golden, relative to where the layer keeps them.
        symlink(relative_target(&layer_dir, &outside), s.join("g-outside")).unwrap();
        symlink("/etc/passwd", s.join("g-passwd")).unwrap();
        symlink(
            relative_target(&layer_dir.join("dir1"), &outside),
            s.join("dir1/g-inner"),
        )
        .unwrap();
    });
    let m1 = d.mount("p", "s1");
    let m2 = d.mount("p", "s2");
    write(m2.join("s2-private.txt"), "s2 only\n");
    fs::create_dir(m2.join("s2dir")).unwrap();
    write(m2.join("a.txt"), "s2 wrote a\n");
    let upper1 = state.join("sessions/s1/upper");
    let upper2 = state.join("sessions/s2/upper");
    // Client-side, the golden's relative links lead nowhere either.
    for l in ["g-outside", "dir1/g-inner"] {
        let link = m1.join(l);
        let t = fs::read_link(&link).unwrap();
        assert!(!exists(resolve_lexically(link.parent().unwrap(), &t)), "{l}");
    }

    let relative = [
        ("to-outside", evil_target(&upper1, &m1, &outside)),
        ("to-secret", evil_target(&upper1, &m1, &outside.join("secret"))),
        ("to-s2-upper", evil_target(&upper1, &m1, &upper2)),
        ("to-s2-file", evil_target(&upper1, &m1, &upper2.join("s2-private.txt"))),
        ("to-store", evil_target(&upper1, &m1, &state.join("layers"))),
        ("to-projects", evil_target(&upper1, &m1, &state.join("projects/p"))),
    ];
    let absolute = [
        ("abs-passwd", PathBuf::from("/etc/passwd")),
        ("abs-etc", PathBuf::from("/etc")),
        ("abs-outside", outside.clone()),
        ("abs-s2-upper", upper2.clone()),
        ("abs-store", state.clone()),
    ];
    let watched = Watched::new(&d, &outside, "s1");

    for (name, target) in relative.iter().chain(&absolute) {
        let link = m1.join(name);
        symlink(target, &link).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), *target);
        poke_symlink_name(&m1, &link);
    }
    for (name, _) in &relative {
        follow_symlink_name(&m1.join(name));
    }
    // Non-directories as directories: resolved by the client, ENOTDIR.
    assert_errno(
        fs::create_dir(m1.join("abs-passwd/x")),
        &[libc::ENOTDIR],
        "mkdir in /etc/passwd",
    );
    // The golden's symlinks: every metadata change copies them up (readlink
    // and symlinkat in the work dir), renames move them, unlink whites them out.
    for l in ["g-outside", "g-passwd", "dir1/g-inner"] {
        let link = m1.join(l);
        let parent = link.parent().unwrap().to_path_buf();
        poke_symlink_name(&parent, &link);
    }
    follow_symlink_name(&m1.join("g-outside"));
    follow_symlink_name(&m1.join("dir1/g-inner"));
    // The upper holds the symlinks themselves, with their targets verbatim.
    for (name, target) in relative.iter().chain(&absolute) {
        assert_eq!(
            fs::read_link(upper1.join(name)).unwrap(),
            *target,
            "{name} in the upper"
        );
    }
    assert_eq!(
        fs::read_link(upper1.join("g-passwd")).unwrap(),
        Path::new("/etc/passwd")
    );

    // Hard links across the view's edge are refused by the kernel (EXDEV).
    for (from, to) in [
        (outside.join("secret"), m1.join("stolen")),
        (m1.join("a.txt"), outside.join("leaked")),
        (upper2.join("s2-private.txt"), m1.join("s2-stolen")),
    ] {
        assert_errno(
            fs::hard_link(&from, &to),
            &[libc::EXDEV],
            &format!("link {from:?} {to:?}"),
        );
        assert_errno(
            fs::rename(&from, &to),
            &[libc::EXDEV],
            &format!("rename {from:?} {to:?}"),
        );
    }

    // Everything removed again; the daemon never followed a name.
    for (name, _) in relative.iter().chain(&absolute) {
        fs::remove_file(m1.join(name)).unwrap();
    }
    fs::remove_file(m1.join("g-outside")).unwrap();
    watched.assert_untouched();
    assert_eq!(read(m2.join("a.txt")), "s2 wrote a\n");
    assert_eq!(read(m1.join("a.txt")), "alpha\n");
    assert_eq!(read(src.join("a.txt")), "alpha\n");
    for (name, _) in relative.iter().chain(&absolute) {
        assert!(!exists(m2.join(name)), "{name} shows in the other session");
    }
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    watched.assert_outside_untouched();
}

/// Every object under `view` gets every kind of operation the daemon
/// serves; symlinks only those that do not follow them on the client side.
/// Returns the paths and file contents seen (to check nothing from outside
/// showed up).
fn poke_everything(view: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut seen = BTreeMap::new();
    let mut stack = vec![view.to_path_buf()];
    let mut n = 0;
    while let Some(dir) = stack.pop() {
        for name in ls(&dir) {
            let p = dir.join(&name);
            if (name == VERSION_FILE && dir == view) || name.starts_with("poke") {
                continue;
            }
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(view).unwrap().to_path_buf();
            let _ = lchown(&p, 777, 777);
            let _ = set_times(&p, (3_000_000, 0), (4_000_000, 0));
            let _ = xattr::set(&p, "trusted.poked", b"1");
            if md.is_dir() {
                n += 1;
                write(p.join(format!("poke-{n}")), "poke\n");
                let _ = fs::create_dir(p.join(format!("pokedir-{n}")));
                let _ = chmod(&p, 0o755);
                seen.insert(rel, Vec::new());
                stack.push(p);
            } else if md.file_type().is_symlink() {
                seen.insert(rel, fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes());
            } else if md.is_file() {
                let data = fs::read(&p).unwrap();
                let _ = chmod(&p, 0o644);
                append(&p, b"+");
                seen.insert(rel, data);
            }
        }
    }
    seen
}

/// A directory carrying goldenfs's redirect marker, as only someone with
/// write access to the store can make one.
fn plant_redirect(dir: &Path, redirect: &Path) {
    fs::create_dir(dir).unwrap();
    xattr::set(
        dir,
        "trusted.goldenfs.redirect",
        redirect.as_os_str().as_encoded_bytes(),
    )
    .unwrap();
}

#[test]
fn symlinks_and_markers_planted_on_disk_in_an_upper_or_a_layer_stay_inside() {
    let d = Daemon::start();
    let outside = make_outside(&d);
    let state = d.state_dir().to_path_buf();
    d.create_project_with("p", |s| {
        fill_sample(s);
        write(s.join("dir2/keep.txt"), "keep\n");
        write(s.join("dir3/sub/deep.txt"), "deep3\n");
    });
    // A previous session (the attacker) replaces lower directories by
    // symlinks aimed, from the layer its upper becomes, at the sentinel.
    let m0 = d.mount("p", "s0");
    let layer_dir = state.join("layers/L");
    fs::remove_dir_all(m0.join("dir2")).unwrap();
    symlink(relative_target(&layer_dir, &outside), m0.join("dir2")).unwrap();
    fs::remove_dir_all(m0.join("dir3/sub")).unwrap();
    symlink(relative_target(&layer_dir.join("dir3"), &outside), m0.join("dir3/sub")).unwrap();
    d.unmount("s0");
    d.ok(&["promote", "p", "s0"]);
    // And, with write access to the store, plants markers in its layer:
    // redirects out of the layer stack, and a symlink instead of a directory.
    let gens = d.json(&["generations", "p"]);
    let gen2 = gens["generations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["generation"] == 2);
    let layer = state.join("layers").join(gen2.unwrap()["layers"][0].as_str().unwrap());
    for (name, redirect) in [
        ("redir-up", relative_target(&layer, &outside)),
        ("redir-abs", outside.clone()),
        ("redir-etc", PathBuf::from("/etc")),
    ] {
        plant_redirect(&layer.join(name), &redirect);
    }

    // The victim session s1 (generation 2), and its upper tampered with too.
    let m1 = d.mount("p", "s1");
    write(m1.join("dir1/new.txt"), "new\n"); // dir1 now has an upper copy
    d.unmount("s1");
    let upper = state.join("sessions/s1/upper");
    fs::remove_dir_all(upper.join("dir1")).unwrap();
    symlink(relative_target(&upper, &outside), upper.join("dir1")).unwrap();
    fs::create_dir(upper.join("planted")).unwrap();
    symlink(
        relative_target(&upper.join("planted"), &outside),
        upper.join("planted/inner"),
    )
    .unwrap();
    symlink(
        relative_target(&upper.join("planted"), &outside.join("secret")),
        upper.join("planted/secret"),
    )
    .unwrap();
    for (name, redirect) in [
        ("u-redir-up", relative_target(&upper, &outside)),
        ("u-redir-s2", PathBuf::from("../../s2/upper")),
        ("u-redir-dir1", PathBuf::from("dir3/../dir1")),
    ] {
        plant_redirect(&upper.join(name), &redirect);
    }
    let m2 = d.mount("p", "s2");
    write(m2.join("s2-private.txt"), "s2 only\n");
    let m1 = d.mount("p", "s1");
    let watched = Watched::new(&d, &outside, "s1");

    // The view shows the planted things as what they are, inside.
    for l in ["dir1", "dir2", "dir3/sub", "planted/inner"] {
        let md = fs::symlink_metadata(m1.join(l)).unwrap();
        assert!(md.file_type().is_symlink(), "{l} must show as the planted symlink");
        follow_symlink_name(&m1.join(l));
    }
    // Redirects lead only into the layer stack: a name resolved there (the
    // `..` of a redirect is dropped), or nothing.
    assert_eq!(ls(m1.join("redir-up")), Vec::<String>::new());
    assert_eq!(ls(m1.join("redir-abs")), Vec::<String>::new());
    assert_eq!(ls(m1.join("redir-etc")), Vec::<String>::new());
    assert_eq!(ls(m1.join("u-redir-up")), Vec::<String>::new());
    assert_eq!(ls(m1.join("u-redir-s2")), Vec::<String>::new());
    // `dir3/../dir1` drops the `..`: dir3, then dir1 in it: nothing.
    assert_eq!(ls(m1.join("u-redir-dir1")), Vec::<String>::new());

    let seen = poke_everything(&m1);
    for (p, data) in &seen {
        assert!(
            !data.starts_with(b"secret") && !data.starts_with(b"inner") && !data.starts_with(b"s2 only"),
            "{} shows outside content",
            p.display()
        );
    }
    for l in ["dir1", "dir2", "dir3/sub", "planted/inner", "planted/secret"] {
        fs::rename(m1.join(l), m1.join(format!("{l}.moved"))).unwrap();
        fs::remove_file(m1.join(format!("{l}.moved"))).unwrap();
        fs::create_dir(m1.join(l)).unwrap();
        write(m1.join(l).join("secret"), "mine\n");
        assert_eq!(ls(m1.join(l)), ["secret"], "{l} recreated as a directory");
    }
    fs::remove_dir_all(m1.join("redir-up")).unwrap();
    fs::remove_dir_all(m1.join("u-redir-up")).unwrap();
    d.remount("p", "s1");
    poke_everything(&m1);
    watched.assert_untouched();
    assert_eq!(read(m2.join("s2-private.txt")), "s2 only\n");
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    d.ok(&["gc", "--keep", "1"]);
    let m3 = d.mount("p", "s3");
    assert!(read(m3.join("dir1/secret")).starts_with("mine\n"));
    poke_everything(&m3);
    watched.assert_outside_untouched();
}

/// Documents, does not endorse: a hard link that someone with write access
/// to the store plants in an upper is the outside file itself (one inode),
/// so the view reads and writes that file. The daemon follows nothing here;
/// nobody without write access to the store can make such a link (link(2)
/// across the view's edge is EXDEV, see above). In a lower layer it is read
/// only: a write copies it up, and the outside file stays as it was.
#[test]
fn a_hard_link_planted_on_disk_is_the_outside_file_itself() {
    let (d, outside) = sample_project_and_outside();
    let state = d.state_dir().to_path_buf();
    d.mount("p", "s1");
    d.unmount("s1");
    let upper = state.join("sessions/s1/upper");
    fs::hard_link(outside.join("secret"), upper.join("linked")).unwrap();
    let m = d.mount("p", "s1");
    assert_eq!(read(m.join("linked")), "secret\n");
    append(&m.join("linked"), b"via view\n");
    assert_eq!(read(outside.join("secret")), "secret\nvia view\n", "one inode");
    // Promoted, the link is a lower file: reads show it, writes copy it up.
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    let m2 = d.mount("p", "s2");
    assert_eq!(read(m2.join("linked")), "secret\nvia view\n");
    let before = deep_snapshot(&outside);
    append(&m2.join("linked"), b"copied up\n");
    assert_eq!(read(m2.join("linked")), "secret\nvia view\ncopied up\n");
    assert_same_snapshot("the outside file", &before, &deep_snapshot(&outside));
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One random operation on a name "inside" the swapped directory `dir`.
fn race_op(rng: &mut Rng, dir: &Path) -> i32 {
    let f = dir.join(format!("race-{}", rng.below(8)));
    let g = dir.join(format!("race-{}", rng.below(8)));
    match rng.below(12) {
        0 => errno(fs::write(&f, b"race\n")),
        1 => errno(
            fs::OpenOptions::new()
                .append(true)
                .open(&f)
                .and_then(|mut h| h.write_all(b"more\n")),
        ),
        2 => errno(chmod(&f, 0o600 + rng.below(0o100) as u32)),
        3 => errno(lchown(&f, 1000, 1000)),
        4 => errno(fs::rename(&f, &g)),
        5 => errno(fs::remove_file(&f)),
        6 => errno(fs::create_dir(&f)),
        7 => errno(fs::remove_dir(&f)),
        8 => errno(symlink("race-target", &f)),
        9 => errno(fs::hard_link(&f, &g)),
        10 => errno(xattr::set(&f, "user.race", b"x")),
        _ => errno(truncate(&f, rng.below(16) as u64)),
    }
}

#[test]
fn swapping_a_directory_and_a_symlink_under_running_operations_never_escapes() {
    let (d, outside) = sample_project_and_outside();
    let state = d.state_dir().to_path_buf();
    let m = d.mount("p", "s1");
    let _m2 = d.mount("p", "s2");
    let upper = state.join("sessions/s1/upper");
    // An upper directory and a lower one, each with a symlink beside it that
    // leads (from the store) to the sentinel.
    fs::create_dir(m.join("arena")).unwrap();
    fs::create_dir(m.join("arena/d")).unwrap();
    let l_arena = evil_target(&upper.join("arena"), &m.join("arena"), &outside);
    symlink(&l_arena, m.join("arena/l")).unwrap();
    let l_root = evil_target(&upper, &m, &outside);
    symlink(&l_root, m.join("l-root")).unwrap();
    let watched = Watched::new(&d, &outside, "s1");

    let seed = env_u64("ESCAPE_RACE_SEED", 0x5eed_1234);
    let secs = env_u64("ESCAPE_RACE_SECS", 12);
    eprintln!("race: seed {seed:#x}, {secs} s (ESCAPE_RACE_SEED / ESCAPE_RACE_SECS)");
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    // Swappers: RENAME_EXCHANGE, or three plain renames, of a dir and a symlink.
    for (i, (a, b)) in [
        (m.join("arena/d"), m.join("arena/l")),
        (m.join("dir1"), m.join("l-root")),
    ]
    .into_iter()
    .enumerate()
    {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ (0x100 + i as u64));
            let tmp = a.with_extension("tmp");
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if rng.below(2) == 0 {
                    exchange(&a, &b).unwrap();
                } else {
                    fs::rename(&a, &tmp).unwrap();
                    fs::rename(&b, &a).unwrap();
                    fs::rename(&tmp, &b).unwrap();
                }
                swaps += 1;
            }
            swaps
        }));
    }
    // Workers: operations on names "inside" whatever is at the swapped paths.
    let mut workers = Vec::new();
    for i in 0..4u64 {
        let stop = stop.clone();
        let dirs = [m.join("arena/d"), m.join("arena/l"), m.join("dir1"), m.join("l-root")];
        workers.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ (0x200 + i));
            let mut errnos: BTreeMap<i32, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let dir = &dirs[rng.below(4)];
                *errnos.entry(race_op(&mut rng, dir)).or_default() += 1;
            }
            errnos
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        assert!(d.is_running(), "the daemon died during the race:\n{}", d.log_text());
    }
    stop.store(true, Ordering::Relaxed);
    let swaps: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut errnos: BTreeMap<i32, u64> = BTreeMap::new();
    for w in workers {
        for (e, n) in w.join().unwrap() {
            *errnos.entry(e).or_default() += n;
        }
    }
    eprintln!("race: swaps {swaps:?}, operations by errno {errnos:?}");
    assert!(swaps.iter().all(|&n| n > 0), "a swapper never ran");
    assert!(errnos.get(&0).copied().unwrap_or(0) > 0, "no operation succeeded");
    assert!(!errnos.contains_key(&libc::EIO), "EIO during the race: {errnos:?}");

    watched.assert_untouched();
    for (base, t) in [(m.join("arena"), &l_arena), (m.clone(), &l_root)] {
        assert!(!exists(resolve_lexically(&base, t)), "a client-side target appeared");
    }
    // The symlinks are still symlinks, the directories still directories
    // (in one of the two places each), in the view and in the upper.
    for (a, b) in [("arena/d", "arena/l"), ("dir1", "l-root")] {
        let kinds = |root: &Path| {
            let mut k = [a, b].map(|n| fs::symlink_metadata(root.join(n)).unwrap().file_type().is_symlink());
            k.sort();
            k
        };
        assert_eq!(kinds(&m), [false, true], "{a}/{b} in the view");
        assert_eq!(kinds(&upper), [false, true], "{a}/{b} in the upper");
    }
    // Every name the race made is inside the session's upper or work dir.
    let mut strays = Vec::new();
    let mut stack = vec![d.root().to_path_buf()];
    while let Some(dir) = stack.pop() {
        if dir.starts_with(d.root().join("mnt")) || dir.starts_with(state.join("sessions/s1")) {
            continue;
        }
        for name in ls(&dir) {
            let p = dir.join(&name);
            if name.starts_with("race-") {
                strays.push(p.clone());
            }
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    assert_eq!(
        strays,
        Vec::<PathBuf>::new(),
        "names made by the race outside the session"
    );
    // The view is still whole: walkable, and it survives a remount.
    poke_everything(&m);
    let m = d.remount("p", "s1");
    poke_everything(&m);
    watched.assert_untouched();
}

#[test]
fn nothing_one_session_does_is_visible_in_another() {
    let d = Daemon::start();
    let golden = |s: &Path| {
        fill_sample(s);
        xattr::set(&s.join("b.txt"), "user.orig", b"golden").unwrap();
        write(s.join("tree/a/b/c.txt"), "c\n");
    };
    d.create_project_with("p", golden);
    let m2 = d.mount("p", "s2");
    let m1 = d.mount("p", "s1");
    let before = deep_snapshot(&m2);
    let version = fs::read(m2.join(VERSION_FILE)).unwrap();

    // s1 changes everything a session can change.
    xattr::set(&m1.join("a.txt"), "user.k", b"s1").unwrap();
    xattr::set(&m1.join("dir1"), "user.k", b"s1").unwrap();
    xattr::set(&m1.join("link"), "trusted.k", b"s1").unwrap();
    xattr::remove(&m1.join("b.txt"), "user.orig").unwrap();
    fs::remove_file(m1.join("a.txt")).unwrap(); // whiteout
    write(m1.join("a.txt"), "recreated\n"); // over the whiteout
    fs::remove_dir(m1.join("empty")).unwrap();
    fs::rename(m1.join("dir1"), m1.join("dir1-renamed")).unwrap(); // redirect
    fs::create_dir(m1.join("dir1")).unwrap(); // opaque, over the whiteout
    fs::rename(m1.join("tree/a"), m1.join("moved-a")).unwrap();
    fs::remove_dir_all(m1.join("tree")).unwrap();
    chmod(&m1.join("b.txt"), 0o600).unwrap();
    lchown(&m1.join("dir1-renamed/x.txt"), 5, 5).unwrap();
    set_times(&m1.join("dir1-renamed/nested"), (1, 0), (2, 0)).unwrap();
    fs::hard_link(m1.join("b.txt"), m1.join("b-hard")).unwrap();
    mkfifo(&m1.join("fifo"), 0o644).unwrap();
    symlink("b.txt", m1.join("new-link")).unwrap();
    truncate(&m1.join("dir1-renamed/nested/deep.txt"), 1).unwrap();
    for trunc in [false, true] {
        assert_errno(
            fs::OpenOptions::new()
                .write(true)
                .truncate(trunc)
                .open(m1.join(VERSION_FILE)),
            &[libc::EACCES, libc::EPERM],
            "writing the version file",
        );
    }
    assert_same_snapshot("s2's view while s1 changes", &before, &deep_snapshot(&m2));
    assert_eq!(xattr::get(&m2.join("a.txt"), "user.k").unwrap(), None);
    assert_eq!(
        xattr::get(&m2.join("b.txt"), "user.orig").unwrap().as_deref(),
        Some(&b"golden"[..])
    );

    // Remounted, and promoted: s2 keeps its base generation.
    let m1 = d.remount("p", "s1");
    assert_eq!(read(m1.join("a.txt")), "recreated\n");
    d.unmount("s1");
    d.ok(&["promote", "p", "s1"]);
    assert_same_snapshot("s2's view after s1's promotion", &before, &deep_snapshot(&m2));
    assert_eq!(fs::read(m2.join(VERSION_FILE)).unwrap(), version);
    // A new session sees generation 2; s2 still sees nothing of it.
    let m3 = d.mount("p", "s3");
    assert_eq!(generation_of(&m3), 2);
    assert!(exists(m3.join("dir1-renamed")));
    write(m3.join("s3.txt"), "s3\n");
    assert_same_snapshot("s2's view after s3 wrote", &before, &deep_snapshot(&m2));
    assert!(!exists(m2.join("s3.txt")));
}
