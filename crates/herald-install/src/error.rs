//! The one error type of the install generators and parsers.
//!
//! Generators refuse, with a typed error, any input they cannot encode so that the service manager reads
//! back exactly what was meant; they never "do their best" with a path that would be split, expanded or
//! truncated.

use std::path::PathBuf;

use super::backend::Backend;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    #[error("the {what} path {path:?} is not valid Unicode; {backend} registrations are text")]
    NonUnicode {
        backend: Backend,
        what: &'static str,
        path: PathBuf,
    },
    #[error("the {what} path {value:?} must be absolute for {backend}")]
    NotAbsolute {
        backend: Backend,
        what: &'static str,
        value: String,
    },
    #[error(
        "the {what} path {value:?} must be normalized for {backend} (no '.', '..', '//' or trailing '/')"
    )]
    NotNormalized {
        backend: Backend,
        what: &'static str,
        value: String,
    },
    #[error("the {what} {value:?} contains {ch:?}, which {backend} cannot represent")]
    Unrepresentable {
        backend: Backend,
        what: &'static str,
        value: String,
        ch: char,
    },
    #[error("a system-wide {backend} registration needs a user to run as (--run-as-user)")]
    MissingRunAs { backend: Backend },
    #[error("{name:?} is not a user name {backend} accepts")]
    InvalidUser { backend: Backend, name: String },
    #[error(
        "the {backend} backend launches the windowless heraldw.exe, but the spec names none (it belongs next to herald.exe)"
    )]
    MissingGuiExecutable { backend: Backend },
    #[error("the {backend} backend has no system-wide scope; it is per user")]
    NoSystemScope { backend: Backend },
    #[error(
        "the {backend} command line would be {len} characters; Windows starts at most {max} (a shorter \
         home path, or the logon task: `--backend task`)"
    )]
    TooLong {
        backend: Backend,
        len: usize,
        max: usize,
    },
    #[error("cannot read the existing {backend} registration: {reason}")]
    Unparsable { backend: Backend, reason: String },
}
