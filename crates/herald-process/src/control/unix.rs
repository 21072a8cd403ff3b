//! Unix leaf of the control channel's client: the socket file in the home's private run dir (or the
//! fallback for long home paths), and a client that refuses a server that is not its own user — the
//! socket may live in a shared runtime dir.

use std::io;

use herald_home::Home;
use tokio::net::UnixStream;

use super::ClientError;

pub(super) fn endpoint(home: &Home) -> String {
    home.control_socket().display().to_string()
}

pub(super) async fn connect(home: &Home) -> Result<UnixStream, ClientError> {
    let path = home.control_socket();
    let stream = UnixStream::connect(&path).await.map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotListening {
            endpoint: path.display().to_string(),
        },
        _ => ClientError::Io(e),
    })?;
    let cred = stream.peer_cred()?;
    if cred.uid() != my_uid() {
        return Err(ClientError::WrongPeer(format!("uid {}", cred.uid())));
    }
    Ok(stream)
}

fn my_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
