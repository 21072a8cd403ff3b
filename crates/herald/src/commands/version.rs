//! `herald version [--json]`.

use herald_home::ExitCode;
use herald_home::build_info::BuildInfo;

use crate::cli::VersionArgs;

/// What this build is, and (with --json) which data it reads.
pub fn this_build() -> BuildInfo {
    #[cfg(feature = "postgres")]
    let postgres = Some(herald_journal::PG_SCHEMA_VERSION);
    #[cfg(not(feature = "postgres"))]
    let postgres = None;
    BuildInfo::this(herald_journal::SCHEMA_VERSION).with_postgres_schema(postgres)
}

pub fn version(args: &VersionArgs) -> ExitCode {
    let info = this_build();
    if args.json {
        match serde_json::to_string(&info) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("herald: {e}");
                return ExitCode::Failure;
            }
        }
    } else {
        let postgres = info
            .postgres_schema
            .map(|v| format!(", PostgreSQL journal schema {v}"))
            .unwrap_or_default();
        println!(
            "herald {}, {} {}, journal schema {}{postgres}",
            crate::cli::VERSION,
            info.os,
            info.arch,
            info.journal_schema
        );
    }
    ExitCode::Ok
}
