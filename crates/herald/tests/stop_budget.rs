//! One stop budget: `herald stop`, `herald run` (its `--replace` and a new worker's wait) and every
//! generated registration — systemd's `TimeoutStopSec`, launchd's `ExitTimeOut`, the SCM's preshutdown
//! timeout — derive their stop timeout from the same reading of `herald.toml`, with one margin; a broken
//! config gives every one of them the same documented default, never zero.

use std::sync::Arc;
use std::time::Duration;

use herald_daemon::{RunMode, RunOptions, SharedFactory};
use herald_home::config::Config;
use herald_home::{Home, StopBudget};
use herald_install::scm::ScmConfig;
use herald_install::{ServiceSpec, launchd, systemd};
use herald_lifecycle::Target;

#[derive(Debug)]
struct NoPayload;

impl herald_daemon::PayloadFactory for NoPayload {
    fn build(
        &self,
        _: &Home,
        _: &Config,
        _: &herald_home::secrets::Variables,
    ) -> Result<herald_daemon::Payload, herald_daemon::PayloadError> {
        Err(herald_daemon::PayloadError::Failure(
            "not built in this test".into(),
        ))
    }
}

/// The stop timeout each party would use for a home whose `herald.toml` is `config`.
fn timeouts(config: Option<&str>) -> [(&'static str, Duration); 5] {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path());
    home.ensure().unwrap();
    if let Some(text) = config {
        std::fs::write(home.config_file(), text).unwrap();
    }
    // `herald stop` (and `restart`, and `install`'s stop of an unmanaged gateway).
    let stop = Target::new(home.clone()).stop_budget().stop_timeout();
    // `herald run`: the daemon gets the config the binary read once.
    let (run_home, run_config) = Target::new(home.clone()).into_parts();
    let run = RunOptions {
        home: run_home,
        config: run_config,
        notifier: herald_daemon::readiness::Notifier::None,
        replace: true,
        mode: RunMode::Standalone,
        on_fatal: herald_daemon::OnFatalStart::Exit,
        payload: SharedFactory(Arc::new(NoPayload)),
    }
    .stop_budget()
    .stop_timeout();
    // The registrations, from a spec built with the lifecycle layer's budget for this home (the paths
    // are each backend's own kind, whichever OS runs the test).
    let mut spec = ServiceSpec::for_home(&home, "/usr/bin/herald", Target::new(home.clone()).stop_budget());
    spec.home_root = "/home/a/.herald".into();
    spec.stdio_log = "/home/a/.herald/logs/stdio.log".into();
    let unit = systemd::parse_unit(&systemd::render_unit(&spec).unwrap()).unwrap();
    let systemd_secs: u64 = unit.get("Service", "TimeoutStopSec").unwrap().parse().unwrap();
    let plist = launchd::parse_plist(&launchd::render_plist(&spec).unwrap()).unwrap();
    spec.executable = r"C:\Program Files\Herald\herald.exe".into();
    spec.home_root = r"C:\Users\a\AppData\Local\herald".into();
    let scm = ScmConfig::for_spec(&spec, true).unwrap();
    [
        ("herald stop", stop),
        ("herald run", run),
        ("systemd TimeoutStopSec", Duration::from_secs(systemd_secs)),
        (
            "launchd ExitTimeOut",
            Duration::from_secs(plist.exit_timeout.unwrap()),
        ),
        ("SCM preshutdown", scm.preshutdown_timeout),
    ]
}

fn assert_all(config: Option<&str>, expected: Duration) {
    for (who, timeout) in timeouts(config) {
        assert_eq!(timeout, expected, "{who} with herald.toml {config:?}");
    }
}

#[test]
fn every_party_stops_with_the_same_budget() {
    assert_all(None, Duration::from_secs(30) + StopBudget::MARGIN);
    assert_all(
        Some("[gateway]\ndrain_timeout_secs = 7\n"),
        Duration::from_secs(7) + StopBudget::MARGIN,
    );
    assert_all(Some("[gateway]\ndrain_timeout_secs = 0\n"), StopBudget::MARGIN);
}

#[test]
fn a_broken_config_gives_everyone_the_default_budget() {
    for broken in [
        "[gateway]\ndrain_timeout_secs = \"soon\"\n",
        "[gateway\n",
        "[gateway]\ndrain_timeout_secs = 999999\n",
        "\u{0}\u{1}",
    ] {
        assert_all(Some(broken), StopBudget::default().stop_timeout());
    }
    assert_eq!(StopBudget::default().stop_timeout(), Duration::from_secs(45));
}
