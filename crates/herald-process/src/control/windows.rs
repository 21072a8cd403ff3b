//! Windows leaf of the control channel's client: the home's named pipe (its server grants the current
//! user only and rejects remote clients — see the daemon's server leaf).

use std::io;
use std::time::Duration;

use herald_home::Home;
use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeClient};
use windows_sys::Win32::Foundation::ERROR_PIPE_BUSY;

use super::ClientError;

pub(super) fn endpoint(home: &Home) -> String {
    home.control_pipe_name()
}

pub(super) async fn connect(home: &Home) -> Result<NamedPipeClient, ClientError> {
    let name = home.control_pipe_name();
    loop {
        match ClientOptions::new().open(&name) {
            Ok(client) => return Ok(client),
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => {
                // Every instance is busy for an instant; the server creates the next one right away.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ClientError::NotListening { endpoint: name });
            }
            Err(e) => return Err(ClientError::Io(e)),
        }
    }
}
