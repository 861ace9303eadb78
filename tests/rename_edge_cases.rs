//! rename(2) beyond the everyday cases: long sequences of renames (every
//! renameat2 flag), creations and removals generated from fixed seeds and
//! checked against a model of what rename(2) must do, across remounts and
//! promotions; a replaced directory still held by the kernel; redirects too
//! long for the backing filesystem.

mod common;

use common::*;
use rustix::fs::{CWD, RenameFlags, renameat_with};
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

fn ino(p: impl AsRef<Path>) -> u64 {
    let p = p.as_ref();
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
        .ino()
}

/// xorshift64*: deterministic, so a failure names a seed and a step that replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const DIR: &str = "<dir>";
const NAMES: &[&str] = &["a", "b", "c", "dd", "e"];

/// Path -> (description as in [`tree`], inode number once known).
type Model = BTreeMap<String, (String, Option<u64>)>;

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

fn below(path: &str, of: &str) -> bool {
    path.len() > of.len() && path.starts_with(of) && path.as_bytes()[of.len()] == b'/'
}

fn is_dir(m: &Model, p: &str) -> bool {
    p.is_empty() || m.get(p).is_some_and(|(d, _)| d == DIR)
}

fn move_keys(m: &mut Model, from: &str, to: &str) {
    let moved: Vec<_> = m
        .iter()
        .filter(|(k, _)| *k == from || below(k, from))
        .map(|(k, v)| (format!("{to}{}", &k[from.len()..]), v.clone()))
        .collect();
    m.retain(|k, _| !(k == from || below(k, from) || k == to || below(k, to)));
    m.extend(moved);
}

/// The whole view (version file left out), same shape as [`Model`] without inodes.
fn tree(root: &Path) -> BTreeMap<String, (String, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (String, u64)>) {
        for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display())) {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            if rel == VERSION_FILE {
                continue;
            }
            let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
            let desc = if md.is_dir() {
                walk(root, &p, out);
                DIR.to_string()
            } else if md.file_type().is_char_device() {
                format!("<chr {}>", md.rdev())
            } else {
                read(&p)
            };
            out.insert(rel, (desc, md.ino()));
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Compares the view with the model and learns the inode numbers of new entries.
#[track_caller]
fn check(mnt: &Path, model: &mut Model, when: &str) {
    let got = tree(mnt);
    let want: BTreeMap<&String, &String> = model.iter().map(|(k, v)| (k, &v.0)).collect();
    let seen: BTreeMap<&String, &String> = got.iter().map(|(k, v)| (k, &v.0)).collect();
    if want != seen {
        let missing: Vec<_> = want.iter().filter(|(k, v)| seen.get(*k) != Some(v)).collect();
        let extra: Vec<_> = seen.iter().filter(|(k, v)| want.get(*k) != Some(v)).collect();
        panic!("{when}: view differs from the model\nexpected, not seen: {missing:?}\nseen, not expected: {extra:?}");
    }
    for (k, (_, ino)) in model.iter_mut() {
        let now = got[k].1;
        match ino {
            Some(i) => assert_eq!(*i, now, "{when}: inode number of {k} changed"),
            None => *ino = Some(now),
        }
    }
}

/// What renameat2(src, dst, flags) must do to the model, or the errno it must fail with.
fn expect_rename(m: &Model, src: &str, dst: &str, flags: RenameFlags) -> Result<Model, Errno> {
    let exists = m.contains_key(dst);
    let mut next = m.clone();
    if flags.contains(RenameFlags::EXCHANGE) {
        if !exists {
            return Err(Errno::NOENT);
        }
        move_keys(&mut next, src, "\u{1}");
        move_keys(&mut next, dst, src);
        move_keys(&mut next, "\u{1}", dst);
        return Ok(next);
    }
    if exists {
        if flags.contains(RenameFlags::NOREPLACE) {
            return Err(Errno::EXIST);
        }
        match (is_dir(m, src), is_dir(m, dst)) {
            (true, false) => return Err(Errno::NOTDIR),
            (false, true) => return Err(Errno::ISDIR),
            (true, true) if m.keys().any(|k| below(k, dst)) => return Err(Errno::NOTEMPTY),
            _ => {}
        }
    }
    move_keys(&mut next, src, dst);
    if flags.contains(RenameFlags::WHITEOUT) {
        next.insert(src.to_string(), ("<chr 0>".into(), None));
    }
    Ok(next)
}

fn lower_tree(s: &Path) {
    for (p, c) in [
        ("a/a/a/f", "aaa"),
        ("a/a/b/f", "aab"),
        ("a/b", "ab"),
        ("a/c/dd/e/f", "acdde"),
        ("b/a", "ba"),
        ("b/b/a", "bba"),
        ("c/a/a", "caa"),
        ("c/e", "ce"),
        ("e", "e"),
    ] {
        write(s.join(p), c);
    }
    fs::create_dir_all(s.join("dd/e")).unwrap();
    fs::create_dir_all(s.join("b/c")).unwrap();
}

fn run_seed(d: &Daemon, seed: u64, steps: usize) {
    let project = format!("p{seed}");
    d.create_project_with(&project, lower_tree);
    let mut session = 0;
    let mut mnt = d.mount(&project, &format!("{project}-s{session}"));
    let mut model: Model = tree(&mnt).into_iter().map(|(k, (d, _))| (k, (d, None))).collect();
    check(&mnt, &mut model, "at start");
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let flag_choices = [
        RenameFlags::empty(),
        RenameFlags::empty(),
        RenameFlags::NOREPLACE,
        RenameFlags::EXCHANGE,
        RenameFlags::WHITEOUT,
        RenameFlags::WHITEOUT | RenameFlags::NOREPLACE,
    ];
    for step in 0..steps {
        let entries: Vec<String> = model.keys().cloned().collect();
        let mut dirs: Vec<String> = entries.iter().filter(|k| is_dir(&model, k)).cloned().collect();
        dirs.push(String::new());
        let what = rng.below(10);
        let desc;
        if what < 7 && !entries.is_empty() {
            let src = rng.pick(&entries).clone();
            let parent = rng.pick(&dirs).clone();
            let dst = join(&parent, rng.pick::<&str>(NAMES));
            let flags = *rng.pick(&flag_choices);
            // Ancestor cases have their own test; the kernel answers them anyway.
            if dst == src || below(&dst, &src) || below(&src, &dst) {
                continue;
            }
            desc = format!("seed {seed} step {step}: renameat2({src}, {dst}, {flags:?})");
            let want = expect_rename(&model, &src, &dst, flags);
            let got = renameat_with(CWD, mnt.join(&src), CWD, mnt.join(&dst), flags);
            match (want, got) {
                (Ok(next), Ok(())) => model = next,
                (Err(w), Err(g)) => assert_eq!(w, g, "{desc}: wrong errno"),
                (w, g) => panic!("{desc}: expected {:?}, got {g:?}", w.map(|_| ())),
            }
        } else if what < 9 {
            let parent = rng.pick(&dirs).clone();
            let p = join(&parent, rng.pick::<&str>(NAMES));
            desc = format!("seed {seed} step {step}: create {p}");
            match model.get(&p).map(|v| v.0.clone()) {
                None if rng.below(2) == 0 => {
                    fs::create_dir(mnt.join(&p)).unwrap_or_else(|e| panic!("{desc}: mkdir: {e}"));
                    model.insert(p, (DIR.into(), None));
                }
                Some(d) if d == DIR || d.starts_with("<chr") => continue,
                old => {
                    let content = format!("w{step}");
                    fs::write(mnt.join(&p), &content).unwrap_or_else(|e| panic!("{desc}: write: {e}"));
                    let ino = old.and_then(|_| model.get(&p).and_then(|v| v.1));
                    model.insert(p, (content, ino));
                }
            }
        } else {
            let Some(p) = (!entries.is_empty()).then(|| rng.pick(&entries).clone()) else {
                continue;
            };
            desc = format!("seed {seed} step {step}: remove {p}");
            if is_dir(&model, &p) {
                fs::remove_dir_all(mnt.join(&p)).unwrap_or_else(|e| panic!("{desc}: {e}"));
            } else {
                fs::remove_file(mnt.join(&p)).unwrap_or_else(|e| panic!("{desc}: {e}"));
            }
            model.retain(|k, _| !(k == &p || below(k, &p)));
        }
        check(&mnt, &mut model, &desc);
        if step % 40 == 39 {
            let s = format!("{project}-s{session}");
            d.unmount(&s);
            if step % 120 == 119 {
                d.ok(&["promote", &project, &s]);
                session += 1;
            }
            mnt = d.mount(&project, &format!("{project}-s{session}"));
            check(&mnt, &mut model, &format!("{desc}, after remount/promotion"));
        }
    }
}

#[test]
fn random_renames_match_a_model_across_remounts_and_promotions() {
    let d = Daemon::start();
    let seeds: u64 = std::env::var("RENAME_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for seed in 1..=seeds {
        run_seed(&d, seed, 240);
    }
}

#[test]
fn a_dir_replaced_by_rename_while_open_keeps_its_inode_number_to_itself() {
    // ext4 reuses a freed inode number at once, and an upper-only directory's
    // inode number is its node id: the replaced directory, still held by the
    // kernel, must not lend its number to a new object.
    let d = Daemon::start();
    d.create_project_with("p", fill_sample);
    let m = d.mount("p", "s1");
    for i in 0..3 {
        fs::create_dir(m.join("victim")).unwrap();
        let held = fs::File::open(m.join("victim")).unwrap();
        let held_ino = held.metadata().unwrap().ino();
        fs::create_dir(m.join("src")).unwrap();
        fs::rename(m.join("src"), m.join("victim")).unwrap();
        let mut made = Vec::new();
        for j in 0..8 {
            let p = m.join(format!("victim/new{j}"));
            if j % 2 == 0 {
                fs::create_dir(&p).unwrap();
                write(p.join("f"), "f");
            } else {
                write(&p, "new");
            }
            made.push(ino(&p));
        }
        assert!(
            !made.contains(&held_ino),
            "round {i}: a new object got the held dir's number {held_ino}"
        );
        assert_eq!(ls(m.join("victim")).len(), 8, "round {i}");
        assert_eq!(read(m.join("victim/new0/f")), "f");
        drop(held);
        fs::remove_dir_all(m.join("victim")).unwrap();
    }
}

#[test]
fn a_dir_with_a_very_long_lower_path_is_renamed_or_refused_with_enametoolong() {
    use rustix::fs::{Mode, OFlags, mkdirat, openat, renameat};
    let d = Daemon::start();
    // Two chains of 250-byte names: ~2 KiB and ~4 KiB (just under PATH_MAX
    // relative to the view's root; reached through a held directory).
    let long = |i: usize| format!("{i:02}{}", "n".repeat(248));
    let short_chain: Vec<String> = (0..8).map(long).collect();
    let mut long_chain: Vec<String> = (0..16).map(long).collect();
    long_chain.push("x".repeat(4070 - 16 * 251));
    d.create_project_with("p", |s| {
        for (top, chain) in [("s", &short_chain), ("l", &long_chain)] {
            let mut cur = fs::File::open(s).unwrap();
            for n in std::iter::once(&top.to_string()).chain(chain.iter()) {
                mkdirat(&cur, n.as_str(), Mode::from(0o755)).unwrap();
                cur = openat(&cur, n.as_str(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                    .unwrap()
                    .into();
            }
            let f = openat(&cur, "leaf.txt", OFlags::CREATE | OFlags::WRONLY, Mode::from(0o644)).unwrap();
            rustix::io::write(&f, b"leaf\n").unwrap();
        }
    });
    let m = d.mount("p", "s1");
    let (short_top, short_rest) = (short_chain[0].clone(), short_chain[1..].join("/"));
    let held = fs::File::open(m.join("s").join(&short_top)).unwrap();
    renameat(&held, short_rest.as_str(), CWD, m.join("short-moved")).unwrap();
    drop(held);
    assert_eq!(read(m.join("short-moved/leaf.txt")), "leaf\n");

    let (head, tail) = (long_chain[..8].join("/"), long_chain[8..].join("/"));
    let held = fs::File::open(m.join("l").join(&head)).unwrap();
    match renameat(&held, tail.as_str(), CWD, m.join("long-moved")) {
        Ok(()) => assert_eq!(read(m.join("long-moved/leaf.txt")), "leaf\n"),
        Err(e) => {
            assert_eq!(e, Errno::NAMETOOLONG, "a redirect too long to record");
            assert!(!exists(m.join("long-moved")));
            let f = openat(
                &held,
                format!("{tail}/leaf.txt").as_str(),
                OFlags::RDONLY,
                Mode::empty(),
            )
            .unwrap();
            let mut buf = [0u8; 8];
            let n = rustix::io::read(&f, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"leaf\n");
            // Only the shared inode every whiteout links to may be there.
            let work = d.state_dir().join("sessions/s1/work");
            let scratch: Vec<String> = ls(&work).into_iter().filter(|n| !n.starts_with("whiteout-")).collect();
            assert_eq!(scratch, Vec::<String>::new(), "a refused rename left scratch in work/");
        }
    }
    drop(held);
    let m = d.remount("p", "s1");
    assert_eq!(read(m.join("short-moved/leaf.txt")), "leaf\n");
    assert!(!exists(m.join("s").join(&short_top).join(&short_rest)));
    assert!(exists(m.join("s").join(&short_top).join(&short_chain[1])));
}

#[test]
fn dirs_renamed_while_other_threads_read_write_and_create_inside_them_stay_consistent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;
    // Racing operations may find a name gone (ENOENT); nothing else may fail.
    fn ok_or_enoent<T>(r: std::io::Result<T>, what: &str) {
        if let Err(e) = r {
            assert_eq!(errno_of(&e), libc::ENOENT, "{what}: {e}");
        }
    }
    const ROUNDS: usize = 150; // even, and a multiple of 3: every dir ends where it began
    let d = Daemon::start();
    d.create_project_with("p", |s| {
        for t in 0..3 {
            for i in 0..20 {
                write(s.join(format!("top{t}/a/b/f{i}.txt")), format!("{t}-{i}\n"));
            }
        }
    });
    let m = Arc::new(d.mount("p", "s1"));
    let stop = Arc::new(AtomicBool::new(false));
    let renamers: Vec<_> = (0..3)
        .map(|t| {
            let m = m.clone();
            thread::spawn(move || {
                for r in 0..ROUNDS {
                    let (from, to) = if r % 2 == 0 { ("top", "moved") } else { ("moved", "top") };
                    let to = m.join(format!("{to}{t}"));
                    fs::rename(m.join(format!("{from}{t}")), &to).unwrap_or_else(|e| panic!("{t}/{r}: {e}"));
                    let (x, y) = [("a", "a2"), ("a2", "a3"), ("a3", "a")][r % 3];
                    fs::rename(to.join(x), to.join(y)).unwrap_or_else(|e| panic!("{t}/{r} inner: {e}"));
                }
            })
        })
        .collect();
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (m, stop) = (m.clone(), stop.clone());
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    for dir in ["top", "moved"]
                        .iter()
                        .flat_map(|top| ["a", "a2", "a3"].map(|a| m.join(format!("{top}{t}/{a}/b"))))
                    {
                        let f = dir.join(format!("f{}.txt", i % 20));
                        let r = fs::read_to_string(&f);
                        if let Ok(s) = &r {
                            assert!(s.starts_with(&format!("{t}-")), "{}: {s:?}", f.display());
                        }
                        ok_or_enoent(r, "read");
                        let append = fs::OpenOptions::new().append(true).open(&f);
                        ok_or_enoent(
                            append.and_then(|mut h| std::io::Write::write_all(&mut h, b"+")),
                            "append",
                        );
                        ok_or_enoent(fs::write(dir.join(format!("new{t}-{i}.txt")), "n"), "create");
                        ok_or_enoent(fs::read_dir(&dir).map(|rd| rd.count()), "readdir");
                    }
                }
            })
        })
        .collect();
    for h in renamers {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for h in workers {
        h.join().unwrap();
    }
    let before = snapshot(&m);
    for t in 0..3 {
        assert_eq!(ls(m.join(format!("top{t}"))), vec!["a"]);
        assert!(ls(m.join(format!("top{t}/a/b"))).len() >= 20);
    }
    let m = d.remount("p", "s1");
    assert!(snapshot(&m) == before, "the view changed across remount");
}
