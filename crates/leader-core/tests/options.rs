//! Every rule of `ElectionOptions::validate`, the serde form, and input validation.

use std::sync::Arc;
use std::time::Duration;

use leader_core::{Election, ElectionOptions, ErrorKind, Metadata};

fn err(o: &ElectionOptions) -> String {
    let Err(e) = o.validate() else { panic!("{o:?} should be refused") };
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    e.to_string()
}

#[test]
fn defaults_derive_from_the_lease() {
    let o = ElectionOptions::default();
    assert_eq!(o.lease_duration, Duration::from_secs(15));
    assert_eq!(o.renew_deadline, Duration::from_secs(10));
    assert_eq!(o.renew_interval, Duration::from_secs(5));
    assert_eq!(o.retry_interval, Duration::from_millis(2500));
    assert_eq!(o.operation_timeout, Duration::from_millis(2500));
    assert_eq!(o.event_buffer, 64);
    o.validate().unwrap();
    ElectionOptions::from_lease(Duration::from_secs(2)).validate().unwrap();
}

#[test]
fn every_rule_names_the_option() {
    let base = ElectionOptions::from_lease(Duration::from_secs(3));
    for field in ["lease_duration", "renew_deadline", "renew_interval", "retry_interval", "operation_timeout"] {
        let mut o = base.clone();
        match field {
            "lease_duration" => o.lease_duration = Duration::ZERO,
            "renew_deadline" => o.renew_deadline = Duration::ZERO,
            "renew_interval" => o.renew_interval = Duration::ZERO,
            "retry_interval" => o.retry_interval = Duration::ZERO,
            _ => o.operation_timeout = Duration::ZERO,
        }
        assert!(err(&o).contains(&format!("{field} is 0")), "{field}");
    }
    let mut o = base.clone();
    o.operation_timeout = o.renew_interval;
    assert!(err(&o).contains("operation_timeout (1s) must be less than renew_interval (1s)"));
    let mut o = base.clone();
    o.renew_interval = o.renew_deadline;
    assert!(err(&o).contains("renew_interval (2s) must be less than renew_deadline"));
    let mut o = base.clone();
    o.renew_deadline = o.lease_duration;
    assert!(err(&o).contains("renew_deadline (3s) must be less than lease_duration (3s)"));
    let mut o = base.clone();
    o.retry_interval = o.lease_duration;
    assert!(err(&o).contains("retry_interval (3s) must be less than lease_duration"));
    let mut o = base.clone();
    o.event_buffer = 0;
    assert!(err(&o).contains("event_buffer"));
    let mut o = base.clone();
    o.metadata = Metadata::from([("has space".to_owned(), "v".to_owned())]);
    assert!(err(&o).contains("metadata key \"has space\""));
    let mut o = base;
    o.metadata = Metadata::from([("k".to_owned(), "x".repeat(2000))]);
    assert!(err(&o).contains("limit is 1024"));
}

#[test]
fn serde_uses_human_durations_and_names_bad_keys() {
    let o: ElectionOptions =
        serde_json::from_str(r#"{"lease_duration":"6s","retry_interval":"500ms","metadata":{"zone":"a"}}"#).unwrap();
    assert_eq!(o.renew_interval, Duration::from_secs(2));
    assert_eq!(o.retry_interval, Duration::from_millis(500));
    let json = serde_json::to_string(&o).unwrap();
    assert!(json.contains(r#""lease_duration":"6s""#), "{json}");
    let back: ElectionOptions = serde_json::from_str(&json).unwrap();
    assert_eq!(back, o);
    let e = serde_json::from_str::<ElectionOptions>(r#"{"lease":"6s"}"#).unwrap_err().to_string();
    assert!(e.contains("lease"), "{e}");
    let e = serde_json::from_str::<ElectionOptions>(r#"{"lease_duration":"six seconds"}"#).unwrap_err().to_string();
    assert!(!e.is_empty());
}

#[test]
fn bad_names_are_invalid_arguments_at_construction() {
    let store: Arc<dyn leader_core::LeaseStore> = Arc::new(leader_memory::MemoryStore::new());
    let opts = ElectionOptions::from_lease(Duration::from_secs(3));
    for name in ["", "a/b", " x", "é", "-leading", &"x".repeat(129)] {
        let e = Election::new(store.clone(), name, "p", opts.clone()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{name:?}");
    }
    for id in ["", " padded ", "tab\there", &"p".repeat(257)] {
        let e = Election::new(store.clone(), "ok", id, opts.clone()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{id:?}");
    }
    let mut bad = opts.clone();
    bad.renew_deadline = bad.lease_duration * 2;
    assert_eq!(Election::new(store.clone(), "ok", "p", bad).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let built = Election::builder(store, "ok").build().unwrap();
    assert!(built.participant_id().contains(&std::process::id().to_string()));
}

#[test]
fn profiles_are_valid_and_ordered() {
    let (fast, balanced, low) =
        (ElectionOptions::fast_failover(), ElectionOptions::balanced(), ElectionOptions::low_traffic());
    for o in [&fast, &balanced, &low] {
        o.validate().unwrap();
    }
    assert_eq!(balanced, ElectionOptions::default());
    assert!(fast.lease_duration < balanced.lease_duration && balanced.lease_duration < low.lease_duration);
    assert_eq!(low.lease_duration, Duration::from_secs(60));
}
