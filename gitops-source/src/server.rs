//! `ArtifactServer`: serves an [`ArtifactStore`] over HTTP, as
//! source-controller's file server does (plain, no auth).
//!
//! `GET` and `HEAD` of `/<kind>/<namespace>/<name>/<file>` with range and conditional requests
//! (tower-http's `ServeDir`). Nothing else: no directory listings, no index pages, no hidden
//! files (locks and temporary files start with `.`), no symlinks, no `..` — a request that is
//! not exactly a regular file in the store gets 404.
//!
//! Flux's stable links (`status.url`: `<kind>/<ns>/<name>/latest.tar.gz`, `.../index.yaml`)
//! are served from the store's alias records ([`ArtifactStore::resolve_alias`]), never by
//! following a symlink: a request for a name that is not a file but an alias of the object is
//! answered with the current artifact.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeDir;

use crate::store::ArtifactStore;

/// An HTTP server for the artifacts of one store.
#[derive(Debug, Clone)]
pub struct ArtifactServer {
    store: ArtifactStore,
}

impl ArtifactServer {
    /// A server for `store`.
    pub fn new(store: &ArtifactStore) -> Self {
        ArtifactServer {
            store: store.clone(),
        }
    }

    /// The axum router, to mount into a larger application.
    pub fn router(&self) -> Router {
        let store = self.store.clone();
        // ServeDir answers GET/HEAD with ranges and conditional requests; precompressed
        // siblings are off by default.
        let files = ServeDir::new(self.store.root()).append_index_html_on_directories(false);
        Router::new()
            .fallback_service(files)
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                let store = store.clone();
                async move { guard(&store, req, next).await }
            }))
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr: Option<SocketAddr> = listener.local_addr().ok();
        tracing::info!(?addr, root = %self.store.root().display(), "serving artifacts");
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

/// The decoded request path as a relative path of safe components, or `None`.
fn safe_path(raw: &str) -> Option<PathBuf> {
    let decoded = percent_decode(raw.strip_prefix('/')?)?;
    if decoded.is_empty() || decoded.ends_with('/') || decoded.contains(['\\', '\0']) {
        return None;
    }
    let mut out = PathBuf::new();
    for segment in decoded.split('/') {
        if segment.is_empty() || segment.starts_with('.') {
            return None;
        }
        out.push(segment);
    }
    out.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether every component from the root to `relative` is a real directory and the last one a
/// regular file (no symlinks anywhere).
fn is_plain_file(root: &Path, relative: &Path) -> bool {
    let mut current = root.to_path_buf();
    let count = relative.components().count();
    for (i, component) in relative.components().enumerate() {
        current.push(component);
        let Ok(meta) = std::fs::symlink_metadata(&current) else {
            return false;
        };
        let last = i + 1 == count;
        if (last && !meta.is_file()) || (!last && !meta.is_dir()) {
            return false;
        }
    }
    true
}

/// The request path of a relative store path, each segment percent-encoded but for the
/// characters that never need it.
fn request_path(relative: &Path) -> Option<String> {
    let mut out = String::new();
    for component in relative.components() {
        let Component::Normal(segment) = component else {
            return None;
        };
        out.push('/');
        for b in segment.to_str()?.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~+@".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    Some(out)
}

async fn guard(store: &ArtifactStore, mut req: Request<Body>, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n").into_response();
    }
    let Some(relative) = safe_path(req.uri().path()) else {
        return not_found();
    };
    let root = store.root();
    if is_plain_file(root, &relative) {
        return next.run(req).await;
    }
    // A stable name: served as the artifact its alias record names (checked like any file).
    let Some(target) = store
        .resolve_alias(&relative)
        .filter(|target| is_plain_file(root, target))
    else {
        return not_found();
    };
    let Some(uri) = request_path(&target).and_then(|p| p.parse::<axum::http::Uri>().ok()) else {
        return not_found();
    };
    *req.uri_mut() = uri;
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_become_request_paths_that_sanitise_back() {
        for path in [
            "helmchart/ns/app/app-1.0.0+abc.tgz",
            "bucket/ns/b/a b%.tar.gz",
        ] {
            let encoded = request_path(Path::new(path)).expect("encodable");
            assert_eq!(safe_path(&encoded), Some(PathBuf::from(path)), "{encoded}");
        }
        assert_eq!(
            request_path(Path::new("bucket/ns/b/a b.tar.gz")).as_deref(),
            Some("/bucket/ns/b/a%20b.tar.gz")
        );
    }

    #[test]
    fn request_paths_are_sanitised() {
        assert_eq!(
            safe_path("/a/b/c.tar.gz"),
            Some(PathBuf::from("a/b/c.tar.gz"))
        );
        for bad in [
            "/",
            "/a/",
            "/../etc/passwd",
            "/a/%2e%2e/b",
            "/a/.lock",
            "/a//b",
            "/a/%2Fb",
            "/%00",
            "/a\\b",
            "/a/%zz",
        ] {
            assert_eq!(safe_path(bad), None, "{bad}");
        }
    }
}
