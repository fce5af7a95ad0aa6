//! Reproducible `tar.gz` archives, following source-controller's `Storage.Archive` rules.
//!
//! Identical trees give identical bytes: entries are walked in lexical order (directories
//! depth-first, as Go's `filepath.Walk`), uid/gid are 0, owner and group names empty, all
//! timestamps zero, modes normalised (0o600 files, 0o700 executables, 0o750 directories),
//! symlinks and special files skipped, and ignored paths left out. The gzip header carries no
//! name and no timestamp. The digest is the `sha256:` of the compressed bytes.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use sha2::Digest as _;

use crate::revision::Digest;
use crate::sourceignore::IgnoreRules;

/// Mode of regular files in an artifact.
pub const FILE_MODE: u32 = 0o600;
/// Mode of executable files in an artifact.
pub const EXECUTABLE_MODE: u32 = 0o700;
/// Mode of directories in an artifact.
pub const DIR_MODE: u32 = 0o750;

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The directory to archive does not exist or is not a directory.
    #[error("cannot archive {path}: not a directory")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// Reading the tree or writing the archive failed.
    #[error("archiving {path}: {source}")]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// What was written: digest and size of the compressed archive, and the entry counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// `sha256:` of the `.tar.gz` bytes.
    pub digest: Digest,
    /// Size of the `.tar.gz` in bytes.
    pub size: u64,
    /// Regular files archived.
    pub files: u64,
    /// Directories archived.
    pub dirs: u64,
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

fn base_header(entry_type: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    // Empty names: infallible for the empty string.
    let _ = header.set_username("");
    let _ = header.set_groupname("");
    header
}

/// Writes the tree at `dir` as a reproducible `tar.gz` into `out`, leaving out what `rules`
/// excludes, and returns the digest and size of the bytes written.
pub fn write_tar_gz<W: Write>(
    dir: &Path,
    rules: Option<&IgnoreRules>,
    out: W,
) -> Result<(ArchiveSummary, W), ArchiveError> {
    if !dir.is_dir() {
        return Err(ArchiveError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let hashing = HashingWriter {
        inner: out,
        hasher: sha2::Sha256::new(),
        written: 0,
    };
    let gz = flate2::GzBuilder::new().write(hashing, Compression::default());
    let mut builder = tar::Builder::new(gz);
    builder.mode(tar::HeaderMode::Deterministic);
    let mut counts = (0u64, 0u64);
    walk(dir, Path::new(""), rules, &mut builder, &mut counts)?;
    let io_err = |source| ArchiveError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let gz = builder.into_inner().map_err(io_err)?;
    let hashing = gz.finish().map_err(io_err)?;
    let summary = ArchiveSummary {
        digest: Digest::from_sha256(hashing.hasher),
        size: hashing.written,
        files: counts.0,
        dirs: counts.1,
    };
    Ok((summary, hashing.inner))
}

fn walk<W: Write>(
    root: &Path,
    relative: &Path,
    rules: Option<&IgnoreRules>,
    builder: &mut tar::Builder<W>,
    counts: &mut (u64, u64),
) -> Result<(), ArchiveError> {
    let dir = root.join(relative);
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Io { path, source }
    };
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(&dir))?;
    // Byte order of names, as Go's os.ReadDir sorts them.
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let rel = relative.join(&name);
        let abs = root.join(&rel);
        let meta = fs::symlink_metadata(&abs).map_err(io_err(&abs))?;
        let ty = meta.file_type();
        if !(ty.is_file() || ty.is_dir()) {
            // Symlinks, sockets, devices and FIFOs never enter an artifact.
            continue;
        }
        if let Some(rules) = rules
            && rules.is_ignored(&rel, ty.is_dir())
        {
            continue;
        }
        // Entry names always use `/`, whatever the platform.
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if ty.is_dir() {
            let mut header = base_header(tar::EntryType::Directory, DIR_MODE, 0);
            builder
                .append_data(&mut header, format!("{name}/"), io::empty())
                .map_err(io_err(&abs))?;
            counts.1 += 1;
            walk(root, &rel, rules, builder, counts)?;
        } else {
            let mode = if is_executable(&meta) {
                EXECUTABLE_MODE
            } else {
                FILE_MODE
            };
            let file = fs::File::open(&abs).map_err(io_err(&abs))?;
            let mut header = base_header(tar::EntryType::Regular, mode, meta.len());
            builder
                .append_data(&mut header, &name, file)
                .map_err(io_err(&abs))?;
            counts.0 += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("apps/b")).expect("mkdir");
        fs::create_dir_all(root.join(".git/objects")).expect("mkdir");
        fs::write(root.join("apps/b/z.yaml"), "kind: Z\n").expect("write");
        fs::write(root.join("apps/a.yaml"), "kind: A\n").expect("write");
        fs::write(root.join("run.sh"), "#!/bin/sh\n").expect("write");
        fs::write(root.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
        fs::write(root.join("logo.png"), [0u8, 1, 2]).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755))
                .expect("chmod");
            std::os::unix::fs::symlink("/etc/passwd", root.join("link")).expect("symlink");
        }
        dir
    }

    fn entries(bytes: &[u8]) -> Vec<(String, u32, u64, u64, tar::EntryType)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let h = e.header();
                (
                    e.path().expect("path").to_string_lossy().into_owned(),
                    h.mode().expect("mode"),
                    h.uid().expect("uid"),
                    h.mtime().expect("mtime"),
                    h.entry_type(),
                )
            })
            .collect()
    }

    #[test]
    fn archives_sorted_normalised_and_filtered() {
        let dir = sample_tree();
        let rules = IgnoreRules::load(dir.path(), None).expect("rules");
        let (summary, bytes) = write_tar_gz(dir.path(), Some(&rules), Vec::new()).expect("archive");
        assert_eq!(summary.size, bytes.len() as u64);
        assert_eq!(summary.digest, Digest::sha256_of(&bytes));
        let got = entries(&bytes);
        let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["apps/", "apps/a.yaml", "apps/b/", "apps/b/z.yaml", "run.sh"]
        );
        let modes: Vec<u32> = got.iter().map(|e| e.1).collect();
        assert_eq!(modes, [0o750, 0o600, 0o750, 0o600, 0o700]);
        assert!(got.iter().all(|e| e.2 == 0 && e.3 == 0));
        assert_eq!((summary.files, summary.dirs), (3, 2));
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            assert_eq!(entry.header().username().expect("utf8"), Some(""));
            assert_eq!(entry.header().groupname().expect("utf8"), Some(""));
        }
    }

    #[test]
    fn identical_trees_give_identical_bytes_whatever_the_mtimes() {
        let a = sample_tree();
        let b = sample_tree();
        // Different modification times and an extra ignored file must not change the digest.
        let old = fs::FileTimes::new().set_modified(std::time::UNIX_EPOCH);
        fs::File::options()
            .write(true)
            .open(b.path().join("apps/a.yaml"))
            .expect("open")
            .set_times(old)
            .expect("set mtime");
        fs::write(b.path().join(".git/index"), "x").expect("write");
        let (sa, _) = write_tar_gz(
            a.path(),
            Some(&IgnoreRules::load(a.path(), None).expect("r")),
            Vec::new(),
        )
        .expect("archive");
        let (sb, _) = write_tar_gz(
            b.path(),
            Some(&IgnoreRules::load(b.path(), None).expect("r")),
            Vec::new(),
        )
        .expect("archive");
        assert_eq!(sa.digest, sb.digest);
        fs::write(b.path().join("apps/a.yaml"), "kind: Changed\n").expect("write");
        let (sc, _) = write_tar_gz(
            b.path(),
            Some(&IgnoreRules::load(b.path(), None).expect("r")),
            Vec::new(),
        )
        .expect("archive");
        assert_ne!(sa.digest, sc.digest);
    }

    #[test]
    fn gzip_header_has_no_timestamp() {
        let dir = sample_tree();
        let (_, bytes) = write_tar_gz(dir.path(), None, Vec::new()).expect("archive");
        // Bytes 4..8 of a gzip member are MTIME.
        assert_eq!(&bytes[4..8], &[0, 0, 0, 0]);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut decoded)
            .expect("valid gzip");
        assert!(!decoded.is_empty());
    }

    #[test]
    fn missing_directory_is_an_error() {
        let err = write_tar_gz(Path::new("/nonexistent/dir"), None, Vec::new()).expect_err("fails");
        assert!(matches!(err, ArchiveError::NotADirectory { .. }));
    }
}
