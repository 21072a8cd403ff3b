//! The Windows Service Control Manager as data: what a service registration must say ([`ScmConfig`]),
//! what the SCM reports about an installed one ([`ScmService`]), the changes a plan makes ([`ScmOp`]), and
//! the [`Scm`] trait through which planners read and the executor acts.
//!
//! **Invariant:** decisions are taken here, on data, and compiled and tested on every OS; the SCM calls
//! themselves (the `windows-service` crate) live in the Windows leaf `scm_os/windows.rs`, with a stub of
//! the same shape elsewhere. Nothing here parses `sc.exe` output (it is localized): the SCM is asked
//! through its API, and its answers are numbers and the registered command line.
//!
//! What Herald registers (`Herald_Gateway[_PROFILE]`, see [`super::names::windows_service_name`]):
//! `"<herald.exe>" --home <root> [--profile P] run --windows-service` as an own-process service (the
//! service process is Herald's monitor, which restarts a crashed worker itself), start type automatic (demand with `--no-start-on-login`), running as LocalSystem, with failure
//! actions that restart after 1 s, 5 s and 30 s (the last repeats), a failure count reset after a day,
//! failure actions also on a non-zero exit code reported with `SERVICE_STOPPED` (so exit 75, "restart
//! requested", restarts), and a preshutdown timeout of the drain budget plus a margin. No secret and no
//! environment: the arguments name the home.

use std::fmt;
use std::time::Duration;

#[cfg(not(windows))]
#[path = "scm_os/other.rs"]
mod os;
#[cfg(windows)]
#[path = "scm_os/windows.rs"]
mod os;

use super::InstallError;
use super::spec::{Backend, Invocation, ServiceSpec};
use super::winargs::{join_windows_args, parse_windows_args};

/// The delays before each restart after a failure; the SCM repeats the last one.
pub const RESTART_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
];
/// After this long without a failure the SCM resets the failure count (the delays start over).
pub const FAILURE_RESET: Duration = Duration::from_secs(24 * 60 * 60);
/// The SCM's name for the built-in account a service runs as by default.
pub const LOCAL_SYSTEM: &str = "LocalSystem";

/// When the SCM starts the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScmStart {
    /// At boot (`SERVICE_AUTO_START`).
    Auto,
    /// Only when asked (`SERVICE_DEMAND_START`).
    Demand,
    /// `SERVICE_DISABLED`.
    Disabled,
    /// A boot or system start type (drivers); never ours.
    Other,
}

impl ScmStart {
    pub fn as_str(self) -> &'static str {
        match self {
            ScmStart::Auto => "automatic",
            ScmStart::Demand => "manual",
            ScmStart::Disabled => "disabled",
            ScmStart::Other => "boot/system",
        }
    }
}

/// What the SCM does when the service fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailurePolicy {
    /// One restart action per entry, with its delay.
    pub restart_delays: Vec<Duration>,
    /// The failure count is reset after this long without a failure.
    pub reset_after: Duration,
}

impl FailurePolicy {
    /// Herald's policy: restart after [`RESTART_DELAYS`], reset after [`FAILURE_RESET`].
    pub fn herald() -> FailurePolicy {
        FailurePolicy {
            restart_delays: RESTART_DELAYS.to_vec(),
            reset_after: FAILURE_RESET,
        }
    }
}

/// Everything a service registration says; the input of [`ScmOp::Create`] and [`ScmOp::Reconfigure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScmConfig {
    pub display_name: String,
    pub description: String,
    /// The executable (absolute) and the arguments, joined by the SCM into its `ImagePath`.
    pub program: String,
    pub args: Vec<String>,
    pub start: ScmStart,
    /// `None`: LocalSystem.
    pub account: Option<String>,
    pub failure: FailurePolicy,
    /// Failure actions also when the service reports `SERVICE_STOPPED` with a non-zero exit code.
    pub failure_on_non_crash: bool,
    /// How long the SCM waits for the service at shutdown (`SERVICE_CONTROL_PRESHUTDOWN`).
    pub preshutdown_timeout: Duration,
}

impl ScmConfig {
    /// The registration for `spec`.
    pub fn for_spec(spec: &ServiceSpec, start_on_boot: bool) -> Result<ScmConfig, InstallError> {
        let invocation = spec.invocation(Backend::WindowsService)?;
        super::spec::require_absolute(Backend::WindowsService, "executable", &invocation.program)?;
        super::spec::refuse_chars(Backend::WindowsService, "executable", &invocation.program, |c| {
            c == '"' || c.is_control()
        })?;
        for arg in &invocation.args {
            super::spec::refuse_chars(Backend::WindowsService, "argument", arg, |c| c == '\0')?;
        }
        let name = super::names::windows_service_name(spec.profile.as_ref());
        Ok(ScmConfig {
            display_name: match &spec.profile {
                Some(p) => format!("Herald gateway ({p})"),
                None => "Herald gateway".to_owned(),
            },
            description: format!(
                "Herald messaging gateway for the home {} ({name})",
                spec.home_root.display()
            ),
            program: invocation.program,
            args: invocation.args,
            start: if start_on_boot {
                ScmStart::Auto
            } else {
                ScmStart::Demand
            },
            account: None,
            failure: FailurePolicy::herald(),
            failure_on_non_crash: true,
            preshutdown_timeout: Duration::from_secs(spec.stop_timeout_secs()),
        })
    }

    /// The command line the SCM will hold (`ImagePath`): the program always quoted (an unquoted path
    /// with spaces is the classic service-path hijack), then the arguments.
    pub fn command_line(&self) -> String {
        let program = format!("\"{}\"", self.program);
        if self.args.is_empty() {
            program
        } else {
            format!("{program} {}", join_windows_args(&self.args))
        }
    }
}

/// The SCM's state of a service (`SERVICE_STATUS.dwCurrentState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScmState {
    Stopped,
    StartPending,
    StopPending,
    Running,
    ContinuePending,
    PausePending,
    Paused,
}

impl ScmState {
    pub fn as_str(self) -> &'static str {
        match self {
            ScmState::Stopped => "stopped",
            ScmState::StartPending => "start pending",
            ScmState::StopPending => "stop pending",
            ScmState::Running => "running",
            ScmState::ContinuePending => "continue pending",
            ScmState::PausePending => "pause pending",
            ScmState::Paused => "paused",
        }
    }

    /// Whether the SCM believes a process of the service runs.
    pub fn active(self) -> bool {
        !matches!(self, ScmState::Stopped)
    }
}

/// The exit code a stopped service reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScmExit {
    Win32(u32),
    ServiceSpecific(u32),
}

impl fmt::Display for ScmExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScmExit::Win32(code) => write!(f, "win32 error {code}"),
            ScmExit::ServiceSpecific(code) => write!(f, "exit code {code}"),
        }
    }
}

/// What the SCM says about the service now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScmStatus {
    pub state: ScmState,
    /// The service's process while it runs.
    pub pid: Option<u32>,
    pub exit: ScmExit,
    /// The progress of a pending start or stop (raised by the service while it works), and how long the
    /// service said the next step may take.
    pub checkpoint: u32,
    pub wait_hint: Duration,
}

impl ScmStatus {
    /// A status with no start or stop under way: `state`, the service's process, its last exit.
    pub fn settled(state: ScmState, pid: Option<u32>, exit: ScmExit) -> ScmStatus {
        ScmStatus {
            state,
            pid,
            exit,
            checkpoint: 0,
            wait_hint: Duration::ZERO,
        }
    }
}

/// An installed service as the SCM reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScmService {
    /// `ImagePath`: the program and its arguments as one command line.
    pub command_line: String,
    pub start: ScmStart,
    /// The account (`LocalSystem`, `NT AUTHORITY\LocalService`, `.\user`...).
    pub account: Option<String>,
    /// `None`: the SCM cannot report failure actions (Wine answers `ERROR_INVALID_LEVEL`).
    pub failure: Option<FailurePolicy>,
    /// `None`: the SCM cannot report the non-crash flag (Wine).
    pub failure_on_non_crash: Option<bool>,
    pub status: ScmStatus,
}

impl ScmService {
    /// The invocation the registered command line runs (the SCM keeps no `HERALD_HOME` of ours).
    pub fn invocation(&self) -> Invocation {
        let mut words = parse_windows_args(&self.command_line).into_iter();
        Invocation {
            program: words.next().unwrap_or_default(),
            args: words.collect(),
            herald_home: None,
        }
    }

    /// The home root the registration names (`--home <root>`), if any.
    pub fn home(&self) -> Option<String> {
        let invocation = self.invocation();
        invocation
            .args
            .iter()
            .position(|a| a == "--home")
            .and_then(|i| invocation.args.get(i + 1).cloned())
    }
}

/// How an installed service differs from what Herald would register.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drift {
    /// Readable differences, one per fact; empty: up to date.
    pub differences: Vec<String>,
    /// Facts the SCM could not report, so they were not compared.
    pub unverifiable: Vec<&'static str>,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Compares what is installed with `want`. Equal paths are compared case-insensitively (Windows paths);
/// the account `LocalSystem` and no account are the same.
pub fn drift(have: &ScmService, want: &ScmConfig) -> Drift {
    let mut out = Drift::default();
    let invocation = have.invocation();
    if !invocation.program.eq_ignore_ascii_case(&want.program) {
        out.differences.push(format!(
            "program \"{}\" instead of \"{}\"",
            invocation.program, want.program
        ));
    }
    if invocation.args != want.args {
        out.differences.push(format!(
            "arguments {} instead of {}",
            join_windows_args(&invocation.args),
            join_windows_args(&want.args)
        ));
    }
    if have.start != want.start {
        out.differences.push(format!(
            "start type {} instead of {}",
            have.start.as_str(),
            want.start.as_str()
        ));
    }
    let account = |a: Option<&str>| {
        a.filter(|a| !a.eq_ignore_ascii_case(LOCAL_SYSTEM) && !a.eq_ignore_ascii_case(r".\LocalSystem"))
            .map(str::to_ascii_lowercase)
    };
    if account(have.account.as_deref()) != account(want.account.as_deref()) {
        out.differences.push(format!(
            "account {} instead of {}",
            have.account.as_deref().unwrap_or(LOCAL_SYSTEM),
            want.account.as_deref().unwrap_or(LOCAL_SYSTEM)
        ));
    }
    match &have.failure {
        Some(failure) if *failure != want.failure => out.differences.push(format!(
            "failure actions {} instead of {}",
            describe_failure(failure),
            describe_failure(&want.failure)
        )),
        Some(_) => {}
        None => out.unverifiable.push("failure actions"),
    }
    match have.failure_on_non_crash {
        Some(flag) if flag != want.failure_on_non_crash => out.differences.push(format!(
            "failure actions on non-crash failures {flag} instead of {}",
            want.failure_on_non_crash
        )),
        Some(_) => {}
        None => out.unverifiable.push("the non-crash failure flag"),
    }
    out
}

fn describe_failure(policy: &FailurePolicy) -> String {
    let delays: Vec<String> = policy
        .restart_delays
        .iter()
        .map(|d| format!("{}s", d.as_secs()))
        .collect();
    format!(
        "restart after {} (reset after {}s)",
        if delays.is_empty() {
            "never".to_owned()
        } else {
            delays.join(", ")
        },
        policy.reset_after.as_secs()
    )
}

/// One change to the SCM's database or to a service's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScmOp {
    /// `CreateService`, then the failure actions, the non-crash flag, the description and the
    /// preshutdown timeout.
    Create { name: String, config: ScmConfig },
    /// `ChangeServiceConfig` with every field, then the same settings as `Create`.
    Reconfigure { name: String, config: ScmConfig },
    /// `StartService`, then wait until it runs (or stops again: a failed start) within `timeout`.
    Start { name: String, timeout: Duration },
    /// The Stop control (the service drains), then wait until it is stopped within `timeout`. Not
    /// running is fine.
    Stop { name: String, timeout: Duration },
    /// `DeleteService` (the SCM removes it once it has stopped and every handle is closed). Gone is fine.
    Delete { name: String },
}

impl fmt::Display for ScmOp {
    /// What `--dry-run` prints: the operation and every parameter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScmOp::Create { name, config } | ScmOp::Reconfigure { name, config } => {
                let verb = if matches!(self, ScmOp::Create { .. }) {
                    "create"
                } else {
                    "reconfigure"
                };
                writeln!(f, "scm: {verb} service {name}")?;
                writeln!(f, "  | display name: {}", config.display_name)?;
                writeln!(f, "  | description: {}", config.description)?;
                writeln!(f, "  | command line: {}", config.command_line())?;
                writeln!(f, "  | type: own process; start: {}", config.start.as_str())?;
                writeln!(
                    f,
                    "  | account: {}",
                    config.account.as_deref().unwrap_or(LOCAL_SYSTEM)
                )?;
                writeln!(f, "  | on failure: {}", describe_failure(&config.failure))?;
                writeln!(
                    f,
                    "  | failure actions on a non-zero exit code too: {}",
                    if config.failure_on_non_crash { "yes" } else { "no" }
                )?;
                write!(
                    f,
                    "  | preshutdown timeout: {}s",
                    config.preshutdown_timeout.as_secs()
                )
            }
            ScmOp::Start { name, timeout } => write!(
                f,
                "scm: start service {name} (wait up to {}s until it runs)",
                timeout.as_secs()
            ),
            ScmOp::Stop { name, timeout } => write!(
                f,
                "scm: send Stop to service {name} (planned stop with drain; wait up to {}s until stopped)",
                timeout.as_secs()
            ),
            ScmOp::Delete { name } => write!(f, "scm: delete service {name}"),
        }
    }
}

/// Why the SCM refused or could not be asked. Codes are Win32 error codes, never localized text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScmError {
    #[error("there is no Windows Service Control Manager on this OS")]
    Unsupported,
    #[error(
        "access denied by the Service Control Manager ({what}): installing, changing or removing a Windows \
         Service needs an elevated (administrator) prompt"
    )]
    AccessDenied { what: String },
    #[error("the Service Control Manager refused to {what}: Win32 error {code}")]
    Os { what: String, code: i32 },
    #[error("the service {name} did not reach the state {state} within {secs}s (it is {now})")]
    Timeout {
        name: String,
        state: &'static str,
        secs: u64,
        now: &'static str,
    },
    #[error("the service {name} stopped while starting ({exit}); see `herald logs --lifecycle`")]
    StartFailed { name: String, exit: ScmExit },
    #[error("{0}")]
    Invalid(String),
}

/// Win32 error codes the leaf maps.
pub mod codes {
    pub const ERROR_ACCESS_DENIED: i32 = 5;
    pub const ERROR_INVALID_LEVEL: i32 = 124;
    pub const ERROR_SERVICE_ALREADY_RUNNING: i32 = 1056;
    pub const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
    pub const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;
    pub const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;
    pub const ERROR_SERVICE_MARKED_FOR_DELETE: i32 = 1072;
    pub const ERROR_NOT_SUPPORTED: i32 = 50;
}

/// Maps a Win32 error code from an SCM call to a typed error.
pub fn os_error(what: impl Into<String>, code: i32) -> ScmError {
    let what = what.into();
    match code {
        codes::ERROR_ACCESS_DENIED => ScmError::AccessDenied { what },
        code => ScmError::Os { what, code },
    }
}

/// Whether an optional setting was refused because this SCM does not implement it (Wine's answer for the
/// non-crash flag and the delayed start), rather than because it is wrong.
pub fn unsupported_setting(code: i32) -> bool {
    matches!(code, codes::ERROR_INVALID_LEVEL | codes::ERROR_NOT_SUPPORTED)
}

/// What an [`Scm::apply`] did besides succeeding: settings this SCM does not implement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    pub unsupported: Vec<String>,
}

/// The Service Control Manager: read by planners, changed by the executor.
pub trait Scm {
    /// The service named `name`, `None` when the SCM does not know it.
    fn query(&self, name: &str) -> Result<Option<ScmService>, ScmError>;
    /// Carries out one operation (waiting as the operation says).
    fn apply(&mut self, op: &ScmOp) -> Result<Applied, ScmError>;
}

/// The real SCM on Windows; elsewhere a stub that knows no service and refuses every change.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemScm;

impl Scm for SystemScm {
    fn query(&self, name: &str) -> Result<Option<ScmService>, ScmError> {
        os::query(name)
    }

    fn apply(&mut self, op: &ScmOp) -> Result<Applied, ScmError> {
        os::apply(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SERVICE_FLAG;
    use crate::spec::unix_spec;

    fn spec() -> ServiceSpec {
        let mut spec = unix_spec("/x", "/h", Some("work"), 30);
        spec.executable = r"C:\Program Files\Herald\herald.exe".into();
        spec.home_root = r"C:\Users\a b\AppData\Local\herald 50% & ^ !".into();
        spec
    }

    fn installed(config: &ScmConfig) -> ScmService {
        ScmService {
            command_line: config.command_line(),
            start: config.start,
            account: Some(LOCAL_SYSTEM.to_owned()),
            failure: Some(config.failure.clone()),
            failure_on_non_crash: Some(true),
            status: ScmStatus::settled(ScmState::Stopped, None, ScmExit::Win32(0)),
        }
    }

    #[test]
    fn the_registration_runs_the_service_entry_point_of_this_home() {
        let config = ScmConfig::for_spec(&spec(), true).unwrap();
        assert_eq!(config.program, r"C:\Program Files\Herald\herald.exe");
        assert_eq!(
            config.args,
            [
                "--home",
                r"C:\Users\a b\AppData\Local\herald 50% & ^ !",
                "--profile",
                "work",
                "run",
                SERVICE_FLAG
            ]
        );
        assert_eq!(config.start, ScmStart::Auto);
        assert_eq!(config.account, None);
        assert_eq!(config.preshutdown_timeout, Duration::from_secs(45));
        assert_eq!(
            config.failure.restart_delays,
            [1, 5, 30].map(Duration::from_secs).to_vec()
        );
        assert!(config.failure_on_non_crash);
        assert!(
            config
                .command_line()
                .starts_with(r#""C:\Program Files\Herald\herald.exe" --home "C:\"#)
        );
        assert_eq!(
            ScmConfig::for_spec(&spec(), false).unwrap().start,
            ScmStart::Demand
        );
    }

    #[test]
    fn the_command_line_reads_back_as_the_invocation_and_the_home() {
        let config = ScmConfig::for_spec(&spec(), true).unwrap();
        let service = installed(&config);
        assert_eq!(service.invocation().program, config.program);
        assert_eq!(service.invocation().args, config.args);
        assert_eq!(
            service.home().as_deref(),
            Some(r"C:\Users\a b\AppData\Local\herald 50% & ^ !")
        );
        assert!(drift(&service, &config).is_empty());
    }

    #[test]
    fn relative_or_quoted_programs_are_refused() {
        let mut bad = spec();
        bad.executable = "herald.exe".into();
        assert!(matches!(
            ScmConfig::for_spec(&bad, true),
            Err(InstallError::NotAbsolute { .. })
        ));
    }

    #[test]
    fn drift_names_every_difference_and_what_could_not_be_read() {
        let config = ScmConfig::for_spec(&spec(), true).unwrap();
        let mut service = installed(&config);
        service.command_line = r#""C:\old\herald.exe" --home C:\h run"#.to_owned();
        service.start = ScmStart::Demand;
        service.account = Some(r".\bob".to_owned());
        service.failure = None;
        service.failure_on_non_crash = Some(false);
        let d = drift(&service, &config);
        assert_eq!(d.differences.len(), 5, "{d:?}");
        assert!(d.differences[0].contains(r"C:\old\herald.exe"));
        assert_eq!(d.unverifiable, ["failure actions"]);
        // Case differences in the program path and the LocalSystem spelling are not drift.
        let mut service = installed(&config);
        service.command_line = service.command_line.replace("Program Files", "PROGRAM FILES");
        service.account = None;
        assert!(drift(&service, &config).is_empty());
        let mut service = installed(&config);
        service.failure = Some(FailurePolicy {
            restart_delays: vec![Duration::from_secs(60)],
            reset_after: FAILURE_RESET,
        });
        assert!(drift(&service, &config).differences[0].contains("restart after 60s"));
    }

    #[test]
    fn dry_run_text_shows_every_parameter() {
        let config = ScmConfig::for_spec(&spec(), true).unwrap();
        let text = ScmOp::Create {
            name: "Herald_Gateway_work".into(),
            config,
        }
        .to_string();
        for needle in [
            "create service Herald_Gateway_work",
            "--windows-service",
            "start: automatic",
            "account: LocalSystem",
            "restart after 1s, 5s, 30s (reset after 86400s)",
            "non-zero exit code too: yes",
            "preshutdown timeout: 45s",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
    }

    #[test]
    fn errors_are_judged_by_code() {
        assert!(matches!(os_error("open", 5), ScmError::AccessDenied { .. }));
        assert!(os_error("open", 5).to_string().contains("administrator"));
        assert!(unsupported_setting(124) && !unsupported_setting(5));
    }
}
