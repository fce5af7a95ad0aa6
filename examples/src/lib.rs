//! # gitops-examples: the toolkit assembled
//!
//! The `gitops` command-line tool (`src/bin/gitops`), and, as they land, the reference
//! controllers that speak Flux's own CRDs and the `gitops-manager` binary. Examples stay thin:
//! logic a third party would need too lives in the `gitops-*` crates.
