//! `fetch_artifact`: download an artifact, verify its digest, then extract it safely.
//!
//! What consumers of source-controller do (kustomize-controller, helm-controller): the archive
//! is downloaded with a timeout and retries, its `sha256:` digest is checked **before** a single
//! byte is extracted, and extraction refuses anything that could write outside the target
//! directory or exhaust the disk: absolute paths, `..` components, symlinks and hardlinks
//! (artifacts never contain links; a link is refused, whether it escapes or not), device files
//! and FIFOs, more than a given number of entries or of bytes. Extraction happens in a staging
//! directory beside the target, renamed into place only when every entry was accepted, so a
//! refused archive leaves nothing behind.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use sha2::Digest as _;

use crate::error::SourceError;
use crate::revision::{Algorithm, Digest};

/// Limits for [`fetch_artifact`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Time allowed for one download attempt (connect to last byte).
    pub timeout: Duration,
    /// Further attempts after a failed one (connection errors, timeouts, HTTP 5xx and 429).
    pub retries: u32,
    /// Largest compressed archive accepted.
    pub max_download_bytes: u64,
    /// Largest total of extracted file bytes.
    pub max_extracted_bytes: u64,
    /// Most entries (files and directories) extracted.
    pub max_entries: u64,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            timeout: Duration::from_secs(60),
            retries: 3,
            max_download_bytes: 512 * 1024 * 1024,
            max_extracted_bytes: 2 * 1024 * 1024 * 1024,
            max_entries: 200_000,
        }
    }
}

/// What [`fetch_artifact`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The verified digest of the archive.
    pub digest: Digest,
    /// Archive size in bytes.
    pub size: u64,
    /// Regular files extracted.
    pub files: u64,
    /// Bytes of file content extracted.
    pub extracted_bytes: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Downloads the archive at `url`, verifies it has `expected` digest, and extracts it into
/// `target` (which must not exist, or be an empty directory).
pub async fn fetch_artifact(
    url: &url::Url,
    expected: &Digest,
    target: &Path,
    limits: FetchLimits,
) -> Result<Fetched, SourceError> {
    if expected.algorithm() != Algorithm::Sha256 {
        return Err(SourceError::InvalidSpec(format!(
            "only sha256 artifact digests can be verified, got {expected}"
        )));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SourceError::InvalidSpec(format!(
            "artifact URL {url} must be http or https"
        )));
    }
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    if target.exists() {
        let mut entries = fs::read_dir(target).map_err(io_err(target))?;
        if entries.next().is_some() {
            return Err(SourceError::InvalidSpec(format!(
                "extraction target {} is not empty",
                target.display()
            )));
        }
    }
    let download = tempfile::Builder::new()
        .prefix(".artifact-download-")
        .tempfile_in(parent)
        .map_err(io_err(parent))?;
    let (digest, size) = download_with_retries(url, download.path(), limits).await?;
    if &digest != expected {
        return Err(SourceError::DigestMismatch {
            url: url.to_string(),
            expected: expected.clone(),
            actual: digest,
        });
    }
    let archive = download.path().to_path_buf();
    let target = target.to_path_buf();
    let parent = parent.to_path_buf();
    let url_text = url.to_string();
    let (files, extracted_bytes) = tokio::task::spawn_blocking(move || {
        extract_staged(&archive, &parent, &target, limits, &url_text)
    })
    .await
    .map_err(|e| SourceError::InvalidSpec(format!("extraction task failed: {e}")))??;
    drop(download);
    Ok(Fetched {
        digest,
        size,
        files,
        extracted_bytes,
    })
}

async fn download_with_retries(
    url: &url::Url,
    dest: &Path,
    limits: FetchLimits,
) -> Result<(Digest, u64), SourceError> {
    let client = reqwest::Client::builder()
        .connect_timeout(limits.timeout)
        .build()
        .map_err(|e| SourceError::Network {
            url: url.to_string(),
            message: e.to_string(),
        })?;
    let mut attempt = 0;
    loop {
        let result =
            tokio::time::timeout(limits.timeout, download_once(&client, url, dest, limits)).await;
        let error = match result {
            Ok(Ok(done)) => return Ok(done),
            Ok(Err((error, retryable))) => {
                if !retryable {
                    return Err(error);
                }
                error
            }
            Err(_) => SourceError::Timeout {
                url: url.to_string(),
                operation: "artifact download",
                after: limits.timeout,
            },
        };
        if attempt >= limits.retries {
            return Err(error);
        }
        attempt += 1;
        let backoff = Duration::from_millis(200 * 2u64.pow(attempt.min(6)));
        tracing::debug!(%url, attempt, %error, "artifact download failed, retrying");
        tokio::time::sleep(backoff).await;
    }
}

async fn download_once(
    client: &reqwest::Client,
    url: &url::Url,
    dest: &Path,
    limits: FetchLimits,
) -> Result<(Digest, u64), (SourceError, bool)> {
    let network = |e: reqwest::Error| {
        let retryable = e.is_connect() || e.is_timeout() || e.is_request() || e.is_body();
        (
            SourceError::Network {
                url: url.to_string(),
                message: e.to_string(),
            },
            retryable,
        )
    };
    let response = client.get(url.clone()).send().await.map_err(network)?;
    let status = response.status();
    if !status.is_success() {
        let retryable = status.is_server_error() || status.as_u16() == 429;
        return Err((
            SourceError::Network {
                url: url.to_string(),
                message: format!("HTTP status {status}"),
            },
            retryable,
        ));
    }
    if response
        .content_length()
        .is_some_and(|len| len > limits.max_download_bytes)
    {
        return Err((too_large(url, limits.max_download_bytes), false));
    }
    let mut file = fs::File::create(dest).map_err(|e| (io_err(dest)(e), false))?;
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(network)?;
        size += chunk.len() as u64;
        if size > limits.max_download_bytes {
            return Err((too_large(url, limits.max_download_bytes), false));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .map_err(|e| (io_err(dest)(e), false))?;
    }
    file.sync_all().map_err(|e| (io_err(dest)(e), false))?;
    Ok((Digest::from_sha256(hasher), size))
}

fn too_large(url: &url::Url, limit: u64) -> SourceError {
    SourceError::UnsafeArchive {
        url: url.to_string(),
        entry: String::new(),
        reason: format!("archive larger than the {limit} byte download limit"),
    }
}

fn extract_staged(
    archive: &Path,
    parent: &Path,
    target: &Path,
    limits: FetchLimits,
    origin: &str,
) -> Result<(u64, u64), SourceError> {
    let staging = tempfile::Builder::new()
        .prefix(".artifact-extract-")
        .tempdir_in(parent)
        .map_err(io_err(parent))?;
    let file = fs::File::open(archive).map_err(io_err(archive))?;
    let counts = extract_tar_gz(io::BufReader::new(file), staging.path(), limits, origin)?;
    if target.exists() {
        // Checked empty before downloading; remove it so the rename can take its place.
        fs::remove_dir(target).map_err(io_err(target))?;
    }
    let staged = staging.keep();
    fs::rename(&staged, target).map_err(|e| {
        let _ = fs::remove_dir_all(&staged);
        io_err(target)(e)
    })?;
    Ok(counts)
}

/// Checks an entry path and turns it into a relative path of normal components.
fn safe_relative(raw: &[u8]) -> Result<PathBuf, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "path is not UTF-8".to_owned())?;
    if text.is_empty() {
        return Err("empty path".into());
    }
    if text.contains('\0') || text.contains('\\') {
        return Err("path contains NUL or a backslash".into());
    }
    let path = Path::new(text);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("path names the archive root".into());
    }
    Ok(out)
}

/// A reader that refuses to yield more than `left` bytes: a bound on the decompressed stream.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other(
                "decompressed archive exceeds its size limit",
            ));
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Extracts a `tar.gz` stream into the existing, empty directory `dest`, enforcing the rules
/// of this module. Returns (files, file bytes). `origin` names the archive in errors.
pub fn extract_tar_gz<R: Read>(
    reader: R,
    dest: &Path,
    limits: FetchLimits,
    origin: &str,
) -> Result<(u64, u64), SourceError> {
    let unsafe_entry = |entry: &str, reason: String| SourceError::UnsafeArchive {
        url: origin.to_owned(),
        entry: entry.to_owned(),
        reason,
    };
    // Headers and padding add at most 1.5 KiB per entry beyond the file bytes.
    let stream_cap = limits
        .max_extracted_bytes
        .saturating_add(limits.max_entries.saturating_mul(1536))
        .saturating_add(1024 * 1024);
    let gz = flate2::read::GzDecoder::new(reader);
    let mut archive = tar::Archive::new(Capped {
        inner: gz,
        left: stream_cap,
    });
    let mut files = 0u64;
    let mut entries_seen = 0u64;
    let mut bytes = 0u64;
    let read_err = |e: io::Error| unsafe_entry("", format!("unreadable archive: {e}"));
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        entries_seen += 1;
        if entries_seen > limits.max_entries {
            return Err(unsafe_entry(
                &shown,
                format!("more than {} entries", limits.max_entries),
            ));
        }
        let kind = entry.header().entry_type();
        let relative = safe_relative(&raw).map_err(|reason| unsafe_entry(&shown, reason))?;
        let path = dest.join(&relative);
        match kind {
            tar::EntryType::Directory => {
                create_dirs(dest, &relative).map_err(|reason| unsafe_entry(&shown, reason))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(read_err)?;
                if bytes.saturating_add(size) > limits.max_extracted_bytes {
                    return Err(unsafe_entry(
                        &shown,
                        format!(
                            "extracted size would exceed {} bytes",
                            limits.max_extracted_bytes
                        ),
                    ));
                }
                if let Some(parent) = relative.parent() {
                    create_dirs(dest, parent).map_err(|reason| unsafe_entry(&shown, reason))?;
                }
                if let Ok(meta) = fs::symlink_metadata(&path) {
                    if !meta.is_file() {
                        return Err(unsafe_entry(&shown, "replaces a directory".into()));
                    }
                    fs::remove_file(&path).map_err(io_err(&path))?;
                }
                let mode = entry.header().mode().unwrap_or(0o644);
                let mut out = fs::OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                let mut limited = (&mut entry).take(size);
                let copied = io::copy(&mut limited, &mut out).map_err(read_err)?;
                if copied != size {
                    return Err(unsafe_entry(&shown, "truncated entry".into()));
                }
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                        .map_err(io_err(&path))?;
                }
                bytes += copied;
                files += 1;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let escapes = link_escapes(&relative, &target, kind == tar::EntryType::Link);
                let what = if kind == tar::EntryType::Link {
                    "hardlink"
                } else {
                    "symlink"
                };
                let reason = if escapes {
                    format!("{what} to {target:?} escapes the target directory")
                } else {
                    format!("{what} to {target:?}: artifacts may not contain links")
                };
                return Err(unsafe_entry(&shown, reason));
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            other => {
                return Err(unsafe_entry(
                    &shown,
                    format!(
                        "entry type {other:?} (device, FIFO or other special file) is not allowed"
                    ),
                ));
            }
        }
    }
    Ok((files, bytes))
}

/// Whether a link at `at` pointing to `target` resolves outside the archive root.
fn link_escapes(at: &Path, target: &str, hard: bool) -> bool {
    let target_path = Path::new(target);
    if target_path.is_absolute() {
        return true;
    }
    // Symlinks resolve from the link's directory, hardlinks from the archive root.
    let mut depth: i64 = if hard {
        0
    } else {
        at.parent()
            .map(|p| p.components().count() as i64)
            .unwrap_or(0)
    };
    for component in target_path.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

/// Creates `relative` (and its parents) under `dest`, refusing to pass through anything that is
/// not a real directory we created.
fn create_dirs(dest: &Path, relative: &Path) -> Result<(), String> {
    let mut current = dest.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "{} exists and is not a directory",
                    current.display()
                ));
            }
            Err(_) => {
                fs::create_dir(&current).map_err(|e| format!("{}: {e}", current.display()))?
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_checked() {
        assert_eq!(safe_relative(b"a/./b").expect("ok"), PathBuf::from("a/b"));
        assert!(safe_relative(b"/etc/passwd").is_err());
        assert!(safe_relative(b"a/../../x").is_err());
        assert!(safe_relative(b"..").is_err());
        assert!(safe_relative(b"./").is_err());
        assert!(safe_relative(b"a\\..\\b").is_err());
    }

    #[test]
    fn link_escape_detection() {
        assert!(link_escapes(Path::new("a/l"), "../../x", false));
        assert!(!link_escapes(Path::new("a/l"), "../x", false));
        assert!(link_escapes(Path::new("a/l"), "/etc", false));
        assert!(link_escapes(Path::new("a/l"), "../x", true));
        assert!(!link_escapes(Path::new("a/l"), "a/x", true));
    }
}
