//! The command line, parsed and validated before anything runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use herald_home::ProfileName;

/// `0.1.0 (abc1234 2026-11-26)`: the build's version (`herald_home::VERSION`), the commit and its date
/// (see build.rs).
pub const VERSION: &str = concat!(
    env!("HERALD_VERSION"),
    " (",
    env!("HERALD_BUILD_COMMIT"),
    " ",
    env!("HERALD_BUILD_DATE"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version = VERSION,
    about = "A messaging gateway for AI agents that behaves like a first-class system service",
    after_help = "Exit codes: 0 planned stop / success, 1 failure, 2 usage, 3 not running (status), \
                  75 restart requested, 78 fatal configuration."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The home directory (default: $HERALD_HOME, else ~/.herald or %LOCALAPPDATA%\herald).
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Use the profile NAME: <root>/profiles/NAME (a-z, 0-9, '_', '-'; up to 64 characters).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<ProfileName>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway in the foreground until a planned stop.
    Run(RunArgs),
    /// Start the gateway in the background (detached, supervised) and wait until it is ready.
    Start(StartArgs),
    /// Restart the gateway (planned stop, then a fresh detached start); with --after-exit, once a given
    /// process (an updater, a GUI app) has exited.
    Restart(RestartArgs),
    /// Make the running gateway read herald.toml and the secrets again (as SIGHUP does on Unix): agent
    /// settings and allowlists apply at once, without dropping a turn; the keys that need a restart are
    /// named.
    Reload,
    /// Stop the running gateway: drain in-flight turns, wait for the process to exit.
    Stop(StopArgs),
    /// Show whether a gateway is running on this home (exit 0 running, 3 not running).
    Status(StatusArgs),
    /// Print the gateway log (logs/stdio.log) or, with --lifecycle, the lifecycle events.
    Logs(LogsArgs),
    /// Check, create or show herald.toml.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Keep the secrets herald.toml names (API keys, bot tokens) in the home, where every start of the
    /// gateway finds them, whatever service manager starts it; the environment still wins.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Print a one-time pairing code for a chat service (telegram): a person who sends `/pair CODE` to the
    /// bot within the hour is let in from then on (`herald access list` shows them). Single use.
    Pair(PairArgs),
    /// Who was let in by pairing: list them, or revoke one (takes effect at their next message).
    #[command(subcommand)]
    Access(AccessCommand),
    /// Replies a push adapter could not deliver (a webhook callback that never came up), set aside: list
    /// them, or send one again.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// Send a message to the running gateway and print the reply; with no MESSAGE, read one message per
    /// line from standard input (an interactive prompt on a terminal).
    Chat(ChatArgs),
    /// Check what breaks real installs (program location, home, config, port, secrets, agent, Telegram,
    /// service registration, disk), each PASS/WARN/FAIL with its fix. Exit 0 when nothing fails, 1
    /// otherwise.
    Doctor(DoctorArgs),
    /// Register the gateway with the OS service manager (start at login, restart after a crash);
    /// idempotent: repairs drift, changes nothing when up to date.
    Install(InstallArgs),
    /// Stop the gateway and remove every service registration of this home.
    Uninstall(UninstallArgs),
    /// Replace this herald with a new build (--from PATH): check it can read this home, back up the
    /// journal, swap the executables, restart through whatever manages the home, and keep it only if it
    /// passes a health gate; else put the previous version back by itself.
    Upgrade(UpgradeArgs),
    /// Print this build's version; with --json, also its platform and which journal schema and record
    /// versions it reads (what `herald upgrade` checks a candidate with).
    Version(VersionArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) to standard output.
    Completions(CompletionsArgs),
    /// Print the manual page (roff, section 1) to standard output: herald(1), or with COMMAND the page
    /// of that command, herald-COMMAND(1).
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print (run, start, stop, status, logs, ...).
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `--backend` of `herald install`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// systemd on Linux, launchd on macOS, a Scheduled Task (the per-user Run key as fallback) on Windows.
    Auto,
    Systemd,
    Launchd,
    Task,
    Startup,
    WindowsService,
    /// No autostart: start the gateway now, supervised, in the background (as `herald start`).
    None,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Which service manager to register with.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// A system-wide registration (root/admin) instead of a per-user one.
    #[arg(long)]
    pub system: bool,
    /// With --system: the account the gateway runs as (default: SUDO_USER; root only when named).
    #[arg(long, value_name = "USER", requires = "system")]
    pub run_as_user: Option<String>,
    /// Start (or restart, if the registration changed) the gateway now [default].
    #[arg(long, overrides_with = "no_start_now")]
    pub start_now: bool,
    /// Only register; do not start now.
    #[arg(long, overrides_with = "start_now")]
    pub no_start_now: bool,
    /// Start the gateway at login / boot [default].
    #[arg(long, overrides_with = "no_start_on_login")]
    pub start_on_login: bool,
    /// Do not start the gateway at login (systemd: the unit is installed but not enabled).
    #[arg(long, overrides_with = "start_on_login")]
    pub no_start_on_login: bool,
    /// Rewrite the registration even when it is up to date (or registers another home).
    #[arg(long)]
    pub force: bool,
    /// Print every file that would be written and every command that would run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Internal: this is the elevated relaunch of a Windows Service install; write the outcome to PATH
    /// (a file the non-elevated herald prepared and prints).
    #[arg(long, hide = true, value_name = "PATH")]
    pub elevated_report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Remove the system-wide registration (root/admin).
    #[arg(long)]
    pub system: bool,
    /// Print what would be removed and run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Internal: this is the elevated relaunch of a Windows Service uninstall; write the outcome to PATH.
    #[arg(long, hide = true, value_name = "PATH")]
    pub elevated_report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The conversation to talk in (1 to 200 characters of A-Z a-z 0-9 - _ . : @).
    #[arg(long, short, default_value = "cli", value_name = "ID")]
    pub session: String,
    /// Start a new conversation of the session first: the agent no longer sees what came before (the
    /// history stays stored and listed).
    #[arg(long)]
    pub new: bool,
    /// The message (words are joined with spaces). Omit it for an interactive prompt.
    #[arg(trailing_var_arg = true, value_name = "MESSAGE")]
    pub message: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Stop a gateway already running on this home (planned stop, then force if it does not exit), then
    /// take over.
    #[arg(long)]
    pub replace: bool,
    /// Run the gateway as a single process without the restarting monitor (for service managers that
    /// supervise it themselves, like systemd or the Windows SCM).
    #[arg(long, conflicts_with = "worker")]
    pub no_supervise: bool,
    /// Internal: run as the worker of a monitor named by HERALD_MONITOR.
    #[arg(long, hide = true)]
    pub worker: bool,
    /// Internal: run by a launchd job (the plist passes it). A start that fails for a reason only a
    /// person can fix (exit 78) stays up idle in startup_failed until herald.toml changes, or a stop
    /// (exit 0): launchd cannot exempt exit 78 from KeepAlive and would restart it forever.
    #[arg(long, hide = true, requires = "no_supervise")]
    pub launchd: bool,
    /// Internal: the Windows Service entry point (the SCM registration runs it; not from a console). The
    /// service hosts the monitor, or with --no-supervise the gateway alone.
    #[arg(long, hide = true, conflicts_with_all = ["worker", "replace"])]
    pub windows_service: bool,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Machine-readable: {"name", "version", "os", "arch", "journal_schema", "postgres_schema" (builds
    /// with PostgreSQL support), "records"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The new herald executable (on Windows, heraldw.exe is taken from beside it).
    #[arg(
        long = "from",
        value_name = "PATH",
        required_unless_present_any = ["resume", "rollback"],
        conflicts_with_all = ["resume", "rollback"]
    )]
    pub candidate: Option<PathBuf>,
    /// Seconds the new gateway has to pass the health gate (running, verified, answering, ready, one
    /// synthetic turn through its journal) before it is rolled back.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub health_timeout: u64,
    /// Seconds a start may take to reach readiness.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// Return at once, leaving a detached watcher that upgrades once process PID (an updater, a GUI
    /// app) has exited.
    #[arg(long, value_name = "PID", requires = "candidate")]
    pub after_exit: Option<u32>,
    /// Finish an upgrade that was cut short (the plan in <home>/upgrade/ names the step).
    #[arg(long, conflicts_with = "rollback")]
    pub resume: bool,
    /// Undo an upgrade that was cut short, or the last one: the previous executable, the journal if the
    /// new version migrated it, the access records; then start the previous version.
    #[arg(long)]
    pub rollback: bool,
    /// Internal: the watcher started by --after-exit (PID:START_TIME).
    #[arg(long, hide = true, value_name = "PID:START", requires = "candidate")]
    pub wait_for: Option<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Seconds to wait for the gateway to become ready.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Return at once, leaving a detached watcher that restarts the gateway when process PID exits.
    #[arg(long, value_name = "PID")]
    pub after_exit: Option<u32>,
    /// Internal: the watcher started by --after-exit (PID:START_TIME).
    #[arg(long, hide = true, value_name = "PID:START")]
    pub wait_for: Option<String>,
    /// Seconds to wait for readiness after the restart.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// Restart only this chat adapter (telegram) inside the running gateway: new connections, its tasks
    /// started again; the process, the HTTP API and other adapters keep serving.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["after_exit", "wait_for"])]
    pub adapter: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Via {
    /// Control channel, then stop marker, then SIGTERM (Unix), then force kill.
    Auto,
    Channel,
    Marker,
    Signal,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait for the planned stop before force-killing (default: drain_timeout_secs + 15, the
    /// stop budget the service units are written with).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Which stop path to use.
    #[arg(long, value_enum, default_value_t = Via::Auto)]
    pub via: Via,
    /// Never force-kill: report a timeout instead.
    #[arg(long)]
    pub no_force: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new lines as they are written (follows the log across rotation).
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the last lines (events) to print first [default: 50; with --since, all of them].
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<usize>,
    /// Only lines written since then: a duration ago (30s, 10m, 2h, 1d) or a UTC time
    /// (2026-11-26T18:00:00Z).
    #[arg(long, value_name = "WHEN", value_parser = crate::commands::logs::parse_since)]
    pub since: Option<std::time::SystemTime>,
    /// One JSON object per line: {time, level, message} for the gateway's output, the event itself for
    /// --lifecycle.
    #[arg(long)]
    pub json: bool,
    /// The lifecycle log (one line per event) instead of the gateway's output.
    #[arg(long)]
    pub lifecycle: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Machine-readable output: {"ok": bool, "checks": [{"check", "verdict", "detail", "fix"}]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Machine-readable output (stable fields: running, pid, state, uptime_secs, home, ...).
    #[arg(long)]
    pub json: bool,
    /// Check every signal (records, lock, identity, liveness, heartbeat, lifecycle, control channel, ...)
    /// and name the one that disagrees. Exit 0 healthy, 1 running but unhealthy, 3 not running.
    #[arg(long)]
    pub deep: bool,
}

/// A chat service people can pair with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PairAdapter {
    Telegram,
}

impl PairAdapter {
    pub fn name(self) -> &'static str {
        match self {
            PairAdapter::Telegram => "telegram",
        }
    }
}

#[derive(Debug, Args)]
pub struct PairArgs {
    /// The chat service the code is for.
    #[arg(value_enum, value_name = "ADAPTER")]
    pub adapter: PairAdapter,
    /// Grant admin access (may /stop anyone's answer in a group, sees the whole /status).
    #[arg(long)]
    pub admin: bool,
    /// How long the code can be used: 10m, 1h (the default, and the longest), ...
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub expires_in: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Everyone let in by pairing, with their level, and the codes still open.
    #[command(alias = "ls")]
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take back USER's access (their next message is denied).
    #[command(alias = "rm")]
    Revoke {
        #[arg(value_enum, value_name = "ADAPTER")]
        adapter: PairAdapter,
        /// The user's id (as `herald access list` shows it).
        #[arg(value_name = "USER")]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// How many replies wait to be delivered, and those set aside with why.
    #[command(alias = "ls")]
    List {
        /// Only the replies set aside.
        #[arg(long)]
        failed: bool,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a reply that was set aside again (at once when the gateway runs, else at its next start).
    Retry {
        /// The reply's turn, as `herald deliveries list` shows it.
        #[arg(value_name = "TURN")]
        turn: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store the value of variable NAME. The value is read from standard input (typed without echo on
    /// a terminal), never from the command line, so it stays out of shell history and process lists.
    Set {
        /// The variable's name, as herald.toml names it (`api_key_env`, `token_env`).
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// List the stored names (never the values), and what herald.toml names.
    #[command(alias = "ls")]
    List,
    /// Remove the stored value of NAME.
    #[command(alias = "remove")]
    Rm {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate herald.toml (exit 78 with the key, line and column of the first error).
    Check,
    /// Write a commented default herald.toml.
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the effective configuration.
    Show,
}
