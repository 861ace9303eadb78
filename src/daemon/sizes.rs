//! Disk use of layers and session uppers, measured off the request path.
//!
//! Measuring a tree is a walk of every inode in it (`st_blocks * 512`, each
//! inode once, see `store::atomic::tree_usage`): far too slow to do while a
//! scraper waits on a golden of a million files. So readers only read this
//! cache, and ask for what it lacks; one background thread (started on first
//! use) does the walks, one at a time.
//!
//! - A layer is immutable: it is measured once and kept until it is deleted.
//! - A session's upper changes: its figure is measured again once it is
//!   older than [`UPPER_REFRESH`] and a reader asks, so it is at most that
//!   old plus the walks queued before it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// How old a session's upper figure may get before it is measured again.
pub const UPPER_REFRESH: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Tree {
    Layer(String),
    Upper(String),
}

#[derive(Default)]
struct State {
    layers: HashMap<String, u64>,
    uppers: HashMap<String, (Instant, u64)>,
    queue: VecDeque<(Tree, PathBuf)>,
    queued: HashSet<Tree>,
    worker: bool,
}

/// The cache. A leaf lock: never held across a walk or another lock.
#[derive(Default)]
pub struct Sizes {
    state: Mutex<State>,
    wake: Condvar,
}

impl Sizes {
    /// Bytes of layer `id` (at `dir`), if measured; else queues it.
    pub fn layer(self: &Arc<Self>, id: &str, dir: impl FnOnce() -> PathBuf) -> Option<u64> {
        let mut st = self.state.lock();
        if let Some(&b) = st.layers.get(id) {
            return Some(b);
        }
        self.enqueue(&mut st, Tree::Layer(id.to_string()), dir());
        None
    }

    /// Bytes of `session`'s upper (at `dir`) and their age, if measured;
    /// queues a new measurement when there is none or it is stale.
    pub fn upper(self: &Arc<Self>, session: &str, dir: impl FnOnce() -> PathBuf) -> Option<(u64, Duration)> {
        let mut st = self.state.lock();
        let known = st.uppers.get(session).map(|&(at, b)| (b, at.elapsed()));
        if known.is_none_or(|(_, age)| age >= UPPER_REFRESH) {
            self.enqueue(&mut st, Tree::Upper(session.to_string()), dir());
        }
        known
    }

    /// Drops what is cached about layers and sessions that are gone.
    pub fn retain(&self, layers: &HashSet<String>, sessions: &HashSet<String>) {
        let mut st = self.state.lock();
        st.layers.retain(|k, _| layers.contains(k));
        st.uppers.retain(|k, _| sessions.contains(k));
    }

    /// Trees waiting to be measured.
    pub fn pending(&self) -> usize {
        self.state.lock().queued.len()
    }

    fn enqueue(self: &Arc<Self>, st: &mut State, tree: Tree, dir: PathBuf) {
        if !st.queued.insert(tree.clone()) {
            return;
        }
        st.queue.push_back((tree, dir));
        if !st.worker {
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-sizes".into())
                .spawn(move || me.work());
            match spawned {
                Ok(_) => st.worker = true,
                Err(e) => log::warn!("cannot start the thread that measures store sizes: {e}"),
            }
        }
        self.wake.notify_one();
    }

    fn work(&self) {
        loop {
            let (tree, dir) = {
                let mut st = self.state.lock();
                loop {
                    if let Some(job) = st.queue.pop_front() {
                        break job;
                    }
                    self.wake.wait(&mut st);
                }
            };
            let bytes = crate::store::tree_usage(&dir);
            let mut st = self.state.lock();
            st.queued.remove(&tree);
            match tree {
                // A layer that vanished meanwhile (GC) is not recorded.
                Tree::Layer(id) if dir.exists() => {
                    st.layers.insert(id, bytes);
                }
                Tree::Layer(_) => {}
                Tree::Upper(s) => {
                    st.uppers.insert(s, (Instant::now(), bytes));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "not measured within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_symlink_in_a_measured_tree_is_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let (inside, outside) = (tmp.path().join("upper"), tmp.path().join("outside"));
        std::fs::create_dir_all(inside.join("d")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("big"), vec![1u8; 1 << 20]).unwrap();
        std::os::unix::fs::symlink(&outside, inside.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, inside.join("d/link")).unwrap();
        let bytes = crate::store::tree_usage(&inside);
        assert!(bytes < 1 << 20, "{bytes}: the walk followed a symlink");
        assert!(crate::store::tree_usage(&outside) >= 1 << 20);
    }

    #[test]
    fn trees_are_measured_in_the_background_and_layers_only_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("l");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("f"), vec![1u8; 64 * 1024]).unwrap();
        let sizes = Arc::new(Sizes::default());
        let first = wait_for(|| sizes.layer("l", || dir.clone()));
        assert!(first >= 64 * 1024, "{first}");
        std::fs::write(dir.join("g"), vec![1u8; 64 * 1024]).unwrap();
        assert_eq!(sizes.layer("l", || dir.clone()), Some(first), "layers are immutable");
        let (upper, age) = wait_for(|| sizes.upper("s", || dir.clone()));
        assert!(upper >= 128 * 1024 && age < UPPER_REFRESH, "{upper} {age:?}");
        sizes.retain(&HashSet::new(), &HashSet::new());
        let st = sizes.state.lock();
        assert!(st.layers.is_empty() && st.uppers.is_empty());
    }
}
