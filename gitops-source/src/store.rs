//! `ArtifactStore`: artifacts on disk as source-controller lays them out.
//!
//! Layout `<root>/<kind>/<namespace>/<name>/<file>`; every write goes to a temporary file in the
//! same directory and is renamed into place, so readers never see a partial archive; writers of
//! one object are serialised by an exclusive lock on `<kind>/<namespace>/<name>/.lock`; garbage
//! collection keeps the current artifact, removes others older than the TTL and then the oldest
//! until at most N remain (Flux's `--artifact-retention-records` / `--artifact-retention-ttl`).
//! Names starting with `.` (locks, temporary files, alias records) are never artifacts and are
//! never served.
//!
//! Stable names: Flux's source-controller links `latest.tar.gz` (or `index.yaml`) next to the
//! artifacts to the current one and publishes that link in `status.url`. This store writes no
//! symlink (its server refuses them): [`ArtifactStore::set_alias`] records the current file
//! name atomically in `.alias-<name>`, and [`ArtifactStore::resolve_alias`] reads it back.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::Digest as _;

use crate::archive::{ArchiveError, ArchiveSummary, write_tar_gz};
use crate::revision::Digest;
use crate::sourceignore::IgnoreRules;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A kind, namespace, name or file name that cannot be a single path component.
    #[error("invalid {what} {value:?} for an artifact path: {reason}")]
    InvalidName {
        /// Which part (kind, namespace, name, file).
        what: &'static str,
        /// The refused value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// A filesystem operation failed.
    #[error("artifact store I/O on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Writing the archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A stored file does not have the digest recorded for it.
    #[error("artifact {path} has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// The file.
        path: PathBuf,
        /// The recorded digest.
        expected: Digest,
        /// The computed digest.
        actual: Digest,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The prefix of alias records (`.alias-latest.tar.gz`), hidden like every dot-file.
const ALIAS_PREFIX: &str = ".alias-";

/// The file name an alias record holds, when the record is a regular file (no symlink) with
/// one safe path component in it.
fn read_alias_record(path: &Path) -> Option<String> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 512 {
        return None;
    }
    let text = fs::read_to_string(path).ok()?;
    let name = text.trim_end_matches('\n');
    component("file", name).ok()?;
    Some(name.to_owned())
}

/// Checks that `value` is one safe path component.
fn component(what: &'static str, value: &str) -> Result<(), StoreError> {
    let bad = |reason| StoreError::InvalidName {
        what,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(bad("empty"));
    }
    if value.starts_with('.') {
        return Err(bad("starts with '.'"));
    }
    if value.contains(['/', '\\', '\0']) {
        return Err(bad("contains a path separator or NUL"));
    }
    if value.len() > 253 {
        return Err(bad("longer than 253 bytes"));
    }
    Ok(())
}

/// The object an artifact belongs to: `<kind>/<namespace>/<name>`, kind in lower case as
/// Flux writes it (`gitrepository`, `ocirepository`, `bucket`, `helmchart`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    kind: String,
    namespace: String,
    name: String,
}

impl ObjectRef {
    /// Builds an object reference, refusing parts that are not single safe path components.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Result<Self, StoreError> {
        let kind = kind.to_ascii_lowercase();
        component("kind", &kind)?;
        component("namespace", namespace)?;
        component("name", name)?;
        Ok(ObjectRef {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The directory of this object's artifacts, relative to the store root.
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(&self.kind)
            .join(&self.namespace)
            .join(&self.name)
    }

    /// The kind (lower case).
    pub fn kind(&self) -> &str {
        &self.kind
    }
    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Retention for garbage collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// At most this many artifact files per object survive (the current one included).
    pub keep_last: usize,
    /// Files other than the current one older than this are removed.
    pub ttl: Duration,
}

impl Default for Retention {
    /// Flux's defaults: 2 records, 1 minute.
    fn default() -> Self {
        Retention {
            keep_last: 2,
            ttl: Duration::from_secs(60),
        }
    }
}

/// An exclusive lock on one object's directory, released on drop.
#[derive(Debug)]
pub struct ObjectLock {
    _file: fs::File,
}

/// The result of writing an artifact file into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Path relative to the store root.
    pub path: PathBuf,
    /// `sha256:` of the file.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

/// A directory of artifacts with atomic writes, per-object locks and retention GC.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
    base_url: Option<url::Url>,
    retention: Retention,
}

impl ArtifactStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        let root = fs::canonicalize(&root).map_err(io_err(&root))?;
        Ok(ArtifactStore {
            root,
            base_url: None,
            retention: Retention::default(),
        })
    }

    /// Sets the URL the store is served at (`http://host:port/`), used to fill `Artifact::url`.
    pub fn with_base_url(mut self, url: url::Url) -> Self {
        self.base_url = Some(url);
        self
    }

    /// Sets the retention used by [`ArtifactStore::gc`].
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The retention policy.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// The path of `file` for `object`, relative to the root: `<kind>/<ns>/<name>/<file>`.
    pub fn artifact_path(&self, object: &ObjectRef, file: &str) -> Result<PathBuf, StoreError> {
        component("file", file)?;
        Ok(object.dir().join(file))
    }

    /// The absolute path of a relative artifact path.
    pub fn local_path(&self, relative: &Path) -> PathBuf {
        self.root.join(relative)
    }

    /// The URL of a relative artifact path, when the store has a base URL.
    pub fn url_for(&self, relative: &Path) -> Option<url::Url> {
        let base = self.base_url.as_ref()?;
        let rel: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let mut url = base.clone();
        url.path_segments_mut().ok()?.pop_if_empty().extend(rel);
        Some(url)
    }

    /// Whether the file at `relative` exists as a regular file.
    pub fn exists(&self, relative: &Path) -> bool {
        fs::symlink_metadata(self.local_path(relative))
            .map(|m| m.is_file())
            .unwrap_or(false)
    }

    /// Takes the exclusive lock of `object`, waiting for other writers (blocking).
    pub fn lock(&self, object: &ObjectRef) -> Result<ObjectLock, StoreError> {
        let dir = self.root.join(object.dir());
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        file.lock().map_err(io_err(&path))?;
        Ok(ObjectLock { _file: file })
    }

    fn temp_in(&self, dir: &Path) -> Result<tempfile::NamedTempFile, StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(io_err(dir))
    }

    fn persist(&self, temp: tempfile::NamedTempFile, relative: &Path) -> Result<(), StoreError> {
        let target = self.local_path(relative);
        temp.as_file().sync_all().map_err(io_err(&target))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(temp.path(), fs::Permissions::from_mode(0o600))
                .map_err(io_err(temp.path()))?;
        }
        temp.persist(&target).map_err(|e| StoreError::Io {
            path: target.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Archives `dir` as a reproducible `tar.gz` into `<object>/<file>` atomically, under the
    /// object's lock. Blocking: call it from `spawn_blocking` in async code.
    pub fn archive_dir(
        &self,
        object: &ObjectRef,
        file: &str,
        dir: &Path,
        rules: Option<&IgnoreRules>,
    ) -> Result<(StoredFile, ArchiveSummary), StoreError> {
        let relative = self.artifact_path(object, file)?;
        let _lock = self.lock(object)?;
        let temp = self.temp_in(&self.root.join(object.dir()))?;
        let buffered = io::BufWriter::with_capacity(256 * 1024, temp);
        let (summary, buffered) = write_tar_gz(dir, rules, buffered)?;
        let temp = buffered.into_inner().map_err(|e| StoreError::Io {
            path: relative.clone(),
            source: e.into_error(),
        })?;
        self.persist(temp, &relative)?;
        Ok((
            StoredFile {
                path: relative,
                digest: summary.digest.clone(),
                size: summary.size,
            },
            summary,
        ))
    }

    /// Writes the bytes of `reader` to `<object>/<file>` atomically, under the object's lock.
    pub fn write_file(
        &self,
        object: &ObjectRef,
        file: &str,
        reader: &mut dyn Read,
    ) -> Result<StoredFile, StoreError> {
        let relative = self.artifact_path(object, file)?;
        let _lock = self.lock(object)?;
        let mut temp = self.temp_in(&self.root.join(object.dir()))?;
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf).map_err(io_err(&relative))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            temp.write_all(&buf[..n]).map_err(io_err(&relative))?;
            size += n as u64;
        }
        self.persist(temp, &relative)?;
        Ok(StoredFile {
            path: relative,
            digest: Digest::from_sha256(hasher),
            size,
        })
    }

    /// Points the stable name `alias` of `object` (Flux's `latest.tar.gz`, `index.yaml`) at
    /// `current`, an artifact of `object` (a path relative to the root), and returns the path
    /// of the alias relative to the root (`<kind>/<ns>/<name>/<alias>`), whose URL is
    /// [`url_for`](Self::url_for) of it. The record `.alias-<alias>` is written atomically under
    /// the object's lock, and only when it changes. Blocking (small writes).
    pub fn set_alias(
        &self,
        object: &ObjectRef,
        alias: &str,
        current: &Path,
    ) -> Result<PathBuf, StoreError> {
        component("alias", alias)?;
        let dir = object.dir();
        let target = current
            .strip_prefix(&dir)
            .ok()
            .and_then(|rest| rest.to_str())
            .filter(|file| component("file", file).is_ok())
            .ok_or_else(|| StoreError::InvalidName {
                what: "aliased artifact",
                value: current.display().to_string(),
                reason: "not a file of the object's directory",
            })?;
        if !self.exists(current) {
            return Err(StoreError::Io {
                path: self.local_path(current),
                source: io::Error::new(io::ErrorKind::NotFound, "aliased artifact not stored"),
            });
        }
        let record = dir.join(format!("{ALIAS_PREFIX}{alias}"));
        let _lock = self.lock(object)?;
        let abs = self.local_path(&record);
        if read_alias_record(&abs).as_deref() != Some(target) {
            let mut temp = self.temp_in(&self.root.join(&dir))?;
            temp.write_all(format!("{target}\n").as_bytes())
                .map_err(io_err(&abs))?;
            self.persist(temp, &record)?;
        }
        Ok(dir.join(alias))
    }

    /// The artifact a stable name (`<kind>/<ns>/<name>/<alias>`, relative to the root) points
    /// at, relative to the root, when its record exists and names a regular file of the same
    /// directory.
    pub fn resolve_alias(&self, relative: &Path) -> Option<PathBuf> {
        let alias = relative.file_name()?.to_str()?;
        component("alias", alias).ok()?;
        let dir = relative.parent()?;
        let target =
            read_alias_record(&self.local_path(&dir.join(format!("{ALIAS_PREFIX}{alias}"))))?;
        let resolved = dir.join(target);
        self.exists(&resolved).then_some(resolved)
    }

    /// Recomputes the digest of a stored file and compares it with `expected`.
    pub fn verify(&self, relative: &Path, expected: &Digest) -> Result<(), StoreError> {
        let path = self.local_path(relative);
        let mut file = fs::File::open(&path).map_err(io_err(&path))?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(io_err(&path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let actual = Digest::from_sha256(hasher);
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                path,
                expected: expected.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Removes old artifact files of `object` by the store's retention, never `current`
    /// (a path relative to the root). Returns the removed paths, relative to the root.
    pub fn gc(
        &self,
        object: &ObjectRef,
        current: Option<&Path>,
    ) -> Result<Vec<PathBuf>, StoreError> {
        let dir_rel = object.dir();
        let dir = self.root.join(&dir_rel);
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let _lock = self.lock(object)?;
        let now = SystemTime::now();
        let mut files: Vec<(SystemTime, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let meta = entry.metadata().map_err(io_err(&entry.path()))?;
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().map_err(io_err(&entry.path()))?;
            files.push((modified, dir_rel.join(name)));
        }
        // Oldest first; the name breaks ties so the order is stable.
        files.sort();
        let is_current = |p: &Path| current == Some(p);
        let mut keep: Vec<&PathBuf> = Vec::new();
        let mut remove: Vec<PathBuf> = Vec::new();
        for (modified, path) in &files {
            let age = now.duration_since(*modified).unwrap_or(Duration::ZERO);
            if !is_current(path) && age > self.retention.ttl {
                remove.push(path.clone());
            } else {
                keep.push(path);
            }
        }
        let keep_last = self.retention.keep_last.max(1);
        let mut excess = keep.len().saturating_sub(keep_last);
        for path in keep {
            if excess == 0 {
                break;
            }
            if !is_current(path) {
                remove.push(path.clone());
                excess -= 1;
            }
        }
        for path in &remove {
            let abs = self.root.join(path);
            fs::remove_file(&abs).map_err(io_err(&abs))?;
        }
        remove.sort();
        Ok(remove)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_age(path: &Path, secs_ago: u64) {
        let t = SystemTime::now() - Duration::from_secs(secs_ago);
        fs::File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_times(fs::FileTimes::new().set_modified(t))
            .expect("set mtime");
    }

    #[test]
    fn object_parts_must_be_single_components() {
        assert!(ObjectRef::new("GitRepository", "flux-system", "podinfo").is_ok());
        for (k, ns, n) in [
            ("", "a", "b"),
            ("k", "..", "b"),
            ("k", "a", "b/c"),
            ("k", "a", ".hidden"),
        ] {
            assert!(ObjectRef::new(k, ns, n).is_err(), "{k}/{ns}/{n}");
        }
        let store = ArtifactStore::new(tempfile::tempdir().expect("tmp").path()).expect("store");
        let obj = ObjectRef::new("GitRepository", "ns", "app").expect("valid");
        assert_eq!(
            store.artifact_path(&obj, "abc.tar.gz").expect("valid"),
            PathBuf::from("gitrepository/ns/app/abc.tar.gz")
        );
        assert!(store.artifact_path(&obj, "../x").is_err());
    }

    #[test]
    fn writes_are_atomic_and_digested() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = ArtifactStore::new(tmp.path())
            .expect("store")
            .with_base_url("http://127.0.0.1:9090/".parse().expect("url"));
        let obj = ObjectRef::new("bucket", "ns", "b").expect("valid");
        let stored = store
            .write_file(&obj, "x.tar.gz", &mut &b"hello"[..])
            .expect("write");
        assert_eq!(stored.size, 5);
        assert_eq!(stored.digest, Digest::sha256_of(b"hello"));
        assert!(store.exists(&stored.path));
        store
            .verify(&stored.path, &stored.digest)
            .expect("verifies");
        assert!(matches!(
            store.verify(&stored.path, &Digest::sha256_of(b"other")),
            Err(StoreError::DigestMismatch { .. })
        ));
        let leftovers: Vec<_> = fs::read_dir(tmp.path().join("bucket/ns/b"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        assert_eq!(
            store.url_for(&stored.path).expect("url").as_str(),
            "http://127.0.0.1:9090/bucket/ns/b/x.tar.gz"
        );
    }

    #[test]
    fn gc_keeps_current_and_last_n_and_drops_expired() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = ArtifactStore::new(tmp.path())
            .expect("store")
            .with_retention(Retention {
                keep_last: 2,
                ttl: Duration::from_secs(3600),
            });
        let obj = ObjectRef::new("gitrepository", "ns", "app").expect("valid");
        let mut paths = Vec::new();
        for (i, age) in [(1, 7200u64), (2, 300), (3, 200), (4, 100), (5, 10)] {
            let stored = store
                .write_file(&obj, &format!("{i}.tar.gz"), &mut &b"x"[..])
                .expect("write");
            set_age(&store.local_path(&stored.path), age);
            paths.push(stored.path);
        }
        // The current artifact is the oldest: it survives even though expired.
        let removed = store.gc(&obj, Some(&paths[0])).expect("gc");
        assert_eq!(
            removed,
            vec![paths[1].clone(), paths[2].clone(), paths[3].clone()]
        );
        assert!(store.exists(&paths[0]) && store.exists(&paths[4]));
        assert!(tmp.path().join("gitrepository/ns/app/.lock").exists());
    }

    #[test]
    fn aliases_follow_the_current_artifact_without_symlinks() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = ArtifactStore::new(tmp.path())
            .expect("store")
            .with_base_url("http://127.0.0.1:9090/".parse().expect("url"));
        let obj = ObjectRef::new("OCIRepository", "ns", "app").expect("valid");
        let first = store
            .write_file(&obj, "one.tar.gz", &mut &b"1"[..])
            .expect("write");
        let alias = store
            .set_alias(&obj, "latest.tar.gz", &first.path)
            .expect("alias");
        assert_eq!(alias, PathBuf::from("ocirepository/ns/app/latest.tar.gz"));
        assert_eq!(
            store.url_for(&alias).expect("url").as_str(),
            "http://127.0.0.1:9090/ocirepository/ns/app/latest.tar.gz"
        );
        assert_eq!(store.resolve_alias(&alias), Some(first.path.clone()));
        let record = tmp.path().join("ocirepository/ns/app/.alias-latest.tar.gz");
        assert!(
            fs::symlink_metadata(&record)
                .expect("record")
                .file_type()
                .is_file()
        );
        assert!(
            !tmp.path().join(&alias).exists(),
            "no file or link at the alias"
        );

        let second = store
            .write_file(&obj, "two.tar.gz", &mut &b"2"[..])
            .expect("write");
        store
            .set_alias(&obj, "latest.tar.gz", &second.path)
            .expect("alias");
        assert_eq!(store.resolve_alias(&alias), Some(second.path.clone()));
        // Collection keeps the record (a dot-file) and never counts it as an artifact.
        let removed = store.gc(&obj, Some(&second.path)).expect("gc");
        assert!(removed.iter().all(|p| p != &second.path));
        assert_eq!(store.resolve_alias(&alias), Some(second.path.clone()));

        // Refused: another object's file, a missing file, an alias that is not one component.
        let other = ObjectRef::new("bucket", "ns", "b").expect("valid");
        assert!(
            store
                .set_alias(&other, "latest.tar.gz", &second.path)
                .is_err()
        );
        assert!(
            store
                .set_alias(&obj, "latest.tar.gz", &obj.dir().join("gone.tar.gz"))
                .is_err()
        );
        assert!(store.set_alias(&obj, "../x", &second.path).is_err());
        assert!(store.set_alias(&obj, ".lock", &second.path).is_err());
        // A record naming a path outside the directory, or a gone file, resolves to nothing.
        fs::write(&record, "../../../etc/passwd\n").expect("write");
        assert_eq!(store.resolve_alias(&alias), None);
        fs::write(&record, "gone.tar.gz\n").expect("write");
        assert_eq!(store.resolve_alias(&alias), None);
        assert_eq!(
            store.resolve_alias(Path::new("ocirepository/ns/app/unknown.tar.gz")),
            None
        );
    }

    #[test]
    fn lock_is_exclusive() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = ArtifactStore::new(tmp.path()).expect("store");
        let obj = ObjectRef::new("gitrepository", "ns", "app").expect("valid");
        let guard = store.lock(&obj).expect("lock");
        let path = tmp.path().join("gitrepository/ns/app/.lock");
        let other = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        assert!(
            other.try_lock().is_err(),
            "second lock must fail while held"
        );
        drop(guard);
        other.try_lock().expect("free after drop");
    }
}
