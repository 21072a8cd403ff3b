//! Properties of every reader of outside input in herald-home: arbitrary bytes never panic, and what herald
//! writes it reads back unchanged. (The same parsers are fuzz targets for longer runs.)

use std::path::{Path, PathBuf};

use herald_home::atomic::{Record, RecordRead, parse_record};
use herald_home::config::{Config, GatewayConfig, SupervisorConfig};
use herald_home::lifecycle::{EventKind, LifecycleEvent, parse_events};
use herald_home::records::{
    ClusterView, Endpoints, ExitRecord, GatewayState, HealthRecord, HealthState, JournalOutage, MonitorPhase,
    MonitorRecord, PidRecord, ProcessKey, ReplicaView, StateRecord, StopMarker, WorkerRecord,
};
use proptest::prelude::*;

fn any_key() -> impl Strategy<Value = ProcessKey> {
    (any::<u32>(), any::<u64>()).prop_map(|(pid, start_time)| ProcessKey { pid, start_time })
}

fn any_state() -> impl Strategy<Value = GatewayState> {
    prop_oneof![
        Just(GatewayState::Starting),
        Just(GatewayState::Running),
        Just(GatewayState::Draining),
        Just(GatewayState::Stopped),
        Just(GatewayState::StartupFailed),
        Just(GatewayState::CrashLooping),
    ]
}

fn round_trips<T: Record + PartialEq + std::fmt::Debug>(record: &T) {
    let bytes = serde_json::to_vec_pretty(record).unwrap();
    assert_eq!(
        parse_record::<T>(&bytes),
        RecordRead::Present(record_clone(record))
    );
}

fn record_clone<T: Record>(record: &T) -> T {
    serde_json::from_value(serde_json::to_value(record).unwrap()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn record_readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_record::<PidRecord>(&bytes);
        let _ = parse_record::<StateRecord>(&bytes);
        let _ = parse_record::<StopMarker>(&bytes);
        let _ = parse_record::<MonitorRecord>(&bytes);
    }

    #[test]
    fn record_readers_never_panic_on_near_json(text in r#"\{"version":1[,"a-z0-9:{}\[\] ]{0,80}\}"#) {
        let _ = parse_record::<PidRecord>(text.as_bytes());
        let _ = parse_record::<StateRecord>(text.as_bytes());
        let _ = parse_record::<StopMarker>(text.as_bytes());
    }

    #[test]
    fn pid_and_state_records_round_trip(
        key in any_key(),
        argv in proptest::collection::vec(".{0,20}", 0..4),
        state in any_state(),
        in_flight in any::<u32>(),
        http in proptest::option::of("[a-z:/0-9.]{1,30}"),
        detail in proptest::option::of(".{0,40}"),
        code in any::<u8>(),
    ) {
        round_trips(&PidRecord {
            version: 1,
            pid: key.pid,
            start_time: key.start_time,
            argv: argv.clone(),
            exe: argv.first().cloned(),
            home: PathBuf::from("/h"),
            herald_version: "0.1.0".into(),
            started_at_ms: key.start_time,
            control: "c".into(),
        });
        round_trips(&StateRecord {
            version: 1,
            state,
            pid: key.pid,
            start_time: key.start_time,
            started_at_ms: 1,
            updated_at_ms: 2,
            heartbeat_secs: 30,
            in_flight,
            queued: in_flight / 2,
            turn_slots: 8,
            endpoints: Endpoints { control: "c".into(), http_url: http },
            worker_pid: Some(key.pid ^ 1),
            detail: detail.clone(),
            last_exit: Some(ExitRecord { code, reason: detail.clone().unwrap_or_default(), at_ms: 3 }),
            adapters: vec![HealthRecord { message: Some("x".into()), last_inbound_ms: Some(5), last_error: detail.clone(), restarts: 2, ..HealthRecord::new("telegram", HealthState::Degraded, 4) }],
            agent: Some(HealthRecord { last_outbound_ms: Some(6), ..HealthRecord::new("openai", HealthState::Connected, 4) }),
            cluster: Some(ClusterView {
                replicas: vec![ReplicaView {
                    id: 3, name: detail.clone().unwrap_or_default(), pid: 9, version: "1".into(), started_ms: 2,
                    alive: true, turns: 4, adapters: vec!["telegram".into()], me: true,
                }],
                orphaned: 1,
                lease_secs: 10,
            }),
            journal_outage: detail.clone().map(|error| JournalOutage { since_ms: 7, error }),
        });
    }

    #[test]
    fn markers_and_monitor_records_round_trip(target in any_key(), expires in any::<u64>(), restart in any::<bool>(),
                                              by in ".{0,30}", restarts in any::<u32>()) {
        round_trips(&StopMarker { version: 1, target, expires_at_ms: expires, requested_by: by.clone(), restart });
        round_trips(&MonitorRecord {
            version: 1,
            pid: target.pid,
            start_time: target.start_time,
            phase: MonitorPhase::Backoff,
            worker: Some(WorkerRecord { pid: 1, start_time: 2, argv: vec![by.clone()], exe: None }),
            restarts,
            last_restart_reason: Some(by),
            updated_at_ms: expires,
        });
    }

    #[test]
    fn config_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Config::parse(Path::new("h.toml"), &bytes);
    }

    #[test]
    fn config_parsing_never_panics_on_near_toml(text in r#"(\[(gateway|supervisor|x)\]\n)?([a-z_]{1,25} = ("[^"\n]{0,8}"|-?[0-9]{1,22}|true|\[1\]|\{\})\n){0,4}"#) {
        if let Err(e) = Config::parse(Path::new("h.toml"), text.as_bytes()) {
            // Every error is located in the file.
            prop_assert!(e.line.is_some(), "{e}");
        }
    }

    #[test]
    fn config_rendering_round_trips(drain in 0u64..=3600, exits in 1u32..=1000, window in 1u64..=86_400, beat in 0u64..=300, missed in 2u32..=100) {
        let config = Config {
            gateway: GatewayConfig { drain_timeout_secs: drain, log_message_text: drain % 2 == 0, outage_notice_secs: drain, ..GatewayConfig::default() },
            supervisor: SupervisorConfig {
                crash_loop_max_exits: exits,
                crash_loop_window_secs: window,
                watchdog_interval_secs: beat,
                watchdog_missed_beats: missed,
            },
            ..Config::default()
        };
        prop_assert_eq!(Config::parse(Path::new("h.toml"), config.to_toml().as_bytes()).unwrap(), config);
    }

    #[test]
    fn lifecycle_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (events, bad) = parse_events(&bytes[..]);
        prop_assert!(events.len() + bad.len() <= bytes.iter().filter(|b| **b == b'\n').count() + 1);
    }

    #[test]
    fn lifecycle_events_round_trip(pid in any::<u32>(), key in "[a-z_]{1,12}", value in ".{0,40}") {
        let event = LifecycleEvent::new(EventKind::StopRequested, pid).with(&key, value);
        let mut line = serde_json::to_vec(&event).unwrap();
        line.push(b'\n');
        let (events, bad) = parse_events(&line[..]);
        prop_assert!(bad.is_empty());
        prop_assert_eq!(events, vec![event]);
    }
}
