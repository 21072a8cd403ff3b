//! `herald doctor`: the checks that catch what breaks real installs, each with its fix.
//!
//! `status --deep` asks whether a *running* gateway is healthy; `doctor` asks whether this home *can*
//! run one that lasts: where the program lives, whether the home is safe, whether the config is valid,
//! whether the port is free, whether every named secret resolves for whoever starts the gateway, whether
//! the agent (and Telegram) answer and accept their credentials, whether the service registration is
//! there and current, and whether the journal has room.
//!
//! **Invariant:** every check is bounded (the agent and Telegram probes by the backend's own short
//! timeout, service managers by [`SERVICE_TIMEOUT`]), and one failing check never stops the others: the
//! report is always complete. The agent and Telegram probes need the payload crates this layer does not
//! link, so the binary supplies them ([`PayloadProbes`]).

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use herald_home::config::Config;
use herald_home::records::StateRecord;
use herald_home::secrets::{SecretStore, Variables};
use herald_home::{Home, atomic::read_record, lock::InstanceLock};
use herald_install::context::Context;
use herald_install::facts::ServiceFacts;
use herald_install::manage::{self, InstallRequest, Registered};
use herald_install::runner::SystemRunner;
use herald_install::{Backend, Scope};

use crate::route::{machine, service_spec};
use crate::target::Target;
use crate::variables::{self, Found, ServiceEnvironment};

/// How long a service manager may take to answer one question.
pub const SERVICE_TIMEOUT: Duration = Duration::from_secs(5);
/// Below this much free space the journal may soon fail to store turns.
pub const DISK_FAIL_BYTES: u64 = 64 << 20;
/// Below this much free space a warning.
pub const DISK_WARN_BYTES: u64 = 512 << 20;

/// The fix of a finding whose detail already names it (ownership and store errors carry their fix).
const SEE_THE_MESSAGE: &str = "see the message: the fix is named there";

/// One check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
    /// Not applicable or not possible (a disabled adapter, a config too broken to tell).
    Skip,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Short and stable (`executable`, `home`, `config`, `port`, `secrets`, `agent`, `telegram`, `matrix`,
    /// `service`, `disk`).
    pub check: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do, when something is wrong.
    pub fix: Option<String>,
}

impl Finding {
    pub fn pass(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            verdict: Verdict::Pass,
            detail: detail.into(),
            fix: None,
        }
    }
    pub fn skip(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            verdict: Verdict::Skip,
            detail: detail.into(),
            fix: None,
        }
    }
    pub fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            verdict: Verdict::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            verdict: Verdict::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The probes that need the payload (agent backends, Telegram, Matrix), supplied by the binary.
pub trait PayloadProbes {
    /// Builds the configured agent with `variables` and probes it (bounded).
    fn agent(&self, config: &Config, variables: &Variables) -> Finding;
    /// Asks the Bot API who the bot is (bounded); called only when `[telegram]` is enabled.
    fn telegram(&self, config: &Config, variables: &Variables) -> Finding;
    /// Checks the Matrix device, homeserver and token (bounded); called only when `[matrix]` is enabled.
    fn matrix(&self, config: &Config, variables: &Variables) -> Finding;
    /// Reaches the journal's PostgreSQL database and reads its schema, changing nothing (bounded);
    /// called only when `[journal] url` is set.
    fn journal(&self, config: &Config, variables: &Variables) -> Finding;
}

/// The whole report, in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub findings: Vec<Finding>,
}

impl Diagnosis {
    /// Whether any check failed (`doctor` exits 1).
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.verdict == Verdict::Fail)
    }
}

/// Runs every check on `target` (see the module docs).
pub fn diagnose(target: &Target, probes: &dyn PayloadProbes) -> Diagnosis {
    let home = target.home();
    let mut findings = vec![executable(), home_safety(home)];
    let config = target.config();
    findings.push(match &config {
        Ok(_) => Finding::pass("config", config_source(home)),
        Err(e) => Finding::fail(
            "config",
            e.to_string(),
            "fix the key named above (`herald config check` says the same)",
        ),
    });
    let Ok(config) = config else {
        for check in ["port", "secrets", "journal", "agent", "telegram", "matrix"] {
            findings.push(Finding::skip(check, "needs a valid herald.toml"));
        }
        findings.push(service(target, None).0);
        findings.push(disk(home));
        return Diagnosis { findings };
    };
    findings.push(port(home, config));
    let (service_finding, service_env) = service(target, Some(config));
    let (secrets_finding, variables) = secrets(home, config, service_env.as_ref());
    findings.push(secrets_finding);
    findings.push(match (&variables, config.journal.is_postgres()) {
        (_, false) => Finding::pass(
            "journal",
            format!("{} (SQLite, in the home)", home.journal_file().display()),
        ),
        (Some(variables), true) => probes.journal(config, variables),
        (None, true) => Finding::skip("journal", "needs a readable secrets store"),
    });
    findings.push(match &variables {
        Some(variables) => probes.agent(config, variables),
        None => Finding::skip("agent", "needs a readable secrets store"),
    });
    findings.push(match (&variables, config.telegram.enabled) {
        (_, false) => Finding::skip("telegram", "[telegram] is not enabled"),
        (Some(variables), true) => probes.telegram(config, variables),
        (None, true) => Finding::skip("telegram", "needs a readable secrets store"),
    });
    findings.push(match (&variables, config.matrix.enabled) {
        (_, false) => Finding::skip("matrix", "[matrix] is not enabled"),
        (Some(variables), true) => probes.matrix(config, variables),
        (None, true) => Finding::skip("matrix", "needs a readable secrets store"),
    });
    findings.push(service_finding);
    findings.push(disk(home));
    Diagnosis { findings }
}

fn config_source(home: &Home) -> String {
    let path = home.config_file();
    if path.exists() {
        format!("{} is valid", path.display())
    } else {
        format!("{} does not exist: the embedded defaults apply", path.display())
    }
}

/// Where this program lives: a registration names it, so it must outlast a reboot and a `cargo clean`.
fn executable() -> Finding {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            return Finding::warn(
                "executable",
                format!("cannot tell where this program is: {e}"),
                "run herald by its full path",
            );
        }
    };
    let temp = std::env::temp_dir();
    match herald_install::spec::fragile_executable(&exe, &temp) {
        None => Finding::pass("executable", exe.display().to_string()),
        // A temp dir is cleaned at boot: a registration naming it breaks for sure.
        Some(why) if exe.starts_with(&temp) => Finding::fail(
            "executable",
            why,
            "`cargo install --path crates/herald --locked`, then run `herald install` from ~/.cargo/bin",
        ),
        Some(why) => Finding::warn(
            "executable",
            why,
            "`cargo install --path crates/herald --locked`, then run `herald install` from ~/.cargo/bin",
        ),
    }
}

/// The home and the directories the gateway writes must be this user's and no one else's; the secrets
/// store must be readable by this user only.
fn home_safety(home: &Home) -> Finding {
    let root = home.root();
    if std::fs::symlink_metadata(root).is_err() {
        return Finding::warn(
            "home",
            format!("{} does not exist yet", root.display()),
            "it is created (0700) at the first `herald start`; check --home / HERALD_HOME if you expected one",
        );
    }
    let dirs = [
        (root.to_path_buf(), true),
        (home.run_dir(), false),
        (home.marker_dir(), false),
        (home.logs_dir(), false),
    ];
    for (dir, is_root) in dirs {
        if let Err(e) = herald_home::ownership::check_dir(&dir, is_root) {
            return Finding::fail("home", e.to_string(), SEE_THE_MESSAGE);
        }
    }
    if let Err(e) = herald_home::ownership::check_file(&home.config_file()) {
        return Finding::fail("home", e.to_string(), SEE_THE_MESSAGE);
    }
    if let Err(e) = SecretStore::of(home).load() {
        return Finding::fail("home", e.to_string(), SEE_THE_MESSAGE);
    }
    Finding::pass("home", format!("{} is yours and private to you", root.display()))
}

/// The HTTP listen address must be free, or held by this home's own gateway.
fn port(home: &Home, config: &Config) -> Finding {
    if !config.http.enabled {
        return Finding::skip("port", "[http] is not enabled");
    }
    let Some(addr) = config.http.listen_addr() else {
        return Finding::fail(
            "port",
            format!("[http] listen `{}` is not an address", config.http.listen),
            "set [http] listen = \"127.0.0.1:PORT\"",
        );
    };
    if addr.port() == 0 {
        return Finding::pass(
            "port",
            format!("{addr}: any free port (`herald status` shows it)"),
        );
    }
    match TcpListener::bind(addr) {
        Ok(listener) => {
            drop(listener);
            Finding::pass("port", format!("{addr} is free"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if let Some(pid) = own_gateway_on(home, addr.port()) {
                return Finding::pass(
                    "port",
                    format!("{addr} is held by this home's gateway (pid {pid})"),
                );
            }
            let holder = herald_process::port_holder::port_holder(addr.port())
                .map(|h| format!(" by {h}"))
                .unwrap_or_default();
            Finding::fail(
                "port",
                format!("{addr} is in use{holder}: the gateway could not start"),
                "stop that program, or give this home its own port: [http] listen = \"127.0.0.1:PORT\" \
                 (`127.0.0.1:0` takes any free port)",
            )
        }
        Err(e) => Finding::fail(
            "port",
            format!("cannot listen on {addr}: {e}"),
            "choose an address of this machine in [http] listen",
        ),
    }
}

/// The pid of this home's running gateway, when its state record says it listens on `port`.
fn own_gateway_on(home: &Home, port: u16) -> Option<u32> {
    if !InstanceLock::is_held(&home.lock_file()).unwrap_or(false) {
        return None;
    }
    let state = read_record::<StateRecord>(&home.state_record()).present()?;
    let url = state.endpoints.http_url?;
    let listening = url
        .rsplit(':')
        .next()?
        .trim_end_matches('/')
        .parse::<u16>()
        .ok()?;
    (listening == port).then_some(state.pid)
}

/// Every variable the config names must resolve for whoever starts the gateway.
fn secrets(
    home: &Home,
    config: &Config,
    service: Option<&ServiceEnvironment>,
) -> (Finding, Option<Variables>) {
    let unreadable =
        |e: herald_home::secrets::SecretsError| Finding::fail("secrets", e.to_string(), SEE_THE_MESSAGE);
    let variables = match Variables::load(home) {
        Ok(variables) => variables,
        Err(e) => return (unreadable(e), None),
    };
    let checks = match variables::check(home, config, service) {
        Ok(checks) => checks,
        Err(e) => return (unreadable(e), Some(variables)),
    };
    if checks.is_empty() {
        return (
            Finding::pass("secrets", "herald.toml names no secret"),
            Some(variables),
        );
    }
    let broken: Vec<_> = checks.iter().filter(|c| !c.found.resolves()).collect();
    let finding = match broken.first() {
        None => Finding::pass(
            "secrets",
            checks.iter().map(|c| c.describe()).collect::<Vec<_>>().join("; "),
        ),
        Some(first) => Finding::fail(
            "secrets",
            broken.iter().map(|c| c.describe()).collect::<Vec<_>>().join("; "),
            match first.found {
                Found::OnlyInThisShell { .. } | Found::Missing => {
                    format!("`herald secret set {}`", first.variable)
                }
                _ => String::new(),
            },
        ),
    };
    (finding, Some(variables))
}

/// Is the gateway registered with a service manager, and does the registration match what `herald
/// install` would write now? Also the environment that manager gives the gateway (for the secrets).
fn service(target: &Target, config: Option<&Config>) -> (Finding, Option<ServiceEnvironment>) {
    let spec = match service_spec(target) {
        Ok(spec) => spec,
        Err(e) => return (Finding::skip("service", e.to_string()), None),
    };
    let ctx = Context::current();
    let mut runner = SystemRunner {
        timeout: SERVICE_TIMEOUT,
    };
    let mut machine = machine(target.home(), &ctx, &mut runner);
    let facts = herald_install::facts::service_facts(&spec, &mut machine);
    let registered = manage::detect(&spec, &machine).ok().flatten();
    match facts {
        ServiceFacts::None => (
            Finding::warn(
                "service",
                "not registered with a service manager: the gateway will not start at login, nor come back \
                 after a crash",
                "`herald install` (from where herald is installed for good)",
            ),
            None,
        ),
        ServiceFacts::Unknown { manager, why } => (
            Finding::warn(
                "service",
                format!("cannot ask {manager}: {why}"),
                "see `herald status --deep`",
            ),
            None,
        ),
        ServiceFacts::Autostart { entries } => {
            let env = variables::service_environment(Backend::Task, Scope::User);
            (Finding::pass("service", entries.join("; ")), env)
        }
        ServiceFacts::Managed { manager, enabled, .. } => {
            let (backend, scope) = match &registered {
                Some(Registered::Systemd { scope }) => (Backend::Systemd, *scope),
                Some(Registered::Launchd) => (Backend::Launchd, Scope::User),
                Some(Registered::WindowsService(_)) => (Backend::WindowsService, Scope::System),
                None => {
                    return (
                        Finding::pass("service", format!("registered with {manager}")),
                        None,
                    );
                }
            };
            let env = variables::service_environment(backend, scope);
            if config.is_none() {
                return (
                    Finding::pass("service", format!("registered with {manager}")),
                    env,
                );
            }
            let request = InstallRequest {
                backend,
                scope,
                run_as: None,
                start_now: false,
                start_on_login: enabled.unwrap_or(true),
                force: false,
                // Doctor reports an unreachable manager as such: it is not a plan to show.
                dry_run: false,
            };
            let finding = match manage::plan_install(&spec, &request, &mut machine) {
                Ok(plan) if plan.is_empty() => {
                    Finding::pass("service", format!("registered with {manager}, up to date"))
                }
                Ok(plan) => Finding::warn(
                    "service",
                    format!(
                        "registered with {manager}, but not as `herald install` would write it now: {}",
                        first_lines(&plan.describe(), 3)
                    ),
                    "`herald install` repairs it (`--dry-run` shows what it would change)",
                ),
                Err(e) => Finding::warn(
                    "service",
                    format!("registered with {manager}; cannot compare it: {e}"),
                    "`herald install --dry-run` shows the difference",
                ),
            };
            (finding, env)
        }
    }
}

fn first_lines(text: &str, n: usize) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The journal needs room to store turns.
fn disk(home: &Home) -> Finding {
    let existing = home
        .root()
        .ancestors()
        .find(|dir| dir.exists())
        .unwrap_or(Path::new("."));
    match herald_process::disk::free_bytes(existing) {
        Ok(free) => judge_disk(free, existing),
        Err(e) => Finding::warn(
            "disk",
            format!("cannot tell the free space at {}: {e}", existing.display()),
            "check it by hand (`df -h`)",
        ),
    }
}

/// The pure rule for free space.
pub fn judge_disk(free: u64, at: &Path) -> Finding {
    let mib = free >> 20;
    let detail = format!("{mib} MiB free at {}", at.display());
    if free < DISK_FAIL_BYTES {
        Finding::fail(
            "disk",
            format!("{detail}: the journal may fail to store turns"),
            "free some space (turns are refused with 503 while the journal cannot write)",
        )
    } else if free < DISK_WARN_BYTES {
        Finding::warn("disk", detail, "free some space before it runs out")
    } else {
        Finding::pass("disk", detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_thresholds() {
        let at = Path::new("/h");
        assert_eq!(judge_disk(10 << 20, at).verdict, Verdict::Fail);
        assert_eq!(judge_disk(100 << 20, at).verdict, Verdict::Warn);
        assert_eq!(judge_disk(10 << 30, at).verdict, Verdict::Pass);
        assert!(judge_disk(10 << 20, at).detail.starts_with("10 MiB free at /h"));
    }

    #[test]
    fn a_report_fails_when_any_check_fails() {
        let mut report = Diagnosis {
            findings: vec![
                Finding::pass("a", "ok"),
                Finding::warn("b", "meh", "do x"),
                Finding::skip("c", "n/a"),
            ],
        };
        assert!(!report.failed());
        report.findings.push(Finding::fail("d", "broken", "do y"));
        assert!(report.failed());
    }
}
