//! gitops-render's Helm engine in-process on the largest public conformance chart (bitnami
//! kube-prometheus, about 4.5 MB of output): load + values + render + sort + print, per
//! iteration. Process-level comparison with helm 3.17.3 over the whole corpus is
//! `scripts/bench-helm`, which also prints helm's in-process equivalent for this chart: its
//! median `helm template` time minus its median start cost (the same command on a chart with
//! one small template), since helm has no in-process entry point to time.
//! What one iteration includes: reading the chart directory (249 files, 6.6 MB, from the
//! page cache), Chart.yaml/values, value coalescing, parsing and executing every template,
//! reading each rendered document's head, install-order sorting, and building the 4.5 MB
//! output string; not writing it anywhere. The medians are of warm renders (the 2nd and
//! later in the process); the first render, printed separately, is the cold one (fresh heap
//! pages), which is what one `gitops template` or `helm template` process does. helm's
//! figure from `scripts/bench-helm` is such a cold single render and includes writing the
//! output to a pipe: compare it with the first render as well as with the medians.
//! `HELM_BENCH_LOOP=N` renders N times and exits (for `perf stat` / `perf record`).
//! Run with `cargo bench -p gitops-benches --bench helm`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a bench fails loudly on purpose

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gitops_render::helm::{RenderOptions, template};

/// The case directory as an absolute path without `..` (as `gitops template` is run on it:
/// a short path to walk for every file it opens, not `benches/../../shared/...`).
fn case_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/helm/cases/bitnami-kube-prometheus-default");
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// One render; `parallel` reads the manifests on a second thread (`RenderOptions::parallel`).
fn render_once(dir: &Path, parallel: bool) -> usize {
    let opts = RenderOptions {
        release_name: "rel".into(),
        namespace: "demo".into(),
        kube_version: "v1.31.0".into(),
        include_crds: true,
        parallel,
        ..RenderOptions::default()
    };
    template(&dir.join("chart"), &opts)
        .expect("the chart renders")
        .to_helm_output()
        .len()
}

/// CPU time this thread has run, from the kernel's scheduler statistics (nanoseconds).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Median wall time and median CPU time of the rendering thread for one render, over `n`
/// renders, and the mean CPU time of the whole process per render (every thread the engine
/// may use; the kernel counts it in clock ticks, so only a mean over many renders is exact).
fn medians(dir: &Path, n: usize, parallel: bool) -> (f64, f64, f64) {
    let mut wall = Vec::with_capacity(n);
    let mut cpu = Vec::with_capacity(n);
    let p0 = process_cpu_ns();
    for _ in 0..n {
        let (c0, t) = (thread_cpu_ns(), Instant::now());
        std::hint::black_box(render_once(dir, parallel));
        wall.push(t.elapsed().as_secs_f64() * 1e3);
        if let (Some(a), Some(b)) = (c0, thread_cpu_ns()) {
            cpu.push((b - a) as f64 / 1e6);
        }
    }
    let pcpu = match (p0, process_cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e6 / n as f64,
        _ => f64::NAN,
    };
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    (med(&mut wall), med(&mut cpu), pcpu)
}

/// CPU time of the whole process (user + system, every thread), from `/proc/self/stat`, in
/// nanoseconds (counted in clock ticks of 10 ms).
fn process_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000)
}

fn bench(c: &mut Criterion) {
    let dir = case_dir();
    // `HELM_BENCH_LOOP=N`: only render N times on one thread and exit (for `perf record` /
    // `perf stat`, which then see the render and nothing else of criterion's).
    if let Some(n) = std::env::var("HELM_BENCH_LOOP")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let dir = dir.clone();
        std::thread::Builder::new()
            .stack_size(512 * 1024 * 1024)
            .spawn(move || {
                for _ in 0..n {
                    std::hint::black_box(render_once(&dir, false));
                }
            })
            .unwrap()
            .join()
            .unwrap();
        return;
    }
    // The engine recurses through include/tpl; give it the stack the CLI gives it.
    let (bytes, first) = std::thread::Builder::new()
        .stack_size(512 * 1024 * 1024)
        .spawn({
            let dir = dir.clone();
            move || {
                let t = Instant::now();
                let n = render_once(&dir, false);
                (n, t.elapsed())
            }
        })
        .unwrap()
        .join()
        .unwrap();
    let expected = std::fs::read_to_string(dir.join("expected.yaml")).unwrap();
    assert_eq!(bytes, expected.len(), "output size differs from helm's");
    eprintln!("kube-prometheus: {bytes} bytes of output, first render {first:?}");
    for parallel in [false, true] {
        let (wall, cpu, pcpu) = std::thread::Builder::new()
            .stack_size(512 * 1024 * 1024)
            .spawn({
                let dir = dir.clone();
                move || medians(&dir, 60, parallel)
            })
            .unwrap()
            .join()
            .unwrap();
        eprintln!(
            "kube-prometheus{} over 60 renders: median wall {wall:.2} ms, median CPU of the \
             rendering thread {cpu:.2} ms, mean CPU of the process {pcpu:.2} ms",
            if parallel { " (parallel)" } else { "" }
        );
    }
    let mut g = c.benchmark_group("helm");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(20);
    for (name, parallel) in [
        ("kube-prometheus in-process", false),
        (
            "kube-prometheus in-process, manifests on a second thread",
            true,
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let dir = dir.clone();
                std::thread::Builder::new()
                    .stack_size(512 * 1024 * 1024)
                    .spawn(move || {
                        let t = Instant::now();
                        for _ in 0..iters {
                            std::hint::black_box(render_once(&dir, parallel));
                        }
                        t.elapsed()
                    })
                    .unwrap()
                    .join()
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
