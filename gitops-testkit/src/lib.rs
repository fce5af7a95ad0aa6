//! # gitops-testkit: real servers and an in-process Kubernetes API server for tests
//!
//! Tests of a GitOps toolkit should talk to the servers users have, not to mocks. This crate
//! starts them on `127.0.0.1`, on free ports, ready-checked before the launcher returns, and
//! stops and cleans them up on drop:
//!
//! - Git: smart HTTP through `git http-backend` (Basic auth, bearer tokens, TLS),
//!   `git daemon`, and `sshd` with its own host key and a `known_hosts` line;
//! - an OCI registry (Debian's `docker-registry`), a Helm repository over HTTP, an S3 server;
//! - `GitFixture`, which builds repositories with commits, branches, tags and submodules.
//!
//! A launcher whose binary is missing fails with the name of the package to install.
//! [`cluster::TestCluster`] is an in-process Kubernetes API server with kube-apiserver's
//! semantics (discovery, watch, server-side apply, CRDs); `FIDELITY.md` lists what it covers.

pub mod cluster;
pub mod fixture;
pub mod servers;

pub use cluster::{TestCluster, TestClusterOptions};
