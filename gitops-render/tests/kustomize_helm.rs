//! `helmCharts` rendered by the in-process Helm engine.
//!
//! The `helm-*` fixtures under `testdata/kustomize/` hold `expected.yaml` made by
//! `kubectl kustomize --enable-helm --helm-command helm` (kustomize v5.5.0, helm 3.17.3; see
//! `testdata/kustomize/helm-regen.sh`); the other tests check the refusals: helm disabled, a
//! chart that would need a pull, reads outside the root, bad entries, template errors.

use std::path::{Path, PathBuf};

use gitops_render::kustomize::{BuildOptions, KustomizeError, build};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/kustomize")
        .join(name)
}

fn opts(root: &Path) -> BuildOptions {
    BuildOptions {
        confine_root: Some(root.to_path_buf()),
        ..BuildOptions::default()
    }
}

fn assert_fixture(name: &str) {
    let input = fixture(name).join("input");
    let built = build(&input, &opts(&input)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = std::fs::read_to_string(fixture(name).join("expected.yaml")).expect("expected.yaml");
    assert_eq!(built.to_yaml(), want, "{name}");
}

#[test]
fn values_inline_include_crds_namespace_and_overlay_transformers() {
    // valuesInline over the chart's values (YAML 1.1 `yes`), includeCRDs, the release
    // namespace, then namespace/prefix/labels/annotations, a JSON patch, a strategic merge
    // patch, images, and the ConfigMap reference renamed in the Deployment.
    assert_fixture("helm-inline-crds-patch");
}

#[test]
fn values_merge_override_merge_replace_with_values_files() {
    // One chart three times: valuesMerge override (null deletes), merge (the file wins) with
    // additionalValuesFiles and skipHooks, replace with skipTests.
    assert_fixture("helm-values-merge");
}

#[test]
fn chart_home_versioned_directory_name_template_kube_and_api_versions() {
    // helmGlobals.chartHome with `{name}-{version}/{name}` (repo and version set, chart present
    // so nothing is pulled), nameTemplate, kubeVersion `1.30`, apiVersions, origin annotations.
    assert_fixture("helm-versioned-globals");
}

#[test]
fn the_deprecated_helm_chart_inflation_generator_field() {
    assert_fixture("helm-legacy-generator");
}

/// A temporary kustomization with a copy of the fixture chart under `charts/demo`.
fn scratch(kustomization: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &fixture("helm-legacy-generator").join("input/charts/demo"),
        &tmp.path().join("app/charts/demo"),
    );
    std::fs::write(tmp.path().join("app/kustomization.yaml"), kustomization).expect("write");
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).expect("copy");
        }
    }
}

fn build_scratch(
    tmp: &tempfile::TempDir,
) -> Result<gitops_render::kustomize::Build, KustomizeError> {
    build(&tmp.path().join("app"), &opts(tmp.path()))
}

#[test]
fn helm_disabled_fails_as_kustomize_without_enable_helm() {
    let tmp = scratch("helmCharts:\n- name: demo\n  releaseName: web\n");
    let o = BuildOptions {
        enable_helm: false,
        ..opts(tmp.path())
    };
    let err = build(&tmp.path().join("app"), &o).expect_err("helm is disabled");
    assert!(
        matches!(err, KustomizeError::Kustomization { ref message, .. } if message.contains("--enable-helm")),
        "{err}"
    );
    // Enabled (the default), the same kustomization renders the chart.
    let built = build_scratch(&tmp).expect("renders");
    assert!(built.resources.iter().any(|r| r.name() == "web-demo"));
}

#[test]
fn a_chart_that_would_need_a_pull_is_refused_as_remote() {
    let tmp = scratch(
        "helmCharts:\n- name: other\n  repo: https://charts.example.com\n  version: 1.0.0\n",
    );
    let err = build_scratch(&tmp).expect_err("no pulls");
    match err {
        KustomizeError::Remote { path, url } => {
            assert!(
                path.ends_with("charts/other-1.0.0/other"),
                "{}",
                path.display()
            );
            assert!(
                url.contains("https://charts.example.com") && url.contains("1.0.0"),
                "{url}"
            );
        }
        other => panic!("expected Remote, got {other}"),
    }
}

#[test]
fn a_missing_chart_without_repo_names_where_it_was_looked_for() {
    let tmp = scratch("helmCharts:\n- name: nothere\n");
    let err = build_scratch(&tmp).expect_err("missing chart");
    assert!(
        matches!(err, KustomizeError::Generator { ref message, .. }
            if message.contains("no repo specified") && message.contains("charts/nothere")),
        "{err}"
    );
}

#[test]
fn reads_stay_inside_the_root() {
    // A values file outside the kustomization directory (root-only restrictor).
    let tmp = scratch("helmCharts:\n- name: demo\n  valuesFile: ../outside.yaml\n");
    std::fs::write(tmp.path().join("outside.yaml"), "replicaCount: 2\n").expect("write");
    let err = build_scratch(&tmp).expect_err("values outside");
    assert!(matches!(err, KustomizeError::Security { .. }), "{err}");

    // additionalValuesFiles too.
    let tmp = scratch("helmCharts:\n- name: demo\n  additionalValuesFiles: [../outside.yaml]\n");
    std::fs::write(tmp.path().join("outside.yaml"), "replicaCount: 2\n").expect("write");
    let err = build_scratch(&tmp).expect_err("additional values outside");
    assert!(matches!(err, KustomizeError::Security { .. }), "{err}");

    // A chart whose template is a symlink leaving the confinement root.
    let outer = tempfile::tempdir().expect("tempdir");
    std::fs::write(outer.path().join("secret.yaml"), "kind: Secret\n").expect("write");
    let tmp = scratch("helmCharts:\n- name: demo\n");
    std::os::unix::fs::symlink(
        outer.path().join("secret.yaml"),
        tmp.path().join("app/charts/demo/templates/leak.yaml"),
    )
    .expect("symlink");
    let err = build_scratch(&tmp).expect_err("symlink escape");
    assert!(matches!(err, KustomizeError::Security { .. }), "{err}");

    // A chartHome outside the confinement root.
    let tmp = scratch(&format!(
        "helmGlobals:\n  chartHome: {}\nhelmCharts:\n- name: demo\n",
        tmp_charts(&outer).display()
    ));
    let err = build_scratch(&tmp).expect_err("chartHome outside");
    assert!(matches!(err, KustomizeError::Security { .. }), "{err}");
}

fn tmp_charts(outer: &tempfile::TempDir) -> PathBuf {
    let home = outer.path().join("charts");
    copy_dir(
        &fixture("helm-legacy-generator").join("input/charts/demo"),
        &home.join("demo"),
    );
    home
}

#[test]
fn bad_entries_fail_as_kustomize_fails() {
    let cases = [
        ("helmCharts:\n- name: demo\n  bogus: 1\n", "unknown field"),
        (
            "helmCharts:\n- name: demo\n  releaseName: a\n  nameTemplate: b\n",
            "cannot set --name-template",
        ),
        (
            "helmCharts:\n- name: demo\n  releaseName: Bad_Name\n",
            "invalid release name",
        ),
        (
            "helmCharts:\n- name: demo\n  valuesMerge: mix\n",
            "valuesMerge must be one of",
        ),
        (
            "helmCharts:\n- releaseName: x\n",
            "chart name cannot be empty",
        ),
    ];
    for (k, want) in cases {
        let tmp = scratch(k);
        let err = build_scratch(&tmp).expect_err(k);
        assert!(err.to_string().contains(want), "{k}: {err}");
    }
}

#[test]
fn a_template_error_is_helms_error_naming_the_chart() {
    let tmp = scratch("helmCharts:\n- name: demo\n");
    std::fs::write(
        tmp.path().join("app/charts/demo/templates/broken.yaml"),
        "{{ required \"image.digest is required\" .Values.image.digest }}\n",
    )
    .expect("write");
    let err = build_scratch(&tmp).expect_err("required fails");
    match &err {
        KustomizeError::Helm { chart, source } => {
            assert!(chart.ends_with("charts/demo"), "{}", chart.display());
            assert!(
                source.to_string().contains("image.digest is required"),
                "{source}"
            );
        }
        other => panic!("expected Helm, got {other}"),
    }
}

#[test]
fn a_chart_object_colliding_with_a_resource_is_a_conflict() {
    let tmp = scratch("resources: [svc.yaml]\nhelmCharts:\n- name: demo\n  releaseName: web\n");
    std::fs::write(
        tmp.path().join("app/svc.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-demo\n",
    )
    .expect("write");
    let err = build_scratch(&tmp).expect_err("same id twice");
    assert!(err.to_string().contains("web-demo"), "{err}");
}
