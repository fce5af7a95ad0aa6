//! The native kustomize engine on a generated tree of overlays (patches, generators, images,
//! replicas, labels and annotations). The side-by-side comparison with `kubectl kustomize`
//! (medians and peak RSS) is `scripts/bench-kustomize`, which generates the same tree.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use gitops_render::kustomize::{BuildOptions, build};

const BASE: &[(&str, &str)] = &[
    (
        "kustomization.yaml",
        "resources:\n- deployment.yaml\n- service.yaml\n- serviceaccount.yaml\nconfigMapGenerator:\n- name: app-config\n  literals:\n  - LOG_LEVEL=info\n  - FEATURE_X=true\nsecretGenerator:\n- name: app-secret\n  literals:\n  - token=s3cr3t\n",
    ),
    (
        "deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: app\n  template:\n    metadata:\n      labels:\n        app: app\n    spec:\n      serviceAccountName: app\n      containers:\n      - name: app\n        image: registry.example.com/app:1.0.0\n        envFrom:\n        - configMapRef:\n            name: app-config\n        - secretRef:\n            name: app-secret\n        ports:\n        - containerPort: 8080\n        volumeMounts:\n        - name: data\n          mountPath: /data\n      volumes:\n      - name: data\n        emptyDir: {}\n",
    ),
    (
        "service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: app\nspec:\n  selector:\n    app: app\n  ports:\n  - port: 80\n    targetPort: 8080\n",
    ),
    (
        "serviceaccount.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n",
    ),
];

fn overlay(i: usize) -> String {
    format!(
        "namePrefix: o{i}-\nnamespace: team-{i}\ncommonLabels:\n  team: team-{i}\ncommonAnnotations:\n  owner: owner-{i}@example.com\nresources:\n- ../../base\nimages:\n- name: registry.example.com/app\n  newTag: \"1.{i}.0\"\nreplicas:\n- name: app\n  count: {r}\nconfigMapGenerator:\n- name: overlay-config\n  literals:\n  - INDEX={i}\n  - REGION=eu-{i}\npatches:\n- patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: app\n    spec:\n      template:\n        spec:\n          containers:\n          - name: app\n            env:\n            - name: OVERLAY\n              value: \"{i}\"\n            resources:\n              limits:\n                memory: {m}Mi\n",
        r = 1 + i % 5,
        m = 128 + i
    )
}

/// Writes the tree: a base and `n` overlays, and a root kustomization listing the overlays.
fn generate(root: &Path, n: usize) {
    std::fs::create_dir_all(root.join("base")).expect("mkdir base");
    for (name, text) in BASE {
        std::fs::write(root.join("base").join(name), text).expect("write base");
    }
    let mut top = String::from("resources:\n");
    for i in 0..n {
        let d = root.join("overlays").join(format!("o{i}"));
        std::fs::create_dir_all(&d).expect("mkdir overlay");
        std::fs::write(d.join("kustomization.yaml"), overlay(i)).expect("write overlay");
        top.push_str(&format!("- overlays/o{i}\n"));
    }
    std::fs::write(root.join("kustomization.yaml"), top).expect("write root");
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    generate(dir.path(), 300);
    let opts = BuildOptions::default();
    let first = build(dir.path(), &opts).expect("tree builds");
    assert_eq!(first.resources.len(), 1800, "300 overlays x 6 objects");
    let mut g = c.benchmark_group("kustomize");
    g.sample_size(10);
    g.bench_function("build_300_overlays_1800_objects", |b| {
        b.iter(|| {
            let out = build(dir.path(), &opts).expect("builds");
            out.to_yaml().len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
