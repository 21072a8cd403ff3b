//! `herald version [--json]`.

use herald_home::ExitCode;
use herald_home::build_info::BuildInfo;

use crate::cli::VersionArgs;

/// What this build is, and (with --json) which data it reads.
pub fn this_build() -> BuildInfo {
    BuildInfo::this(herald_journal::SCHEMA_VERSION)
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
        println!(
            "herald {}, {} {}, journal schema {}",
            crate::cli::VERSION,
            info.os,
            info.arch,
            info.journal_schema
        );
    }
    ExitCode::Ok
}
