//! `herald upgrade --from PATH | --resume | --rollback [--after-exit PID]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_home::ExitCode;
use herald_home::secrets::Variables;
use herald_journal::JournalLocation;
use herald_lifecycle::Target;
use herald_lifecycle::upgrade::{
    self, JournalFiles, Options, Report, RolledBack, ServerJournal, Upgrade, UpgradeError,
};

use crate::cli::UpgradeArgs;

/// The journal operations an upgrade needs, over `herald-journal` (the lifecycle layer does not link it).
struct Journal {
    /// Where the home's config puts the journal (resolved when it is needed: a home whose config cannot
    /// be read still rolls back).
    target: Target,
}

/// How long reading a PostgreSQL journal's schema may take.
#[cfg(feature = "postgres")]
const SERVER_BUDGET: Duration = Duration::from_secs(10);

impl JournalFiles for Journal {
    fn schema_version(&self, path: &Path) -> Result<Option<u32>, String> {
        herald_journal::snapshot::schema_version(path).map_err(|e| e.to_string())
    }

    fn snapshot(&self, path: &Path, dest: &Path) -> Result<bool, String> {
        herald_journal::snapshot::take(path, dest).map_err(|e| e.to_string())
    }

    fn restore(&self, snapshot: &Path, path: &Path) -> Result<(), String> {
        herald_journal::snapshot::restore(snapshot, path).map_err(|e| e.to_string())
    }

    fn on_server(&self) -> Result<Option<ServerJournal>, String> {
        let config = self.target.config().map_err(|e| e.to_string())?;
        if config.journal.url.is_none() {
            return Ok(None);
        }
        let variables = Variables::load(self.target.home()).map_err(|e| e.to_string())?;
        let location = JournalLocation::resolve(self.target.home(), &config.journal, &variables)
            .map_err(|e| e.to_string())?;
        match location {
            JournalLocation::Sqlite(_) => Ok(None),
            #[cfg(feature = "postgres")]
            JournalLocation::Postgres(options) => {
                let schema = herald_journal::postgres::schema_version(&options, SERVER_BUDGET)?;
                Ok(Some(ServerJournal {
                    target: options.target().to_owned(),
                    schema,
                }))
            }
        }
    }
}

pub fn upgrade(target: Target, args: &UpgradeArgs) -> ExitCode {
    // The executable being replaced: this one, by its real path (a symlink on PATH is not replaced by
    // a file; the file it names is).
    let installed = match std::env::current_exe().and_then(std::fs::canonicalize) {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("herald: cannot find this executable: {e}");
            return ExitCode::Failure;
        }
    };
    let candidate = match &args.candidate {
        // Absolute: a watcher runs it from another working directory.
        Some(path) => match std::path::absolute(path) {
            Ok(path) => path,
            Err(e) => {
                eprintln!("herald: {}: {e}", path.display());
                return ExitCode::Usage;
            }
        },
        None => PathBuf::new(),
    };
    let options = Options {
        candidate,
        health_timeout: Duration::from_secs(args.health_timeout),
        start_timeout: Duration::from_secs(args.timeout),
    };
    if let Some(key) = &args.wait_for {
        // The detached watcher: nobody reads its output; the outcome is in the lifecycle log.
        let Some(key) = herald_home::records::ProcessKey::parse(key) else {
            eprintln!("herald: --wait-for takes PID:START_TIME");
            return ExitCode::Usage;
        };
        if !upgrade::wait_for_exit(&target, key) {
            return ExitCode::Failure;
        }
    } else if let Some(pid) = args.after_exit {
        match upgrade::watch_after_exit(&target, pid, &options) {
            Ok(Some(watcher)) => {
                println!(
                    "herald will upgrade from {} once pid {pid} exits (watcher pid {watcher}); \
                     `herald logs --lifecycle` tells how it went",
                    options.candidate.display()
                );
                return ExitCode::Ok;
            }
            Ok(None) => println!("pid {pid} is not running; upgrading now"),
            Err(e) => return super::fail(&e),
        }
    }
    let journal = Journal {
        target: Target::new(target.home().clone()),
    };
    let this = super::version::this_build();
    let upgrade = Upgrade::new(target, installed, &journal);
    if args.rollback {
        return match upgrade.rollback(&options) {
            Ok(done) => {
                print_rolled_back(&done);
                ExitCode::Ok
            }
            Err(e) => report_error(&e),
        };
    }
    let result = if args.resume {
        upgrade.resume(&options)
    } else {
        println!(
            "upgrading herald {} with {}",
            this.version,
            options.candidate.display()
        );
        upgrade.run(&this, &options)
    };
    match result {
        Ok(report) => {
            print_report(&report);
            ExitCode::Ok
        }
        Err(e) => report_error(&e),
    }
}

fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn print_report(report: &Report) {
    let serving = match report.pid {
        Some(pid) => format!("serving as pid {pid}"),
        None => "installed (no gateway was running: it was started, checked and stopped again)".into(),
    };
    println!("herald upgraded {} -> {}: {serving}", report.from, report.to);
    if let Some(restart) = report.restart_took {
        println!("  restart (drain, stop, start, ready)  {}", millis(restart));
    }
    if let Some(gate) = report.gate_took {
        println!("  health gate                          {}", millis(gate));
    }
    println!("  whole upgrade                        {}", millis(report.took));
    println!("  previous executable kept as {}", report.previous.display());
    println!("  journal backup in {}", report.backup_dir.display());
    for warning in &report.warnings {
        eprintln!("note: not part of the gate, and not passing: {warning}");
    }
}

fn print_rolled_back(done: &RolledBack) {
    println!(
        "rolled back herald {} -> {} (from step {}: {})",
        done.removed, done.restored, done.step, done.why
    );
    println!("  {}", done.outcome);
}

fn report_error(error: &UpgradeError) -> ExitCode {
    eprintln!("herald: {error}");
    if let Some(evidence) = error.evidence() {
        eprint!("{evidence}");
    }
    error.exit_code()
}
