//! A store on a full disk: the state dir is a small loop-mounted ext4
//! filesystem (`-m 0`, so root, who runs the daemon, has no reserved
//! blocks). Writes and copy-ups that do not fit fail with ENOSPC, the lower
//! content stays readable, the daemon keeps serving, promotion, GC and
//! compaction either fail cleanly (`current`, the session and the store as
//! they were) or succeed correctly, and everything works again once space
//! is freed. Running out of inodes is tested the same way, and there every
//! promotion step that allocates one is made to fail in turn.

mod common;

use common::crash::assert_store_files_consistent;
use common::extra::*;
use common::*;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

const ENOSPC: i32 = libc::ENOSPC;

/// Deterministic incompressible-looking content.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len.div_ceil(8))
        .flat_map(|_| rng.next().to_le_bytes())
        .take(len)
        .collect()
}

/// Appends `chunk` to a new file `path` until the disk refuses; returns that error.
fn fill(path: &Path, chunk: usize) -> io::Error {
    let data = vec![0x5a; chunk];
    let mut f = match fs::File::create(path) {
        Ok(f) => f,
        Err(e) => return e,
    };
    loop {
        if let Err(e) = f.write_all(&data).and_then(|()| f.sync_data()) {
            return e;
        }
    }
}

/// A daemon whose store is a fresh `mib` MiB ext4 filesystem.
fn daemon_on_small_disk(mib: u64, inodes: Option<u64>) -> (LoopFs, Daemon) {
    Daemon::start_after(&[], |root| {
        LoopFs::new(&root.join("disk.img"), &root.join("state"), mib, inodes)
    })
}

/// `goldenfs ARGS`: Ok(stdout), or Err(the one error line) (the contract checked).
fn attempt(d: &Daemon, args: &[&str]) -> Result<String, String> {
    let out = d.run(args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(assert_cli_error(args, &out))
    }
}

#[track_caller]
fn assert_says_no_space(line: &str) {
    assert!(
        line.contains("No space left") || line.contains("space"),
        "the error should say the disk is full: {line}"
    );
}

/// The session's `work/` holds nothing a failed copy-up left behind.
fn assert_no_copy_up_leftovers(d: &Daemon, session: &str) {
    let work = d.state_dir().join("sessions").join(session).join("work");
    let left: Vec<String> = ls(&work).into_iter().filter(|n| !n.starts_with("whiteout")).collect();
    assert_eq!(left, Vec::<String>::new(), "leftovers in {}", work.display());
}

/// Generation 2 of `p` (so that generation 1 is left for GC), and an
/// unmounted session `prom` on it with `prom.txt` and `prom-dir/`.
fn generation_2_and_a_session_to_promote(d: &Daemon) {
    promote_new_session(d, "p", "s0", "gen2.txt", "2\n");
    let mp = d.mount("p", "prom");
    write(mp.join("prom.txt"), "promote me\n");
    fs::create_dir(mp.join("prom-dir")).unwrap();
    d.unmount("prom");
}

#[test]
fn a_full_disk_fails_with_enospc_keeps_lower_data_and_recovers_once_freed() {
    let (disk, d) = daemon_on_small_disk(96, None);
    let big = content(24 << 20, 7);
    d.create_project_with("p", |s| {
        fill_sample(s);
        fs::write(s.join("big.bin"), &big).unwrap();
    });
    generation_2_and_a_session_to_promote(&d);
    let fresh = d.mount("p", "fresh");
    let view = d.mount("p", "view");
    let filler = d.mount("p", "filler");

    // Fill the disk from a view: big chunks, then small ones (a page-sized
    // write needs a page's worth of blocks, and the disk has 1 KiB blocks).
    for (i, chunk) in [1 << 20, 4096, 1024].into_iter().enumerate() {
        let e = fill(&filler.join(format!("filler-{i}")), chunk);
        assert_eq!(errno_of(&e), ENOSPC, "filling with {chunk}-byte writes: {e}");
    }
    eprintln!("full: (free blocks, free inodes) = {:?}", disk.free());

    // Writes and copy-ups that do not fit.
    let e = fill(&view.join("more"), 64 << 10);
    assert_eq!(errno_of(&e), ENOSPC, "a write on a full disk: {e}");
    assert_errno(
        fs::OpenOptions::new().append(true).open(view.join("big.bin")),
        &[ENOSPC],
        "copy-up of the big lower file (open for appending)",
    );
    assert_errno(
        truncate(&view.join("big.bin"), 1 << 20),
        &[ENOSPC],
        "truncate (copy-up)",
    );
    assert_no_copy_up_leftovers(&d, "view");
    // The lower content is intact in that view and in one that never touched it.
    assert!(
        fs::read(view.join("big.bin")).unwrap() == big,
        "big.bin changed in the view"
    );
    assert!(
        fs::read(fresh.join("big.bin")).unwrap() == big,
        "big.bin changed in a fresh view"
    );
    assert_eq!(read(view.join("a.txt")), "alpha\n");
    // The daemon keeps serving.
    d.ok(&["status"]);
    d.ok(&["session", "list"]);
    // A new session either mounts (and reads the golden) or fails cleanly.
    match attempt(
        &d,
        &["session", "mount", "p", "new", d.mountpoint("new").to_str().unwrap()],
    ) {
        Ok(_) => {
            eprintln!("full: a new session mounted");
            assert!(fs::read(d.mountpoint("new").join("big.bin")).unwrap() == big);
            d.unmount("new");
        }
        Err(line) => {
            eprintln!("full: a new session: {line}");
            assert_says_no_space(&line);
            assert!(!d.session_names().contains(&"new".to_string()));
        }
    }

    // Promotion and GC on the full disk: a clean failure or a correct result.
    let before = assert_store_files_consistent(d.state_dir());
    let promoted = match attempt(&d, &["promote", "p", "prom"]) {
        Ok(_) => {
            eprintln!("full: promotion succeeded");
            assert_eq!(d.current_generation("p"), 3);
            true
        }
        Err(line) => {
            eprintln!("full: promotion: {line}");
            assert_says_no_space(&line);
            assert_eq!(assert_store_files_consistent(d.state_dir()), before);
            assert_eq!(read(d.state_dir().join("sessions/prom/upper/prom.txt")), "promote me\n");
            false
        }
    };
    match attempt(&d, &["gc", "--keep", "1"]) {
        Ok(_) => {
            eprintln!("full: gc succeeded");
            assert!(!d.generations("p").contains(&1), "gc --keep 1 kept generation 1");
        }
        Err(line) => {
            eprintln!("full: gc: {line}");
            assert_says_no_space(&line);
        }
    }
    let now = assert_store_files_consistent(d.state_dir());
    assert_eq!(now["p"], if promoted { 3 } else { 2 });
    assert!(fs::read(fresh.join("big.bin")).unwrap() == big);

    // Space freed: everything works again.
    for i in 0..3 {
        fs::remove_file(filler.join(format!("filler-{i}"))).unwrap();
    }
    let _ = fs::remove_file(view.join("more"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while disk.free().0 < 30 << 20 {
        assert!(Instant::now() < deadline, "space not freed: {:?}", disk.free());
        std::thread::sleep(Duration::from_millis(50));
    }
    fs::OpenOptions::new()
        .append(true)
        .open(view.join("big.bin"))
        .unwrap()
        .write_all(b"!")
        .unwrap();
    let mut grown = big.clone();
    grown.push(b'!');
    assert!(
        fs::read(view.join("big.bin")).unwrap() == grown,
        "the copy-up after freeing space"
    );
    assert!(fs::read(fresh.join("big.bin")).unwrap() == big);
    if !promoted {
        d.ok(&["promote", "p", "prom"]);
    }
    d.ok(&["gc", "--keep", "1"]);
    assert_eq!(d.generations("p"), [2, 3], "2 is pinned by the mounted sessions");
    let m = d.mount("p", "after");
    assert_eq!(read(m.join("prom.txt")), "promote me\n");
    assert!(fs::read(m.join("big.bin")).unwrap() == big);
    d.unmount("after");
    for s in ["fresh", "view", "filler"] {
        d.unmount(s);
    }
    assert_store_files_consistent(d.state_dir());
    assert!(!d.log_text().contains("panicked"), "{}", d.log_text());
}

/// Creates (`n` > 0) or removes empty files `ino-*` in `dir` until the disk
/// has exactly `want` free inodes. Removal frees an inode once the kernel
/// forgets the file, so it is polled for.
fn set_free_inodes(disk: &LoopFs, dir: &Path, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = ls(dir).len();
    loop {
        let free = disk.free().1;
        if free == want {
            return;
        }
        assert!(Instant::now() < deadline, "cannot get {want} free inodes (have {free})");
        if free > want {
            n += 1;
            let _ = fs::File::create(dir.join(format!("ino-{n}")));
        } else if let Some(f) = ls(dir).into_iter().find(|f| f.starts_with("ino-")) {
            fs::remove_file(dir.join(f)).unwrap();
            while disk.free().1 == free && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            panic!("nothing left to remove to free inodes");
        }
    }
}

#[test]
fn running_out_of_inodes_fails_cleanly_at_every_step_of_a_promotion() {
    let (disk, d) = daemon_on_small_disk(32, Some(512));
    d.create_project_with("p", fill_sample);
    generation_2_and_a_session_to_promote(&d);
    let m = d.mount("p", "filler");
    fs::create_dir(m.join("fill")).unwrap();

    // Every inode used.
    let mut n = 0;
    let e = loop {
        n += 1;
        if let Err(e) = fs::File::create(m.join(format!("fill/ino-{n}"))) {
            break e;
        }
    };
    assert_eq!(errno_of(&e), ENOSPC, "creating file {n}: {e}");
    set_free_inodes(&disk, &m.join("fill"), 0);
    assert_errno(fs::create_dir(m.join("d")), &[ENOSPC], "mkdir");
    assert_errno(std::os::unix::fs::symlink("a", m.join("l")), &[ENOSPC], "symlink");
    assert_errno(mkfifo(&m.join("fifo"), 0o644), &[ENOSPC], "mkfifo");
    // Copy-ups need an inode too; what they would change stays as it was.
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let a_mode = mode(&m.join("a.txt"));
    assert_errno(
        chmod(&m.join("a.txt"), 0o600),
        &[ENOSPC],
        "chmod (copy-up) of a lower file",
    );
    assert_eq!(mode(&m.join("a.txt")), a_mode);
    assert_errno(
        fs::OpenOptions::new().append(true).open(m.join("b.txt")),
        &[ENOSPC],
        "open for writing (copy-up)",
    );
    assert_errno(
        fs::rename(m.join("dir1"), m.join("dir1-moved")),
        &[ENOSPC],
        "rename of a lower directory (its upper copy)",
    );
    assert_eq!(ls(m.join("dir1")), ["nested", "x.txt"]);
    // Deleting a lower file needs the session's first whiteout inode.
    match fs::remove_file(m.join("b.txt")) {
        Ok(()) => assert!(!exists(m.join("b.txt"))),
        Err(e) => {
            assert_eq!(errno_of(&e), ENOSPC, "unlink of a lower file: {e}");
            assert_eq!(read(m.join("b.txt")), "bravo\n");
        }
    }
    assert_no_copy_up_leftovers(&d, "filler");
    d.ok(&["status"]);

    // Promotion with 0, 1, 2, ... free inodes: it fails cleanly (the session
    // and the store as they were) until it has all it needs.
    let before = assert_store_files_consistent(d.state_dir());
    let mut free = 0;
    loop {
        set_free_inodes(&disk, &m.join("fill"), free);
        match attempt(&d, &["promote", "p", "prom"]) {
            Ok(_) => break,
            Err(line) => {
                eprintln!("promotion with {free} free inodes: {line}");
                assert_says_no_space(&line);
                assert_eq!(
                    assert_store_files_consistent(d.state_dir()),
                    before,
                    "with {free} free inodes"
                );
                assert_eq!(read(d.state_dir().join("sessions/prom/upper/prom.txt")), "promote me\n");
                assert!(d.session_names().contains(&"prom".to_string()));
            }
        }
        free += 1;
        assert!(free <= 8, "promotion still fails with {free} free inodes");
    }
    eprintln!("promotion succeeded with {free} free inodes");
    assert_eq!(assert_store_files_consistent(d.state_dir())["p"], 3);

    // Compaction and GC with no inode left.
    set_free_inodes(&disk, &m.join("fill"), 0);
    match attempt(&d, &["compact", "p"]) {
        Ok(out) => panic!("compaction with no free inode succeeded: {out}"),
        Err(line) => assert_says_no_space(&line),
    }
    assert_eq!(assert_store_files_consistent(d.state_dir())["p"], 3);
    d.ok(&["gc", "--keep", "1"]);
    assert_eq!(assert_store_files_consistent(d.state_dir())["p"], 3);

    // Inodes freed: everything works again.
    fs::remove_dir_all(m.join("fill")).unwrap();
    chmod(&m.join("a.txt"), 0o600).unwrap();
    fs::rename(m.join("dir1"), m.join("dir1-moved")).unwrap();
    assert_eq!(ls(m.join("dir1-moved")), ["nested", "x.txt"]);
    d.ok(&["compact", "p"]);
    let m3 = d.mount("p", "after");
    assert_eq!(read(m3.join("prom.txt")), "promote me\n");
    assert_eq!(read(m3.join("gen2.txt")), "2\n");
    assert!(m3.join("prom-dir").is_dir());
    d.unmount("after");
    d.unmount("filler");
    assert_store_files_consistent(d.state_dir());
    assert!(!d.log_text().contains("panicked"), "{}", d.log_text());
}
