//! Helm's `lookup` function against a cluster.
//!
//! `helm template` never contacts a cluster: `lookup` returns an empty map, and so does this
//! engine unless [`RenderOptions::lookup`](super::RenderOptions::lookup) holds a [`Lookup`].
//! With one, `lookup "v1" "ConfigMap" "ns" "name"` returns the object as the API server
//! serves it, `lookup "v1" "Secret" "ns" ""` the list (`items`, each with its `apiVersion` and
//! `kind` as client-go's unstructured decoding fills them in), and a missing object an empty
//! map, which is what Helm does on install and upgrade.
//!
//! [`KubeLookup`] (cargo feature `cluster-lookup`) asks a Kubernetes API server with kube.

use std::fmt;

/// Why a lookup failed (a missing object is not a failure: it is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The API server has no such group/version, or no such kind in it.
    #[error("unable to get apiresource from unstructured: {api_version}, Kind={kind}: {message}")]
    Discovery {
        /// The `apiVersion` asked for.
        api_version: String,
        /// The kind asked for.
        kind: String,
        /// What discovery said.
        message: String,
    },
    /// The request failed (other than with 404).
    #[error("lookup {kind} {namespace}/{name} ({api_version}): {message}")]
    Request {
        /// The `apiVersion` asked for.
        api_version: String,
        /// The kind asked for.
        kind: String,
        /// The namespace asked for (may be empty).
        namespace: String,
        /// The name asked for (empty for a list).
        name: String,
        /// The client's message.
        message: String,
    },
    /// The client is gone or could not be started.
    #[error("lookup client: {0}")]
    Client(String),
}

/// What the engine calls for `lookup apiVersion kind namespace name`.
///
/// Rendering is synchronous: an implementation blocks until it has the answer.
pub trait Lookup: fmt::Debug {
    /// The object (`name` not empty) or the list (`name` empty) as JSON, `None` when the API
    /// server answers 404. `namespace` is ignored for cluster-scoped kinds, and an empty one
    /// means every namespace, as in Helm.
    fn lookup(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, LookupError>;
}

/// Helm's list content: client-go's unstructured list decoding gives every item the list's
/// `apiVersion` and the list's kind without `List` when the server left them out.
pub fn fill_list_items(list: &mut serde_json::Value) {
    let api_version = list.get("apiVersion").cloned();
    let item_kind = list
        .get("kind")
        .and_then(|k| k.as_str())
        .map(|k| k.strip_suffix("List").unwrap_or(k).to_string());
    let Some(items) = list.get_mut("items").and_then(|i| i.as_array_mut()) else {
        return;
    };
    for item in items {
        let Some(obj) = item.as_object_mut() else {
            continue;
        };
        let has_kind = obj
            .get("kind")
            .and_then(|k| k.as_str())
            .is_some_and(|k| !k.is_empty());
        let has_version = obj
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .is_some_and(|k| !k.is_empty());
        if !has_kind && !has_version {
            if let Some(k) = &item_kind {
                obj.insert("kind".into(), serde_json::Value::from(k.as_str()));
            }
            if let Some(v) = &api_version {
                obj.insert("apiVersion".into(), v.clone());
            }
        }
    }
}

/// JSON as client-go's unstructured decoding gives it to templates: whole numbers are
/// `int64`, the others `float64`.
pub fn unstructured_value(v: &serde_json::Value) -> super::Value {
    use super::Value;
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => {
            Value::from(a.iter().map(unstructured_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(o) => Value::from(
            o.iter()
                .map(|(k, v)| (k.clone(), unstructured_value(v)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
    }
}

#[cfg(feature = "cluster-lookup")]
pub use kube_lookup::KubeLookup;

#[cfg(feature = "cluster-lookup")]
mod kube_lookup {
    use std::sync::mpsc;

    use super::{Lookup, LookupError, fill_list_items};

    struct Query {
        api_version: String,
        kind: String,
        namespace: String,
        name: String,
        reply: mpsc::Sender<Result<Option<serde_json::Value>, LookupError>>,
    }

    /// A [`Lookup`] that asks a Kubernetes API server through kube.
    ///
    /// The blocking-versus-async question: rendering is synchronous and may run anywhere (a
    /// plain thread, `spawn_blocking`, or even a runtime worker), so this client does not
    /// borrow the caller's runtime. It owns one thread running a single-threaded tokio runtime
    /// on which its `kube::Client` was built; each lookup is a message to that thread and the
    /// render waits for the reply. No `block_on` inside an async context, no
    /// `block_in_place` (which panics on a current-thread runtime), no deadlock when the
    /// caller's runtime is busy. Dropping the `KubeLookup` stops the thread.
    pub struct KubeLookup {
        queries: mpsc::Sender<Query>,
    }

    impl std::fmt::Debug for KubeLookup {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("KubeLookup").finish_non_exhaustive()
        }
    }

    impl KubeLookup {
        /// Starts the client thread for the cluster `config` points at.
        pub fn new(config: kube::Config) -> Result<Self, LookupError> {
            let (queries, rx) = mpsc::channel::<Query>();
            let (ready_tx, ready_rx) = mpsc::channel::<Result<(), LookupError>>();
            std::thread::Builder::new()
                .name("helm-lookup".into())
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(LookupError::Client(e.to_string())));
                            return;
                        }
                    };
                    let client = match rt.block_on(async { kube::Client::try_from(config) }) {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready_tx.send(Err(LookupError::Client(e.to_string())));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    while let Ok(q) = rx.recv() {
                        let answer = rt.block_on(lookup(
                            &client,
                            &q.api_version,
                            &q.kind,
                            &q.namespace,
                            &q.name,
                        ));
                        let _ = q.reply.send(answer);
                    }
                })
                .map_err(|e| LookupError::Client(e.to_string()))?;
            ready_rx
                .recv()
                .map_err(|_| LookupError::Client("the lookup thread stopped".into()))??;
            Ok(KubeLookup { queries })
        }
    }

    impl Lookup for KubeLookup {
        fn lookup(
            &self,
            api_version: &str,
            kind: &str,
            namespace: &str,
            name: &str,
        ) -> Result<Option<serde_json::Value>, LookupError> {
            let (reply, answer) = mpsc::channel();
            self.queries
                .send(Query {
                    api_version: api_version.into(),
                    kind: kind.into(),
                    namespace: namespace.into(),
                    name: name.into(),
                    reply,
                })
                .map_err(|_| LookupError::Client("the lookup thread stopped".into()))?;
            answer
                .recv()
                .map_err(|_| LookupError::Client("the lookup thread stopped".into()))?
        }
    }

    fn is_not_found(e: &kube::Error) -> bool {
        matches!(e, kube::Error::Api(s) if s.is_not_found())
    }

    /// Helm's `lookup`: discovery of the kind's resource, then GET or LIST.
    async fn lookup(
        client: &kube::Client,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, LookupError> {
        let discovery = |message: String| LookupError::Discovery {
            api_version: api_version.into(),
            kind: kind.into(),
            message,
        };
        let resources = if api_version.contains('/') {
            client.list_api_group_resources(api_version).await
        } else {
            client.list_core_api_resources(api_version).await
        }
        .map_err(|e| discovery(e.to_string()))?;
        // A name with '/' is a subresource, which Helm skips.
        let Some(res) = resources
            .resources
            .iter()
            .find(|r| r.kind == kind && !r.name.contains('/'))
        else {
            return Err(discovery(format!(
                "the server has no kind {kind} in {api_version}"
            )));
        };
        let mut path = if api_version.contains('/') {
            format!("/apis/{api_version}")
        } else {
            format!("/api/{api_version}")
        };
        if res.namespaced && !namespace.is_empty() {
            path.push_str(&format!("/namespaces/{namespace}"));
        }
        path.push('/');
        path.push_str(&res.name);
        let request = kube::core::Request::new(path);
        let req = if name.is_empty() {
            request.list(&kube::api::ListParams::default())
        } else {
            request.get(name, &kube::api::GetParams::default())
        };
        let failed = |message: String| LookupError::Request {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            message,
        };
        let req = req.map_err(|e| failed(e.to_string()))?;
        match client.request::<serde_json::Value>(req).await {
            Ok(mut v) => {
                if name.is_empty() {
                    fill_list_items(&mut v);
                }
                Ok(Some(v))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_items_get_the_list_kind_and_version() {
        let mut v = serde_json::json!({
            "apiVersion": "v1", "kind": "SecretList", "metadata": {},
            "items": [{"metadata": {"name": "a"}}, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}}]
        });
        fill_list_items(&mut v);
        assert_eq!(v["items"][0]["kind"], "Secret");
        assert_eq!(v["items"][0]["apiVersion"], "v1");
        assert_eq!(v["items"][1]["metadata"]["name"], "b");
    }
}
