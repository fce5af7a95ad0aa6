//! The CustomResourceDefinitions of the reference controllers, generated from the Rust types.
//!
//! `examples/deploy/crds/` holds what [`all`] generates (a test keeps them equal); regenerate
//! with `GITOPS_WRITE_CRDS=1 cargo test -p gitops-examples --test crds`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt as _;

use crate::kustomize::Kustomization;
use crate::notification::{Alert, Provider, Receiver};
use crate::source::{Bucket, GitRepository, HelmChart, HelmRepository, OCIRepository};

/// Every CRD, with the file name it is kept under in `examples/deploy/crds/`.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        (
            "source.toolkit.fluxcd.io_gitrepositories.yaml",
            GitRepository::crd(),
        ),
        (
            "source.toolkit.fluxcd.io_ocirepositories.yaml",
            OCIRepository::crd(),
        ),
        (
            "source.toolkit.fluxcd.io_helmrepositories.yaml",
            HelmRepository::crd(),
        ),
        ("source.toolkit.fluxcd.io_helmcharts.yaml", HelmChart::crd()),
        ("source.toolkit.fluxcd.io_buckets.yaml", Bucket::crd()),
        (
            "kustomize.toolkit.fluxcd.io_kustomizations.yaml",
            Kustomization::crd(),
        ),
        (
            "notification.toolkit.fluxcd.io_providers.yaml",
            Provider::crd(),
        ),
        ("notification.toolkit.fluxcd.io_alerts.yaml", Alert::crd()),
        (
            "notification.toolkit.fluxcd.io_receivers.yaml",
            Receiver::crd(),
        ),
    ]
}

/// A CRD as the YAML kept in the repository.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    let mut text = String::from("---\n");
    text.push_str(&serde_saphyr::to_string(crd)?);
    Ok(text)
}

/// Creates (or updates) every CRD with server-side apply and waits until each is Established.
pub async fn install(client: &kube::Client) -> Result<(), kube::Error> {
    use kube::api::{Api, Patch, PatchParams};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("gitops-examples").force();
    for (_, crd) in all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&crd)).await?;
    }
    for (_, crd) in all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let cond = kube::runtime::conditions::is_crd_established();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            kube::runtime::wait::await_condition(api.clone(), &name, cond),
        )
        .await;
    }
    Ok(())
}
