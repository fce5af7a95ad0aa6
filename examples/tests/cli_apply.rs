//! `gitops diff` and `gitops apply` as real processes against TestCluster, through a kubeconfig
//! file as a user would point them at a cluster.
//!
//! The round trip: drift before the first apply (exit 1), apply with prune and wait, no drift
//! (exit 0), then an edit and a removed object show as drift and apply as `configured` and
//! `deleted`; a file that is not a Kubernetes object fails with its name before anything is
//! sent; an object refused in its stage leaves the stage unapplied and prunes nothing; `--as`
//! applies with the impersonated user's rights.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use gitops_testkit::cluster::{DenyRules, TestCluster, TestClusterOptions};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

const GITOPS: &str = env!("CARGO_BIN_EXE_gitops");

const APP: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: a
  namespace: demo
data:
  greeting: hello
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: b
  namespace: demo
data:
  colour: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
";

struct Env {
    cluster: TestCluster,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Self {
        gitops_testkit::cluster::install_crypto_provider();
        let cluster = TestCluster::start(TestClusterOptions {
            simulate_controllers: true,
            rollout_delay: std::time::Duration::from_millis(100),
            ..Default::default()
        })
        .await
        .expect("test cluster");
        let dir = tempfile::tempdir().expect("tempdir");
        cluster
            .write_kubeconfig(&dir.path().join("kubeconfig"))
            .expect("kubeconfig");
        std::fs::create_dir(dir.path().join("app")).expect("app dir");
        Self { cluster, dir }
    }

    fn app(&self) -> std::path::PathBuf {
        self.dir.path().join("app")
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.app().join(name), text).expect("write manifest");
    }

    /// Runs `gitops <command> <app dir> --kubeconfig K <args>` off the runtime, so the
    /// in-process cluster keeps serving while the process runs.
    async fn gitops(&self, command: &str, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(GITOPS);
        cmd.arg(command)
            .arg(self.app())
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .args(args)
            .env_remove("KUBECONFIG");
        tokio::task::spawn_blocking(move || cmd.output().expect("gitops runs"))
            .await
            .expect("the process finished")
    }

    fn inventory(&self) -> String {
        self.dir.path().join("inventory.json").display().to_string()
    }

    async fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.cluster.client().await.expect("client"), "demo")
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn lines(out: &Output) -> Vec<String> {
    stdout(out).lines().map(str::to_string).collect()
}

fn inventory_ids(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("inventory written");
    let json: serde_json::Value = serde_json::from_str(&text).expect("inventory is JSON");
    json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_apply_prune_and_wait_round_trip() {
    let env = Env::start().await;
    env.write("app.yaml", APP);

    // Nothing on the cluster yet: everything is drift.
    let diff = env.gitops("diff", &[]).await;
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));
    let text = stdout(&diff);
    assert!(
        text.contains("greeting: hello") && text.contains("colour: blue"),
        "{text}"
    );

    let inventory = env.inventory();
    let apply_args = [
        "--prune",
        "--inventory-file",
        inventory.as_str(),
        "--wait",
        "--timeout",
        "60s",
        "--owner",
        "app",
    ];
    let first = env.gitops("apply", &apply_args).await;
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        lines(&first),
        [
            "Namespace/demo created",
            "ConfigMap/demo/a created",
            "ConfigMap/demo/b created",
            "Deployment/demo/web created",
        ]
    );
    let cms = env.config_maps().await;
    let a = cms.get("a").await.expect("a applied");
    assert_eq!(a.data.expect("data")["greeting"], "hello");
    let labels = a.metadata.labels.expect("owner labels");
    assert_eq!(labels["gitops.toolkit/name"], "app");
    assert_eq!(labels["gitops.toolkit/namespace"], "default");
    assert_eq!(
        inventory_ids(Path::new(&inventory)),
        [
            "_demo__Namespace",
            "demo_a__ConfigMap",
            "demo_b__ConfigMap",
            "demo_web_apps_Deployment",
        ]
    );

    // In sync: exit 0 and nothing printed.
    let diff = env.gitops("diff", &[]).await;
    assert_eq!(diff.status.code(), Some(0), "{}", stderr(&diff));
    assert_eq!(stdout(&diff), "");

    // An edit and a removed object.
    let edited = APP
        .replace("greeting: hello", "greeting: bonjour")
        .replace(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: demo\ndata:\n  colour: blue\n",
            "",
        );
    assert_ne!(edited, APP);
    assert!(!edited.contains("name: b"));
    env.write("app.yaml", &edited);
    let diff = env.gitops("diff", &[]).await;
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));
    let text = stdout(&diff);
    assert!(
        text.contains("-  greeting: hello") && text.contains("+  greeting: bonjour"),
        "{text}"
    );

    let second = env.gitops("apply", &apply_args).await;
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        lines(&second),
        [
            "Namespace/demo unchanged",
            "ConfigMap/demo/a configured",
            "Deployment/demo/web unchanged",
            "ConfigMap/demo/b deleted",
        ]
    );
    let a = cms.get("a").await.expect("a still there");
    assert_eq!(a.data.expect("data")["greeting"], "bonjour");
    assert!(cms.get_opt("b").await.expect("get b").is_none(), "b pruned");
    assert_eq!(
        inventory_ids(Path::new(&inventory)),
        [
            "_demo__Namespace",
            "demo_a__ConfigMap",
            "demo_web_apps_Deployment",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_an_object_fails_with_its_name_and_nothing_is_applied() {
    let env = Env::start().await;
    env.write(
        "good.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: good\n  namespace: default\n",
    );
    env.write("zz-bad.yaml", "apiVersion: v1\nmetadata:\n  name: nokind\n");
    let out = env.gitops("apply", &[]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("zz-bad.yaml"), "{err}");
    assert!(err.contains("kind"), "{err}");
    assert_eq!(stdout(&out), "");
    let cms: Api<ConfigMap> =
        Api::namespaced(env.cluster.client().await.expect("client"), "default");
    assert!(
        cms.get_opt("good").await.expect("get").is_none(),
        "nothing may be applied when one file is bad"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_object_leaves_its_stage_unapplied_and_prunes_nothing() {
    let env = Env::start().await;
    let inventory = env.inventory();
    env.write(
        "app.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: old\n  namespace: demo\n",
    );
    let first = env
        .gitops("apply", &["--prune", "--inventory-file", &inventory])
        .await;
    assert!(first.status.success(), "{}", stderr(&first));

    // The next revision drops `old` and adds a ConfigMap and a Secret; Secrets are refused.
    env.cluster
        .set_authorizer(Arc::new(DenyRules::new().deny("*", "*", "secrets")));
    env.write(
        "app.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: new\n  namespace: demo\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: token\n  namespace: demo\nstringData:\n  token: s3cr3t-value\n",
    );
    let out = env
        .gitops("apply", &["--prune", "--inventory-file", &inventory])
        .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Secret/demo/token") && err.contains("forbidden"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t-value") && !stdout(&out).contains("s3cr3t-value"));
    let cms = env.config_maps().await;
    assert!(
        cms.get_opt("new").await.expect("get new").is_none(),
        "the ConfigMap shares the Secret's stage and must not be applied"
    );
    assert!(
        cms.get_opt("old").await.expect("get old").is_some(),
        "nothing is pruned after an error"
    );
    assert!(
        inventory_ids(Path::new(&inventory)).contains(&"demo_old__ConfigMap".to_string()),
        "the inventory still holds what is on the cluster"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_as_an_impersonated_user_gets_that_users_rights() {
    let env = Env::start().await;
    let restricted = "system:serviceaccount:default:restricted";
    env.cluster
        .set_authorizer(Arc::new(DenyRules::new().deny(restricted, "*", "*")));
    env.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tenant\n  namespace: default\n",
    );
    let denied = env.gitops("apply", &["--as", restricted]).await;
    assert!(!denied.status.success());
    let err = stderr(&denied);
    assert!(err.contains("forbidden"), "{err}");
    let cms: Api<ConfigMap> =
        Api::namespaced(env.cluster.client().await.expect("client"), "default");
    assert!(cms.get_opt("tenant").await.expect("get").is_none());

    // The same directory as the kubeconfig's own user is allowed.
    let allowed = env.gitops("apply", &[]).await;
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert_eq!(lines(&allowed), ["ConfigMap/default/tenant created"]);
}
