//! Runs the shared kustomize conformance corpus in-process and guards the pass rate.
//!
//! The corpus (`../shared/conformance/kustomize/cases` from the workspace root) holds inputs
//! and the output of `kubectl kustomize` (kustomize v5.5.0). A success case passes when our
//! output equals the expected stream as data, document by document, in order; an error case
//! passes when the build fails. The floors below are the figures this engine reached; a
//! regression below them fails the test.

use std::path::{Path, PathBuf};

use gitops_render::kustomize::{BuildOptions, LoadRestrictor, build};
use gitops_render::yaml::{Value, parse_stream};

/// Cases that must pass (out of 179).
const MIN_PASS: usize = 179;
/// Successes that must be byte-identical to kubectl's output.
const MIN_BYTE_IDENTICAL: usize = 158;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/kustomize/cases")
}

fn docs(text: &str) -> Option<Vec<Value>> {
    parse_stream(text)
        .ok()
        .map(|d| d.into_iter().filter(|v| !v.is_null()).collect())
}

#[test]
fn conformance_pass_rate_does_not_regress() {
    let root = corpus();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("conformance corpus {} is missing: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    entries.sort();
    let (mut pass, mut identical, mut failed) = (0, 0, Vec::new());
    for case in &entries {
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(case.join("meta.json")).expect("meta.json readable"),
        )
        .expect("meta.json is JSON");
        for d in meta["empty_dirs"].as_array().into_iter().flatten() {
            std::fs::create_dir_all(case.join(d.as_str().unwrap_or_default()))
                .expect("create empty dir");
        }
        let args: Vec<String> = meta["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        let mut opts = BuildOptions::default();
        if args.iter().any(|a| a == "LoadRestrictionsNone") {
            opts.load_restrictor = LoadRestrictor::None;
        }
        opts.managed_by_label = args.iter().any(|a| a == "--enable-managedby-label");
        let dir = case.join(meta["build_root"].as_str().expect("build_root"));
        let result = build(&dir, &opts);
        let mut why = String::new();
        if let (Some("success"), Err(e)) = (meta["expect"].as_str(), &result) {
            why = format!(" ({e})");
        }
        let ok = match (meta["expect"].as_str(), result) {
            (Some("error"), Err(_)) => true,
            (Some("success"), Ok(b)) => {
                let out = b.to_yaml();
                let exp = std::fs::read_to_string(case.join("expected.yaml")).expect("expected");
                if out == exp {
                    identical += 1;
                }
                if let Some(dump) = std::env::var_os("KUSTOMIZE_CONFORMANCE_DUMP") {
                    let name = case.file_name().expect("case name");
                    let _ = std::fs::create_dir_all(&dump);
                    let _ = std::fs::write(Path::new(&dump).join(name), &out);
                }
                docs(&out).is_some() && docs(&out) == docs(&exp)
            }
            _ => false,
        };
        if ok {
            pass += 1;
        } else {
            let name = case.file_name().map(|f| f.to_string_lossy().into_owned());
            failed.push(format!("{}{why}", name.unwrap_or_default()));
        }
    }
    eprintln!(
        "kustomize conformance: {pass}/{} pass, {identical} byte-identical; failing: {failed:?}",
        entries.len()
    );
    assert!(pass >= MIN_PASS, "pass count {pass} fell below {MIN_PASS}");
    assert!(
        identical >= MIN_BYTE_IDENTICAL,
        "byte-identical count {identical} fell below {MIN_BYTE_IDENTICAL}"
    );
}
