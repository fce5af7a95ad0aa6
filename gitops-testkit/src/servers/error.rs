use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// What went wrong while preparing, starting or talking to a test server or fixture.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A binary the server needs is not installed.
    #[error("`{binary}` not found: install it with `{installer} {package}`")]
    MissingBinary {
        /// The binary (a name searched on `PATH`, or the path that was checked).
        binary: String,
        /// The package that provides it.
        package: String,
        /// How that package is installed (`apt-get install` or `pip install`).
        installer: &'static str,
    },
    /// The server's process could not be spawned.
    #[error("{server}: cannot spawn `{binary}`: {source}")]
    Spawn {
        /// Which launcher.
        server: &'static str,
        /// The binary that was spawned.
        binary: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server did not become ready before the deadline.
    #[error("{server}: not ready on {addr} after {waited:?}; last lines of its log:\n{log_tail}")]
    StartTimeout {
        /// Which launcher.
        server: &'static str,
        /// The address that was probed.
        addr: String,
        /// How long the launcher waited.
        waited: Duration,
        /// The last lines the server wrote.
        log_tail: String,
    },
    /// The server exited while starting.
    #[error("{server}: exited while starting ({status}); last lines of its log:\n{log_tail}")]
    Exited {
        /// Which launcher.
        server: &'static str,
        /// How it exited.
        status: ExitStatus,
        /// The last lines the server wrote.
        log_tail: String,
    },
    /// A helper command (git, ssh-keygen, htpasswd) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line (program and arguments; no secrets are passed as arguments).
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// What it wrote on stderr, trimmed.
        stderr: String,
    },
    /// Reading or writing a file or directory failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done ("write", "create directory", ...).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A network or OS operation without a path failed (binding a port, starting a thread).
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Generating keys or certificates, or configuring TLS, failed.
    #[error("TLS setup: {what}: {detail}")]
    Tls {
        /// What was being generated or configured.
        what: &'static str,
        /// The underlying error, as text.
        detail: String,
    },
    /// The server came up but setting it up (creating a bucket, ...) failed.
    #[error("{server}: {what}: {detail}")]
    Setup {
        /// Which launcher.
        server: &'static str,
        /// What was being set up.
        what: String,
        /// What the server answered.
        detail: String,
    },
    /// An argument given to a fixture or launcher is unusable (a path escaping the repository, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl ServerError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ServerError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn tls(what: &'static str, err: impl std::fmt::Display) -> Self {
        ServerError::Tls {
            what,
            detail: err.to_string(),
        }
    }
}
