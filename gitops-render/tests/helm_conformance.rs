//! Runs the shared Helm conformance corpus (real charts, expected output from helm 3.17.3)
//! in-process and holds the pass rates at or above what the engine reached, so a regression
//! fails CI. The expectations live in the corpus itself: no helm binary is needed here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gitops_render::helm::value::deep_equal;
use gitops_render::helm::{RenderOptions, Value, read_values_file, template, yaml};

/// Cases that must pass as data (of 70 in the public corpus).
const MIN_DATA_PASS: usize = 70;
/// Cases that must be byte-identical.
const MIN_BYTE_IDENTICAL: usize = 68;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/helm/cases")
}

/// Splits on lines that are exactly `---`, keyed by the `# Source:` line.
fn documents(text: &str) -> Vec<(String, String)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    for line in text.split('\n') {
        if line == "---" {
            docs.push(std::mem::take(&mut cur));
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    docs.push(cur);
    docs.into_iter()
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            let src = d
                .lines()
                .find_map(|l| l.strip_prefix("# Source: "))
                .unwrap_or("")
                .to_string();
            (src, d)
        })
        .collect()
}

/// Removes the value at `path` (volatile values are only checked for presence).
fn blank(v: &Value, path: &[serde_json::Value]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    match (v, first) {
        (Value::Map(m), serde_json::Value::String(k)) => {
            if rest.is_empty() {
                return m.borrow_mut().insert(k.clone(), Value::Nil).is_some();
            }
            let child = m.borrow().get(k).cloned();
            child.is_some_and(|c| blank(&c, rest))
        }
        (Value::List(l), serde_json::Value::Number(n)) => {
            let i = n.as_u64().unwrap_or(u64::MAX) as usize;
            l.get(i).is_some_and(|c| rest.is_empty() || blank(c, rest))
        }
        _ => false,
    }
}

fn compare(expected: &str, actual: &str, volatile: &[serde_json::Value]) -> Result<(), String> {
    let e = documents(expected);
    let a = documents(actual);
    if e.len() != a.len() {
        return Err(format!(
            "{} documents expected, {} rendered",
            e.len(),
            a.len()
        ));
    }
    for (i, ((es, ed), (as_, ad))) in e.iter().zip(a.iter()).enumerate() {
        if es != as_ {
            return Err(format!("document {i}: expected source {es}, got {as_}"));
        }
        let ev = yaml::parse(ed).map_err(|x| format!("expected doc {i}: {x}"))?;
        let av = yaml::parse(ad).map_err(|x| format!("document {i} ({as_}): {x}"))?;
        for vol in volatile {
            let doc = vol.get("doc").and_then(|d| d.as_u64()).unwrap_or(u64::MAX) as usize;
            if doc == i
                && let Some(serde_json::Value::Array(path)) = vol.get("path")
            {
                if !blank(&av, path) {
                    return Err(format!(
                        "document {i} ({as_}): volatile value {path:?} missing"
                    ));
                }
                blank(&ev, path);
            }
        }
        if !deep_equal(&ev, &av) {
            return Err(format!("document {i} ({as_}) differs as data"));
        }
    }
    Ok(())
}

fn run_case(dir: &Path) -> (bool, bool, String) {
    let args: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("args.json")).unwrap_or_default())
            .unwrap_or_default();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap_or_default())
            .unwrap_or_default();
    let s = |k: &str| {
        args.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (release, namespace, kube) = (s("release"), s("namespace"), s("kubeVersion"));
    let include_crds = args
        .get("includeCrds")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let case = dir.to_path_buf();
    // Values are not Send: build everything inside the (big-stack) render thread.
    let result = std::thread::Builder::new()
        .stack_size(512 * 1024 * 1024)
        .spawn(move || {
            let mut values = Value::new_map();
            if case.join("values.yaml").exists() {
                values = read_values_file(&case.join("values.yaml")).map_err(|e| e.to_string())?;
            }
            let opts = RenderOptions {
                release_name: release,
                namespace,
                kube_version: format!("v{kube}"),
                include_crds,
                values,
                ..RenderOptions::default()
            };
            template(&case.join("chart"), &opts)
                .map(|r| r.to_helm_output())
                .map_err(|e| e.to_string())
        })
        .map(|h| h.join().unwrap_or_else(|_| Err("renderer panicked".into())))
        .unwrap_or_else(|e| Err(e.to_string()));
    let expected_err = std::fs::read_to_string(dir.join("expected-error.txt")).ok();
    match (result, expected_err) {
        (Err(got), Some(want)) => {
            let own = want
                .split("): ")
                .nth(1)
                .map(|m| m.lines().next().unwrap_or("").trim().to_string())
                .unwrap_or_default();
            let ok = !own.is_empty() && got.contains(&own);
            (
                ok,
                ok,
                if ok {
                    String::new()
                } else {
                    format!("error {got:?} does not carry {own:?}")
                },
            )
        }
        (Ok(_), Some(_)) => (false, false, "rendered, but helm fails".into()),
        (Err(e), None) => (false, false, format!("render failed: {e}")),
        (Ok(out), None) => {
            let expected = std::fs::read_to_string(dir.join("expected.yaml")).unwrap_or_default();
            let volatile = meta
                .get("volatile")
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default();
            let bytes = out == expected;
            match compare(&expected, &out, &volatile) {
                Ok(()) => (true, bytes, String::new()),
                Err(e) => (false, false, e),
            }
        }
    }
}

#[test]
fn public_corpus_pass_rates_hold() {
    let dir = corpus();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the conformance corpus must be at {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("args.json").exists())
        .collect();
    cases.sort();
    let filter = std::env::var("HELM_CASE").ok();
    let mut report = BTreeMap::new();
    let (mut pass, mut bytes) = (0, 0);
    for c in &cases {
        let name = c
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let (ok, identical, why) = run_case(c);
        pass += usize::from(ok);
        bytes += usize::from(identical);
        if !identical {
            report.insert(
                name,
                if ok {
                    "data-equal, bytes differ".to_string()
                } else {
                    why
                },
            );
        }
    }
    for (k, v) in &report {
        eprintln!("{k}: {v}");
    }
    eprintln!(
        "{pass}/{} pass as data, {bytes} byte-identical",
        cases.len()
    );
    if filter.is_none() {
        assert!(
            cases.len() >= 70,
            "expected the 70 public cases, found {}",
            cases.len()
        );
        assert!(
            pass >= MIN_DATA_PASS,
            "data pass rate fell: {pass} < {MIN_DATA_PASS}"
        );
        assert!(
            bytes >= MIN_BYTE_IDENTICAL,
            "byte-identical count fell: {bytes} < {MIN_BYTE_IDENTICAL}"
        );
    }
}
