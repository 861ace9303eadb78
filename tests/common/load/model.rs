//! The in-memory model of a view's tree and its comparison with a mounted view.

use super::super::VERSION_FILE;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

/// One name of the model. Files are held by id so that hard links share
/// their content and mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir { mode: u32 },
    File { id: u64 },
    Symlink { target: String },
}

#[derive(Clone, Debug)]
pub struct FileData {
    pub content: Arc<Vec<u8>>,
    pub mode: u32,
}

/// What a view must show: relative path (`a/b`, root is `""` and implicit)
/// → entry, and the data of every file id.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub entries: BTreeMap<String, Entry>,
    pub files: BTreeMap<u64, FileData>,
    next_id: u64,
}

pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether `path` is strictly below `dir` (`""` is the root).
pub fn is_below(path: &str, dir: &str) -> bool {
    dir.is_empty() || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

impl Model {
    pub fn add_dir(&mut self, path: &str, mode: u32) {
        self.entries.insert(path.to_string(), Entry::Dir { mode });
    }

    pub fn add_file(&mut self, path: &str, content: Vec<u8>, mode: u32) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.files.insert(
            id,
            FileData {
                content: Arc::new(content),
                mode,
            },
        );
        self.entries.insert(path.to_string(), Entry::File { id });
        id
    }

    /// A second name `new` of the file at `existing`.
    pub fn add_link(&mut self, existing: &str, new: &str) {
        let id = self
            .file_id(existing)
            .unwrap_or_else(|| panic!("model: {existing} is not a file"));
        self.entries.insert(new.to_string(), Entry::File { id });
    }

    pub fn add_symlink(&mut self, path: &str, target: &str) {
        self.entries.insert(
            path.to_string(),
            Entry::Symlink {
                target: target.to_string(),
            },
        );
    }

    pub fn file_id(&self, path: &str) -> Option<u64> {
        match self.entries.get(path) {
            Some(Entry::File { id }) => Some(*id),
            _ => None,
        }
    }

    pub fn file(&self, path: &str) -> Option<&FileData> {
        self.file_id(path).and_then(|id| self.files.get(&id))
    }

    pub fn file_mut(&mut self, path: &str) -> Option<&mut FileData> {
        let id = self.file_id(path)?;
        self.files.get_mut(&id)
    }

    pub fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || matches!(self.entries.get(path), Some(Entry::Dir { .. }))
    }

    /// The entries strictly below `dir`: one range of the map, as every
    /// key starting `dir/` sorts between `dir/` and `dir0`.
    pub fn below<'a>(&'a self, dir: &str) -> Box<dyn Iterator<Item = (&'a String, &'a Entry)> + 'a> {
        if dir.is_empty() {
            Box::new(self.entries.iter())
        } else {
            Box::new(self.entries.range(format!("{dir}/")..format!("{dir}0")))
        }
    }

    /// `path` and everything below it.
    pub fn subtree(&self, path: &str) -> Vec<String> {
        let mut out: Vec<String> = self.below(path).map(|(k, _)| k.clone()).collect();
        if !path.is_empty() {
            out.push(path.to_string());
        }
        out
    }

    /// Removes `path` and everything below it.
    pub fn remove_tree(&mut self, path: &str) {
        for k in self.subtree(path) {
            self.entries.remove(&k);
        }
    }

    /// rename(2) of `from` to `to` (`to` absent, or a non-directory replaced,
    /// or another name of the same file, which leaves both names).
    pub fn rename(&mut self, from: &str, to: &str) {
        let moving = self.entries[from].clone();
        if let Some(existing) = self.entries.get(to)
            && *existing == moving
            && matches!(moving, Entry::File { .. })
        {
            return;
        }
        let moved: Vec<(String, Entry)> = self
            .subtree(from)
            .into_iter()
            .map(|k| {
                let e = self.entries.remove(&k).unwrap_or_else(|| panic!("model: {k} vanished"));
                (format!("{to}{}", &k[from.len()..]), e)
            })
            .collect();
        self.entries.remove(to);
        self.entries.extend(moved);
    }

    /// Adds `other`'s tree below `at` (its files get new ids here).
    pub fn graft(&mut self, at: &str, other: &Model) {
        let mut ids: BTreeMap<u64, String> = BTreeMap::new();
        for (path, e) in &other.entries {
            let path = join(at, path);
            match e {
                Entry::File { id } => match ids.get(id) {
                    Some(first) => self.add_link(first, &path),
                    None => {
                        let data = &other.files[id];
                        self.add_file(&path, data.content.to_vec(), data.mode);
                        ids.insert(*id, path);
                    }
                },
                e => {
                    self.entries.insert(path, e.clone());
                }
            }
        }
    }

    /// The names directly in `dir`.
    pub fn children(&self, dir: &str) -> Vec<String> {
        let skip = if dir.is_empty() { 0 } else { dir.len() + 1 };
        self.below(dir)
            .map(|(k, _)| &k[skip..])
            .filter(|name| !name.contains('/'))
            .map(str::to_string)
            .collect()
    }

    /// Writes the model below `root` (an existing empty directory).
    pub fn materialize(&self, root: &Path) {
        let mut first_name: BTreeMap<u64, String> = BTreeMap::new();
        // Parents sort before their children ('/' sorts after '-', '.', digits).
        for (path, e) in &self.entries {
            let p = root.join(path);
            match e {
                Entry::Dir { .. } => fs::DirBuilder::new().mode(0o755).create(&p).unwrap(),
                Entry::Symlink { target } => std::os::unix::fs::symlink(target, &p).unwrap(),
                Entry::File { id } => match first_name.get(id) {
                    Some(first) => fs::hard_link(root.join(first), &p).unwrap(),
                    None => {
                        let data = &self.files[id];
                        fs::write(&p, &*data.content).unwrap();
                        fs::set_permissions(&p, fs::Permissions::from_mode(data.mode)).unwrap();
                        first_name.insert(*id, path.clone());
                    }
                },
            }
        }
        for (path, e) in &self.entries {
            if let Entry::Dir { mode } = e {
                fs::set_permissions(root.join(path), fs::Permissions::from_mode(*mode)).unwrap();
            }
        }
    }
}

/// Creates a regular file `path` with `content` and exactly `mode`
/// (the umask does not apply: the mode is set afterwards too).
pub fn create_file(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(content)?;
    f.set_permissions(fs::Permissions::from_mode(mode))
}

/// The differences between the view mounted at `mnt` and `model` (names,
/// kinds, contents, modes, symlink targets, and which names are one file),
/// at most `limit` of them.
pub fn diff_view(mnt: &Path, model: &Model, limit: usize) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut seen = BTreeSet::new();
    // file id -> (first path, st_ino); st_ino -> id
    let mut ino_of_id: BTreeMap<u64, (String, u64)> = BTreeMap::new();
    let mut id_of_ino: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let rd = match fs::read_dir(mnt.join(&dir)) {
            Ok(rd) => rd,
            Err(e) => {
                diffs.push(format!("readdir /{dir}: {e}"));
                continue;
            }
        };
        for ent in rd {
            let ent = match ent {
                Ok(ent) => ent,
                Err(e) => {
                    diffs.push(format!("readdir /{dir}: {e}"));
                    break;
                }
            };
            let name = ent.file_name().to_string_lossy().to_string();
            if dir.is_empty() && name == VERSION_FILE {
                continue;
            }
            let path = join(&dir, &name);
            let p = mnt.join(&path);
            seen.insert(path.clone());
            let md = match fs::symlink_metadata(&p) {
                Ok(md) => md,
                Err(e) => {
                    diffs.push(format!("lstat /{path}: {e}"));
                    continue;
                }
            };
            let mode = md.mode() & 0o7777;
            match (model.entries.get(&path), md.file_type()) {
                (None, _) => diffs.push(format!(
                    "/{path}: in the view ({:?}) but not in the model",
                    md.file_type()
                )),
                (Some(Entry::Dir { mode: want }), ft) if ft.is_dir() => {
                    if mode != *want {
                        diffs.push(format!("/{path}: dir mode {mode:o}, model {want:o}"));
                    }
                    stack.push(path);
                }
                (Some(Entry::Symlink { target }), ft) if ft.is_symlink() => match fs::read_link(&p) {
                    Ok(t) if t.to_string_lossy() == *target => {}
                    r => diffs.push(format!("/{path}: readlink {r:?}, model {target:?}")),
                },
                (Some(Entry::File { id }), ft) if ft.is_file() => {
                    let data = &model.files[id];
                    if mode != data.mode {
                        diffs.push(format!("/{path}: file mode {mode:o}, model {:o}", data.mode));
                    }
                    match fs::read(&p) {
                        Ok(c) if c == *data.content => {}
                        Ok(c) => diffs.push(format!(
                            "/{path}: content differs ({} bytes, model {}; first difference at {})",
                            c.len(),
                            data.content.len(),
                            c.iter()
                                .zip(data.content.iter())
                                .position(|(a, b)| a != b)
                                .unwrap_or(c.len().min(data.content.len()))
                        )),
                        Err(e) => diffs.push(format!("/{path}: read: {e}")),
                    }
                    let ino = md.ino();
                    match ino_of_id.get(id) {
                        Some((first, i)) if *i != ino => {
                            diffs.push(format!("/{path}: st_ino {ino}, but its hard link /{first} has {i}"))
                        }
                        Some(_) => {}
                        None => {
                            ino_of_id.insert(*id, (path.clone(), ino));
                        }
                    }
                    match id_of_ino.get(&ino) {
                        Some((other, opath)) if other != id => {
                            diffs.push(format!("/{path}: st_ino {ino} is also /{opath}, a different file"))
                        }
                        Some(_) => {}
                        None => {
                            id_of_ino.insert(ino, (*id, path.clone()));
                        }
                    }
                }
                (Some(e), ft) => diffs.push(format!("/{path}: the view has a {ft:?}, the model {e:?}")),
            }
        }
    }
    for path in model.entries.keys() {
        if !seen.contains(path) {
            diffs.push(format!(
                "/{path}: in the model ({:?}) but not in the view",
                model.entries[path]
            ));
        }
    }
    diffs.truncate(limit);
    diffs
}

/// Panics with the differences unless the view at `mnt` equals `model`.
#[track_caller]
pub fn assert_view_matches(mnt: &Path, model: &Model, what: &str) {
    let diffs = diff_view(mnt, model, 30);
    assert!(
        diffs.is_empty(),
        "{what}: the view at {} differs from its model ({} entries):\n  {}",
        mnt.display(),
        model.entries.len(),
        diffs.join("\n  ")
    );
}
