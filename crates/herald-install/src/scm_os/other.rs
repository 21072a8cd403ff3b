//! The SCM leaf where there is no SCM (every OS but Windows). Same signatures as `windows.rs`.

use super::{Applied, ScmError, ScmOp, ScmService};

pub(crate) fn query(_name: &str) -> Result<Option<ScmService>, ScmError> {
    Err(ScmError::Unsupported)
}

pub(crate) fn apply(_op: &ScmOp) -> Result<Applied, ScmError> {
    Err(ScmError::Unsupported)
}
