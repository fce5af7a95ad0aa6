//! # gitops-apply: the third stage of the GitOps pipeline
//!
//! Makes a cluster match a set of rendered objects and says exactly what changed: server-side
//! apply in Flux's stages (CRDs, Namespaces and ClusterRoles first, then `*Class` kinds, then
//! the rest), drift detection by dry-run, field-manager takeover, an inventory with Flux's
//! entry ids and pruning of what left Git, kstatus health checks and waiting, and impersonation.
//! This is what `fluxcd/pkg/ssa` does for Flux's kustomize- and helm-controller, on kube-client.
//!
//! The crate's centre is the object-safe, async `Applier` trait, implemented by a
//! `ResourceManager` over a `kube::Client`.
//!
//! Status: the workspace scaffolding. The applier arrives with issue #7. See `STATUS.md`.
