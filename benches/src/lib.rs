//! Benches and comparison scripts for the GitOps Toolkit.
//!
//! Criterion benches live under `benches/`; scripts that measure us side by side with the tools
//! users know (`kubectl kustomize`, `helm template`, `git clone`) live under `scripts/`. Their
//! figures go into the README's Performance table together with the command that produced them.
