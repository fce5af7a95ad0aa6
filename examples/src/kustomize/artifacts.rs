//! Verified artifact extractions shared by the Kustomizations of one source.
//!
//! kustomize-controller downloads and extracts a source's whole artifact for every reconcile
//! of every Kustomization, so N Kustomizations of one monorepo cost N downloads and N
//! extractions of the whole tree each round (quadratic in the size of a fleet kept in one
//! repository). Here an artifact is downloaded, its digest verified and it is extracted safely
//! (with [`fetch_artifact`]'s caps and path checks) once per digest, into a pristine tree that
//! is never built in. Builds run in private working copies of that tree, leased one build at a
//! time: Flux's build writes the generated (or overridden) kustomization file into the
//! directory it builds, so two builds must never share a tree. The render layer puts its file
//! back when the build ends; whatever it left (its own restore failed, or the build stopped
//! half-way) is put back here from the snapshot taken before the build (original bytes written
//! back, generated files removed), and the copy returns to the pool. Only a copy that cannot be
//! restored is removed: copying a whole monorepo tree again costs more than a build of one
//! directory.
//!
//! Working copies per artifact are bounded (builds are CPU work: more copies than cores buy
//! nothing), so a waiting build waits for a copy without holding a thread. When a source's
//! artifact changes, the previous extraction is dropped as soon as its last build ends; beyond
//! that, extractions idle for longer than `idle` or over the byte budget go, least recently
//! used first.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gitops_source::{Digest, FetchLimits, fetch_artifact};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

/// The kustomization file names Flux looks for, in its order (the only files a build writes).
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Why an artifact could not be leased.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactCacheError {
    /// Downloading, verifying or extracting the artifact failed.
    #[error("failed to download artifact from {url}: {source}")]
    Fetch {
        /// The artifact URL.
        url: String,
        /// The cause.
        #[source]
        source: gitops_source::SourceError,
    },
    /// The cache directory or a working copy could not be written.
    #[error("artifact cache {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A blocking task died.
    #[error("artifact cache task: {0}")]
    Task(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArtifactCacheError + '_ {
    move |source| ArtifactCacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Shared, verified extractions of artifacts, per digest (see the module docs).
pub struct ArtifactCache {
    copies_per_artifact: usize,
    max_bytes: u64,
    idle: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    root: Option<Arc<tempfile::TempDir>>,
    /// By digest.
    entries: HashMap<String, Arc<Entry>>,
    /// The digest each source was last seen at.
    sources: HashMap<String, String>,
    next: u64,
}

struct Entry {
    dir: PathBuf,
    pristine: OnceCell<()>,
    /// Bytes of one extracted tree.
    tree_bytes: AtomicU64,
    copies: AtomicUsize,
    next_copy: AtomicUsize,
    free: Mutex<Vec<PathBuf>>,
    permits: Arc<Semaphore>,
    last_used: Mutex<Instant>,
    /// Keeps the cache root alive while this entry's files exist.
    _root: Arc<tempfile::TempDir>,
}

impl Entry {
    fn pristine_dir(&self) -> PathBuf {
        self.dir.join("pristine")
    }

    fn disk_bytes(&self) -> u64 {
        let trees = 1 + self.copies.load(Ordering::Relaxed) as u64;
        self.tree_bytes
            .load(Ordering::Relaxed)
            .saturating_mul(trees)
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // The last reference is gone: no build can be using these trees.
        remove_tree(self.dir.clone());
    }
}

/// Removes a directory tree, off the async threads when there are some.
fn remove_tree(dir: PathBuf) {
    let remove = move || {
        if let Err(error) = fs::remove_dir_all(&dir)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), %error, "removing an artifact extraction");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(remove);
        }
        Err(_) => remove(),
    }
}

/// A private working copy of a verified artifact, for one build.
pub struct Lease {
    entry: Arc<Entry>,
    path: Option<PathBuf>,
    clean: bool,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// The root of the extracted artifact.
    pub fn root(&self) -> &Path {
        self.path
            .as_deref()
            .expect("a lease holds its path until dropped")
    }

    /// Snapshots the kustomization files of `dir` (relative to the root), which a build may
    /// write and must restore.
    pub fn snapshot(&self, dir: &Path) -> Snapshot {
        Snapshot::take(&self.root().join(dir))
    }

    /// Puts the kustomization files of `dir` back as `before` recorded them (the original
    /// bytes written back, files that did not exist removed), so the copy returns to the pool
    /// pristine. When that fails, or the files still differ afterwards, the copy is removed
    /// when the lease ends instead.
    pub fn restore(&mut self, dir: &Path, before: &Snapshot) {
        let dir = self.root().join(dir);
        if let Err(error) = before.restore(&dir) {
            tracing::warn!(dir = %dir.display(), %error, "restoring a kustomization file after a build: discarding the working copy");
            self.clean = false;
            return;
        }
        self.clean = Snapshot::take(&dir) == *before;
        if !self.clean {
            tracing::warn!(dir = %dir.display(), "a kustomization file changed after it was restored: discarding the working copy");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else {
            return;
        };
        if self.clean {
            self.entry
                .free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(path);
        } else {
            self.entry.copies.fetch_sub(1, Ordering::Relaxed);
            remove_tree(path);
        }
    }
}

/// The kustomization files of one directory (name and content), before a build.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot(Vec<(&'static str, FileState)>);

/// What one kustomization file path held.
#[derive(Debug, PartialEq, Eq)]
enum FileState {
    Absent,
    Bytes(Vec<u8>),
    /// Something that is not a readable file (a directory, say).
    Unreadable(io::ErrorKind),
}

impl FileState {
    fn read(path: &Path) -> Self {
        match fs::read(path) {
            Ok(bytes) => Self::Bytes(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::Absent,
            Err(e) => Self::Unreadable(e.kind()),
        }
    }
}

impl Snapshot {
    fn take(dir: &Path) -> Self {
        Self(
            KUSTOMIZATION_FILES
                .iter()
                .map(|name| (*name, FileState::read(&dir.join(name))))
                .collect(),
        )
    }

    /// Writes the recorded files of `dir` back where they changed, and removes those that did
    /// not exist.
    fn restore(&self, dir: &Path) -> io::Result<()> {
        for (name, before) in &self.0 {
            let path = dir.join(name);
            if FileState::read(&path) == *before {
                continue;
            }
            match before {
                FileState::Bytes(bytes) => fs::write(&path, bytes)?,
                FileState::Absent => match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                },
                FileState::Unreadable(kind) => {
                    return Err(io::Error::new(
                        *kind,
                        format!("{name} was not a readable file before the build"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl ArtifactCache {
    /// A cache with at most `copies_per_artifact` builds of one artifact at once, `max_bytes`
    /// of extracted files on disk (beyond what builds in flight use) and extractions idle for
    /// more than `idle` removed.
    pub fn new(copies_per_artifact: usize, max_bytes: u64, idle: Duration) -> Self {
        Self {
            copies_per_artifact: copies_per_artifact.max(1),
            max_bytes,
            idle,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many artifacts are extracted now.
    pub fn artifacts(&self) -> usize {
        self.lock().entries.len()
    }

    /// The entry of `digest` (created when new), recording that `source` is at `digest`: the
    /// source's previous artifact is forgotten (removed once its builds end).
    fn entry(&self, source: &str, digest: &Digest) -> Result<Arc<Entry>, ArtifactCacheError> {
        let key = digest.to_string();
        let mut state = self.lock();
        if let Some(previous) = state.sources.insert(source.to_string(), key.clone())
            && previous != key
            && !state.sources.values().any(|d| *d == previous)
        {
            state.entries.remove(&previous);
        }
        self.evict(&mut state, &key);
        if let Some(entry) = state.entries.get(&key) {
            *entry.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            return Ok(entry.clone());
        }
        let root = match &state.root {
            Some(root) => root.clone(),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("gitops-kustomize-artifacts-")
                    .tempdir()
                    .map_err(io_err(&std::env::temp_dir()))?;
                let root = Arc::new(dir);
                state.root = Some(root.clone());
                root
            }
        };
        state.next += 1;
        let dir = root.path().join(format!("{}-{}", state.next, digest.hex()));
        let entry = Arc::new(Entry {
            dir,
            pristine: OnceCell::new(),
            tree_bytes: AtomicU64::new(0),
            copies: AtomicUsize::new(0),
            next_copy: AtomicUsize::new(0),
            free: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(self.copies_per_artifact)),
            last_used: Mutex::new(Instant::now()),
            _root: root,
        });
        state.entries.insert(key, entry.clone());
        Ok(entry)
    }

    /// Drops idle extractions, then the least recently used ones while over the byte budget
    /// (never `keep`, and never one a build holds: those go when their builds end).
    fn evict(&self, state: &mut State, keep: &str) {
        state
            .entries
            .retain(|digest, e| digest == keep || e.idle_for() < self.idle);
        let mut total: u64 = state.entries.values().map(|e| e.disk_bytes()).sum();
        if total <= self.max_bytes {
            return;
        }
        let mut candidates: Vec<(Duration, String, u64)> = state
            .entries
            .iter()
            .filter(|(digest, e)| *digest != keep && Arc::strong_count(e) == 1)
            .map(|(digest, e)| (e.idle_for(), digest.clone(), e.disk_bytes()))
            .collect();
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        for (_, digest, bytes) in candidates {
            if total <= self.max_bytes {
                break;
            }
            state.entries.remove(&digest);
            total = total.saturating_sub(bytes);
        }
    }

    /// The verified extraction of the artifact `digest` of `source` (`Kind/namespace/name`),
    /// downloading it from `url` within `limits` and verifying it first when it is not
    /// extracted yet (once, however many Kustomizations ask at the same time).
    pub async fn fetch(
        &self,
        source: &str,
        url: &url::Url,
        digest: &Digest,
        limits: FetchLimits,
    ) -> Result<Artifact, ArtifactCacheError> {
        let entry = self.entry(source, digest)?;
        entry
            .pristine
            .get_or_try_init(|| async {
                let fetched = fetch_artifact(url, digest, &entry.pristine_dir(), limits)
                    .await
                    .map_err(|source| ArtifactCacheError::Fetch {
                        url: url.to_string(),
                        source,
                    })?;
                entry
                    .tree_bytes
                    .store(fetched.extracted_bytes, Ordering::Relaxed);
                Ok::<(), ArtifactCacheError>(())
            })
            .await?;
        Ok(Artifact { entry })
    }
}

/// A verified, extracted artifact of an [`ArtifactCache`].
pub struct Artifact {
    entry: Arc<Entry>,
}

impl Artifact {
    /// A private working copy of the artifact for one build, waiting while every copy of this
    /// artifact is in use.
    pub async fn lease(self) -> Result<Lease, ArtifactCacheError> {
        let entry = self.entry;
        let permit = entry
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ArtifactCacheError::Task(e.to_string()))?;
        let free = entry.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let path = match free {
            Some(path) => path,
            None => {
                let n = entry.next_copy.fetch_add(1, Ordering::Relaxed);
                let copy = entry.dir.join(format!("copy-{n}"));
                let from = entry.pristine_dir();
                let to = copy.clone();
                tokio::task::spawn_blocking(move || copy_tree(&from, &to))
                    .await
                    .map_err(|e| ArtifactCacheError::Task(e.to_string()))??;
                entry.copies.fetch_add(1, Ordering::Relaxed);
                copy
            }
        };
        Ok(Lease {
            entry,
            path: Some(path),
            clean: false,
            _permit: permit,
        })
    }
}

/// Copies the directory tree `from` (our own extraction: directories and regular files only)
/// to the new directory `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<(), ArtifactCacheError> {
    fs::create_dir(to).map_err(io_err(to))?;
    let mut stack = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((src, dst)) = stack.pop() {
        for item in fs::read_dir(&src).map_err(io_err(&src))? {
            let item = item.map_err(io_err(&src))?;
            let kind = item.file_type().map_err(io_err(&item.path()))?;
            let target = dst.join(item.file_name());
            if kind.is_dir() {
                fs::create_dir(&target).map_err(io_err(&target))?;
                stack.push((item.path(), target));
            } else if kind.is_file() {
                fs::copy(item.path(), &target).map_err(io_err(&target))?;
            } else {
                return Err(ArtifactCacheError::Io {
                    path: item.path(),
                    source: io::Error::other("not a regular file or directory"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `body` at `/a.tar.gz` on 127.0.0.1, counting requests.
    async fn serve(body: Vec<u8>) -> (url::Url, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let router = axum::Router::new().route(
            "/a.tar.gz",
            axum::routing::get(move || {
                let body = body.clone();
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    body
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let url = url::Url::parse(&format!("http://{addr}/a.tar.gz")).expect("url");
        (url, hits)
    }

    fn archive(files: &[(&str, &str)]) -> (Vec<u8>, Digest) {
        let tmp = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let path = tmp.path().join(path);
            fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
            fs::write(path, text).expect("write");
        }
        let (summary, bytes) =
            gitops_source::archive::write_tar_gz(tmp.path(), None, Vec::new()).expect("archive");
        (bytes, summary.digest)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_verified_download_serves_every_build_each_in_a_private_copy() {
        let (bytes, digest) = archive(&[
            ("apps/a/cm.yaml", "kind: ConfigMap\n"),
            ("apps/b/cm.yaml", "kind: ConfigMap\n"),
            ("apps/b/kustomization.yaml", "resources: [cm.yaml]\n"),
        ]);
        let (url, hits) = serve(bytes).await;
        let cache = ArtifactCache::new(2, u64::MAX, Duration::from_secs(3600));
        let limits = FetchLimits::default();
        // Ten concurrent fetches: one download.
        let fetches = (0..10).map(|_| cache.fetch("GitRepository/ns/a", &url, &digest, limits));
        let artifacts: Vec<Artifact> = futures::future::try_join_all(fetches)
            .await
            .expect("fetched");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(cache.artifacts(), 1);
        let mut artifacts = artifacts.into_iter();
        let first = artifacts.next().expect("one").lease().await.expect("lease");
        let second = artifacts.next().expect("two").lease().await.expect("lease");
        assert_ne!(first.root(), second.root(), "two builds, two copies");
        assert_eq!(
            fs::read_to_string(second.root().join("apps/a/cm.yaml")).expect("read"),
            "kind: ConfigMap\n"
        );
        // A build generates a kustomization file in a plain directory, and another changes
        // an existing one: both copies are restored and go back to the pool, pristine.
        let generated = Path::new("apps/a");
        let mut first = first;
        let before = first.snapshot(generated);
        fs::write(
            first.root().join("apps/a/kustomization.yaml"),
            "namePrefix: x-\n",
        )
        .expect("write");
        first.restore(generated, &before);
        let first_root = first.root().to_path_buf();
        drop(first);
        let changed = Path::new("apps/b");
        let mut second = second;
        let before = second.snapshot(changed);
        fs::write(
            second.root().join("apps/b/kustomization.yaml"),
            "resources: [cm.yaml]\nnamePrefix: y-\n",
        )
        .expect("write");
        fs::write(second.root().join("apps/b/Kustomization"), "stray\n").expect("write");
        second.restore(changed, &before);
        let second_root = second.root().to_path_buf();
        drop(second);
        // Two more builds lease both copies again: no third copy is made.
        let third = artifacts
            .next()
            .expect("three")
            .lease()
            .await
            .expect("lease");
        let fourth = artifacts
            .next()
            .expect("four")
            .lease()
            .await
            .expect("lease");
        let mut roots = [third.root().to_path_buf(), fourth.root().to_path_buf()];
        roots.sort();
        let mut expected = [first_root, second_root];
        expected.sort();
        assert_eq!(roots, expected, "the restored copies are reused");
        for lease in [&third, &fourth] {
            let root = lease.root();
            assert!(!root.join("apps/a/kustomization.yaml").exists());
            assert_eq!(
                fs::read_to_string(root.join("apps/b/kustomization.yaml")).expect("read"),
                "resources: [cm.yaml]\n"
            );
            assert!(!root.join("apps/b/Kustomization").exists());
            assert_eq!(
                fs::read_to_string(root.join("apps/a/cm.yaml")).expect("read"),
                "kind: ConfigMap\n"
            );
        }
        assert_eq!(third.entry.copies.load(Ordering::Relaxed), 2);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_digest_is_refused_and_a_new_revision_replaces_the_old_extraction() {
        let (bytes, digest) = archive(&[("a.yaml", "a: 1\n")]);
        let (url, hits) = serve(bytes).await;
        let cache = ArtifactCache::new(1, u64::MAX, Duration::from_secs(3600));
        let limits = FetchLimits {
            retries: 0,
            ..FetchLimits::default()
        };
        let (_, other) = archive(&[("a.yaml", "a: 2\n")]);
        let refused = cache
            .fetch("GitRepository/ns/a", &url, &other, limits)
            .await
            .err()
            .expect("a digest mismatch");
        assert!(
            refused.to_string().contains("failed to download artifact"),
            "{refused}"
        );
        let artifact = cache
            .fetch("GitRepository/ns/a", &url, &digest, limits)
            .await
            .expect("fetched");
        let lease = artifact.lease().await.expect("lease");
        let root = lease.root().to_path_buf();
        drop(lease);
        assert_eq!(cache.artifacts(), 1, "the refused digest is forgotten");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        // The source moves to another revision: the old extraction goes.
        let (bytes, newer) = archive(&[("a.yaml", "a: 3\n")]);
        let (url2, _) = serve(bytes).await;
        cache
            .fetch("GitRepository/ns/a", &url2, &newer, limits)
            .await
            .expect("fetched");
        assert_eq!(cache.artifacts(), 1);
        for _ in 0..50 {
            if !root.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !root.exists(),
            "the previous revision's extraction is removed"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_copy_that_cannot_be_restored_is_removed_not_reused() {
        let (bytes, digest) = archive(&[("apps/a/cm.yaml", "kind: ConfigMap\n")]);
        let (url, _) = serve(bytes).await;
        let cache = ArtifactCache::new(1, u64::MAX, Duration::from_secs(3600));
        let limits = FetchLimits::default();
        let fetch = || cache.fetch("GitRepository/ns/a", &url, &digest, limits);
        let mut lease = fetch()
            .await
            .expect("fetched")
            .lease()
            .await
            .expect("lease");
        let rel = Path::new("apps/a");
        let before = lease.snapshot(rel);
        // Something that is not a file where a kustomization file was absent: removing it as
        // a file fails.
        fs::create_dir(lease.root().join("apps/a/kustomization.yaml")).expect("dir");
        lease.restore(rel, &before);
        let root = lease.root().to_path_buf();
        drop(lease);
        let next = fetch()
            .await
            .expect("fetched")
            .lease()
            .await
            .expect("lease");
        assert_ne!(next.root(), root, "a fresh copy, not the broken one");
        assert!(!next.root().join("apps/a/kustomization.yaml").exists());
        assert_eq!(next.entry.copies.load(Ordering::Relaxed), 1);
        drop(next);
        for _ in 0..50 {
            if !root.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!root.exists(), "the unrestorable copy is removed");
    }

    #[test]
    fn copy_tree_copies_files_and_directories() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let from = tmp.path().join("from");
        fs::create_dir_all(from.join("a/b")).expect("dirs");
        fs::write(from.join("a/b/x.yaml"), "x: 1\n").expect("write");
        fs::write(from.join("top.yaml"), "y: 2\n").expect("write");
        let to = tmp.path().join("to");
        copy_tree(&from, &to).expect("copy");
        assert_eq!(
            fs::read_to_string(to.join("a/b/x.yaml")).expect("read"),
            "x: 1\n"
        );
        assert_eq!(
            fs::read_to_string(to.join("top.yaml")).expect("read"),
            "y: 2\n"
        );
    }

    #[test]
    fn a_snapshot_sees_a_written_or_changed_kustomization_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let before = Snapshot::take(tmp.path());
        assert_eq!(Snapshot::take(tmp.path()), before);
        fs::write(tmp.path().join("kustomization.yaml"), "resources: []\n").expect("write");
        let written = Snapshot::take(tmp.path());
        assert_ne!(written, before);
        fs::write(tmp.path().join("kustomization.yaml"), "namePrefix: x-\n").expect("write");
        assert_ne!(Snapshot::take(tmp.path()), written);
    }
}
