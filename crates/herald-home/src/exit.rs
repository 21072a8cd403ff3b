//! The exit-code contract, defined once.
//!
//! Every generated service unit, the supervisor and the CLI interpret exit codes through this one table, so
//! a planned restart can never be mistaken for a failure (or a failure for a clean stop) by any of them.

/// How a Herald process ended, as seen by whoever started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCode {
    /// Planned stop: the gateway drained and exited on request. Do not restart.
    Ok,
    /// Unexpected failure. A service manager should restart the gateway.
    Failure,
    /// Command-line usage error (clap's convention).
    Usage,
    /// `herald status`: no gateway is running on this home (LSB "program is not running").
    NotRunning,
    /// Restart requested: the gateway stopped so that it can be started again. Not a failure.
    Restart,
    /// Fatal configuration error. Restarting cannot help; do not restart.
    Config,
}

impl ExitCode {
    /// The numeric process exit code.
    pub const fn code(self) -> u8 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Failure => 1,
            ExitCode::Usage => 2,
            ExitCode::NotRunning => 3,
            ExitCode::Restart => 75,
            ExitCode::Config => 78,
        }
    }

    /// The inverse of [`ExitCode::code`]; `None` for a code outside the contract (a crash, a signal).
    pub const fn from_code(code: i32) -> Option<ExitCode> {
        Some(match code {
            0 => ExitCode::Ok,
            1 => ExitCode::Failure,
            2 => ExitCode::Usage,
            3 => ExitCode::NotRunning,
            75 => ExitCode::Restart,
            78 => ExitCode::Config,
            _ => return None,
        })
    }

    /// A short, stable name used in records and logs.
    pub const fn name(self) -> &'static str {
        match self {
            ExitCode::Ok => "planned_stop",
            ExitCode::Failure => "failure",
            ExitCode::Usage => "usage",
            ExitCode::NotRunning => "not_running",
            ExitCode::Restart => "restart_requested",
            ExitCode::Config => "fatal_config",
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

#[cfg(test)]
mod tests {
    use super::ExitCode;

    #[test]
    fn codes_round_trip_and_match_the_documented_contract() {
        let all = [
            (ExitCode::Ok, 0),
            (ExitCode::Failure, 1),
            (ExitCode::Usage, 2),
            (ExitCode::NotRunning, 3),
            (ExitCode::Restart, 75),
            (ExitCode::Config, 78),
        ];
        for (code, number) in all {
            assert_eq!(code.code(), number);
            assert_eq!(ExitCode::from_code(i32::from(number)), Some(code));
        }
        assert_eq!(ExitCode::from_code(137), None);
    }
}
