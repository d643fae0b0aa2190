//! docker-compose.yml cannot be run here (no Docker engine), so its shape is checked: every server
//! provider has a service with a health check, on the host port `scripts/servers` uses.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_server_provider_has_a_healthy_service_on_the_scripts_port() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("docker-compose.yml is valid YAML");
    let services = doc["services"].as_mapping().expect("services");
    for name in ["postgres", "redis", "zookeeper", "azurite", "sqlserver", "consul"] {
        let svc = &services[name];
        assert!(svc["image"].as_str().is_some_and(|i| !i.is_empty()), "{name} has an image");
        assert!(svc["healthcheck"]["test"].is_sequence(), "{name} has a health check");
        let ports = svc["ports"].as_sequence().unwrap_or_else(|| panic!("{name} publishes a port"));
        assert!(ports.iter().all(|p| p.as_str().is_some_and(|p| p.starts_with("127.0.0.1:"))), "{name}: loopback only");
    }
    // The ports scripts/servers starts its own servers on are the ones compose publishes.
    for (script, service) in
        [("postgres", "postgres"), ("redis", "redis"), ("zookeeper", "zookeeper"), ("azblob", "azurite")]
    {
        let path = root().join(format!("scripts/servers.d/{script}.sh"));
        let Ok(sh) = std::fs::read_to_string(&path) else { continue };
        let published: Vec<String> = services[service]["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str()?.split(':').nth(1).map(str::to_owned))
            .collect();
        assert!(
            published.iter().any(|port| sh.contains(port.as_str())),
            "{service} publishes {published:?}, which {} does not use",
            path.display()
        );
    }
}
