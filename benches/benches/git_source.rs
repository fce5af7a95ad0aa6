//! Git acquisition: `GitSource` (shallow fetch, checkout, reproducible tar.gz) against the git
//! CLI pipeline users know (`git clone --depth 1` + `tar czf`), on the same generated
//! repository (~20k files, ~100 MB) served over `file://` (both through `git-upload-pack`),
//! in the same run; and the unchanged re-acquire (one `ls-refs`, no pack).
//!
//! Size with `GITOPS_BENCH_FILES` (default 20000) and `GITOPS_BENCH_FILE_BYTES` (default 5000).
//! `scripts/bench-git` runs this bench and prints the ratios.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gitops_source::{Acquired, ArtifactStore, GitReference, GitSource, ObjectRef, Source};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} failed");
}

/// Deterministic text that compresses like configuration files do (roughly 4:1).
fn file_body(index: usize, size: usize) -> Vec<u8> {
    let mut state = (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(size + 64);
    while out.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let line = format!(
            "  key-{:04}: value-{:016x}-{}\n",
            state % 10_000,
            state,
            if state.is_multiple_of(3) {
                "enabled"
            } else {
                "replicas: 3"
            }
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(size);
    out
}

/// Builds (once per run) a repository with `files` files in nested directories, published as a
/// bare repository; returns the bare repository's path.
fn generate_repo(root: &Path, files: usize, file_bytes: usize) -> PathBuf {
    let work = root.join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    git(&work, &["init", "-q", "-b", "main"]);
    for i in 0..files {
        let dir = work.join(format!("apps/team-{:02}/svc-{:03}", i % 40, (i / 40) % 500));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join(format!("resource-{i:05}.yaml")),
            file_body(i, file_bytes),
        )
        .expect("write");
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "generated"]);
    // A second commit so depth 1 has history to leave behind.
    std::fs::write(work.join("README.md"), "bench\n").expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "readme"]);
    let bare = root.join("repo.git");
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().expect("utf8"),
            bare.to_str().expect("utf8"),
        ],
    );
    git(&bare, &["gc", "-q"]);
    bare
}

fn git_cli_pipeline(url: &str, scratch: &Path) {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).expect("mkdir");
    let checkout = scratch.join("checkout");
    git(
        scratch,
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            "--single-branch",
            "-b",
            "main",
            url,
            checkout.to_str().expect("utf8"),
        ],
    );
    let status = Command::new("tar")
        .args(["czf", "../artifact.tar.gz", "--exclude=.git", "."])
        .current_dir(&checkout)
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar czf failed");
}

fn bench_git_source(c: &mut Criterion) {
    let files = env_usize("GITOPS_BENCH_FILES", 20_000);
    let file_bytes = env_usize("GITOPS_BENCH_FILE_BYTES", 5_000);
    let root = tempfile::tempdir().expect("tmp");
    let bare = generate_repo(root.path(), files, file_bytes);
    let url = format!("file://{}", bare.display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let object = ObjectRef::new("GitRepository", "bench", "repo").expect("valid");
    let mut source = GitSource::new(url.clone(), object);
    source.reference = GitReference {
        branch: Some("main".into()),
        ..Default::default()
    };
    source.timeout = Duration::from_secs(600);

    let mut group = c.benchmark_group("git_source");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.warm_up_time(Duration::from_secs(1));

    let store_dir = root.path().join("store");
    group.bench_function("gitops_acquire_depth1", |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(&store_dir);
            let store = ArtifactStore::new(&store_dir).expect("store");
            let acquired = runtime
                .block_on(source.acquire(None, &store))
                .expect("acquire");
            assert!(acquired.is_new());
        })
    });

    let scratch = root.path().join("git-cli");
    group.bench_function("git_clone_depth1_tar_czf", |b| {
        b.iter(|| git_cli_pipeline(&url, &scratch))
    });

    let store = ArtifactStore::new(root.path().join("store-unchanged")).expect("store");
    let last = match runtime
        .block_on(source.acquire(None, &store))
        .expect("acquire")
    {
        Acquired::New(a) => a,
        Acquired::Unchanged(a) => a,
    };
    let artifact_size = last.size;
    group.bench_function("gitops_unchanged_reacquire", |b| {
        b.iter(|| {
            let acquired = runtime
                .block_on(source.acquire(Some(&last), &store))
                .expect("acquire");
            assert!(!acquired.is_new());
        })
    });
    group.finish();
    eprintln!("repository: {files} files x {file_bytes} bytes; artifact {artifact_size} bytes");
}

criterion_group!(benches, bench_git_source);
criterion_main!(benches);
