//! kubectl (v1.32) against TestCluster: discovery, client-side and server-side apply, tables,
//! conflicts, dry-run diff, wait and delete.

use std::process::Command;

use gitops_testkit::cluster::{TestCluster, TestClusterOptions};
use serde_json::Value;

struct Kubectl {
    kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(c: &TestCluster) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        c.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        Kubectl {
            kubeconfig,
            _dir: dir,
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        use std::io::Write;
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self._dir.path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .expect("kubectl must be installed (package: kubectl v1.32)");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        } else {
            drop(child.stdin.take());
        }
        let out = child.wait_with_output().expect("kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.run(args, stdin);
        assert!(ok, "kubectl {args:?} failed: {err}");
        out
    }
}

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  mode: blue
"#;

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_applies_gets_diffs_and_deletes() {
    let c = TestCluster::start(TestClusterOptions {
        simulate_controllers: true,
        ..Default::default()
    })
    .await
    .expect("start");
    let k = Kubectl::new(&c);
    let version = k.ok(&["version", "-o", "json"], None);
    let v: Value = serde_json::from_str(&version).expect("json");
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.32.0");
    let resources = k.ok(&["api-resources", "--no-headers"], None);
    assert!(
        resources
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["deployments", "deploy", "apps/v1", "true", "Deployment"]),
        "{resources}"
    );

    let out = k.ok(&["apply", "-f", "-"], Some(APP));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "namespace/demo created",
            "deployment.apps/web created",
            "configmap/settings created"
        ]
    );
    let out = k.ok(&["apply", "-f", "-"], Some(APP));
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");
    let table = k.ok(&["get", "cm", "-n", "demo"], None);
    let header: Vec<&str> = table
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(header, vec!["NAME", "DATA", "AGE"]);
    assert!(table.contains("settings"));
    k.ok(
        &[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            "demo",
            "--timeout=20s",
        ],
        None,
    );
    k.ok(
        &[
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "-n",
            "demo",
            "--timeout=20s",
        ],
        None,
    );

    // `get -w` receives Table events (columns sent with the first event only).
    let mut watch = Command::new("kubectl")
        .env("KUBECONFIG", &k.kubeconfig)
        .env("HOME", k._dir.path())
        .args(["get", "cm", "-n", "demo", "-w"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl get -w");
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    k.ok(
        &["create", "-n", "demo", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  a: b\n  c: d\n",
        ),
    );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let _ = watch.kill();
    let out = watch.wait_with_output().expect("watch output");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows.first().map(|r| r[..2].to_vec()),
        Some(vec!["NAME", "DATA"]),
        "{text}"
    );
    assert!(
        rows.iter()
            .any(|r| r.len() >= 2 && r[0] == "watched" && r[1] == "2"),
        "{text}"
    );

    // Server-side apply by another manager conflicts on a field kubectl owns.
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: demo\ndata:\n  mode: green\n";
    let (ok, _, err) = k.run(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        Some(other),
    );
    assert!(!ok);
    assert!(err.contains("Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .data.mode"), "{err}");
    k.ok(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=other",
            "-f",
            "-",
        ],
        Some(other),
    );
    let cm: Value =
        serde_json::from_str(&k.ok(&["get", "cm", "settings", "-n", "demo", "-o", "json"], None))
            .expect("json");
    assert_eq!(cm["data"]["mode"], "green");

    let out = k.ok(
        &["scale", "deployment/web", "-n", "demo", "--replicas=3"],
        None,
    );
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    let d: Value =
        serde_json::from_str(&k.ok(&["get", "deploy", "web", "-n", "demo", "-o", "json"], None))
            .expect("json");
    assert_eq!(d["spec"]["replicas"], 3);

    // Diff uses a server-side dry run; nothing changes.
    let rv = cm["metadata"]["resourceVersion"].clone();
    let (_, diff, _) = k.run(&["diff", "-f", "-"], Some(APP));
    assert!(
        diff.contains("-  mode: green") && diff.contains("+  mode: blue"),
        "{diff}"
    );
    let cm: Value =
        serde_json::from_str(&k.ok(&["get", "cm", "settings", "-n", "demo", "-o", "json"], None))
            .expect("json");
    assert_eq!(cm["metadata"]["resourceVersion"], rv);

    let out = k.ok(
        &[
            "delete",
            "namespace",
            "demo",
            "--wait=true",
            "--timeout=20s",
        ],
        None,
    );
    assert!(out.contains("namespace \"demo\" deleted"), "{out}");
    let (ok, _, err) = k.run(&["get", "cm", "settings", "-n", "demo"], None);
    assert!(!ok);
    // kubectl checks the namespace after the 404 and reports that it is gone.
    assert!(err.contains("namespaces \"demo\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_verifies_the_tls_server_against_the_kubeconfig_ca() {
    let c = TestCluster::start(TestClusterOptions {
        tls: true,
        ..Default::default()
    })
    .await
    .expect("start");
    let k = Kubectl::new(&c);
    let out = k.ok(&["get", "namespaces", "-o", "name"], None);
    assert!(out.lines().any(|l| l == "namespace/default"), "{out}");
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Gadget, plural: gadgets, singular: gadget, shortNames: [gd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_serves_custom_resources_with_printer_columns() {
    let c = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("start");
    let k = Kubectl::new(&c);
    k.ok(&["apply", "--server-side", "-f", "-"], Some(CRD));
    k.ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd/gadgets.example.com",
            "--timeout=10s",
        ],
        None,
    );
    let gadget = "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g1\n  namespace: default\nspec:\n  size: 4\n";
    k.ok(&["apply", "-f", "-"], Some(gadget));
    let table = k.ok(&["get", "gd"], None);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], vec!["NAME", "SIZE", "AGE"], "{table}");
    assert_eq!(rows[1][..2].to_vec(), vec!["g1", "4"], "{table}");
    let bad = "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g2\n  namespace: default\nspec:\n  size: 0\n";
    let (ok, _, err) = k.run(&["apply", "-f", "-"], Some(bad));
    assert!(!ok);
    assert!(
        err.contains(
            "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        ),
        "{err}"
    );
}
