//! Schemas in strategic merges and name references: the embedded Kubernetes v1.21.2 OpenAPI
//! data kustomize v5.5 uses, custom `openapi:` schemas and `crds:` definitions. Each fixture
//! under `testdata/kustomize/` has `expected.yaml` made by `kubectl kustomize` (v5.5.0).

use std::path::Path;

use gitops_render::kustomize::{BuildOptions, build};

fn assert_fixture(name: &str) {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/kustomize")
        .join(name);
    let input = case.join("input");
    let dir = if input.join("overlay").is_dir() {
        input.join("overlay")
    } else {
        input.clone()
    };
    let opts = BuildOptions {
        confine_root: Some(input.clone()),
        ..BuildOptions::default()
    };
    let built = build(&dir, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = std::fs::read_to_string(case.join("expected.yaml")).expect("expected.yaml");
    assert_eq!(built.to_yaml(), want, "{name}");
}

#[test]
fn builtin_schema_decides_which_lists_merge_and_on_which_keys() {
    // RoleBinding subjects, tolerations, args and unknown kinds' lists are replaced;
    // Service ports merge on port, container ports on (containerPort, protocol) keeping
    // their order, volumeMounts on mountPath, volumes on name, finalizers as a set.
    assert_fixture("smp-schema-lists");
}

#[test]
fn a_custom_openapi_schema_replaces_the_builtin_one() {
    // With only the custom schema in force, the Deployment's containers are replaced and the
    // custom kind's containers merge on name.
    assert_fixture("openapi-custom-schema");
}

#[test]
fn crds_object_refs_follow_renames_and_annotation_fields() {
    // x-kubernetes-object-ref-* fields follow the prefix and the generated ConfigMap's hash;
    // an x-kubernetes-annotation field receives commonAnnotations.
    assert_fixture("crds-name-references");
}
