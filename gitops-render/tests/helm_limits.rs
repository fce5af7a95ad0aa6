//! Limits on a render are typed errors: include/tpl recursion depth, output size, time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gitops_render::helm::{HelmError, RenderOptions, template};

fn chart(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/helm")
        .join(name)
        .join("chart")
}

/// Renders in a big-stack thread; options are built there (values are not `Send`).
fn run(name: &'static str, opts: fn() -> RenderOptions) -> Result<String, HelmError> {
    std::thread::Builder::new()
        .stack_size(256 * 1024 * 1024)
        .spawn(move || template(&chart(name), &opts()).map(|r| r.to_helm_output()))
        .expect("spawn")
        .join()
        .expect("no panic")
}

#[test]
fn recursion_depth_is_a_typed_error() {
    let opts = || RenderOptions {
        max_depth: 40,
        ..RenderOptions::default()
    };
    match run("err-recursion", opts) {
        Err(HelmError::RecursionLimit { template, name }) => {
            assert_eq!(template, "err-recursion/templates/cm.yaml");
            assert_eq!(name, "loop");
        }
        other => panic!("expected RecursionLimit, got {other:?}"),
    }
}

#[test]
fn output_size_is_a_typed_error() {
    let opts = || RenderOptions {
        max_output: 64,
        ..RenderOptions::default()
    };
    match run("sprig", opts) {
        Err(HelmError::OutputLimit { limit, .. }) => assert_eq!(limit, 64),
        other => panic!("expected OutputLimit, got {other:?}"),
    }
}

#[test]
fn time_is_a_typed_error() {
    let opts = || RenderOptions {
        timeout: Some(Duration::ZERO),
        max_depth: 100_000,
        ..RenderOptions::default()
    };
    match run("err-recursion", opts) {
        Err(HelmError::Timeout { template }) => {
            assert_eq!(template, "err-recursion/templates/cm.yaml")
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
}

#[test]
fn within_limits_renders() {
    let out = run("sprig", RenderOptions::default).expect("renders");
    assert!(out.starts_with("---\n# Source: sprig/templates/data.yaml\n"));
}
