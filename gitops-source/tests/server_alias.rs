//! The artifact server answers Flux's stable links (`latest.tar.gz`, `index.yaml`) from the
//! store's alias records over real HTTP on 127.0.0.1: the same bytes as the current artifact,
//! the next artifact once the alias moves, ranges and HEAD as for any file, and 404 for an
//! unknown name, a stale record, or an alias record asked for by its own name.

use gitops_source::{ArtifactServer, ArtifactStore, ObjectRef};

struct Served {
    store: ArtifactStore,
    base: String,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn serve() -> Served {
    let dir = tempfile::tempdir().expect("tmp");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/", listener.local_addr().expect("addr"));
    let store = ArtifactStore::new(dir.path())
        .expect("store")
        .with_base_url(base.parse().expect("url"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = ArtifactServer::new(&store);
    tokio::spawn(async move {
        let _ = server
            .serve(listener, async move {
                let _ = rx.await;
            })
            .await;
    });
    Served {
        store,
        base,
        _dir: dir,
        _shutdown: tx,
    }
}

async fn get(url: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(url).await.expect("GET");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn stable_links_serve_the_current_artifact() {
    let served = serve().await;
    let store = &served.store;
    let object = ObjectRef::new("HelmChart", "flux-system", "app").expect("object");
    let first = store
        .write_file(&object, "app-1.0.0+abc.tgz", &mut &b"chart one"[..])
        .expect("write");
    let alias = store
        .set_alias(&object, "latest.tar.gz", &first.path)
        .expect("alias");
    let link = store.url_for(&alias).expect("url").to_string();
    assert_eq!(
        link,
        format!("{}helmchart/flux-system/app/latest.tar.gz", served.base)
    );
    let versioned = store.url_for(&first.path).expect("url").to_string();
    assert_eq!(get(&link).await, (200, b"chart one".to_vec()));
    assert_eq!(get(&link).await, get(&versioned).await);

    // Ranges and HEAD behave as for the file itself.
    let client = reqwest::Client::new();
    let range = client
        .get(&link)
        .header("range", "bytes=6-8")
        .send()
        .await
        .expect("GET range");
    assert_eq!(range.status().as_u16(), 206);
    assert_eq!(range.bytes().await.expect("body").as_ref(), b"one");
    let head = client.head(&link).send().await.expect("HEAD");
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(
        head.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some("9")
    );

    // A new artifact: the link follows it, the old versioned URL still serves the old one.
    let second = store
        .write_file(&object, "app-1.1.0.tgz", &mut &b"chart two"[..])
        .expect("write");
    store
        .set_alias(&object, "latest.tar.gz", &second.path)
        .expect("alias");
    assert_eq!(get(&link).await, (200, b"chart two".to_vec()));
    assert_eq!(get(&versioned).await, (200, b"chart one".to_vec()));

    // Not aliases: an unknown name, the record itself, a record whose file is gone.
    let dir = format!("{}helmchart/flux-system/app/", served.base);
    assert_eq!(get(&format!("{dir}index.yaml")).await.0, 404);
    assert_eq!(get(&format!("{dir}.alias-latest.tar.gz")).await.0, 404);
    std::fs::remove_file(store.local_path(&second.path)).expect("remove");
    assert_eq!(get(&link).await.0, 404);
}
