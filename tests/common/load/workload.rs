//! One session's seeded mixed workload, every op checked against the
//! session's model: untar, reads, copy-up by overwrite/append/pwrite/
//! truncate/chmod, renames of files and directories, hard links, `rm -rf`,
//! mkdir/rmdir, symlinks.

use super::super::{Daemon, VERSION_FILE, assert_errno, output_with_timeout, truncate};
use super::model::{Entry, Model, assert_view_matches, create_file, is_below, join};
use super::{Progress, Rng};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A tar archive made from `model` with the `tar` command.
pub struct Tarball {
    pub path: PathBuf,
    pub model: Model,
}

/// Three small archives (directories, files of two modes, a symlink, a
/// hard link) made under the daemon's test root.
pub fn make_tarballs(d: &Daemon, seed: u64) -> Vec<Tarball> {
    (0..3)
        .map(|k| {
            let mut rng = Rng::new(seed ^ (0x7A2 + k));
            let mut m = Model::default();
            for dir in ["a", "a/b", "c"] {
                m.add_dir(dir, 0o755);
            }
            for (i, dir) in ["", "a", "a/b", "c"].iter().cycle().take(10).enumerate() {
                let len = rng.below(2000);
                m.add_file(
                    &join(dir, &format!("p{i}")),
                    rng.bytes(len),
                    if i % 3 == 0 { 0o600 } else { 0o644 },
                );
            }
            m.add_symlink("a/b/up", "../../p0");
            m.add_link("a/p1", "c/p1-link");
            let stage = d.new_dir("tar-stage");
            m.materialize(&stage);
            fs::set_permissions(&stage, fs::Permissions::from_mode(0o755)).unwrap();
            let path = d.root().join(format!("src/t{k}.tar"));
            let mut cmd = Command::new("tar");
            cmd.arg("-cf").arg(&path).arg("-C").arg(&stage).arg(".");
            let out = output_with_timeout(cmd, Duration::from_secs(60), "tar -c");
            assert!(out.status.success(), "tar -c: {}", String::from_utf8_lossy(&out.stderr));
            Tarball { path, model: m }
        })
        .collect()
}

/// Operations and their weights.
const OPS: &[(&str, usize)] = &[
    ("read", 14),
    ("readlink", 3),
    ("list", 5),
    ("overwrite", 8),
    ("append", 6),
    ("pwrite", 5),
    ("truncate", 4),
    ("create", 8),
    ("untar", 2),
    ("many_files", 2),
    ("rename_file", 7),
    ("rename_over", 3),
    ("rename_dir", 5),
    ("rename_into_itself", 1),
    ("link", 4),
    ("unlink", 5),
    ("rm_rf", 4),
    ("mkdir", 4),
    ("rmdir", 3),
    ("chmod", 5),
    ("symlink", 3),
];

/// A session view and the model of what it must show.
pub struct Worker<'a> {
    who: String,
    seed: u64,
    pub mnt: PathBuf,
    pub model: Model,
    rng: Rng,
    seq: u64,
    op: usize,
    doing: String,
    /// Every op done, for a failure's report.
    history: Vec<String>,
    /// Files with several names in the base generation that no op has
    /// copied up yet (see [`Worker::rename_dir`]).
    lower_linked: BTreeSet<u64>,
    /// How many ops of each kind were done.
    pub counts: BTreeMap<&'static str, u64>,
    tarballs: &'a [Tarball],
    progress: &'a Progress,
}

impl<'a> Worker<'a> {
    pub fn new(
        who: &str,
        seed: u64,
        mnt: PathBuf,
        model: Model,
        tarballs: &'a [Tarball],
        progress: &'a Progress,
    ) -> Self {
        Worker {
            who: who.to_string(),
            seed,
            mnt,
            rng: Rng::new(seed),
            seq: 0,
            op: 0,
            doing: String::new(),
            history: Vec::new(),
            lower_linked: {
                let mut names: BTreeMap<u64, usize> = BTreeMap::new();
                for e in model.entries.values() {
                    if let Entry::File { id } = e {
                        *names.entry(*id).or_default() += 1;
                    }
                }
                names.into_iter().filter(|(_, n)| *n > 1).map(|(id, _)| id).collect()
            },
            counts: BTreeMap::new(),
            model,
            tarballs,
            progress,
        }
    }

    /// The view copied up the file at `path` (a write, chmod, link or rename):
    /// all its names the view shows at their layer paths came up with it.
    fn copied_up(&mut self, path: &str) {
        if let Some(id) = self.model.file_id(path) {
            self.lower_linked.remove(&id);
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// A name no session has used (the model holds those of earlier
    /// generations' sessions too).
    fn fresh(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}{}.{}", self.seq, self.who)
    }

    /// Records what is about to happen (for failures and the watchdog).
    fn note(&mut self, what: String) {
        self.progress.set(&self.who, format!("op {}: {what}", self.op));
        self.history.push(format!("op {}: {what}", self.op));
        self.doing = what;
    }

    /// Panics unless the whole view equals the model.
    pub fn assert_view(&self, what: &str) {
        assert_view_matches(
            &self.mnt,
            &self.model,
            &format!("{} (seed {}) {what}", self.who, self.seed),
        );
    }

    fn ctx(&self) -> String {
        format!("{} (seed {}, op {}: {})", self.who, self.seed, self.op, self.doing)
    }

    #[track_caller]
    fn ok<T>(&self, r: std::io::Result<T>) -> T {
        r.unwrap_or_else(|e| panic!("{}: unexpected error: {e}", self.ctx()))
    }

    /// Runs `program ARGS`, which must succeed.
    fn tool(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let mut cmd = Command::new(program);
        cmd.args(args);
        let out = output_with_timeout(cmd, Duration::from_secs(120), program);
        assert!(
            out.status.success(),
            "{}: {program} failed: {}",
            self.ctx(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A random path of an entry that satisfies `f`.
    fn any(&mut self, f: impl Fn(&str, &Entry) -> bool) -> Option<String> {
        pick(
            &mut self.rng,
            self.model.entries.iter().filter(|(p, e)| f(p, e)).map(|(p, _)| p),
        )
    }

    /// A random directory other than the root.
    fn any_subdir(&mut self) -> Option<String> {
        self.any(|_, e| matches!(e, Entry::Dir { .. }))
    }

    /// A random directory, the root included.
    fn any_dir(&mut self) -> String {
        let dirs = self
            .model
            .entries
            .values()
            .filter(|e| matches!(e, Entry::Dir { .. }))
            .count();
        if self.rng.below(dirs + 1) == dirs {
            return String::new();
        }
        self.any_subdir().unwrap_or_default()
    }

    fn any_file(&mut self) -> Option<String> {
        self.any(|_, e| matches!(e, Entry::File { .. }))
    }

    fn any_nondir(&mut self) -> Option<String> {
        self.any(|_, e| !matches!(e, Entry::Dir { .. }))
    }

    fn content_len(&self, f: &str) -> usize {
        self.model.file(f).map_or(0, |d| d.content.len())
    }

    /// Does op number `op`: one of [`OPS`], chosen by the seeded stream.
    pub fn step(&mut self, op: usize) {
        self.op = op;
        let total: usize = OPS.iter().map(|o| o.1).sum();
        let mut r = self.rng.below(total);
        let mut kind = OPS[0].0;
        for (name, w) in OPS {
            if r < *w {
                kind = name;
                break;
            }
            r -= w;
        }
        let done = match kind {
            "read" => self.read(),
            "readlink" => self.readlink(),
            "list" => self.list(),
            "overwrite" => self.overwrite(),
            "append" => self.append(),
            "pwrite" => self.pwrite(),
            "truncate" => self.truncate(),
            "create" => self.create(),
            "untar" => self.untar(),
            "many_files" => self.many_files(),
            "rename_file" => self.rename_file(),
            "rename_over" => self.rename_over(),
            "rename_dir" => self.rename_dir(),
            "rename_into_itself" => self.rename_into_itself(),
            "link" => self.link(),
            "unlink" => self.unlink(),
            "rm_rf" => self.rm_rf(),
            "mkdir" => self.mkdir(),
            "rmdir" => self.rmdir(),
            "chmod" => self.chmod(),
            _ => self.symlink(),
        };
        // Nothing to do it on (the tree ran dry): create instead.
        let kind = if done.is_some() {
            kind
        } else {
            self.create();
            "create"
        };
        *self.counts.entry(kind).or_default() += 1;
    }

    fn read(&mut self) -> Option<()> {
        let f = self.any_file()?;
        self.note(format!("read {f}"));
        let want = self.model.file(&f)?.clone();
        let got = self.ok(fs::read(self.p(&f)));
        let md = self.ok(fs::symlink_metadata(self.p(&f)));
        assert!(
            got == *want.content,
            "{}: {} bytes read, the model has {}",
            self.ctx(),
            got.len(),
            want.content.len()
        );
        assert_eq!(md.mode() & 0o7777, want.mode, "{}: mode", self.ctx());
        assert_eq!(md.len(), want.content.len() as u64, "{}: st_size", self.ctx());
        Some(())
    }

    fn readlink(&mut self) -> Option<()> {
        let l = self.any(|_, e| matches!(e, Entry::Symlink { .. }))?;
        self.note(format!("readlink {l}"));
        let got = self.ok(fs::read_link(self.p(&l)));
        let want = &self.model.entries[&l];
        assert_eq!(
            &Entry::Symlink {
                target: got.to_string_lossy().to_string()
            },
            want,
            "{}",
            self.ctx()
        );
        Some(())
    }

    fn list(&mut self) -> Option<()> {
        let dir = self.any_dir();
        self.note(format!("list {dir}/"));
        let mut got: Vec<String> = self
            .ok(fs::read_dir(self.p(&dir)))
            .map(|e| self.ok(e).file_name().to_string_lossy().to_string())
            .collect();
        got.sort();
        let mut want = self.model.children(&dir);
        if dir.is_empty() {
            want.push(VERSION_FILE.to_string());
        }
        want.sort();
        assert_eq!(got, want, "{}: listing", self.ctx());
        Some(())
    }

    fn overwrite(&mut self) -> Option<()> {
        let f = self.any_file()?;
        let len = if self.rng.one_in(8) {
            50_000 + self.rng.below(250_000)
        } else {
            self.rng.below(8192)
        };
        let content = self.rng.bytes(len);
        self.note(format!("overwrite {f} with {len} bytes"));
        self.ok(fs::write(self.p(&f), &content));
        self.copied_up(&f);
        self.model.file_mut(&f)?.content = Arc::new(content);
        Some(())
    }

    fn append(&mut self) -> Option<()> {
        let f = self.any_file()?;
        let len = 1 + self.rng.below(2000);
        let data = self.rng.bytes(len);
        self.note(format!("append {len} bytes to {f}"));
        let mut file = self.ok(fs::OpenOptions::new().append(true).open(self.p(&f)));
        self.ok(file.write_all(&data));
        drop(file);
        self.copied_up(&f);
        Arc::make_mut(&mut self.model.file_mut(&f)?.content).extend_from_slice(&data);
        Some(())
    }

    fn pwrite(&mut self) -> Option<()> {
        let f = match self.rng.one_in(2) {
            true => {
                let files = &self.model.files;
                let big = |e: &Entry| matches!(e, Entry::File { id } if files[id].content.len() > 50_000);
                pick(
                    &mut self.rng,
                    self.model.entries.iter().filter(|(_, e)| big(e)).map(|(p, _)| p),
                )
            }
            false => None,
        };
        let f = match f {
            Some(f) => f,
            None => self.any_file()?,
        };
        let at = self.rng.below(self.content_len(&f) + 1);
        let len = 1 + self.rng.below(4096);
        let data = self.rng.bytes(len);
        self.note(format!("pwrite {len} bytes at {at} of {f}"));
        let file = self.ok(fs::OpenOptions::new().write(true).open(self.p(&f)));
        self.ok(file.write_all_at(&data, at as u64));
        drop(file);
        self.copied_up(&f);
        let content = Arc::make_mut(&mut self.model.file_mut(&f)?.content);
        if content.len() < at + len {
            content.resize(at + len, 0);
        }
        content[at..at + len].copy_from_slice(&data);
        Some(())
    }

    fn truncate(&mut self) -> Option<()> {
        let f = self.any_file()?;
        let len = self.rng.below(self.content_len(&f) + 2000);
        self.note(format!("truncate {f} to {len}"));
        self.ok(truncate(&self.p(&f), len as u64));
        self.copied_up(&f);
        Arc::make_mut(&mut self.model.file_mut(&f)?.content).resize(len, 0);
        Some(())
    }

    fn create(&mut self) -> Option<()> {
        let dir = self.any_dir();
        let name = join(&dir, &self.fresh("n"));
        let mode = [0o644, 0o600, 0o755][self.rng.below(3)];
        let len = self.rng.below(4096);
        let content = self.rng.bytes(len);
        self.note(format!("create {name} ({len} bytes, mode {mode:o})"));
        self.ok(create_file(&self.p(&name), &content, mode));
        self.model.add_file(&name, content, mode);
        Some(())
    }

    fn untar(&mut self) -> Option<()> {
        let dir = join(&self.any_dir(), &self.fresh("x"));
        let k = self.rng.below(self.tarballs.len());
        let tb = &self.tarballs[k];
        self.note(format!("untar {} into {dir}", tb.path.display()));
        self.ok(fs::DirBuilder::new().mode(0o755).create(self.p(&dir)));
        let (archive, into) = (tb.path.clone(), self.p(&dir));
        self.tool(
            "tar",
            &["-xf".as_ref(), archive.as_os_str(), "-C".as_ref(), into.as_os_str()],
        );
        self.model.add_dir(&dir, 0o755);
        self.model.graft(&dir, &tb.model);
        Some(())
    }

    fn many_files(&mut self) -> Option<()> {
        let dir = join(&self.any_dir(), &self.fresh("m"));
        self.note(format!("20 files in a new {dir}"));
        self.ok(fs::DirBuilder::new().mode(0o755).create(self.p(&dir)));
        self.model.add_dir(&dir, 0o755);
        for i in 0..20 {
            let len = self.rng.below(600);
            let content = self.rng.bytes(len);
            let f = join(&dir, &format!("f{i}"));
            self.ok(create_file(&self.p(&f), &content, 0o644));
            self.model.add_file(&f, content, 0o644);
        }
        Some(())
    }

    /// rename(2) of `from` to `to`, which must succeed (a file is copied up first).
    fn rename(&mut self, from: &str, to: &str, what: &str) -> Option<()> {
        self.note(format!("{what} {from} -> {to}"));
        self.ok(fs::rename(self.p(from), self.p(to)));
        self.copied_up(from);
        self.model.rename(from, to);
        Some(())
    }

    fn rename_file(&mut self) -> Option<()> {
        let from = self.any_nondir()?;
        let to = join(&self.any_dir(), &self.fresh("r"));
        self.rename(&from, &to, "rename")
    }

    fn rename_over(&mut self) -> Option<()> {
        let from = self.any_nondir()?;
        let to = self.any_nondir()?;
        if from == to {
            return None;
        }
        self.rename(&from, &to, "rename over")
    }

    /// Renames a directory. Not one holding a name of a file that has
    /// several names in the lower layers and was not copied up yet: copy-up
    /// finds the other names at their layer paths, so a name moved by a
    /// directory rename would keep the old data under the same inode number
    /// (a known difference, docs/conformance.md).
    fn rename_dir(&mut self) -> Option<()> {
        let mut holding = BTreeSet::new();
        for (path, e) in &self.model.entries {
            if matches!(e, Entry::File { id } if self.lower_linked.contains(id)) {
                let mut p = path.as_str();
                while let Some((parent, _)) = p.rsplit_once('/') {
                    holding.insert(parent.to_string());
                    p = parent;
                }
            }
        }
        let from = self.any(|p, e| matches!(e, Entry::Dir { .. }) && !holding.contains(p))?;
        let mut parent = self.any_dir();
        if parent == from || is_below(&parent, &from) {
            parent = String::new();
        }
        let to = join(&parent, &self.fresh("d"));
        self.rename(&from, &to, "rename dir")
    }

    fn rename_into_itself(&mut self) -> Option<()> {
        let from = self.any_subdir()?;
        let to = join(&from, &self.fresh("self"));
        self.note(format!("rename dir {from} into itself as {to} (EINVAL)"));
        assert_errno(fs::rename(self.p(&from), self.p(&to)), &[libc::EINVAL], &self.ctx());
        Some(())
    }

    fn link(&mut self) -> Option<()> {
        let from = self.any_file()?;
        let to = join(&self.any_dir(), &self.fresh("h"));
        self.note(format!("link {from} -> {to}"));
        self.ok(fs::hard_link(self.p(&from), self.p(&to)));
        self.copied_up(&from);
        self.model.add_link(&from, &to);
        Some(())
    }

    fn unlink(&mut self) -> Option<()> {
        let f = self.any_nondir()?;
        self.note(format!("unlink {f}"));
        self.ok(fs::remove_file(self.p(&f)));
        self.model.remove_tree(&f);
        Some(())
    }

    fn rm_rf(&mut self) -> Option<()> {
        let model = &self.model;
        let small = |p: &str, e: &Entry| matches!(e, Entry::Dir { .. }) && model.below(p).nth(120).is_none();
        let dir = pick(
            &mut self.rng,
            model.entries.iter().filter(|(p, e)| small(p, e)).map(|(p, _)| p),
        )?;
        let size = self.model.subtree(&dir).len();
        if self.rng.one_in(2) {
            self.note(format!("rm -rf {dir} ({size} names)"));
            self.tool("rm", &["-rf".as_ref(), self.p(&dir).as_os_str()]);
        } else {
            self.note(format!("remove_dir_all {dir} ({size} names)"));
            self.ok(fs::remove_dir_all(self.p(&dir)));
        }
        self.model.remove_tree(&dir);
        Some(())
    }

    fn mkdir(&mut self) -> Option<()> {
        let dir = join(&self.any_dir(), &self.fresh("k"));
        let mode = [0o755, 0o750, 0o700][self.rng.below(3)];
        self.note(format!("mkdir {dir} mode {mode:o}"));
        self.ok(fs::DirBuilder::new().mode(mode).create(self.p(&dir)));
        self.ok(fs::set_permissions(self.p(&dir), fs::Permissions::from_mode(mode)));
        self.model.add_dir(&dir, mode);
        Some(())
    }

    fn rmdir(&mut self) -> Option<()> {
        let dir = self.any_subdir()?;
        if self.model.below(&dir).next().is_none() {
            self.note(format!("rmdir {dir}"));
            self.ok(fs::remove_dir(self.p(&dir)));
            self.model.remove_tree(&dir);
        } else {
            self.note(format!("rmdir {dir}, not empty (ENOTEMPTY)"));
            assert_errno(fs::remove_dir(self.p(&dir)), &[libc::ENOTEMPTY], &self.ctx());
        }
        Some(())
    }

    fn chmod(&mut self) -> Option<()> {
        let path = if self.rng.one_in(3) {
            self.any_subdir()?
        } else {
            self.any_file()?
        };
        let is_dir = self.model.is_dir(&path);
        let mode = if is_dir {
            [0o755, 0o750, 0o700, 0o711][self.rng.below(4)]
        } else {
            [0o644, 0o600, 0o640, 0o755, 0o444][self.rng.below(5)]
        };
        self.note(format!("chmod {mode:o} {path}"));
        self.ok(fs::set_permissions(self.p(&path), fs::Permissions::from_mode(mode)));
        self.copied_up(&path);
        if is_dir {
            self.model.add_dir(&path, mode);
        } else {
            self.model.file_mut(&path)?.mode = mode;
        }
        Some(())
    }

    fn symlink(&mut self) -> Option<()> {
        let path = join(&self.any_dir(), &self.fresh("s"));
        let target = match self.rng.below(4) {
            0 => "../t0".to_string(),
            1 => "f0.dat".to_string(),
            2 => format!("/nonexistent/{}", self.seq),
            _ => format!("a/b/{}/c", self.rng.next()),
        };
        self.note(format!("symlink {path} -> {target}"));
        self.ok(std::os::unix::fs::symlink(&target, self.p(&path)));
        self.model.add_symlink(&path, &target);
        Some(())
    }
}

/// A failing session prints the ops it did: with its seed and base
/// generation, they replay.
impl Drop for Worker<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "{} (seed {}) failed at op {}; its ops:\n  {}",
                self.who,
                self.seed,
                self.op,
                self.history.join("\n  ")
            );
        }
    }
}

/// A random one of `paths` (counted, then walked again to it: no copies).
fn pick<'m>(rng: &mut Rng, paths: impl Iterator<Item = &'m String> + Clone) -> Option<String> {
    let n = paths.clone().count();
    (n > 0)
        .then(|| rng.below(n))
        .and_then(|k| paths.clone().nth(k))
        .cloned()
}
