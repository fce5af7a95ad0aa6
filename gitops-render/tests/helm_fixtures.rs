//! Feature fixtures under `testdata/helm/`: each case is a chart plus `args.json`, with the
//! output helm 3.17.3 printed (`expected.yaml`) or the error it reported
//! (`expected-error.txt`). `testdata/helm/regen.sh` re-creates the expectations with helm.

use std::path::{Path, PathBuf};

use gitops_render::helm::values::{SetKind, merge_maps, parse_set};
use gitops_render::helm::{RenderOptions, Value, read_values_file, template};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/helm")
}

fn strings(args: &serde_json::Value, key: &str) -> Vec<String> {
    args.get(key)
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Renders a fixture the way `regen.sh` invokes helm (`parallel`: manifests read on a second
/// thread, which must not change the output or the error).
fn render(dir: &Path, parallel: bool) -> Result<String, String> {
    let args: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("args.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .stack_size(512 * 1024 * 1024)
        .spawn(move || {
            let s = |k: &str| {
                args.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let b = |k: &str| args.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
            let mut values = Value::new_map();
            for f in strings(&args, "values") {
                let v = read_values_file(&dir.join(f)).map_err(|e| e.to_string())?;
                values = merge_maps(&values, &v);
            }
            for (key, kind) in [
                ("setJson", SetKind::Json),
                ("set", SetKind::Typed),
                ("setString", SetKind::String),
            ] {
                for s in strings(&args, key) {
                    parse_set(&s, &values, kind).map_err(|e| e.to_string())?;
                }
            }
            let chart = match args.get("chartDir").and_then(|v| v.as_str()) {
                Some(c) => dir.join(c),
                None => dir.join("chart"),
            };
            let opts = RenderOptions {
                release_name: s("release"),
                namespace: s("namespace"),
                kube_version: format!("v{}", s("kubeVersion")),
                include_crds: b("includeCrds"),
                skip_tests: b("skipTests"),
                values,
                parallel,
                ..RenderOptions::default()
            };
            template(&chart, &opts)
                .map(|r| r.to_helm_output())
                .map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())?
        .join()
        .unwrap_or_else(|_| Err("renderer panicked".into()))
}

/// Helm's stderr without `Error: `, warnings and the `--debug` hint.
fn helm_message(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("WARNING:") && !l.starts_with("Use --debug flag"))
        .filter(|l| !l.contains("info: skipping unknown hook"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .trim_start_matches("Error: ")
        .to_string()
}

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("testdata/helm exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("args.json").exists())
        .collect();
    v.sort();
    v
}

#[test]
fn fixtures_render_exactly_like_helm() {
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 15, "fixtures missing: {}", all.len());
    for dir in &all {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let got = render(dir, false);
        let got_parallel = render(dir, true);
        if got_parallel != got {
            failures.push(format!(
                "{name}: rendering with a second thread differs: {got_parallel:?} vs {got:?}"
            ));
        }
        if let Ok(want) = std::fs::read_to_string(dir.join("expected.yaml")) {
            match got {
                Ok(out) if out == want => {}
                Ok(out) => {
                    let first = out
                        .lines()
                        .zip(want.lines())
                        .position(|(a, b)| a != b)
                        .unwrap_or(0);
                    failures.push(format!(
                        "{name}: output differs at line {}: got {:?}, want {:?}",
                        first + 1,
                        out.lines().nth(first),
                        want.lines().nth(first)
                    ));
                }
                Err(e) => failures.push(format!("{name}: render failed: {e}")),
            }
        } else {
            let want = helm_message(
                &std::fs::read_to_string(dir.join("expected-error.txt")).unwrap_or_default(),
            );
            match got {
                Ok(_) => failures.push(format!("{name}: rendered, but helm fails with {want:?}")),
                Err(e) => {
                    // Helm's infinite-recursion error repeats the chain a thousand times; the
                    // final message is what matters.
                    let sorted = |s: &str| {
                        let mut l: Vec<&str> = s.trim().lines().collect();
                        l.sort_unstable();
                        l.join("\n")
                    };
                    let ok = if name == "err-recursion" {
                        e.contains("rendering template has a nested reference name: loop: unable to execute template")
                    } else if name == "err-schema" {
                        // gojsonschema reports in Go map order, which varies run to run.
                        sorted(&e) == sorted(&want)
                    } else {
                        e.trim() == want
                    };
                    if !ok {
                        failures.push(format!("{name}: error\n  got:  {e}\n  want: {want}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
