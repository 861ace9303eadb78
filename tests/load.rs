//! Concurrency under load (issue 6).

mod common;

use common::*;
use std::fs;
use std::io::Write;

/// Found by the load test: the view's node of a multiply-linked lower file
/// carries the name it was last looked up by, and removing that name (unlink,
/// or a rename over it) made every later copy-up of the file through its
/// other names fail with ENOENT.
#[test]
fn a_golden_hard_link_can_still_be_written_after_another_of_its_names_is_removed() {
    let d = Daemon::start();
    d.create_project_with("hl", |s| {
        write(s.join("a1"), "one\n");
        write(s.join("a2"), "two\n");
        write(s.join("x"), "x\n");
        fs::create_dir(s.join("d")).unwrap();
        fs::hard_link(s.join("a1"), s.join("d/b1")).unwrap();
        fs::hard_link(s.join("a2"), s.join("d/b2")).unwrap();
    });
    let m = d.mount("hl", "s");
    // The kernel looks up a1 then d/b1: the node is named d/b1 now.
    for name in ["a1", "d/b1", "a2", "d/b2"] {
        fs::symlink_metadata(m.join(name)).unwrap();
    }
    fs::remove_file(m.join("d/b1")).unwrap();
    fs::rename(m.join("x"), m.join("d/b2")).unwrap();
    for (name, old) in [("a1", "one\n"), ("a2", "two\n")] {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(m.join(name))
            .unwrap_or_else(|e| panic!("open {name} for writing after its other name went: {e}"));
        f.write_all(b"more\n").unwrap();
        drop(f);
        assert_eq!(read(m.join(name)), format!("{old}more\n"));
    }
    assert_eq!(read(m.join("d/b2")), "x\n");
    assert_eq!(ls(m.join("d")), ["b2"]);
    let m = d.remount("hl", "s");
    assert_eq!(read(m.join("a1")), "one\nmore\n");
    assert_eq!(read(m.join("a2")), "two\nmore\n");
    assert_eq!(ls(m.join("d")), ["b2"]);
}
