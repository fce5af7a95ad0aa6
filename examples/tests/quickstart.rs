//! The quickstart flow end to end on TestCluster with a real git server: first reconcile
//! creates everything, the second commit configures the ConfigMap and prunes the Service.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_applies_then_configures_and_prunes() {
    gitops_testkit::cluster::install_crypto_provider();
    let mut out = Vec::new();
    let report = gitops_examples::quickstart::run(Default::default(), &mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out)));
    let text = String::from_utf8_lossy(&out);
    assert!(
        report.first_revision.starts_with("main@sha1:"),
        "{}",
        report.first_revision
    );
    assert_ne!(report.first_revision, report.second_revision);
    for line in [
        "Namespace/demo created",
        "ConfigMap/demo/podinfo-config created",
        "Service/demo/podinfo created",
        "Deployment/demo/podinfo created",
        // The local Helm chart, inflated by the overlay's helmCharts.
        "ConfigMap/demo/podinfo-cache-config created",
        "Service/demo/podinfo-cache created",
        "Deployment/demo/podinfo-cache created",
    ] {
        assert!(
            report.first_changes.contains(line),
            "{line} in {}",
            report.first_changes
        );
    }
    assert!(
        report
            .second_changes
            .contains("ConfigMap/demo/podinfo-config configured"),
        "{}",
        report.second_changes
    );
    assert!(
        report
            .second_changes
            .contains("Service/demo/podinfo deleted"),
        "{}",
        report.second_changes
    );
    assert!(
        !report
            .second_changes
            .contains("Deployment/demo/podinfo configured"),
        "{}",
        report.second_changes
    );
    assert!(
        report
            .first_inventory
            .contains(&"demo_podinfo__Service".to_string()),
        "{:?}",
        report.first_inventory
    );
    assert!(
        report
            .first_inventory
            .contains(&"demo_podinfo_apps_Deployment".to_string())
    );
    assert!(
        report
            .second_inventory
            .contains(&"demo_podinfo-cache_apps_Deployment".to_string()),
        "the chart's objects stay: {:?}",
        report.second_inventory
    );
    assert!(
        !report
            .second_inventory
            .contains(&"demo_podinfo__Service".to_string()),
        "{:?}",
        report.second_inventory
    );
    assert_eq!(
        report.final_message.as_deref(),
        Some("Hello again: second commit")
    );
    assert!(!report.service_exists);
    assert!(
        report
            .events
            .iter()
            .any(|e| e.starts_with("NewArtifact: stored artifact for revision 'main@sha1:")),
        "{:?}",
        report.events
    );
    assert_eq!(
        report.cache_config.as_deref(),
        Some("maxmemory 64mb\nmaxmemory-policy allkeys-lru\n"),
        "the chart was rendered with the overlay's values"
    );
    assert!(text.contains("Done in"), "{text}");
}
