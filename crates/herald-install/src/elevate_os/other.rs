//! The elevation leaf where there is no UAC (every OS but Windows). Same signatures as `windows.rs`.

use std::path::Path;

use super::ElevateError;

pub(crate) fn token_elevated() -> Result<bool, ElevateError> {
    Err(ElevateError::Unsupported)
}

pub(crate) fn run_elevated(
    _program: &Path,
    _parameters: &str,
    _directory: &Path,
) -> Result<u32, ElevateError> {
    Err(ElevateError::Unsupported)
}
