//! The `Run` key leaf where there is no registry (every OS but Windows). Same signatures as `windows.rs`.

use super::RunKeyError;

pub(crate) fn read(_key: &str, _name: &str) -> Result<Option<String>, RunKeyError> {
    Err(RunKeyError::Unsupported)
}

pub(crate) fn set(_key: &str, _name: &str, _command: &str) -> Result<(), RunKeyError> {
    Err(RunKeyError::Unsupported)
}

pub(crate) fn delete(_key: &str, _name: &str) -> Result<(), RunKeyError> {
    Err(RunKeyError::Unsupported)
}
