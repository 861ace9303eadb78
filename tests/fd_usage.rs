//! The daemon's open descriptors do not grow with the number of files a view
//! knows: a view remembers the files of its upper by kernel file handle,
//! not by an fd each (the kernel keeps every looked-up inode until memory
//! pressure, and one session creating 20,000 files once ran the daemon out
//! of `RLIMIT_NOFILE`). Each daemon runs with its limit lowered to 1024, so
//! a descriptor per file fails loudly (EMFILE) long before the end.
//!
//! Also: a file whose last name is removed while the view still uses it
//! (open, or held by an `O_PATH` fd) keeps working, since no handle can
//! open a deleted inode.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Duration;

use common::Daemon;
use common::fds::{fds_of, limit_nofile, make_dirs, stat_all, tree_paths};
use common::load::{Peaks, Sampler, daemon_pid};

/// The open-file limit each daemon runs with here.
const LIMIT: u64 = 1024;
/// How many descriptors a view may add over its idle count, whatever the
/// number of files (far below the thousands of files each test touches).
const GROWTH: u64 = 128;

/// Checks the peak descriptor count of a run against the idle count.
fn assert_fds_bounded(what: &str, files: usize, idle: u64, peaks: Peaks, d: &Daemon) {
    eprintln!(
        "{what}: {files} files, daemon fds idle {idle}, peak {} ({} samples), limit {LIMIT}",
        peaks.fds, peaks.samples
    );
    assert!(peaks.samples > 0, "the fd sampler took no sample");
    assert!(
        peaks.fds < LIMIT && peaks.fds <= idle + GROWTH,
        "{what}: the daemon's open fds went from {idle} to {} for {files} files\n--- daemon log ---\n{}",
        peaks.fds,
        d.log_text()
    );
}

/// Reads every file of `model` and compares it with the expected content.
fn check_contents(model: &BTreeMap<PathBuf, String>) {
    for (p, want) in model {
        let got = fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        assert_eq!(&got, want, "content of {}", p.display());
    }
}

fn append(p: &PathBuf, data: &str) {
    let mut f = OpenOptions::new()
        .append(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {} for append: {e}", p.display()));
    f.write_all(data.as_bytes())
        .unwrap_or_else(|e| panic!("append to {}: {e}", p.display()));
}

#[test]
fn five_thousand_new_files_with_links_and_renames_hold_no_descriptor_each() {
    let d = Daemon::start();
    d.create_project_with("p", |src| common::write(src.join("readme"), "golden"));
    let mnt = d.mount("p", "s1");
    let pid = daemon_pid(&d);
    limit_nofile(pid, LIMIT);
    let idle = fds_of(pid);
    let sampler = Sampler::start(pid, Duration::from_millis(20));

    // 50 directories of 100 files: d49 is kept for renames over files.
    let (dirs, per_dir) = (50, 100);
    make_dirs(&mnt, dirs);
    let paths = tree_paths(&mnt, dirs, per_dir);
    let mut model: BTreeMap<PathBuf, String> = BTreeMap::new();
    for p in &paths {
        let content = p.file_name().unwrap().to_string_lossy().into_owned();
        fs::write(p, &content).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        model.insert(p.clone(), content);
    }
    assert_eq!(stat_all(&paths), model.values().map(|c| c.len() as u64).sum::<u64>());

    let in_d49 = |p: &PathBuf| p.parent().is_some_and(|d| d.ends_with("d49"));
    for (i, p) in paths.iter().enumerate().filter(|(_, p)| !in_d49(p)) {
        if i % 250 == 7 {
            append(p, "+");
            model.get_mut(p).unwrap().push('+');
        }
        if i % 50 == 3 {
            let link = p.with_file_name(format!("l{i:05}"));
            fs::hard_link(p, &link).unwrap_or_else(|e| panic!("link {}: {e}", link.display()));
            assert_eq!(fs::metadata(p).unwrap().nlink(), 2, "nlink of {}", p.display());
            let c = model[p].clone();
            model.insert(link, c);
        }
        if i % 25 == 11 {
            // Across directories.
            let to = mnt.join(format!("d{:02}/r{i:05}", (i / per_dir + 1) % (dirs - 1)));
            fs::rename(p, &to).unwrap_or_else(|e| panic!("rename {} to {}: {e}", p.display(), to.display()));
            let c = model.remove(p).unwrap();
            model.insert(to, c);
        }
    }
    // Replace half of d49 by renaming its odd files over its even ones.
    for f in (0..per_dir).step_by(2) {
        let (from, to) = (mnt.join(format!("d49/f{:04}", f + 1)), mnt.join(format!("d49/f{f:04}")));
        fs::rename(&from, &to).unwrap_or_else(|e| panic!("rename {} over {}: {e}", from.display(), to.display()));
        let c = model.remove(&from).unwrap();
        model.insert(to, c);
    }

    let now: Vec<PathBuf> = model.keys().cloned().collect();
    assert_eq!(stat_all(&now), model.values().map(|c| c.len() as u64).sum::<u64>());
    check_contents(&model);
    let names: usize = (0..dirs)
        .map(|i| common::count_entries(&mnt.join(format!("d{i:02}"))))
        .sum();
    assert_eq!(names, model.len(), "names in the view");
    assert_fds_bounded("new files", paths.len(), idle, sampler.finish(), &d);
}

#[test]
fn three_thousand_copied_up_golden_files_hold_no_descriptor_each() {
    let d = Daemon::start();
    let (dirs, per_dir) = (30, 100);
    d.create_project_with("p", |src| {
        make_dirs(src, dirs);
        for p in tree_paths(src, dirs, per_dir) {
            fs::write(&p, p.file_name().unwrap().as_encoded_bytes()).unwrap();
        }
    });
    let mnt = d.mount("p", "s1");
    let pid = daemon_pid(&d);
    limit_nofile(pid, LIMIT);
    let idle = fds_of(pid);
    let sampler = Sampler::start(pid, Duration::from_millis(20));

    let paths = tree_paths(&mnt, dirs, per_dir);
    let mut model = BTreeMap::new();
    for p in &paths {
        append(p, "!");
        model.insert(p.clone(), format!("{}!", p.file_name().unwrap().to_string_lossy()));
    }
    assert_eq!(stat_all(&paths), model.values().map(|c| c.len() as u64).sum::<u64>());
    check_contents(&model);
    assert_fds_bounded("copied-up files", paths.len(), idle, sampler.finish(), &d);
}

#[test]
fn a_file_deleted_while_in_use_stays_usable_through_its_descriptors() {
    let d = Daemon::start();
    d.create_project_with("p", |src| common::write(src.join("golden"), "golden data"));
    let mnt = d.mount("p", "s1");

    // Open read-write, unlink, then use the descriptor (pjdfstest style).
    let a = mnt.join("a");
    common::write(&a, "hello world");
    let f = OpenOptions::new().read(true).write(true).open(&a).unwrap();
    fs::remove_file(&a).unwrap();
    let st = f.metadata().expect("fstat of an open, unlinked file");
    assert_eq!((st.nlink(), st.len()), (0, 11));
    f.write_all_at(b"HELLO", 0).expect("write to an open, unlinked file");
    f.set_len(8).expect("ftruncate of an open, unlinked file");
    f.sync_all().expect("fsync of an open, unlinked file");
    let mut buf = [0u8; 16];
    let n = f.read_at(&mut buf, 0).expect("read of an open, unlinked file");
    assert_eq!(&buf[..n], b"HELLO wo");
    assert_eq!(f.metadata().unwrap().len(), 8);
    drop(f);

    // Held only by an O_PATH descriptor (the daemon has it open nowhere):
    // its attributes must still come from the daemon.
    let b = mnt.join("b");
    common::write(&b, "bbb");
    let p = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(&b)
        .unwrap();
    fs::remove_file(&b).unwrap();
    let st = p.metadata().expect("fstat of an O_PATH fd on an unlinked file");
    assert_eq!((st.nlink(), st.len()), (0, 3));

    // Replaced by a rename while open; and a copied-up golden file the same.
    let c = mnt.join("c");
    common::write(&c, "old c");
    common::write(mnt.join("c.new"), "new c");
    let g = mnt.join("golden");
    let fc = OpenOptions::new().read(true).write(true).open(&c).unwrap();
    let fg = OpenOptions::new().read(true).write(true).open(&g).unwrap();
    fs::rename(mnt.join("c.new"), &c).unwrap();
    fs::remove_file(&g).unwrap();
    for (f, what, len, want) in [(&fc, "c", 5, b"olxy"), (&fg, "golden", 11, b"goxy")] {
        let st = f.metadata().unwrap_or_else(|e| panic!("fstat of replaced {what}: {e}"));
        assert_eq!((st.nlink(), st.len()), (0, len), "{what}");
        f.set_len(2)
            .unwrap_or_else(|e| panic!("ftruncate of replaced {what}: {e}"));
        f.write_all_at(b"xy", 2)
            .unwrap_or_else(|e| panic!("write to replaced {what}: {e}"));
        let mut buf = [0u8; 8];
        let n = f.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], want, "{what}");
    }
    assert_eq!(common::read(&c), "new c");
    assert!(!g.exists());
    assert_eq!(common::ls(&mnt).len(), 2, "{:?}", common::ls(&mnt)); // c and the version file
}
