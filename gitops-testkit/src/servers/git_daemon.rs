//! `git daemon` serving bare repositories over `git://`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{
    GIT, ServerProcess, port_open, resolve_binary, start_with_port_retry, temp_dir,
};
use super::{LOCALHOST, ServerError};

const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Configures a [`GitDaemon`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct GitDaemonBuilder {
    git: PathBuf,
    push: bool,
}

impl Default for GitDaemonBuilder {
    fn default() -> Self {
        GitDaemonBuilder {
            git: PathBuf::from("git"),
            push: false,
        }
    }
}

impl GitDaemonBuilder {
    /// Accepts anonymous pushes (`--enable=receive-pack`); read-only by default.
    pub fn allow_push(mut self) -> Self {
        self.push = true;
        self
    }

    /// Uses this `git` binary (a path, or a name searched on `PATH`) instead of `git`.
    pub fn git_binary(mut self, git: impl Into<PathBuf>) -> Self {
        self.git = git.into();
        self
    }

    /// Starts `git daemon` for the bare repositories under `repos_dir`
    /// (`<repos_dir>/app.git` is `git://127.0.0.1:PORT/app.git`).
    pub fn start(self, repos_dir: impl AsRef<Path>) -> Result<GitDaemon, ServerError> {
        let git = resolve_binary(&self.git, GIT)?;
        let repos_dir = repos_dir.as_ref();
        let root = repos_dir
            .canonicalize()
            .map_err(|e| ServerError::io("open repositories directory", repos_dir, e))?;
        let dir = temp_dir("testkit-git-daemon-")?;
        let process = start_with_port_retry(|port| {
            let mut cmd = Command::new(&git);
            cmd.arg("daemon")
                .arg(format!("--base-path={}", root.display()))
                .arg("--export-all")
                .arg("--reuseaddr")
                .arg("--informative-errors")
                .arg("--log-destination=stderr")
                .arg("--verbose")
                .arg(format!("--listen={LOCALHOST}"))
                .arg(format!("--port={port}"))
                .arg(format!(
                    "--pid-file={}",
                    dir.path().join("daemon.pid").display()
                ));
            if self.push {
                cmd.arg("--enable=receive-pack");
            }
            cmd.arg(&root)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "safe.directory")
                .env("GIT_CONFIG_VALUE_0", "*");
            let log = dir.path().join(format!("daemon-{port}.log"));
            let mut process =
                ServerProcess::spawn("git-daemon", &mut cmd, &log).map_err(|e| (e, false))?;
            let addr = SocketAddr::from((LOCALHOST, port));
            match process.wait_ready(&addr.to_string(), READY_TIMEOUT, || port_open(addr)) {
                Ok(()) => Ok((process, port)),
                Err(e) => {
                    let raced = process.lost_port_race();
                    Err((e, raced))
                }
            }
        })?;
        let (process, port) = process;
        tracing::debug!(port, root = %root.display(), "git daemon ready");
        Ok(GitDaemon {
            process,
            port,
            root,
            _dir: dir,
        })
    }
}

/// `git daemon` on `127.0.0.1`, serving one directory of bare repositories over `git://`.
/// Stops (with its per-connection children) when dropped.
#[derive(Debug)]
pub struct GitDaemon {
    process: ServerProcess,
    port: u16,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl GitDaemon {
    /// A builder: push, git binary.
    pub fn builder() -> GitDaemonBuilder {
        GitDaemonBuilder::default()
    }

    /// Starts a read-only daemon for the bare repositories under `repos_dir`.
    pub fn start(repos_dir: impl AsRef<Path>) -> Result<Self, ServerError> {
        Self::builder().start(repos_dir)
    }

    /// `git://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("git://{}", self.addr())
    }

    /// The URL of one repository: `url_for("app.git")` is `git://127.0.0.1:PORT/app.git`.
    pub fn url_for(&self, repo: &str) -> String {
        format!("{}/{}", self.url(), repo.trim_start_matches('/'))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOCALHOST, self.port))
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of bare repositories being served (canonical path).
    pub fn repos_dir(&self) -> &Path {
        &self.root
    }

    /// The daemon's log so far (last lines).
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}
