//! `TestCluster`: an in-process Kubernetes API server that follows the documented API semantics.
