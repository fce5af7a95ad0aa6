//! HTTP serving: connections, routing, discovery and the verbs.

use std::{
    collections::HashMap,
    convert::Infallible,
    hash::{BuildHasher, Hasher},
    sync::{
        Arc, Mutex, MutexGuard, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::body::Body;
use base64::Engine as _;
use bytes::Bytes;
use hyper::{Request, Response, body::Incoming, header};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::{
    Attributes, Authorizer, Fault, FaultAction, RequestRecord, TestClusterOptions, builtin, crd,
    patch,
    registry::{self, ResourceType},
    selectors::{FieldSelector, LabelSelector},
    shape::Shape,
    ssa,
    status::{self, ApiError},
    store::{Event, ObjKey, ResKey, State, obj_key},
};

/// The Kubernetes version the server reports.
pub const GIT_VERSION: &str = "v1.32.0";

/// Shared server state.
pub struct Inner {
    pub(crate) state: Mutex<State>,
    pub(crate) opts: TestClusterOptions,
    authorizer: RwLock<Arc<dyn Authorizer>>,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Vec<RequestRecord>>,
    shutdown: tokio::sync::watch::Sender<bool>,
    counter: AtomicU64,
    seed: u64,
    /// Wakes the controllers after every write.
    pub(crate) changed: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Now, RFC 3339 in seconds as `metav1.Time`.
pub fn now() -> String {
    let secs = jiff::Timestamp::now().as_second();
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl Inner {
    pub(crate) fn new(opts: TestClusterOptions) -> Self {
        let mut st = State::new(registry::builtins(), opts.history_limit);
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let inner_auth = opts.authorizer.clone();
        let ts = now();
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": format!("00000000-0000-4000-8000-{:012x}", (seed % 0xffff_ffff_ffff) ^ ns.len() as u64),
                             "creationTimestamp": ts, "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            st.put(&(String::new(), "namespaces".into()), obj);
        }
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "uid": format!("00000000-0000-4000-9000-{:012x}", seed % 0xffff_ffff_ffff),
                         "creationTimestamp": ts, "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "type": "ClusterIP", "sessionAffinity": "None",
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
            "status": {"loadBalancer": {}},
        });
        st.put(&(String::new(), "services".into()), svc);
        Inner {
            state: Mutex::new(st),
            opts,
            authorizer: RwLock::new(inner_auth),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            shutdown,
            counter: AtomicU64::new(1),
            seed,
            changed: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn set_authorizer(&self, a: Arc<dyn Authorizer>) {
        *self.authorizer.write().unwrap_or_else(|p| p.into_inner()) = a;
    }

    pub(crate) fn faults_mut(&self) -> MutexGuard<'_, Vec<Fault>> {
        lock(&self.faults)
    }

    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).clone()
    }

    pub(crate) fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    pub(crate) fn current_rv(&self) -> u64 {
        lock(&self.state).rv
    }

    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(crate) fn snapshot(&self) -> Vec<Value> {
        let st = lock(&self.state);
        let mut out = Vec::new();
        let mut keys: Vec<&ResKey> = st.objects.keys().collect();
        keys.sort();
        for k in keys {
            for v in st.objects[k].values() {
                out.push((**v).clone());
            }
        }
        out
    }

    pub(crate) fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    fn random(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write_u64(self.seed);
        h.write_u64(n);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.finish()
    }

    /// A fresh UUIDv4-shaped uid.
    pub(crate) fn uid(&self) -> String {
        let a = self.random();
        let b = self.random();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    fn generate_suffix(&self) -> String {
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut r = self.random();
        (0..5)
            .map(|_| {
                let c = ALPHA[(r % ALPHA.len() as u64) as usize] as char;
                r /= ALPHA.len() as u64;
                c
            })
            .collect()
    }

    pub(crate) fn alloc_ip(&self, st: &State) -> String {
        let used: Vec<String> = st
            .list(&(String::new(), "services".into()), "")
            .iter()
            .filter_map(|s| s["spec"]["clusterIP"].as_str().map(str::to_string))
            .collect();
        loop {
            let r = self.random();
            let ip = format!("10.96.{}.{}", (r >> 8) % 256, 2 + r % 250);
            if !used.contains(&ip) {
                return ip;
            }
        }
    }

    pub(crate) fn alloc_node_port(&self, st: &State) -> u64 {
        let used: Vec<u64> = st
            .list(&(String::new(), "services".into()), "")
            .iter()
            .flat_map(|s| {
                s["spec"]["ports"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| p["nodePort"].as_u64())
            })
            .collect();
        loop {
            let p = 30000 + self.random() % 2768;
            if !used.contains(&p) {
                return p;
            }
        }
    }
}

/// Accepts connections until the task is aborted.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    inner: Arc<Inner>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "test cluster accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        let inner = inner.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let inner = inner.clone();
                async move { Ok::<_, Infallible>(handle(inner, req).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => {
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                            .await;
                    }
                    Err(e) => tracing::debug!(error = %e, "test cluster TLS handshake failed"),
                },
                None => {
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                }
            }
        });
    }
}

/// The parsed request.
struct Ctx {
    method: String,
    path: String,
    raw_query: String,
    query: HashMap<String, String>,
    content_type: String,
    accept: String,
    user_agent: String,
    user: String,
    groups: Vec<String>,
    body: Bytes,
}

impl Ctx {
    fn q(&self, k: &str) -> &str {
        self.query.get(k).map(String::as_str).unwrap_or_default()
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.q(k), "true" | "1")
    }
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_status());
    if let Some(s) = e.retry_after
        && let Ok(v) = header::HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// A resource request.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    verb: &'static str,
    rt: ResourceType,
    namespace: String,
    name: String,
    sub: String,
}

impl Target {
    fn res(&self) -> ResKey {
        (self.rt.group.clone(), self.rt.plural.clone())
    }
    fn key(&self) -> ObjKey {
        (
            if self.rt.namespaced {
                self.namespace.clone()
            } else {
                String::new()
            },
            self.name.clone(),
        )
    }
}

fn not_found_path() -> ApiError {
    let mut e = ApiError::not_found("", "", "");
    e.message = "the server could not find the requested resource".into();
    e.kind = None;
    e
}

async fn handle(inner: Arc<Inner>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), 64 << 20).await {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::bad_request(format!("reading the body: {e}"))),
    };
    let hv = |h: header::HeaderName| {
        parts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    let query: HashMap<String, String> = raw_query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (url_decode(k), url_decode(v))
        })
        .collect();
    let token = hv(header::AUTHORIZATION);
    let (mut user, mut groups) = if token == format!("Bearer {}", super::ADMIN_TOKEN) {
        (
            super::ADMIN_USER.to_string(),
            vec![
                "system:masters".to_string(),
                "system:authenticated".to_string(),
            ],
        )
    } else {
        (
            "system:anonymous".to_string(),
            vec!["system:unauthenticated".to_string()],
        )
    };
    let mut ctx_path = parts.uri.path().to_string();
    if ctx_path.len() > 1 && ctx_path.ends_with('/') {
        ctx_path.pop();
    }
    // Impersonation.
    let imp_user = parts
        .headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let imp_groups: Vec<String> = parts
        .headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    if imp_user.is_some() || !imp_groups.is_empty() {
        let authz = inner
            .authorizer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(target_user) = imp_user else {
            return error_response(&ApiError::internal(
                "requested impersonation of groups without impersonating a user",
            ));
        };
        let check = |resource: &str, name: &str| -> Result<(), ApiError> {
            let a = Attributes {
                user: user.clone(),
                groups: groups.clone(),
                verb: "impersonate".into(),
                group: String::new(),
                resource: resource.into(),
                subresource: String::new(),
                namespace: String::new(),
                name: name.into(),
            };
            authz.authorize(&a).map_err(|_| {
                ApiError::forbidden(
                    "",
                    resource,
                    name,
                    &format!("User \"{user}\" cannot impersonate resource \"{resource}\" in API group \"\" at the cluster scope"),
                )
            })
        };
        let mut checks = vec![check("users", &target_user)];
        for g in &imp_groups {
            checks.push(check("groups", g));
        }
        if let Some(Err(e)) = checks.into_iter().find(Result::is_err) {
            lock(&inner.log).push(RequestRecord {
                verb: "impersonate".into(),
                path: ctx_path.clone(),
                query: raw_query.clone(),
                user: user.clone(),
                status: 403,
            });
            return error_response(&e);
        }
        user = target_user;
        groups = imp_groups;
        if user != "system:anonymous" && !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
    }
    let ctx = Ctx {
        method: parts.method.as_str().to_string(),
        path: ctx_path,
        raw_query,
        query,
        content_type: hv(header::CONTENT_TYPE),
        accept: hv(header::ACCEPT),
        user_agent: hv(header::USER_AGENT),
        user,
        groups,
        body,
    };
    let (verb, resp) = route(&inner, &ctx).await;
    lock(&inner.log).push(RequestRecord {
        verb,
        path: ctx.path.clone(),
        query: ctx.raw_query.clone(),
        user: ctx.user.clone(),
        status: resp.status().as_u16(),
    });
    resp
}

async fn route(inner: &Arc<Inner>, ctx: &Ctx) -> (String, Response<Body>) {
    let segs: Vec<&str> = ctx.path.split('/').filter(|s| !s.is_empty()).collect();
    let method = ctx.method.clone();
    let nonres = |v: Value| (method.clone(), json_response(200, &v));
    match segs.as_slice() {
        ["version"] => {
            return nonres(
                json!({"major": "1", "minor": "32", "gitVersion": GIT_VERSION, "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.3", "compiler": "gc", "platform": "linux/amd64"}),
            );
        }
        ["healthz"] | ["readyz"] | ["livez"] => {
            return (
                method.clone(),
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                    .body(Body::from("ok"))
                    .unwrap_or_else(|_| Response::new(Body::empty())),
            );
        }
        ["api"] => return (method.clone(), discovery_root(inner, ctx, true)),
        ["apis"] => return (method.clone(), discovery_root(inner, ctx, false)),
        ["api", "v1"] => return nonres(resource_list(inner, "", "v1")),
        ["apis", g] => {
            let st = inner.lock_state();
            return match group_entry(&st, g) {
                Some(v) => {
                    let mut v = v;
                    v["kind"] = json!("APIGroup");
                    v["apiVersion"] = json!("v1");
                    nonres(v)
                }
                None => (method.clone(), error_response(&not_found_path())),
            };
        }
        ["apis", g, v] => {
            let exists = inner
                .lock_state()
                .types
                .iter()
                .any(|t| t.group == *g && t.version == *v);
            if !exists {
                return (method.clone(), error_response(&not_found_path()));
            }
            return nonres(resource_list(inner, g, v));
        }
        ["openapi", "v3"] => return nonres(openapi_v3_root(inner)),
        ["openapi", "v3", rest @ ..] => {
            let gv = rest.join("/");
            return match openapi_v3_doc(inner, &gv) {
                Some(doc) => nonres(doc),
                None => (method.clone(), error_response(&not_found_path())),
            };
        }
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return (method.clone(), error_response(&not_found_path())),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, ..]
            if !(group.is_empty() && matches!(*r, "status" | "finalize") && rest.len() == 3) =>
        {
            (ns.to_string(), &rest[2..])
        }
        _ => (String::new(), rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, "", ""),
        [p, n] => (*p, *n, ""),
        [p, n, s] => (*p, *n, *s),
        _ => return (method.clone(), error_response(&not_found_path())),
    };
    let rt = {
        let st = inner.lock_state();
        match st.find_type(group, version, plural) {
            Some(t) => t.clone(),
            None => return (method.clone(), error_response(&not_found_path())),
        }
    };
    if !(sub.is_empty()
        || sub == "status" && rt.status_subresource
        || sub == "finalize" && rt.kind == "Namespace"
        || sub == "scale" && rt.scale_subresource())
    {
        return (method.clone(), error_response(&not_found_path()));
    }
    if !namespace.is_empty() && !rt.namespaced {
        return (method.clone(), error_response(&not_found_path()));
    }
    let verb: &'static str = match (ctx.method.as_str(), name.is_empty()) {
        ("GET", true) if ctx.flag("watch") => "watch",
        ("GET", true) => "list",
        ("GET", false) if ctx.flag("watch") => "watch",
        ("GET", false) => "get",
        ("POST", true) => "create",
        ("PUT", false) => "update",
        ("PATCH", false) => "patch",
        ("DELETE", false) => "delete",
        ("DELETE", true) => "deletecollection",
        _ => {
            return (
                ctx.method.clone(),
                error_response(&ApiError::method_not_allowed(
                    &ctx.method,
                    &rt.group,
                    &rt.plural,
                )),
            );
        }
    };
    let t = Target {
        verb,
        rt,
        namespace,
        name: name.to_string(),
        sub: sub.to_string(),
    };
    // Authorization.
    let authz = inner
        .authorizer
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let attrs = Attributes {
        user: ctx.user.clone(),
        groups: ctx.groups.clone(),
        verb: verb.to_string(),
        group: t.rt.group.clone(),
        resource: t.rt.plural.clone(),
        subresource: t.sub.clone(),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
    };
    if authz.authorize(&attrs).is_err() {
        let res = if t.sub.is_empty() {
            t.rt.plural.clone()
        } else {
            format!("{}/{}", t.rt.plural, t.sub)
        };
        let scope = if t.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{}\"", t.namespace)
        };
        let why = format!(
            "User \"{}\" cannot {verb} resource \"{res}\" in API group \"{}\" {scope}",
            ctx.user, t.rt.group
        );
        return (
            verb.into(),
            error_response(&ApiError::forbidden(
                &t.rt.group,
                &t.rt.plural,
                &t.name,
                &why,
            )),
        );
    }
    // Faults.
    let mut close_watch = None;
    let fault = {
        let mut faults = inner.faults_mut();
        let pos = faults.iter().position(|f| {
            f.verb.as_deref().is_none_or(|v| v == verb)
                && f.resource.as_deref().is_none_or(|r| r == t.rt.plural)
                && f.name.as_deref().is_none_or(|n| n == t.name)
                && f.times != Some(0)
        });
        pos.map(|i| {
            let f = faults[i].clone();
            if let Some(n) = faults[i].times.as_mut() {
                *n -= 1;
            }
            f.action
        })
    };
    match fault {
        Some(FaultAction::Latency(d)) => tokio::time::sleep(d).await,
        Some(FaultAction::ServerError(code)) => {
            return (verb.into(), error_response(&ApiError::server_error(code)));
        }
        Some(FaultAction::TooManyRequests { retry_after }) => {
            return (
                verb.into(),
                error_response(&ApiError::too_many_requests(retry_after)),
            );
        }
        Some(FaultAction::Conflict) => {
            return (
                verb.into(),
                error_response(&ApiError::stale(&t.rt.group, &t.rt.plural, &t.name)),
            );
        }
        Some(FaultAction::ConnectionReset) => {
            let s = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("injected connection reset"))
            });
            return (verb.into(), Response::new(Body::from_stream(s)));
        }
        Some(FaultAction::CloseWatch(d)) => close_watch = Some(d),
        None => {}
    }
    if verb == "watch" {
        return (verb.into(), watch(inner, ctx, &t, close_watch));
    }
    let result = {
        let mut st = inner.lock_state();
        let r = dispatch(inner, &mut st, ctx, &t);
        drop(st);
        r
    };
    if matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    ) {
        inner.changed.notify_waiters();
    }
    let resp = match result {
        Ok(out) => {
            let wants_table = ctx.accept.contains("as=Table") && matches!(verb, "get" | "list");
            let wants_meta =
                ctx.accept.contains("as=PartialObjectMetadata") && matches!(verb, "get" | "list");
            let body = if wants_table {
                to_table(&t.rt, &out.body, verb == "list")
            } else if wants_meta {
                partial_metadata(&out.body, verb == "list")
            } else {
                out.body
            };
            let mut r = json_response(out.code, &body);
            for w in out.warnings {
                if let Ok(v) = header::HeaderValue::from_str(&format!("299 - {:?}", w)) {
                    r.headers_mut().append(header::WARNING, v);
                }
            }
            r
        }
        Err(e) => error_response(&e),
    };
    (verb.into(), resp)
}

/// A successful answer.
struct Out {
    code: u16,
    body: Value,
    warnings: Vec<String>,
}

fn ok(code: u16, body: Value) -> Out {
    Out {
        code,
        body,
        warnings: Vec::new(),
    }
}

fn dispatch(inner: &Inner, st: &mut State, ctx: &Ctx, t: &Target) -> Result<Out, ApiError> {
    if t.sub == "scale" {
        return scale(inner, st, ctx, t);
    }
    match t.verb {
        "get" => {
            let obj = st
                .get(&t.res(), &t.key())
                .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, &t.name))?;
            Ok(ok(200, present(&t.rt, &obj)))
        }
        "list" => list(st, ctx, t),
        "create" => {
            let obj = parse_body(ctx, t)?;
            let opts = write_opts(ctx, t, "Update")?;
            let mut warnings = Vec::new();
            let out = create(inner, st, t, obj, &opts, &mut warnings)?;
            Ok(Out {
                code: 201,
                body: present(&t.rt, &out),
                warnings,
            })
        }
        "update" => {
            let obj = parse_body(ctx, t)?;
            let opts = write_opts(ctx, t, "Update")?;
            let mut warnings = Vec::new();
            let (code, out) = update(inner, st, t, obj, &opts, &mut warnings)?;
            Ok(Out {
                code,
                body: present(&t.rt, &out),
                warnings,
            })
        }
        "patch" => patch_verb(inner, st, ctx, t),
        "delete" => delete(inner, st, ctx, t),
        "deletecollection" => delete_collection(inner, st, ctx, t),
        _ => Err(ApiError::method_not_allowed(
            t.verb,
            &t.rt.group,
            &t.rt.plural,
        )),
    }
}

/// The object as returned: apiVersion of the requested version.
fn present(rt: &ResourceType, obj: &Value) -> Value {
    let mut v = obj.clone();
    v["apiVersion"] = json!(rt.api_version());
    v["kind"] = json!(rt.kind);
    v
}

fn parse_body(ctx: &Ctx, t: &Target) -> Result<Value, ApiError> {
    let ct = ctx
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if !ct.is_empty() && !matches!(ct, "application/json" | "application/yaml" | "*/*") {
        return Err(ApiError::unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
        ));
    }
    let v: Value = if ctx.content_type.contains("yaml") {
        let s = std::str::from_utf8(&ctx.body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        serde_saphyr::from_str(s)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(&ctx.body).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                t.rt.kind, t.rt.version, t.rt.kind
            ))
        })?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: the object is not a JSON object",
            t.rt.kind, t.rt.version, t.rt.kind
        )));
    }
    check_type(&v, t)?;
    Ok(v)
}

fn check_type(v: &Value, t: &Target) -> Result<(), ApiError> {
    let av = v["apiVersion"].as_str().unwrap_or_default();
    let kind = v["kind"].as_str().unwrap_or_default();
    if !av.is_empty() && av != t.rt.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            t.rt.api_version()
        )));
    }
    if !kind.is_empty() && kind != t.rt.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            t.rt.kind
        )));
    }
    Ok(())
}

/// Options of a write.
pub(crate) struct WriteOpts {
    pub dry_run: bool,
    pub manager: String,
    pub operation: String,
    pub field_validation: String,
    pub sub: String,
}

fn write_opts(ctx: &Ctx, t: &Target, op: &str) -> Result<WriteOpts, ApiError> {
    let dry = ctx.q("dryRun");
    if !dry.is_empty() && dry != "All" {
        return Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: \"{dry}\": supported values: \"All\""
        ))
        .into_invalid_opts(&dry_kind(t.verb), dry));
    }
    let fv = ctx.q("fieldValidation");
    let fv = match fv {
        "" => "Warn",
        "Strict" | "Warn" | "Ignore" => fv,
        other => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            )));
        }
    };
    let mut manager = ctx.q("fieldManager").to_string();
    if manager.is_empty() {
        manager = ctx
            .user_agent
            .split('/')
            .next()
            .unwrap_or_default()
            .chars()
            .take(128)
            .collect();
    }
    if manager.chars().count() > 128 {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            &format!("{}Options", title(t.verb)),
            "",
            vec![status::invalid_value(
                "fieldManager",
                &json!(manager),
                "must be no more than 128 characters",
            )],
        ));
    }
    Ok(WriteOpts {
        dry_run: dry == "All",
        manager,
        operation: op.to_string(),
        field_validation: fv.to_string(),
        sub: t.sub.clone(),
    })
}

fn dry_kind(verb: &str) -> String {
    format!("{}Options", title(verb))
}

fn title(verb: &str) -> String {
    let mut c = verb.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

trait InvalidOpts {
    fn into_invalid_opts(self, kind: &str, value: &str) -> ApiError;
}

impl InvalidOpts for ApiError {
    fn into_invalid_opts(self, kind: &str, value: &str) -> ApiError {
        ApiError::invalid(
            "meta.k8s.io",
            kind,
            "",
            vec![status::not_supported(
                "dryRun",
                &json!([value]),
                &["All".to_string()],
            )],
        )
    }
}

fn namespace_of(st: &State, ns: &str) -> Option<Arc<Value>> {
    st.get(
        &(String::new(), "namespaces".into()),
        &(String::new(), ns.to_string()),
    )
}

fn shape_of(rt: &ResourceType) -> Shape<'_> {
    if rt.is_custom() {
        Shape::custom(&rt.kind, rt.schema.as_ref())
    } else {
        Shape::builtin(&rt.kind)
    }
}

/// Decodes, defaults and validates an incoming object (create and update).
fn admit(
    inner: &Inner,
    st: &State,
    rt: &ResourceType,
    old: Option<&Value>,
    obj: &mut Value,
    opts: &WriteOpts,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let unknown = if rt.is_custom() {
        crd::prune_and_default(rt, obj)
    } else {
        builtin::decode(rt, obj)?
    };
    if !unknown.is_empty() {
        match opts.field_validation.as_str() {
            "Strict" => {
                let fields: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                let msg = format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    rt.kind,
                    rt.version,
                    rt.kind,
                    fields.join(", ")
                );
                return Err(ApiError::bad_request(msg));
            }
            "Warn" => {
                for f in &unknown {
                    warnings.push(format!("unknown field \"{f}\""));
                }
            }
            _ => {}
        }
    }
    builtin::prepare(inner, st, rt, old, obj);
    let mut causes = builtin::validate_meta(rt, obj);
    if rt.is_custom() {
        causes.extend(crd::validate(rt, obj));
    } else {
        causes.extend(builtin::validate(rt, old, obj));
    }
    if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
        causes.extend(crd::validate_crd(obj, old));
    }
    if !causes.is_empty() {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        return Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes));
    }
    Ok(())
}

fn user_meta_cleanup(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("selfLink");
        for k in ["labels", "annotations"] {
            if meta.get(k).is_some_and(Value::is_null) {
                meta.remove(k);
            }
        }
    } else {
        obj["metadata"] = json!({});
    }
}

/// Creates an object (also used by apply-creates and controllers).
pub(crate) fn create(
    inner: &Inner,
    st: &mut State,
    t: &Target,
    mut obj: Value,
    opts: &WriteOpts,
    warnings: &mut Vec<String>,
) -> Result<Arc<Value>, ApiError> {
    create_with(inner, st, t, &mut obj, opts, warnings, None)
}

fn create_with(
    inner: &Inner,
    st: &mut State,
    t: &Target,
    obj: &mut Value,
    opts: &WriteOpts,
    warnings: &mut Vec<String>,
    managers: Option<Vec<ssa::Manager>>,
) -> Result<Arc<Value>, ApiError> {
    let rt = &t.rt;
    user_meta_cleanup(obj);
    obj["apiVersion"] = json!(rt.api_version());
    obj["kind"] = json!(rt.kind);
    if rt.namespaced {
        let body_ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !body_ns.is_empty() && body_ns != t.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        obj["metadata"]["namespace"] = json!(t.namespace);
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    if obj["metadata"]["resourceVersion"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        let gen_name = obj["metadata"]["generateName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !gen_name.is_empty() {
            let mut candidate = gen_name.clone();
            if candidate.len() > 58 {
                candidate.truncate(58);
            }
            obj["metadata"]["name"] = json!(format!("{candidate}{}", inner.generate_suffix()));
        }
    }
    if rt.namespaced {
        match namespace_of(st, &t.namespace) {
            None => return Err(ApiError::not_found("", "namespaces", &t.namespace)),
            Some(ns)
                if ns["metadata"].get("deletionTimestamp").is_some()
                    || ns["status"]["phase"] == "Terminating" =>
            {
                let name = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let mut e = ApiError::forbidden(
                    &rt.group,
                    &rt.plural,
                    &name,
                    &format!(
                        "unable to create new content in namespace {} because it is being terminated",
                        t.namespace
                    ),
                );
                e.causes.push(status::Cause {
                    reason: "NamespaceTerminating".into(),
                    message: format!("namespace {} is being terminated", t.namespace),
                    field: "metadata.namespace".into(),
                });
                return Err(e);
            }
            _ => {}
        }
    }
    obj["metadata"]["uid"] = json!(inner.uid());
    admit(inner, st, rt, None, obj, opts, warnings)?;
    let key = obj_key(obj);
    if st.get(&t.res(), &key).is_some() {
        return Err(ApiError::already_exists(&rt.group, &rt.plural, &key.1));
    }
    let meta = obj["metadata"]
        .as_object_mut()
        .ok_or_else(|| ApiError::internal("metadata is not an object"))?;
    meta.insert("creationTimestamp".into(), json!(now()));
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("generation");
    if rt.tracks_generation {
        meta.insert("generation".into(), json!(1));
    }
    let shape = shape_of(rt);
    let mut managers = match managers {
        Some(m) => m,
        None => {
            let mut list = Vec::new();
            {
                let zero = ssa::strip_for_tracking(&json!({}), rt.status_subresource, &opts.sub);
                let newt = ssa::strip_for_tracking(obj, rt.status_subresource, &opts.sub);
                ssa::record_update(&mut list, &zero, &newt, &shape, manager_entry(rt, opts));
            }
            list
        }
    };
    ssa::encode_managers(obj, &mut managers);
    crd::on_write(rt, obj);
    if opts.dry_run {
        return Ok(Arc::new(obj.clone()));
    }
    let stored = st.put(&t.res(), obj.clone());
    crd::after_write(st, rt, &stored);
    Ok(stored)
}

fn manager_entry(rt: &ResourceType, opts: &WriteOpts) -> ssa::Manager {
    ssa::Manager {
        manager: opts.manager.clone(),
        operation: opts.operation.clone(),
        api_version: rt.api_version(),
        time: now(),
        subresource: opts.sub.clone(),
        set: ssa::FieldSet::default(),
    }
}

fn spec_view(rt: &ResourceType, v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if rt.status_subresource || !rt.is_custom() {
            m.remove("status");
        }
    }
    v
}

/// Updates an object: `PUT`, patches, applies and controllers all end here.
pub(crate) fn update(
    inner: &Inner,
    st: &mut State,
    t: &Target,
    obj: Value,
    opts: &WriteOpts,
    warnings: &mut Vec<String>,
) -> Result<(u16, Arc<Value>), ApiError> {
    let old = st
        .get(&t.res(), &t.key())
        .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, &t.name))?;
    update_with(inner, st, t, &old, obj, opts, warnings, None)
}

#[allow(clippy::too_many_arguments)]
fn update_with(
    inner: &Inner,
    st: &mut State,
    t: &Target,
    old: &Arc<Value>,
    mut obj: Value,
    opts: &WriteOpts,
    warnings: &mut Vec<String>,
    managers: Option<Vec<ssa::Manager>>,
) -> Result<(u16, Arc<Value>), ApiError> {
    let rt = &t.rt;
    user_meta_cleanup(&mut obj);
    let body_name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if body_name != t.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            t.name
        )));
    }
    if rt.namespaced {
        let body_ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
        if !body_ns.is_empty() && body_ns != t.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let old_rv = old["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let new_rv = obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !new_rv.is_empty() && new_rv != old_rv {
        return Err(ApiError::stale(&rt.group, &rt.plural, &t.name));
    }
    let client_managed = obj["metadata"].get("managedFields").cloned();
    // Subresource separation.
    if t.sub == "status" {
        let status = obj.get("status").cloned();
        let mut base = (**old).clone();
        match status {
            Some(s) => base["status"] = s,
            None => {
                if let Some(m) = base.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        obj = base;
    } else if rt.status_subresource {
        match old.get("status") {
            Some(s) => obj["status"] = s.clone(),
            None => {
                if let Some(m) = obj.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    obj["apiVersion"] = json!(rt.api_version());
    obj["kind"] = json!(rt.kind);
    {
        let om = &old["metadata"];
        let meta = obj["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::internal("metadata is not an object"))?;
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
        ] {
            match om.get(k) {
                Some(v) => meta.insert(k.into(), v.clone()),
                None => meta.remove(k),
            };
        }
        if om.get("deletionTimestamp").is_some() {
            // Finalizers may only be removed once deletion started.
            let oldf: Vec<Value> = om["finalizers"].as_array().cloned().unwrap_or_default();
            let newf: Vec<Value> = meta
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if newf.iter().any(|f| !oldf.contains(f)) {
                let name = t.name.clone();
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    &name,
                    vec![status::forbidden(
                        "metadata.finalizers",
                        "no new finalizers can be added if the object is being deleted",
                    )],
                ));
            }
        }
    }
    let finalize = (t.sub == "finalize").then(|| obj["spec"]["finalizers"].clone());
    admit(inner, st, rt, Some(old), &mut obj, opts, warnings)?;
    if let Some(f) = finalize {
        // Only /finalize may change a namespace's spec.finalizers.
        obj["spec"]["finalizers"] = if f.is_null() { json!([]) } else { f };
    }
    if rt.tracks_generation && spec_view(rt, &obj) != spec_view(rt, old) {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        obj["metadata"]["generation"] = json!(g);
    }
    // managedFields.
    let old_managers = ssa::decode_managers(old);
    let mut managers = match managers {
        Some(m) => m,
        None if client_managed.is_some()
            && client_managed != old["metadata"].get("managedFields").cloned() =>
        {
            let mut probe = json!({"metadata": {"managedFields": client_managed.clone().unwrap_or(Value::Null)}});
            let decoded = ssa::decode_managers(&probe);
            if decoded.is_empty()
                && client_managed
                    .as_ref()
                    .and_then(Value::as_array)
                    .is_none_or(|a| !a.is_empty())
            {
                // Invalid managedFields are replaced by the previous ones.
                probe = (**old).clone();
            }
            let mut list = ssa::decode_managers(&probe);
            {
                let oldt = ssa::strip_for_tracking(old, rt.status_subresource, &opts.sub);
                let newt = ssa::strip_for_tracking(&obj, rt.status_subresource, &opts.sub);
                ssa::record_update(
                    &mut list,
                    &oldt,
                    &newt,
                    &shape_of(rt),
                    manager_entry(rt, opts),
                );
            }
            list
        }
        None => {
            let mut list = old_managers;
            {
                let oldt = ssa::strip_for_tracking(old, rt.status_subresource, &opts.sub);
                let newt = ssa::strip_for_tracking(&obj, rt.status_subresource, &opts.sub);
                ssa::record_update(
                    &mut list,
                    &oldt,
                    &newt,
                    &shape_of(rt),
                    manager_entry(rt, opts),
                );
            }
            list
        }
    };
    ssa::encode_managers(&mut obj, &mut managers);
    // A write whose only difference is managedFields timestamps keeps the old ones
    // (kube-apiserver's IgnoreManagedFieldsTimestampsTransformer), so it stays a no-op.
    let without_times = |v: &Value| {
        let mut v = v.clone();
        if let Some(list) = v["metadata"]
            .get_mut("managedFields")
            .and_then(Value::as_array_mut)
        {
            for e in list.iter_mut() {
                if let Some(m) = e.as_object_mut() {
                    m.remove("time");
                }
            }
        }
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        v
    };
    if without_times(&obj) == without_times(old) {
        obj["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
        if old["metadata"].get("managedFields").is_none()
            && let Some(m) = obj["metadata"].as_object_mut()
        {
            m.remove("managedFields");
        }
    }
    obj["metadata"]["resourceVersion"] = json!(old_rv);
    crd::on_write(rt, &mut obj);
    let spec_finalizers_done = !(rt.group.is_empty() && rt.kind == "Namespace")
        || obj["spec"]["finalizers"]
            .as_array()
            .is_none_or(|a| a.is_empty());
    let deleting = obj["metadata"].get("deletionTimestamp").is_some()
        && spec_finalizers_done
        && obj["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|a| a.is_empty());
    if obj == **old && !deleting {
        return Ok((200, old.clone()));
    }
    if opts.dry_run {
        return Ok((200, Arc::new(obj)));
    }
    if deleting {
        st.put(&t.res(), obj);
        let gone = st
            .remove(&t.res(), &t.key())
            .ok_or_else(|| ApiError::internal("object vanished"))?;
        crd::after_delete(st, rt, &gone);
        after_delete(inner, st, rt, &gone);
        return Ok((200, gone));
    }
    let stored = st.put(&t.res(), obj);
    crd::after_write(st, rt, &stored);
    Ok((200, stored))
}

fn patch_verb(inner: &Inner, st: &mut State, ctx: &Ctx, t: &Target) -> Result<Out, ApiError> {
    let ct = ctx
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let is_apply = ct == "application/apply-patch+yaml" || ct == "application/apply-patch+json";
    let supported = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ];
    let smp = ct == "application/strategic-merge-patch+json";
    if !is_apply && !smp && !supported.contains(&ct.as_str()) || smp && t.rt.is_custom() {
        let mut list: Vec<&str> = supported.to_vec();
        if !t.rt.is_custom() {
            list.insert(2, "application/strategic-merge-patch+json");
        }
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: {}",
            list.join(", ")
        )));
    }
    if !is_apply && !ctx.q("force").is_empty() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![status::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        ));
    }
    let mut opts = write_opts(ctx, t, if is_apply { "Apply" } else { "Update" })?;
    let mut warnings = Vec::new();
    if is_apply {
        if ctx.q("fieldManager").is_empty() {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                vec![status::required(
                    "fieldManager",
                    "is required for apply patch",
                )],
            ));
        }
        opts.manager = ctx.q("fieldManager").to_string();
        let force = ctx.flag("force");
        let out = apply(inner, st, ctx, t, &opts, force, &mut warnings)?;
        return Ok(Out {
            code: out.0,
            body: present(&t.rt, &out.1),
            warnings,
        });
    }
    let old = st
        .get(&t.res(), &t.key())
        .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, &t.name))?;
    let patch_doc: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut target = present(&t.rt, &old);
    let shape = shape_of(&t.rt);
    match ct.as_str() {
        "application/json-patch+json" => {
            patch::json_patch(&mut target, &patch_doc).map_err(|e| {
                let mut err = ApiError::invalid(&t.rt.group, &t.rt.kind, &t.name, Vec::new());
                err.message =
                    format!("the server rejected our request due to an error in our request: {e}");
                err
            })?;
        }
        "application/merge-patch+json" => {
            if !patch_doc.is_object() {
                return Err(ApiError::bad_request(
                    "json: cannot unmarshal into Go value of type map[string]interface {}",
                ));
            }
            patch::merge_patch(&mut target, &patch_doc);
        }
        _ => {
            target = patch::strategic_merge_patch(&target, &patch_doc, &shape)
                .map_err(ApiError::bad_request)?;
        }
    }
    check_type(&target, t)?;
    let (code, out) = update_with(inner, st, t, &old, target, &opts, &mut warnings, None)?;
    Ok(Out {
        code,
        body: present(&t.rt, &out),
        warnings,
    })
}

fn apply(
    inner: &Inner,
    st: &mut State,
    ctx: &Ctx,
    t: &Target,
    opts: &WriteOpts,
    force: bool,
    warnings: &mut Vec<String>,
) -> Result<(u16, Arc<Value>), ApiError> {
    let s = std::str::from_utf8(&ctx.body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let config: Value = serde_saphyr::from_str(s)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request("apply patch must be an object"));
    }
    let av = config["apiVersion"].as_str().unwrap_or_default();
    let kind = config["kind"].as_str().unwrap_or_default();
    if av.is_empty() || kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{}'",
            String::from_utf8_lossy(&ctx.body).trim()
        )));
    }
    check_type(&config, t)?;
    let mut config = config;
    if config["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        config["metadata"]["name"] = json!(t.name);
    }
    let cname = config["metadata"]["name"].as_str().unwrap_or_default();
    if cname != t.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({cname}) does not match the name on the URL ({})",
            t.name
        )));
    }
    if config["metadata"]
        .get("managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    builtin::default_apply_list_keys(&t.rt, &mut config);
    let shape = shape_of(&t.rt);
    let has_status = t.rt.status_subresource;
    let config_t = ssa::strip_for_tracking(&config, has_status, &t.sub);
    let live = st.get(&t.res(), &t.key());
    let me = manager_entry(&t.rt, opts);
    match live {
        None => {
            if t.sub == "status" {
                return Err(ApiError::not_found(&t.rt.group, &t.rt.plural, &t.name));
            }
            let zero = json!({});
            let applied = ssa::apply(&zero, &config_t, &shape, Vec::new(), me, force)
                .map_err(|c| conflict_error(&c))?;
            let mut obj = applied.object;
            obj["apiVersion"] = config["apiVersion"].clone();
            obj["kind"] = config["kind"].clone();
            let meta = obj.as_object_mut().and_then(|m| {
                m.entry("metadata").or_insert_with(|| json!({}));
                m.get_mut("metadata")
            });
            if let Some(meta) = meta {
                meta["name"] = json!(t.name);
                if let Some(ns) = config["metadata"].get("namespace") {
                    meta["namespace"] = ns.clone();
                }
            }
            let out = create_with(
                inner,
                st,
                t,
                &mut obj,
                opts,
                warnings,
                Some(applied.managers),
            )?;
            Ok((201, out))
        }
        Some(old) => {
            if let Some(rv) = config["metadata"]["resourceVersion"].as_str()
                && !rv.is_empty()
                && Some(rv) != old["metadata"]["resourceVersion"].as_str()
            {
                return Err(ApiError::stale(&t.rt.group, &t.rt.plural, &t.name));
            }
            let live_t = ssa::strip_for_tracking(&old, has_status, &t.sub);
            let managers = ssa::decode_managers(&old);
            let applied = ssa::apply(&live_t, &config_t, &shape, managers, me, force)
                .map_err(|c| conflict_error(&c))?;
            // Rebuild the full object: untracked parts come from the live object.
            let mut full = (*old).clone();
            let merged = applied.object;
            if t.sub == "status" {
                match merged.get("status") {
                    Some(s) => full["status"] = s.clone(),
                    None => {
                        if let Some(m) = full.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            } else {
                let keep_status = full.get("status").cloned();
                let old_meta = full["metadata"].clone();
                let mut next = merged.clone();
                let mut meta = next.get("metadata").cloned().unwrap_or_else(|| json!({}));
                for k in [
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "generation",
                    "resourceVersion",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                ] {
                    if let Some(v) = old_meta.get(k) {
                        meta[k] = v.clone();
                    }
                }
                next["metadata"] = meta;
                next["apiVersion"] = json!(t.rt.api_version());
                next["kind"] = json!(t.rt.kind);
                if has_status && let Some(s) = keep_status {
                    next["status"] = s;
                } else if !has_status
                    && let Some(s) = keep_status
                    && next.get("status").is_none()
                    && live_t.get("status").is_none()
                {
                    next["status"] = s;
                }
                full = next;
            }
            update_with(
                inner,
                st,
                t,
                &old,
                full,
                opts,
                warnings,
                Some(applied.managers),
            )
        }
    }
}

/// The autoscaling/v1 `Scale` of a workload.
fn scale_of(obj: &Value) -> Value {
    let selector = &obj["spec"]["selector"];
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = selector["matchLabels"].as_object() {
        parts.extend(
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())),
        );
    }
    let mut meta = json!({});
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = obj["metadata"].get(k) {
            meta[k] = v.clone();
        }
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": parts.join(",")}})
}

fn scale(inner: &Inner, st: &mut State, ctx: &Ctx, t: &Target) -> Result<Out, ApiError> {
    let parent = st
        .get(&t.res(), &t.key())
        .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, &t.name))?;
    let current = scale_of(&parent);
    let desired = match t.verb {
        "get" => return Ok(ok(200, current)),
        "update" => serde_json::from_slice::<Value>(&ctx.body).map_err(|e| {
            ApiError::bad_request(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: {e}"
            ))
        })?,
        "patch" => {
            let doc: Value = serde_json::from_slice(&ctx.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut target = current.clone();
            if ctx.content_type.starts_with("application/json-patch+json") {
                patch::json_patch(&mut target, &doc).map_err(ApiError::bad_request)?;
            } else {
                patch::merge_patch(&mut target, &doc);
            }
            target
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                t.verb,
                &t.rt.group,
                &t.rt.plural,
            ));
        }
    };
    if let Some(rv) = desired["metadata"]["resourceVersion"].as_str()
        && !rv.is_empty()
        && Some(rv) != parent["metadata"]["resourceVersion"].as_str()
    {
        return Err(ApiError::stale(&t.rt.group, &t.rt.plural, &t.name));
    }
    let Some(replicas) = desired["spec"]["replicas"].as_i64() else {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            &t.name,
            vec![status::required("spec.replicas", "")],
        ));
    };
    if replicas < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            &t.name,
            vec![status::invalid_value(
                "spec.replicas",
                &json!(replicas),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let mut next = (*parent).clone();
    next["spec"]["replicas"] = json!(replicas);
    let opts = write_opts(ctx, t, "Update")?;
    let mut warnings = Vec::new();
    let (code, out) = update_with(inner, st, t, &parent, next, &opts, &mut warnings, None)?;
    Ok(Out {
        code,
        body: scale_of(&out),
        warnings,
    })
}

fn conflict_error(c: &[ssa::Conflict]) -> ApiError {
    let mut e = ApiError::conflict("", "", "", "");
    e.message = ssa::conflict_message(c);
    e.name = None;
    e.kind = None;
    e.group = None;
    e.causes = c
        .iter()
        .map(|c| status::Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with {}", c.manager),
            field: ssa::path_string(&c.path),
        })
        .collect();
    e
}

fn delete_options(ctx: &Ctx) -> Result<Value, ApiError> {
    if ctx.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))
}

fn returns_object(rt: &ResourceType) -> bool {
    rt.is_custom()
        || (rt.group.is_empty() && matches!(rt.kind.as_str(), "Pod" | "Service" | "Namespace"))
}

fn delete(inner: &Inner, st: &mut State, ctx: &Ctx, t: &Target) -> Result<Out, ApiError> {
    let opts = delete_options(ctx)?;
    let dry = ctx.q("dryRun") == "All"
        || opts["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|d| d == "All"));
    let policy = ctx
        .query
        .get("propagationPolicy")
        .cloned()
        .or_else(|| opts["propagationPolicy"].as_str().map(str::to_string))
        .or_else(|| match opts["orphanDependents"].as_bool() {
            Some(true) => Some("Orphan".into()),
            Some(false) => Some("Background".into()),
            None => None,
        })
        .unwrap_or_else(|| "Background".into());
    if !matches!(policy.as_str(), "Orphan" | "Background" | "Foreground") {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "DeleteOptions",
            "",
            vec![status::not_supported(
                "propagationPolicy",
                &json!(policy),
                &["Foreground".into(), "Background".into(), "Orphan".into()],
            )],
        ));
    }
    let obj = st
        .get(&t.res(), &t.key())
        .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, &t.name))?;
    let pre = &opts["preconditions"];
    if let Some(uid) = pre["uid"].as_str()
        && Some(uid) != obj["metadata"]["uid"].as_str()
    {
        return Err(ApiError::conflict(
            &t.rt.group,
            &t.rt.plural,
            &t.name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                obj["metadata"]["uid"].as_str().unwrap_or_default()
            ),
        ));
    }
    if let Some(rv) = pre["resourceVersion"].as_str()
        && Some(rv) != obj["metadata"]["resourceVersion"].as_str()
    {
        return Err(ApiError::conflict(
            &t.rt.group,
            &t.rt.plural,
            &t.name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                obj["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            ),
        ));
    }
    if t.rt.group.is_empty()
        && t.rt.kind == "Namespace"
        && matches!(t.name.as_str(), "default" | "kube-system" | "kube-public")
    {
        return Err(ApiError::forbidden(
            "",
            "namespaces",
            &t.name,
            "this namespace may not be deleted",
        ));
    }
    let (code, out) = delete_object(inner, st, &t.rt, &obj, &policy, dry)?;
    let body = match (&out, returns_object(&t.rt) || code == 202) {
        (Some(o), true) => present(&t.rt, o),
        _ => {
            let mut details =
                json!({"name": t.name, "kind": t.rt.plural, "uid": obj["metadata"]["uid"]});
            if !t.rt.group.is_empty() {
                details["group"] = json!(t.rt.group);
            }
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
        }
    };
    Ok(ok(code, body))
}

/// Deletes one object honouring finalizers; returns (code, final object).
pub(crate) fn delete_object(
    inner: &Inner,
    st: &mut State,
    rt: &ResourceType,
    obj: &Arc<Value>,
    policy: &str,
    dry: bool,
) -> Result<(u16, Option<Arc<Value>>), ApiError> {
    let res = (rt.group.clone(), rt.plural.clone());
    let key = obj_key(obj);
    let mut finalizers: Vec<Value> = obj["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let is_ns = rt.group.is_empty() && rt.kind == "Namespace";
    let ns_finalizers = is_ns
        && obj["spec"]["finalizers"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
    let already = obj["metadata"].get("deletionTimestamp").is_some();
    let has_dependents = policy != "Background" && has_dependents(st, obj);
    if policy == "Foreground"
        && has_dependents
        && !finalizers.iter().any(|f| f == "foregroundDeletion")
    {
        finalizers.push(json!("foregroundDeletion"));
    }
    if policy == "Orphan" && has_dependents && !finalizers.iter().any(|f| f == "orphan") {
        finalizers.push(json!("orphan"));
    }
    if finalizers.is_empty() && !ns_finalizers {
        if dry {
            return Ok((200, Some(obj.clone())));
        }
        let gone = st
            .remove(&res, &key)
            .ok_or_else(|| ApiError::internal("object vanished"))?;
        crd::after_delete(st, rt, &gone);
        after_delete(inner, st, rt, &gone);
        return Ok((200, Some(gone)));
    }
    if already
        && finalizers
            == obj["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
    {
        return Ok((202, Some(obj.clone())));
    }
    let mut next = (**obj).clone();
    if !already {
        next["metadata"]["deletionTimestamp"] = json!(now());
        next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        if rt.tracks_generation {
            let g = next["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            next["metadata"]["generation"] = json!(g);
        }
    }
    if !finalizers.is_empty() {
        next["metadata"]["finalizers"] = Value::Array(finalizers);
    }
    if is_ns {
        next["status"]["phase"] = json!("Terminating");
    }
    if dry {
        return Ok((202, Some(Arc::new(next))));
    }
    let stored = st.put(&res, next);
    Ok((202, Some(stored)))
}

fn has_dependents(st: &State, obj: &Value) -> bool {
    let uid = obj["metadata"]["uid"].as_str().unwrap_or_default();
    !st.dependents_of(uid).is_empty()
}

/// Garbage collection after an object is gone (Background propagation).
fn after_delete(inner: &Inner, st: &mut State, _rt: &ResourceType, gone: &Value) {
    if !inner.opts.namespace_lifecycle {
        return;
    }
    super::controllers::collect_garbage(inner, st, gone);
}

fn delete_collection(
    inner: &Inner,
    st: &mut State,
    ctx: &Ctx,
    t: &Target,
) -> Result<Out, ApiError> {
    let opts = delete_options(ctx)?;
    let dry = ctx.q("dryRun") == "All";
    let policy = ctx
        .query
        .get("propagationPolicy")
        .cloned()
        .or_else(|| opts["propagationPolicy"].as_str().map(str::to_string))
        .unwrap_or_else(|| "Background".into());
    let items = select(st, ctx, t)?;
    let mut out = Vec::new();
    for obj in items {
        if let Ok((_, Some(o))) = delete_object(inner, st, &t.rt, &obj, &policy, dry) {
            out.push(item_view(&t.rt, &o));
        }
    }
    Ok(ok(
        200,
        json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": {"resourceVersion": st.rv.to_string()}, "items": out}),
    ))
}

fn select(st: &State, ctx: &Ctx, t: &Target) -> Result<Vec<Arc<Value>>, ApiError> {
    let ls = LabelSelector::parse(ctx.q("labelSelector")).map_err(ApiError::bad_request)?;
    let fs = FieldSelector::parse(
        ctx.q("fieldSelector"),
        &t.rt.group,
        &t.rt.kind,
        &selectable(&t.rt),
    )
    .map_err(ApiError::bad_request)?;
    let ns = if t.rt.namespaced {
        t.namespace.as_str()
    } else {
        ""
    };
    Ok(st
        .list(&t.res(), ns)
        .into_iter()
        .filter(|o| ls.matches(&o["metadata"]["labels"]) && fs.matches(o))
        .collect())
}

fn selectable(rt: &ResourceType) -> Vec<String> {
    rt.selectable_fields.clone()
}

fn item_view(rt: &ResourceType, obj: &Value) -> Value {
    if rt.is_custom() {
        present(rt, obj)
    } else {
        let mut v = obj.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
        v
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: u64,
    start: String,
}

fn list(st: &State, ctx: &Ctx, t: &Target) -> Result<Out, ApiError> {
    let rv_param = ctx.q("resourceVersion");
    if !rv_param.is_empty() && rv_param != "0" {
        let Ok(n) = rv_param.parse::<u64>() else {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                vec![status::invalid_value(
                    "resourceVersion",
                    &json!(rv_param),
                    "must be a valid resourceVersion",
                )],
            ));
        };
        if n > st.rv {
            let mut e = ApiError::server_error(504);
            e.message = format!("Too large resource version: {n}, current: {}", st.rv);
            e.causes.push(status::Cause {
                reason: "ResourceVersionTooLarge".into(),
                message: "Too large resource version".into(),
                field: String::new(),
            });
            e.retry_after = Some(1);
            return Err(e);
        }
    }
    let mut items = select(st, ctx, t)?;
    let cont = ctx.q("continue");
    let mut list_rv = st.rv;
    if !cont.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(cont)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(cont))
            .map_err(|_| ApiError::bad_request("continue key is not valid: illegal base64 data"))?;
        let tok: ContinueToken = serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad_request(format!("continue key is not valid: {e}")))?;
        if tok.rv < st.compacted {
            return Err(ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            ));
        }
        list_rv = tok.rv;
        // Keys order as (namespace, name), as the store does.
        let start = match tok.start.split_once('/') {
            Some((ns, name)) => (ns.to_string(), name.to_string()),
            None => (String::new(), tok.start.clone()),
        };
        items.retain(|o| obj_key(o) >= start);
    }
    let limit: usize = ctx.q("limit").parse().unwrap_or(0);
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if limit > 0 && items.len() > limit {
        let rest = items.split_off(limit);
        let (ns, name) = obj_key(&rest[0]);
        let start = if ns.is_empty() {
            name
        } else {
            format!("{ns}/{name}")
        };
        let tok = ContinueToken {
            v: "meta.k8s.io/v1".into(),
            rv: list_rv,
            start,
        };
        let enc = base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(&tok).unwrap_or_default());
        meta["continue"] = json!(enc);
        meta["remainingItemCount"] = json!(rest.len());
    }
    let items: Vec<Value> = items.iter().map(|o| item_view(&t.rt, o)).collect();
    Ok(ok(
        200,
        json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": meta, "items": items}),
    ))
}

fn watch(
    inner: &Arc<Inner>,
    ctx: &Ctx,
    t: &Target,
    close_after: Option<Duration>,
) -> Response<Body> {
    let ls = match LabelSelector::parse(ctx.q("labelSelector")) {
        Ok(l) => l,
        Err(e) => return error_response(&ApiError::bad_request(e)),
    };
    let mut fs_text = ctx.q("fieldSelector").to_string();
    if !t.name.is_empty() {
        fs_text = if fs_text.is_empty() {
            format!("metadata.name={}", t.name)
        } else {
            format!("{fs_text},metadata.name={}", t.name)
        };
    }
    let fs = match FieldSelector::parse(&fs_text, &t.rt.group, &t.rt.kind, &selectable(&t.rt)) {
        Ok(f) => f,
        Err(e) => return error_response(&ApiError::bad_request(e)),
    };
    let rv_param = ctx.q("resourceVersion").to_string();
    let send_initial = ctx.q("sendInitialEvents");
    let bookmarks = ctx.flag("allowWatchBookmarks");
    if send_initial == "true" && ctx.q("resourceVersionMatch") != "NotOlderThan" {
        return error_response(&ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![status::forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )],
        ));
    }
    let timeout = ctx
        .q("timeoutSeconds")
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs);
    let ns = if t.rt.namespaced {
        t.namespace.clone()
    } else {
        String::new()
    };
    let res = t.res();
    let rt = t.rt.clone();
    let matches = move |o: &Value| -> bool {
        (ns.is_empty() || o["metadata"]["namespace"].as_str() == Some(ns.as_str()))
            && ls.matches(&o["metadata"]["labels"])
            && fs.matches(o)
    };
    let mut initial: Vec<Value> = Vec::new();
    let (mut rx, start_rv) = {
        let mut st = inner.lock_state();
        let initial_state = rv_param.is_empty() || rv_param == "0" || send_initial == "true";
        if initial_state {
            for o in st.list(&res, "") {
                if matches(&o) {
                    initial.push(json!({"type": "ADDED", "object": present(&rt, &o)}));
                }
            }
            if send_initial == "true" {
                initial.push(json!({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version(),
                    "metadata": {"resourceVersion": st.rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}}));
            }
        } else {
            let n = match rv_param.parse::<u64>() {
                Ok(n) => n,
                Err(_) => {
                    return error_response(&ApiError::invalid(
                        "meta.k8s.io",
                        "ListOptions",
                        "",
                        vec![status::invalid_value(
                            "resourceVersion",
                            &json!(rv_param),
                            "must be a valid resourceVersion",
                        )],
                    ));
                }
            };
            match st.events_since(&res, n) {
                Ok(evs) => {
                    for e in evs {
                        if let Some(line) = event_line(&rt, &e, &matches) {
                            initial.push(line);
                        }
                    }
                }
                Err(oldest) => {
                    let e = ApiError::gone(format!("too old resource version: {n} ({oldest})"));
                    initial.push(json!({"type": "ERROR", "object": e.to_status()}));
                    let body = initial.iter().map(|l| format!("{l}\n")).collect::<String>();
                    return Response::builder()
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(body))
                        .unwrap_or_else(|_| Response::new(Body::empty()));
                }
            }
        }
        let rv = st.rv;
        (st.subscribe(&res), rv)
    };
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(256);
    let inner2 = inner.clone();
    let mut shutdown = inner.shutdown.subscribe();
    let bookmark_every = inner.opts.bookmark_interval;
    let tables = ctx.accept.contains("as=Table");
    let metadata_only = ctx.accept.contains("as=PartialObjectMetadata");
    let table_rt = t.rt.clone();
    let render = move |line: &Value, first: &mut bool| -> Bytes {
        let kind = line["type"].as_str().unwrap_or_default();
        if metadata_only && kind != "ERROR" {
            let obj = partial_metadata(&line["object"], false);
            return Bytes::from(format!("{}\n", json!({"type": kind, "object": obj})));
        }
        if !tables || kind == "ERROR" {
            return Bytes::from(format!("{line}\n"));
        }
        let mut table = if kind == "BOOKMARK" {
            json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": line["object"]["metadata"]["resourceVersion"]}, "columnDefinitions": [], "rows": []})
        } else {
            to_table(&table_rt, &line["object"], false)
        };
        if !*first {
            table["columnDefinitions"] = json!([]);
        }
        *first = false;
        Bytes::from(format!("{}\n", json!({"type": kind, "object": table})))
    };
    tokio::spawn(async move {
        let mut first = true;
        for l in initial {
            if out_tx.send(render(&l, &mut first)).await.is_err() {
                return;
            }
        }
        let mut last_rv = start_rv;
        let deadline = tokio::time::Instant::now()
            + close_after
                .or(timeout)
                .unwrap_or(Duration::from_secs(3600 * 24));
        let mut tick = tokio::time::interval(bookmark_every);
        tick.tick().await;
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    if ev.rv <= start_rv { continue; }
                    last_rv = ev.rv;
                    if let Some(line) = event_line(&rt, &ev, &matches)
                        && out_tx.send(render(&line, &mut first)).await.is_err() {
                        break;
                    }
                }
                _ = tick.tick(), if bookmarks => {
                    let rv = inner2.lock_state().rv;
                    let mut lines = Vec::new();
                    while let Ok(ev) = rx.try_recv() {
                        if ev.rv <= start_rv { continue; }
                        last_rv = ev.rv;
                        if let Some(line) = event_line(&rt, &ev, &matches) { lines.push(line); }
                    }
                    let rv = rv.max(last_rv);
                    lines.push(json!({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}}}));
                    let mut closed = false;
                    for l in lines {
                        if out_tx.send(render(&l, &mut first)).await.is_err() { closed = true; break; }
                    }
                    if closed { break; }
                }
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.changed() => break,
                _ = out_tx.closed() => break,
            }
        }
    });
    let stream = futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn event_line(rt: &ResourceType, ev: &Event, matches: &impl Fn(&Value) -> bool) -> Option<Value> {
    let now_match = matches(&ev.object);
    let old_match = ev.old.as_ref().is_some_and(|o| matches(o));
    let kind = match ev.kind {
        "ADDED" if now_match => "ADDED",
        "MODIFIED" if now_match && old_match => "MODIFIED",
        "MODIFIED" if now_match => "ADDED",
        "MODIFIED" if old_match => "DELETED",
        "DELETED" if old_match || now_match => "DELETED",
        _ => return None,
    };
    Some(json!({"type": kind, "object": present(rt, &ev.object)}))
}

// ---------- discovery ----------

fn group_versions(st: &State) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for t in &st.types {
        match groups.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) => {
                if !vs.contains(&t.version) {
                    vs.push(t.version.clone());
                }
            }
            None => groups.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    for (_, vs) in groups.iter_mut() {
        vs.sort_by_key(|x| std::cmp::Reverse(registry::version_priority(x)));
    }
    groups
}

fn group_entry(st: &State, g: &str) -> Option<Value> {
    let (name, versions) = group_versions(st).into_iter().find(|(n, _)| n == g)?;
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    Some(json!({"name": name, "versions": vs, "preferredVersion": vs[0]}))
}

fn discovery_root(inner: &Inner, ctx: &Ctx, core: bool) -> Response<Body> {
    let st = inner.lock_state();
    let aggregated = ctx.accept.contains("as=APIGroupDiscoveryList");
    if aggregated {
        let v2 = ctx.accept.contains("v=v2;")
            || ctx.accept.contains("v=v2,")
            || ctx.accept.ends_with("v=v2")
            || !ctx.accept.contains("v2beta1");
        let version = if v2 { "v2" } else { "v2beta1" };
        let mut items = Vec::new();
        for (g, versions) in group_versions(&st) {
            if core != g.is_empty() {
                continue;
            }
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let mut rs: Vec<&ResourceType> = st.types.iter().filter(|t| t.group == g && t.version == *v).collect();
                    rs.sort_by(|a, b| a.plural.cmp(&b.plural));
                    json!({"version": v, "resources": rs.iter().map(|t| t.resource_discovery()).collect::<Vec<_>>(), "freshness": "Current"})
                })
                .collect();
            let mut meta = json!({"creationTimestamp": null});
            if !g.is_empty() {
                meta["name"] = json!(g);
            }
            items.push(json!({"metadata": meta, "versions": vs}));
        }
        let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"), "metadata": {}, "items": items});
        return Response::builder()
            .header(
                header::CONTENT_TYPE,
                format!(
                    "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
                ),
            )
            .header(header::VARY, "Accept")
            .body(Body::from(body.to_string()))
            .unwrap_or_else(|_| Response::new(Body::empty()));
    }
    if core {
        return json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}),
        );
    }
    let groups: Vec<Value> = group_versions(&st)
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .filter_map(|(g, _)| group_entry(&st, &g))
        .collect();
    json_response(
        200,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

fn resource_list(inner: &Inner, g: &str, v: &str) -> Value {
    let st = inner.lock_state();
    let mut rs: Vec<Value> = Vec::new();
    let mut types: Vec<&ResourceType> = st
        .types
        .iter()
        .filter(|t| t.group == g && t.version == v)
        .collect();
    types.sort_by(|a, b| a.plural.cmp(&b.plural));
    for t in types {
        rs.extend(t.api_resource());
    }
    let gv = if g.is_empty() {
        v.to_string()
    } else {
        format!("{g}/{v}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": rs})
}

fn openapi_v3_root(inner: &Inner) -> Value {
    let st = inner.lock_state();
    let mut paths = Map::new();
    for (g, vs) in group_versions(&st) {
        for v in vs {
            let key = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            let hash = format!("{:016X}", st.rv);
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

fn openapi_v3_doc(inner: &Inner, gv: &str) -> Option<Value> {
    let st = inner.lock_state();
    let (g, v) = match gv.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => (String::new(), v.to_string()),
        ["apis", g, v] => (g.to_string(), v.to_string()),
        _ => return None,
    };
    let types: Vec<&ResourceType> = st
        .types
        .iter()
        .filter(|t| t.group == g && t.version == v)
        .collect();
    if types.is_empty() {
        return None;
    }
    let prefix = if g.is_empty() {
        format!("/api/{v}")
    } else {
        format!("/apis/{g}/{v}")
    };
    let param = |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let mut paths = Map::new();
    for t in types {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let mut content = Map::new();
        for ct in [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ] {
            content.insert(ct.into(), json!({"schema": {"type": "object"}}));
        }
        let scope = if t.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let item = format!("{prefix}{scope}/{}/{{name}}", t.plural);
        let op = |action: &str| {
            json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk.clone(),
            "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation")], "responses": {"200": {"description": "OK"}}})
        };
        let mut patch_op = op("patch");
        patch_op["requestBody"] = json!({"content": content.clone(), "required": true});
        paths.insert(
            item,
            json!({"get": op("get"), "put": op("put"), "patch": patch_op, "delete": op("delete")}),
        );
        paths.insert(
            format!("{prefix}{scope}/{}", t.plural),
            json!({"post": op("post"), "get": op("list")}),
        );
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": GIT_VERSION}, "paths": paths, "components": {"schemas": {}}}),
    )
}

// ---------- tables for kubectl ----------

fn age(ts: &str) -> String {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn json_path(obj: &Value, path: &str) -> Value {
    let mut cur = obj;
    for seg in path.trim_start_matches('.').split('.') {
        if seg.is_empty() {
            continue;
        }
        cur = cur.get(seg).unwrap_or(&Value::Null);
    }
    cur.clone()
}

/// The `PartialObjectMetadata(List)` form of an answer (`Accept: …;as=PartialObjectMetadata`).
fn partial_metadata(body: &Value, is_list: bool) -> Value {
    let one = |o: &Value| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]});
    if is_list {
        let items: Vec<Value> = body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(one)
            .collect();
        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": body["metadata"], "items": items})
    } else {
        one(body)
    }
}

type Extractor = Box<dyn Fn(&Value) -> Value>;

fn to_table(rt: &ResourceType, body: &Value, is_list: bool) -> Value {
    let mut cols = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    let mut extractors: Vec<Extractor> = Vec::new();
    let builtin_cols: Vec<(&str, Extractor)> = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "ConfigMap") => vec![(
            "Data",
            Box::new(|o: &Value| {
                json!(
                    o["data"].as_object().map_or(0, |m| m.len())
                        + o["binaryData"].as_object().map_or(0, |m| m.len())
                )
            }),
        )],
        ("", "Secret") => vec![
            ("Type", Box::new(|o: &Value| o["type"].clone())),
            (
                "Data",
                Box::new(|o: &Value| json!(o["data"].as_object().map_or(0, |m| m.len()))),
            ),
        ],
        ("", "Namespace") => {
            vec![("Status", Box::new(|o: &Value| o["status"]["phase"].clone()))]
        }
        ("", "Pod") => vec![("Status", Box::new(|o: &Value| o["status"]["phase"].clone()))],
        ("", "Service") => vec![
            ("Type", Box::new(|o: &Value| o["spec"]["type"].clone())),
            (
                "Cluster-IP",
                Box::new(|o: &Value| o["spec"]["clusterIP"].clone()),
            ),
        ],
        ("apps", "Deployment") => vec![
            (
                "Ready",
                Box::new(|o: &Value| {
                    json!(format!(
                        "{}/{}",
                        o["status"]["readyReplicas"].as_i64().unwrap_or(0),
                        o["spec"]["replicas"].as_i64().unwrap_or(0)
                    ))
                }),
            ),
            (
                "Up-to-date",
                Box::new(|o: &Value| json!(o["status"]["updatedReplicas"].as_i64().unwrap_or(0))),
            ),
            (
                "Available",
                Box::new(|o: &Value| json!(o["status"]["availableReplicas"].as_i64().unwrap_or(0))),
            ),
        ],
        ("apiextensions.k8s.io", "CustomResourceDefinition") => vec![],
        _ => vec![],
    };
    let custom = rt.is_custom();
    for (name, f) in builtin_cols {
        cols.push(
            json!({"name": name, "type": "string", "format": "", "description": "", "priority": 0}),
        );
        extractors.push(f);
    }
    let mut has_age_col = false;
    for pc in &rt.printer_columns {
        let path = pc["jsonPath"].as_str().unwrap_or_default().to_string();
        if path == ".metadata.creationTimestamp" {
            has_age_col = true;
        }
        cols.push(json!({"name": pc["name"], "type": pc["type"], "format": pc.get("format").cloned().unwrap_or(json!("")), "description": pc.get("description").cloned().unwrap_or(json!("")), "priority": pc.get("priority").cloned().unwrap_or(json!(0))}));
        let is_date = pc["type"] == "date";
        extractors.push(Box::new(move |o: &Value| {
            let v = json_path(o, &path);
            if is_date {
                v.as_str().map(|s| json!(age(s))).unwrap_or(Value::Null)
            } else {
                v
            }
        }));
    }
    let _ = custom;
    let created_at = matches!(
        (rt.group.as_str(), rt.kind.as_str()),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
    );
    if created_at {
        cols.push(json!({"name": "Created At", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}));
        extractors.push(Box::new(|o: &Value| {
            o["metadata"]["creationTimestamp"].clone()
        }));
    } else if !has_age_col {
        cols.push(json!({"name": "Age", "type": "string", "format": "", "description": "", "priority": 0}));
        extractors.push(Box::new(|o: &Value| {
            json!(age(o["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()))
        }));
    }
    let objs: Vec<Value> = if is_list {
        body["items"].as_array().cloned().unwrap_or_default()
    } else {
        vec![body.clone()]
    };
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            for f in &extractors {
                cells.push(f(o));
            }
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
        })
        .collect();
    let mut meta = json!({"resourceVersion": body["metadata"]["resourceVersion"].as_str().unwrap_or_default()});
    if let Some(c) = body["metadata"].get("continue") {
        meta["continue"] = c.clone();
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": cols, "rows": rows})
}

/// A target for internal writers (controllers).
pub(crate) fn internal_target(
    rt: &ResourceType,
    namespace: &str,
    name: &str,
    sub: &str,
) -> InternalTarget {
    InternalTarget(Target {
        verb: "update",
        rt: rt.clone(),
        namespace: namespace.into(),
        name: name.into(),
        sub: sub.into(),
    })
}

/// An opaque request target for controllers.
pub(crate) struct InternalTarget(Target);

/// Updates (or status-updates) an object as a controller.
pub(crate) fn controller_update(
    inner: &Inner,
    st: &mut State,
    t: &InternalTarget,
    obj: Value,
    manager: &str,
) -> Result<Arc<Value>, ApiError> {
    let opts = WriteOpts {
        dry_run: false,
        manager: manager.into(),
        operation: "Update".into(),
        field_validation: "Ignore".into(),
        sub: t.0.sub.clone(),
    };
    update(inner, st, &t.0, obj, &opts, &mut Vec::new()).map(|(_, o)| o)
}
