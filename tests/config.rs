//! leader::Config: round trips, the example files, every bad-input path.

use std::time::Duration;

use leader::{Config, ElectionOptions, ErrorKind};

fn invalid(r: leader::Result<Config>) -> String {
    let e = r.expect_err("should be refused");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    e.to_string()
}

#[test]
fn round_trips_through_toml_and_json() {
    let config = Config {
        store: "memory://rt".into(),
        election: "jobs".into(),
        participant_id: Some("web-1".into()),
        options: ElectionOptions::from_lease(Duration::from_secs(6)),
        metadata: [("zone".to_owned(), "a".to_owned())].into(),
    };
    let toml = toml::to_string(&config).unwrap();
    assert!(toml.contains("lease_duration = \"6s\""), "{toml}");
    assert_eq!(Config::from_toml_str(&toml).unwrap(), config);
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(Config::from_json_str(&json).unwrap(), config);
    assert_eq!(config.election_options().metadata["zone"], "a");
}

#[test]
fn every_example_config_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let config = Config::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(config.store.contains("://"));
        n += 1;
    }
    assert!(n >= 8, "one file per provider kind");
}

#[test]
fn bad_input_names_the_key() {
    assert!(
        invalid(Config::from_toml_str("store = \"memory://m\"\nelection = \"e\"\nlease = \"5s\"")).contains("lease")
    );
    assert!(invalid(Config::from_toml_str(
        "store = \"memory://m\"\nelection = \"e\"\n[options]\nlease_duration = \"soon\""
    ))
    .contains("lease_duration"));
    assert!(invalid(Config::from_toml_str("store = \"memory://m\"\nelection = \"e\"\n[options]\nleese = \"5s\""))
        .contains("leese"));
    assert!(invalid(Config::from_toml_str("election = \"e\"")).contains("store"));
    assert!(invalid(Config::from_toml_str("store = \"memory://m\"\nelection = \"a/b\"")).contains("\"a/b\""));
    assert!(invalid(Config::from_json_str(
        r#"{"store":"memory://m","election":"e","options":{"lease_duration":"1s","renew_deadline":"2s"}}"#
    ))
    .contains("renew_deadline"));
    assert!(invalid(Config::from_file("/nonexistent/leader.toml")).contains("/nonexistent/leader.toml"));
    assert!(invalid(Config::from_file("Cargo.lock")).contains(".toml or .json"));
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn from_env_reads_leader_variables() {
    let c = Config::from_vars(vars(&[
        ("LEADER_STORE", "memory://env"),
        ("LEADER_ELECTION", "jobs"),
        ("LEADER_LEASE_DURATION", "6s"),
        ("LEADER_RETRY_INTERVAL", "250ms"),
        ("LEADER_METADATA", "zone=a,host=web-1"),
        ("LEADER_TEST_POSTGRES_URL", "ignored"),
        ("PATH", "/bin"),
    ]))
    .unwrap();
    assert_eq!(c.options.renew_interval, Duration::from_secs(2));
    assert_eq!(c.options.retry_interval, Duration::from_millis(250));
    assert_eq!(c.metadata.len(), 2);
    assert!(invalid(Config::from_vars(vars(&[("LEADER_STORE", "memory://m"), ("LEADER_ELECTON", "x")])))
        .contains("LEADER_ELECTON"));
    assert!(invalid(Config::from_vars(vars(&[("LEADER_STORE", "memory://m")]))).contains("LEADER_ELECTION"));
    assert!(invalid(Config::from_vars(vars(&[
        ("LEADER_STORE", "memory://m"),
        ("LEADER_ELECTION", "e"),
        ("LEADER_LEASE_DURATION", "forever")
    ])))
    .contains("LEADER_LEASE_DURATION"));
    assert!(invalid(Config::from_vars(vars(&[
        ("LEADER_STORE", "memory://m"),
        ("LEADER_ELECTION", "e"),
        ("LEADER_METADATA", "novalue")
    ])))
    .contains("novalue"));
}

#[tokio::test]
async fn builds_an_election_and_refuses_unknown_schemes() {
    let c = Config::from_toml_str(
        "store = \"memory://cfg\"\nelection = \"jobs\"\nparticipant_id = \"p\"\n[options]\nlease_duration = \"3s\"",
    )
    .unwrap();
    let e = c.build().await.unwrap();
    assert_eq!(e.participant_id(), "p");
    assert!(e.try_acquire().await.unwrap());
    let bad = Config::from_toml_str("store = \"gopher://x\"\nelection = \"jobs\"").unwrap();
    let err = bad.build().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("memory://"), "lists the supported schemes: {err}");
}

#[test]
fn messages_read_well() {
    let e = invalid(Config::from_toml_str(
        "store = \"memory://m\"\nelection = \"e\"\n[options]\nlease_duration = \"soon\"",
    ));
    assert!(e.contains("`options.lease_duration`"), "{e}");
    let e = invalid(Config::from_toml_str("store = \"memory://m\"\nelection = \"e\"\nlease = \"5s\""));
    assert!(e.contains("unknown field `lease`"), "{e}");
}

/// An unknown `LEADER_*` variable is ignored with a warning that names it, not an error.
#[test]
fn from_env_warns_about_unknown_variables() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let config = tracing::subscriber::with_default(subscriber, || {
        Config::from_vars(vars(&[
            ("LEADER_STORE", "memory://env-warn"),
            ("LEADER_ELECTION", "jobs"),
            ("LEADER_FEATURE_FLAGS", "unrelated"),
        ]))
    })
    .expect("an unknown LEADER_* variable does not stop start-up");
    assert_eq!(config.election, "jobs");
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("WARN") && log.contains("LEADER_FEATURE_FLAGS"), "{log}");
    // A misspelt required variable still fails, and the error names the unknown one.
    let e = invalid(Config::from_vars(vars(&[("LEADER_STORE", "memory://m"), ("LEADER_ELECTON", "x")])));
    assert!(e.contains("LEADER_ELECTION is not set") && e.contains("LEADER_ELECTON"), "{e}");
}

/// `Debug` of a Config never shows the store's password.
#[test]
fn debug_redacts_the_store_url() {
    let config = Config::from_toml_str("store = \"postgres://app:hunter2@db/app\"\nelection = \"e\"").unwrap();
    let shown = format!("{config:?}");
    assert!(shown.contains("postgres://app:***@db/app") && !shown.contains("hunter2"), "{shown}");
}
