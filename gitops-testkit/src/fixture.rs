//! Git repositories built for tests with the git CLI: commits, branches, annotated and
//! lightweight tags, semver tags, arbitrary refs and submodules, with deterministic commit ids.
//!
//! Every commit and annotated tag gets a fixed author, committer and date (one minute after the
//! previous one in the same repository), and the user's and system's git configuration is
//! ignored, so the same steps give the same commit ids on every machine and every run.
//!
//! ```no_run
//! use gitops_testkit::fixture::GitFixture;
//! # fn main() -> Result<(), gitops_testkit::servers::ServerError> {
//! let fixture = GitFixture::new()?;
//! let repo = fixture.repo("app")?;
//! repo.write("deploy/app.yaml", "kind: ConfigMap\n")?;
//! let first = repo.commit("first")?;
//! repo.tag("v1.0.0")?;
//! repo.switch_new("dev")?;
//! repo.write("deploy/app.yaml", "kind: Secret\n")?;
//! let second = repo.commit("second")?;
//! repo.tag_annotated("v1.1.0-rc.1", "release candidate")?;
//! let bare = fixture.publish(&repo, "app.git")?; // serve fixture.serve_dir()
//! # let _ = (first, second, bare);
//! # Ok(()) }
//! ```

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::servers::ServerError;

/// The first commit's date (2023-11-14T22:13:20Z); each commit or annotated tag is one minute
/// later than the one before it in the same repository.
const EPOCH: u64 = 1_700_000_000;
const AUTHOR_NAME: &str = "GitOps Testkit";
const AUTHOR_EMAIL: &str = "testkit@example.invalid";

/// A temporary directory of work repositories and, under [`serve_dir`](Self::serve_dir), the
/// bare repositories that the servers serve. Removed on drop.
#[derive(Debug)]
pub struct GitFixture {
    dir: tempfile::TempDir,
    serve_dir: PathBuf,
    git: PathBuf,
}

impl GitFixture {
    /// Creates the fixture directory; fails with [`ServerError::MissingBinary`] without `git`.
    pub fn new() -> Result<Self, ServerError> {
        Self::with_git("git")
    }

    /// Like [`new`](Self::new) with a given `git` binary (a path or a name on `PATH`).
    pub fn with_git(git: impl AsRef<Path>) -> Result<Self, ServerError> {
        let git = crate::servers::resolve_git(git.as_ref())?;
        let dir = tempfile::Builder::new()
            .prefix("testkit-fixture-")
            .tempdir()
            .map_err(|e| {
                ServerError::io("create temporary directory in", std::env::temp_dir(), e)
            })?;
        // Canonical, so the paths we hand out match what git and servers report.
        let root = dir
            .path()
            .canonicalize()
            .map_err(|e| ServerError::io("resolve", dir.path(), e))?;
        let serve_dir = root.join("served");
        for sub in [&serve_dir, &root.join("work")] {
            std::fs::create_dir_all(sub)
                .map_err(|e| ServerError::io("create directory", sub, e))?;
        }
        Ok(GitFixture {
            dir,
            serve_dir,
            git,
        })
    }

    /// The fixture's root directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory of bare repositories to hand to a server (`GitHttpServer::start`, ...).
    pub fn serve_dir(&self) -> &Path {
        &self.serve_dir
    }

    /// Creates an empty work repository `name` (on branch `main`) under the fixture.
    pub fn repo(&self, name: &str) -> Result<GitRepo, ServerError> {
        let path = self
            .serve_dir
            .with_file_name("work")
            .join(checked_name(name)?);
        GitRepo::init_with(&self.git, &path, false)
    }

    /// Creates an empty bare repository `name` under [`serve_dir`](Self::serve_dir) (a push
    /// target).
    pub fn bare(&self, name: &str) -> Result<GitRepo, ServerError> {
        let path = self.serve_dir.join(checked_name(name)?);
        GitRepo::init_with(&self.git, &path, true)
    }

    /// Publishes `repo` as the bare repository `name` under [`serve_dir`](Self::serve_dir):
    /// every ref (branches, tags, custom refs such as `refs/pull/1/head`) is mirrored, and
    /// `HEAD` points at the same branch as the work repository's. Publishing again updates
    /// the refs (deleting those gone from `repo`). Returns the bare repository's path.
    pub fn publish(&self, repo: &GitRepo, name: &str) -> Result<PathBuf, ServerError> {
        let target = self.serve_dir.join(checked_name(name)?);
        let bare = if target.exists() {
            GitRepo::open_with(&self.git, &target)
        } else {
            GitRepo::init_with(&self.git, &target, true)?
        };
        repo.git([
            OsStr::new("push"),
            OsStr::new("--quiet"),
            OsStr::new("--mirror"),
            target.as_os_str(),
        ])?;
        if let Ok(head) = repo.git(["symbolic-ref", "HEAD"]) {
            bare.git(["symbolic-ref", "HEAD", head.trim()])?;
        }
        Ok(target)
    }
}

/// Rejects names that would leave the fixture directory.
fn checked_name(name: &str) -> Result<&str, ServerError> {
    let path = Path::new(name);
    let ok = !name.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(name)
    } else {
        Err(ServerError::InvalidArgument(format!(
            "repository name {name:?} must be a relative path without '..'"
        )))
    }
}

/// A git repository (work tree or bare) driven through the git CLI with a deterministic
/// identity and clock.
#[derive(Debug)]
pub struct GitRepo {
    path: PathBuf,
    git: PathBuf,
    bare: bool,
    tick: AtomicU64,
}

impl GitRepo {
    /// Initializes a work repository at `path` (created if needed) on branch `main`.
    pub fn init(path: impl AsRef<Path>) -> Result<Self, ServerError> {
        let git = crate::servers::resolve_git(Path::new("git"))?;
        Self::init_with(&git, path.as_ref(), false)
    }

    /// Initializes a bare repository at `path` (created if needed) with `HEAD` at `main`.
    pub fn init_bare(path: impl AsRef<Path>) -> Result<Self, ServerError> {
        let git = crate::servers::resolve_git(Path::new("git"))?;
        Self::init_with(&git, path.as_ref(), true)
    }

    /// Opens an existing repository (work tree or bare) at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ServerError> {
        let git = crate::servers::resolve_git(Path::new("git"))?;
        let path = path.as_ref();
        if !path.exists() {
            return Err(ServerError::io(
                "open repository",
                path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        Ok(Self::open_with(&git, path))
    }

    fn open_with(git: &Path, path: &Path) -> Self {
        GitRepo {
            bare: !path.join(".git").exists(),
            path: path.to_path_buf(),
            git: git.to_path_buf(),
            tick: AtomicU64::new(0),
        }
    }

    fn init_with(git: &Path, path: &Path, bare: bool) -> Result<Self, ServerError> {
        std::fs::create_dir_all(path).map_err(|e| ServerError::io("create directory", path, e))?;
        let repo = GitRepo {
            path: path.to_path_buf(),
            git: git.to_path_buf(),
            bare,
            tick: AtomicU64::new(0),
        };
        if bare {
            repo.git(["init", "--quiet", "--bare", "--initial-branch=main"])?;
        } else {
            repo.git(["init", "--quiet", "--initial-branch=main"])?;
        }
        Ok(repo)
    }

    /// The repository's directory (the work tree, or the bare repository).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `file://` URL of this repository (for submodule URLs and local clones).
    pub fn file_url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    /// Runs `git` in the repository with the fixture's identity, clock and isolated
    /// configuration; returns stdout. Fails with [`ServerError::Command`] on a non-zero exit.
    pub fn git<I, S>(&self, args: I) -> Result<String, ServerError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let date = format!("@{} +0000", EPOCH + 60 * self.tick.load(Ordering::SeqCst));
        let mut cmd = Command::new(&self.git);
        cmd.current_dir(&self.path)
            .args([
                "-c",
                "protocol.file.allow=always",
                "-c",
                "commit.gpgSign=false",
                "-c",
                "tag.gpgSign=false",
                "-c",
                "core.autocrlf=false",
                "-c",
                "safe.directory=*",
            ])
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .env_remove("GIT_OBJECT_DIRECTORY")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", AUTHOR_NAME)
            .env("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL)
            .env("GIT_COMMITTER_NAME", AUTHOR_NAME)
            .env("GIT_COMMITTER_EMAIL", AUTHOR_EMAIL)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .env("LC_ALL", "C");
        let out = crate::servers::run_command(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn require_work_tree(&self) -> Result<(), ServerError> {
        if self.bare {
            return Err(ServerError::InvalidArgument(format!(
                "{} is a bare repository: it has no work tree",
                self.path.display()
            )));
        }
        Ok(())
    }

    fn work_path(&self, rel: &str) -> Result<PathBuf, ServerError> {
        self.require_work_tree()?;
        Ok(self.path.join(checked_name(rel)?))
    }

    /// Writes a file in the work tree (creating directories); stage it with [`commit`](Self::commit).
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> Result<(), ServerError> {
        let path = self.work_path(rel)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ServerError::io("create directory", parent, e))?;
        }
        std::fs::write(&path, contents).map_err(|e| ServerError::io("write", &path, e))
    }

    /// Writes a symbolic link in the work tree pointing at `target`.
    pub fn symlink(&self, rel: &str, target: &str) -> Result<(), ServerError> {
        let path = self.work_path(rel)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ServerError::io("create directory", parent, e))?;
        }
        std::os::unix::fs::symlink(target, &path).map_err(|e| ServerError::io("symlink", &path, e))
    }

    /// Removes a file or directory from the work tree.
    pub fn remove(&self, rel: &str) -> Result<(), ServerError> {
        let path = self.work_path(rel)?;
        let result = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.map_err(|e| ServerError::io("remove", &path, e))
    }

    /// Stages every change in the work tree and commits it (an empty commit when nothing
    /// changed); returns the commit id (40 hex digits).
    pub fn commit(&self, message: &str) -> Result<String, ServerError> {
        self.require_work_tree()?;
        self.git(["add", "--all"])?;
        self.tick.fetch_add(1, Ordering::SeqCst);
        self.git(["commit", "--quiet", "--allow-empty", "-m", message])?;
        self.head()
    }

    /// The commit `HEAD` points at.
    pub fn head(&self) -> Result<String, ServerError> {
        self.rev_parse("HEAD")
    }

    /// Resolves a revision to an object id, as given: an annotated tag resolves to the tag
    /// object; `v1.0.0^{commit}` resolves to its commit.
    pub fn rev_parse(&self, rev: &str) -> Result<String, ServerError> {
        Ok(self
            .git(["rev-parse", "--verify", "--quiet", rev])?
            .trim()
            .to_string())
    }

    /// Creates branch `name` at `HEAD` without switching to it.
    pub fn branch(&self, name: &str) -> Result<(), ServerError> {
        self.git(["branch", "--", name]).map(drop)
    }

    /// Switches the work tree to an existing branch.
    pub fn switch(&self, name: &str) -> Result<(), ServerError> {
        self.git(["switch", "--quiet", name]).map(drop)
    }

    /// Creates branch `name` at `HEAD` and switches to it.
    pub fn switch_new(&self, name: &str) -> Result<(), ServerError> {
        self.git(["switch", "--quiet", "-c", name]).map(drop)
    }

    /// Creates an orphan branch `name` (no parent, empty index) and switches to it.
    pub fn switch_orphan(&self, name: &str) -> Result<(), ServerError> {
        self.git(["switch", "--quiet", "--orphan", name]).map(drop)
    }

    /// Creates a lightweight tag at `HEAD`.
    pub fn tag(&self, name: &str) -> Result<(), ServerError> {
        self.git(["tag", "--", name]).map(drop)
    }

    /// Creates a lightweight tag at `HEAD` for each semver name (`["v1.0.0", "v1.2.0-rc.1"]`).
    pub fn tags<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<(), ServerError> {
        names.into_iter().try_for_each(|name| self.tag(name))
    }

    /// Creates an annotated tag at `HEAD`; returns the tag object's id.
    pub fn tag_annotated(&self, name: &str, message: &str) -> Result<String, ServerError> {
        self.tick.fetch_add(1, Ordering::SeqCst);
        self.git(["tag", "--annotate", "-m", message, "--", name])?;
        self.rev_parse(&format!("refs/tags/{name}"))
    }

    /// Points an arbitrary ref (`refs/pull/1/head`) at `target` (a commit id or revision).
    pub fn set_ref(&self, refname: &str, target: &str) -> Result<(), ServerError> {
        self.git(["update-ref", refname, target]).map(drop)
    }

    /// Deletes a ref (branch `refs/heads/x`, tag `refs/tags/x`, or any other).
    pub fn delete_ref(&self, refname: &str) -> Result<(), ServerError> {
        self.git(["update-ref", "-d", refname]).map(drop)
    }

    /// Records a submodule at `rel` pointing at `commit` of the repository at `url`, and writes
    /// `.gitmodules`; commit afterwards with [`commit`](Self::commit). The URL is recorded as
    /// given (the URL clients will fetch, such as a [`crate::servers::GitHttpServer`] URL); no
    /// network access happens here.
    pub fn add_submodule(&self, rel: &str, url: &str, commit: &str) -> Result<(), ServerError> {
        let path = self.work_path(rel)?;
        if !(commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(ServerError::InvalidArgument(format!(
                "submodule commit {commit:?} must be a full 40-hex object id"
            )));
        }
        let gitmodules = self.path.join(".gitmodules");
        let gitmodules_arg = gitmodules.as_os_str();
        for (key, value) in [("path", rel), ("url", url)] {
            self.git([
                OsStr::new("config"),
                OsStr::new("--file"),
                gitmodules_arg,
                OsStr::new(&format!("submodule.{rel}.{key}")),
                OsStr::new(value),
            ])?;
        }
        std::fs::create_dir_all(&path)
            .map_err(|e| ServerError::io("create directory", &path, e))?;
        self.git([
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{commit},{rel}"),
        ])?;
        Ok(())
    }

    /// Clones this repository into `dest` with the git CLI (a plain local clone).
    pub fn clone_to(&self, dest: impl AsRef<Path>) -> Result<GitRepo, ServerError> {
        let dest = dest.as_ref();
        self.git([
            OsStr::new("clone"),
            OsStr::new("--quiet"),
            OsStr::new("--no-local"),
            self.path.as_os_str(),
            dest.as_os_str(),
        ])?;
        Ok(Self::open_with(&self.git, dest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(fixture: &GitFixture) -> (GitRepo, Vec<String>) {
        let repo = fixture.repo("app").expect("repo");
        repo.write("a.yaml", "a: 1\n").expect("write");
        let c1 = repo.commit("one").expect("commit");
        repo.tag("v1.0.0").expect("tag");
        repo.switch_new("dev").expect("branch");
        repo.write("dir/b.yaml", "b: 2\n").expect("write");
        let c2 = repo.commit("two").expect("commit");
        let tag = repo.tag_annotated("v2.0.0", "two").expect("annotated");
        (repo, vec![c1, c2, tag])
    }

    #[test]
    fn same_steps_give_the_same_commit_ids() {
        let a = GitFixture::new().expect("fixture");
        let b = GitFixture::new().expect("fixture");
        let (_, ids_a) = build(&a);
        let (_, ids_b) = build(&b);
        assert_eq!(ids_a, ids_b);
        assert!(ids_a.iter().all(|id| id.len() == 40));
        assert_ne!(ids_a[0], ids_a[1]);
    }

    #[test]
    fn tags_refs_and_branches_resolve() {
        let fixture = GitFixture::new().expect("fixture");
        let (repo, ids) = build(&fixture);
        assert_eq!(repo.rev_parse("v1.0.0").expect("lightweight"), ids[0]);
        assert_eq!(repo.rev_parse("v2.0.0").expect("annotated"), ids[2]);
        assert_eq!(repo.rev_parse("v2.0.0^{commit}").expect("peeled"), ids[1]);
        assert_eq!(repo.rev_parse("main").expect("main"), ids[0]);
        repo.set_ref("refs/pull/1/head", &ids[1]).expect("ref");
        assert_eq!(repo.rev_parse("refs/pull/1/head").expect("pull"), ids[1]);
        assert!(repo.rev_parse("no-such-branch").is_err());
        assert!(repo.write("../escape", "x").is_err());
    }

    #[test]
    fn publish_mirrors_every_ref_and_head() {
        let fixture = GitFixture::new().expect("fixture");
        let (repo, ids) = build(&fixture);
        repo.set_ref("refs/pull/7/head", &ids[0]).expect("ref");
        let bare_path = fixture.publish(&repo, "app.git").expect("publish");
        assert!(bare_path.starts_with(fixture.serve_dir()));
        let bare = GitRepo::open(&bare_path).expect("open");
        assert_eq!(bare.rev_parse("refs/heads/dev").expect("dev"), ids[1]);
        assert_eq!(bare.rev_parse("refs/tags/v2.0.0").expect("tag"), ids[2]);
        assert_eq!(bare.rev_parse("refs/pull/7/head").expect("pull"), ids[0]);
        // The work repository is on `dev`, so the bare HEAD is too.
        assert_eq!(
            bare.git(["symbolic-ref", "HEAD"]).expect("HEAD").trim(),
            "refs/heads/dev"
        );

        // Re-publishing follows deletions and new commits.
        repo.delete_ref("refs/tags/v1.0.0").expect("delete");
        let c3 = repo.commit("three").expect("commit");
        fixture.publish(&repo, "app.git").expect("publish again");
        assert!(bare.rev_parse("refs/tags/v1.0.0").is_err());
        assert_eq!(bare.rev_parse("refs/heads/dev").expect("dev"), c3);
    }

    #[test]
    fn submodule_is_recorded_as_a_gitlink() {
        let fixture = GitFixture::new().expect("fixture");
        let lib = fixture.repo("lib").expect("lib");
        lib.write("lib.txt", "lib\n").expect("write");
        let lib_commit = lib.commit("lib").expect("commit");
        let app = fixture.repo("app").expect("app");
        app.write("main.txt", "main\n").expect("write");
        app.add_submodule("vendor/lib", &lib.file_url(), &lib_commit)
            .expect("submodule");
        app.commit("add submodule").expect("commit");
        let tree = app.git(["ls-tree", "HEAD", "vendor/lib"]).expect("ls-tree");
        assert!(
            tree.starts_with(&format!("160000 commit {lib_commit}")),
            "{tree}"
        );
        let modules = std::fs::read_to_string(app.path().join(".gitmodules")).expect("read");
        assert!(modules.contains(&lib.file_url()), "{modules}");

        // A real clone with --recurse-submodules checks it out.
        let clone_dir = fixture.path().join("clone");
        app.git([
            OsStr::new("clone"),
            OsStr::new("--quiet"),
            OsStr::new("--recurse-submodules"),
            app.path().as_os_str(),
            clone_dir.as_os_str(),
        ])
        .expect("clone");
        assert_eq!(
            std::fs::read_to_string(clone_dir.join("vendor/lib/lib.txt")).expect("submodule file"),
            "lib\n"
        );
    }

    #[test]
    fn missing_git_names_the_package() {
        let err = GitFixture::with_git("/nonexistent/git").expect_err("no git there");
        assert!(matches!(err, ServerError::MissingBinary { ref package, .. } if package == "git"));
    }
}
