//! The race goldenfs exists to remove: promotions (and GC) run while other
//! threads mount, read and unmount sessions. Every reader must see exactly
//! one complete generation, and that generation must be the one its
//! `golden-version.json` names.
//!
//! Generation N of the project contains:
//! - `marker` = "N\n" and `d/f000` .. `d/f199` = "N\n",
//! - `extra/gN` = "N\n" (and no other entry in `extra/`: each promotion
//!   deletes the previous one, so whiteouts are part of the race),
//! - `manifest` = "generation N\nfiles 200\nextra gN\n".
//!
//! Bounded by counts (PROMOTIONS promotions; readers stop when the writer is
//! done, at most MAX_READER_ITERATIONS each), never by time; no timing
//! assertions.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

const FILES: usize = 200;
const PROMOTIONS: u64 = 15;
const READERS: usize = 4;
const MAX_READER_ITERATIONS: usize = 400;

fn expected_root() -> Vec<String> {
    let mut v: Vec<String> = ["d", "extra", "manifest", "marker", VERSION_FILE]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.sort();
    v
}

fn file_names() -> Vec<String> {
    (0..FILES).map(|k| format!("f{k:03}")).collect()
}

fn manifest(n: u64) -> String {
    format!("generation {n}\nfiles {FILES}\nextra g{n}\n")
}

/// Writes generation `n`'s content over generation `n - 1`'s (in a view or a plain dir).
fn write_generation(root: &Path, n: u64) {
    let content = format!("{n}\n");
    fs::create_dir_all(root.join("d")).unwrap();
    fs::create_dir_all(root.join("extra")).unwrap();
    for name in file_names() {
        fs::write(root.join("d").join(name), &content).unwrap();
    }
    if n > 1 {
        fs::remove_file(root.join("extra").join(format!("g{}", n - 1))).unwrap();
    }
    fs::write(root.join("extra").join(format!("g{n}")), &content).unwrap();
    fs::write(root.join("marker"), &content).unwrap();
    fs::write(root.join("manifest"), manifest(n)).unwrap();
}

/// Checks that the view at `m` is exactly one complete generation, the one
/// its version file names; returns that generation.
fn check_view(m: &Path, who: &str) -> u64 {
    let g = generation_of(m);
    let ctx = |what: &str| format!("{who}: version file says {g}, but {what}");
    let want = format!("{g}\n");
    assert_eq!(ls(m), expected_root(), "{}", ctx("the root listing differs"));
    assert_eq!(read(m.join("manifest")), manifest(g), "{}", ctx("manifest"));
    assert_eq!(read(m.join("marker")), want, "{}", ctx("marker"));
    assert_eq!(
        ls(m.join("extra")),
        vec![format!("g{g}")],
        "{}",
        ctx("extra/ lists other generations' files")
    );
    assert_eq!(read(m.join("extra").join(format!("g{g}"))), want);
    let names = ls(m.join("d"));
    assert_eq!(names, file_names(), "{}", ctx("d/ listing differs"));
    for name in &names {
        let got = read(m.join("d").join(name));
        assert_eq!(got, want, "{}", ctx(&format!("d/{name} says {got:?}")));
    }
    // The version file did not change under our feet either.
    assert_eq!(generation_of(m), g, "{who}: the version file changed while mounted");
    g
}

/// Sets `stop` if the thread unwinds, so that the other threads finish early.
struct StopOnPanic(Arc<AtomicBool>);
impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn readers_always_see_exactly_one_complete_generation_while_promotions_run() {
    let d = Arc::new(Daemon::start());
    d.create_project_with("race", |s| write_generation(s, 1));

    // A long-lived session on generation 1 that must stay intact throughout
    // (promotions and GC run under it).
    let pinned = d.mount("race", "pinned");
    assert_eq!(check_view(&pinned, "pinned"), 1);

    let writer_done = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<BTreeSet<u64>>>> = Arc::new(Mutex::new(vec![BTreeSet::new(); READERS]));

    let writer = {
        let (d, done, failed) = (d.clone(), writer_done.clone(), failed.clone());
        thread::spawn(move || {
            let _guard = StopOnPanic(failed.clone());
            for n in 1..=PROMOTIONS {
                if failed.load(Ordering::SeqCst) {
                    break;
                }
                let s = format!("w{n}");
                let m = d.mount("race", &s);
                assert_eq!(check_view(&m, &s), n, "the writer mounted a stale generation");
                write_generation(&m, n + 1);
                d.unmount(&s);
                d.ok(&["promote", "race", &s, "--if-generation", &n.to_string()]);
                let _ = d.run(&["session", "discard", &s]);
                // GC races with the readers' pins too.
                d.ok(&["gc", "--keep", "1"]);
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    let readers: Vec<_> = (0..READERS)
        .map(|t| {
            let (d, done, failed, seen) = (d.clone(), writer_done.clone(), failed.clone(), seen.clone());
            thread::spawn(move || {
                let _guard = StopOnPanic(failed.clone());
                let mut last = 0u64;
                let mut final_round = false;
                for i in 0..MAX_READER_ITERATIONS {
                    if failed.load(Ordering::SeqCst) {
                        return (i, last);
                    }
                    // After the writer finished, do exactly one more round.
                    if done.load(Ordering::SeqCst) {
                        final_round = true;
                    }
                    let s = format!("r{t}-{i}");
                    let m = d.mount("race", &s);
                    let g = check_view(&m, &s);
                    assert!(
                        g >= last,
                        "{s}: generation went backwards ({last} then {g}) without a rollback"
                    );
                    last = g;
                    seen.lock().unwrap()[t].insert(g);
                    d.unmount(&s);
                    d.ok(&["session", "discard", &s]);
                    if final_round {
                        return (i + 1, last);
                    }
                }
                // Iteration cap reached before the writer finished: wait for
                // it (bounded by its own PROMOTIONS) and do the final round.
                while !done.load(Ordering::SeqCst) && !failed.load(Ordering::SeqCst) {
                    thread::sleep(std::time::Duration::from_millis(50));
                }
                if failed.load(Ordering::SeqCst) {
                    return (MAX_READER_ITERATIONS, last);
                }
                let s = format!("r{t}-final");
                let m = d.mount("race", &s);
                last = check_view(&m, &s);
                d.unmount(&s);
                d.ok(&["session", "discard", &s]);
                (MAX_READER_ITERATIONS + 1, last)
            })
        })
        .collect();

    let mut panics = Vec::new();
    if let Err(e) = writer.join() {
        panics.push(format!("writer: {}", panic_text(&*e)));
    }
    let mut finals = Vec::new();
    for (t, r) in readers.into_iter().enumerate() {
        match r.join() {
            Ok((iterations, last)) => finals.push((t, iterations, last)),
            Err(e) => panics.push(format!("reader {t}: {}", panic_text(&*e))),
        }
    }
    if !panics.is_empty() {
        panic!("{}\n--- daemon log ---\n{}", panics.join("\n\n"), d.log_text());
    }

    let seen = seen.lock().unwrap();
    for (t, iterations, last) in &finals {
        eprintln!("reader {t}: {iterations} mounts, generations seen {:?}", seen[*t]);
        assert_eq!(
            *last,
            PROMOTIONS + 1,
            "reader {t}'s last mount (after all promotions) must see the final generation"
        );
    }
    assert_eq!(d.current_generation("race"), PROMOTIONS + 1);

    // The pinned session still sees generation 1 completely, after all the
    // promotions and GCs.
    assert_eq!(check_view(&pinned, "pinned"), 1);
    // And after unpinning, GC keeps only the current generation.
    d.unmount("pinned");
    d.ok(&["session", "discard", "pinned"]);
    d.ok(&["gc", "--keep", "1"]);
    assert_eq!(d.generations("race"), vec![PROMOTIONS + 1]);
    let m = d.mount("race", "after");
    assert_eq!(check_view(&m, "after"), PROMOTIONS + 1);
}

#[test]
fn concurrent_mounts_of_many_sessions_are_independent() {
    let d = Arc::new(Daemon::start());
    d.create_project_with("p", fill_sample);
    let failed = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (d, failed) = (d.clone(), failed.clone());
            thread::spawn(move || {
                let _guard = StopOnPanic(failed.clone());
                for i in 0..5 {
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let s = format!("c{t}-{i}");
                    let m = d.mount("p", &s);
                    let mine = format!("{s}\n");
                    write(m.join("mine"), &mine);
                    write(m.join("a.txt"), &mine);
                    assert_eq!(read(m.join("mine")), mine);
                    assert_eq!(read(m.join("a.txt")), mine);
                    assert_eq!(read(m.join("b.txt")), "bravo\n");
                    d.unmount(&s);
                }
            })
        })
        .collect();
    let mut panics = Vec::new();
    for (t, h) in threads.into_iter().enumerate() {
        if let Err(e) = h.join() {
            panics.push(format!("thread {t}: {}", panic_text(&*e)));
        }
    }
    if !panics.is_empty() {
        panic!("{}\n--- daemon log ---\n{}", panics.join("\n\n"), d.log_text());
    }
    // Every session kept its own writes.
    for t in 0..4 {
        for i in 0..5 {
            let s = format!("c{t}-{i}");
            let m = d.mount("p", &s);
            assert_eq!(read(m.join("mine")), format!("{s}\n"));
            d.unmount(&s);
        }
    }
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = e.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "(non-string panic)".into()
    }
}
