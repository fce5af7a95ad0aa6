//! gitops-render's Helm engine in-process on the largest public conformance chart (bitnami
//! kube-prometheus, about 4.5 MB of output): load + values + render + sort + print, per
//! iteration. Process-level comparison with helm 3.17.3 over the whole corpus is
//! `scripts/bench-helm`, which also prints helm's in-process equivalent for this chart: its
//! median `helm template` time minus its median start cost (the same command on a chart with
//! one small template), since helm has no in-process entry point to time.
//! Run with `cargo bench -p gitops-benches --bench helm`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a bench fails loudly on purpose

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gitops_render::helm::{RenderOptions, template};

fn case_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/helm/cases/bitnami-kube-prometheus-default")
}

fn render_once(dir: &Path) -> usize {
    let opts = RenderOptions {
        release_name: "rel".into(),
        namespace: "demo".into(),
        kube_version: "v1.31.0".into(),
        include_crds: true,
        ..RenderOptions::default()
    };
    template(&dir.join("chart"), &opts)
        .expect("the chart renders")
        .to_helm_output()
        .len()
}

fn bench(c: &mut Criterion) {
    let dir = case_dir();
    // The engine recurses through include/tpl; give it the stack the CLI gives it.
    let (bytes, first) = std::thread::Builder::new()
        .stack_size(512 * 1024 * 1024)
        .spawn({
            let dir = dir.clone();
            move || {
                let t = Instant::now();
                let n = render_once(&dir);
                (n, t.elapsed())
            }
        })
        .unwrap()
        .join()
        .unwrap();
    let expected = std::fs::read_to_string(dir.join("expected.yaml")).unwrap();
    assert_eq!(bytes, expected.len(), "output size differs from helm's");
    eprintln!("kube-prometheus: {bytes} bytes of output, first render {first:?}");
    let mut g = c.benchmark_group("helm");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(20);
    g.bench_function("kube-prometheus in-process", |b| {
        b.iter_custom(|iters| {
            let dir = dir.clone();
            std::thread::Builder::new()
                .stack_size(512 * 1024 * 1024)
                .spawn(move || {
                    let t = Instant::now();
                    for _ in 0..iters {
                        std::hint::black_box(render_once(&dir));
                    }
                    t.elapsed()
                })
                .unwrap()
                .join()
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
