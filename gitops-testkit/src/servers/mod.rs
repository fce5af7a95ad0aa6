//! Launchers for real servers bound to `127.0.0.1`, stopped and cleaned up on drop.
//!
//! Every launcher:
//!
//! - binds `127.0.0.1` on a free port and works in its own temporary directory, so tests can run
//!   in parallel (one process per test under nextest, or many threads under `cargo test`);
//! - is ready-checked before `start` returns (the port accepts connections, and where the
//!   protocol allows it, answers a request);
//! - stops its server (the whole process group, so `git daemon`'s and `sshd`'s per-connection
//!   children go too) and removes its temporary directory when dropped;
//! - fails with [`ServerError::MissingBinary`], naming the package to install, when its binary is
//!   absent, and with the tail of the server's log when the server does not come up.
//!
//! The launchers are synchronous: `start` blocks until the server is ready, and `Drop` blocks
//! until it is gone. They work from plain `#[test]`s and from inside a tokio runtime alike (the
//! in-process HTTP servers run on a dedicated thread with their own runtime).
//!
//! | launcher | server | URL |
//! |---|---|---|
//! | [`GitHttpServer`] | `git http-backend` (CGI) behind an in-process HTTP server; Basic auth, bearer token, TLS, client certificates | `http(s)://127.0.0.1:PORT/<repo>` |
//! | [`GitDaemon`] | `git daemon` | `git://127.0.0.1:PORT/<repo>` |
//! | [`SshGitServer`] | `sshd` with its own config, host key and client key; a forced command serves only git | `ssh://USER@127.0.0.1:PORT/<repo>` |
//! | [`OciRegistry`] | Debian's `docker-registry` (distribution v2); htpasswd auth, registry token auth (in-process token server), TLS | `http(s)://127.0.0.1:PORT` |
//! | [`HelmRepoServer`] | static files (`index.yaml`, chart archives) over HTTP; Basic auth, TLS | `http(s)://127.0.0.1:PORT/` |
//! | [`S3Server`] | moto in server mode, with a bucket created; IAM signature checks on request | `http://127.0.0.1:PORT` |
//! | [`Socks5Proxy`] | an in-process SOCKS5 proxy (`CONNECT`, optional username/password), recording connections | `socks5://127.0.0.1:PORT` |
//!
//! ```no_run
//! use gitops_testkit::fixture::GitFixture;
//! use gitops_testkit::servers::GitHttpServer;
//!
//! # fn main() -> Result<(), gitops_testkit::servers::ServerError> {
//! let fixture = GitFixture::new()?;
//! let repo = fixture.repo("app")?;
//! repo.write("deploy/app.yaml", "kind: ConfigMap\n")?;
//! let commit = repo.commit("add app")?;
//! fixture.publish(&repo, "app.git")?;
//!
//! let server = GitHttpServer::builder()
//!     .basic_auth("git", "s3cret")
//!     .tls()
//!     .start(fixture.serve_dir())?;
//! let url = server.url_for("app.git"); // https://127.0.0.1:PORT/app.git
//! let ca = server.ca_pem_path();       // Some(path to the CA certificate to trust)
//! # let _ = (commit, url, ca);
//! # Ok(()) }
//! ```

mod error;
mod git_daemon;
mod git_http;
mod helm;
mod http;
mod process;
mod registry;
mod s3;
mod socks;
mod ssh;
mod tls;
mod tls_front;

pub use error::ServerError;
pub use git_daemon::{GitDaemon, GitDaemonBuilder};
pub use git_http::{GitHttpServer, GitHttpServerBuilder};
pub use helm::{HelmRepoServer, HelmRepoServerBuilder};
pub use http::RecordedRequest;
pub use process::free_port;
pub use registry::{OciRegistry, OciRegistryBuilder};
pub use s3::{S3Server, S3ServerBuilder};
pub use socks::{Socks5Proxy, Socks5ProxyBuilder, SocksConnection};
pub use ssh::{SshGitServer, SshGitServerBuilder, SshKeyType};
pub use tls::{IssuedCert, TestCa};

/// The address every launcher binds.
pub const LOCALHOST: std::net::Ipv4Addr = std::net::Ipv4Addr::LOCALHOST;

pub(crate) use process::run_command;

/// Finds the `git` binary (a path, or a name on `PATH`), naming the `git` package when missing.
pub(crate) fn resolve_git(git: &std::path::Path) -> Result<std::path::PathBuf, ServerError> {
    process::resolve_binary(git, process::GIT)
}
