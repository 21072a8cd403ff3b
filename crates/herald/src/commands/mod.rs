//! One module per command.

pub mod config;
pub mod restart;
pub mod run;
pub mod start;
pub mod status;
pub mod stop;
