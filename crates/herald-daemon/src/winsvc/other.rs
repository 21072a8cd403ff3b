//! The Windows Service entry point where there is no SCM. Same signature as `windows.rs`.

use herald_home::ExitCode;

use super::ServiceError;
use crate::run::{RunError, RunOptions};

pub(super) fn run_as_service(
    _options: RunOptions,
    _service: String,
) -> Result<Result<ExitCode, RunError>, ServiceError> {
    Err(ServiceError::NotWindows)
}
