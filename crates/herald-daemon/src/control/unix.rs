//! Unix leaf of the control channel's server: a socket file, mode 0600, in the home's private run dir — or,
//! when the home's path is too long for a socket, in this user's private runtime directory (0700, checked
//! to be this user's own: see `Home::ensure_socket_dir`). The server also rejects any peer whose uid is not
//! its own, and the client (in `herald-process`) refuses a server that is not its own user.

use std::io;
use std::path::Path;

use herald_home::Home;
use tokio::net::{UnixListener, UnixStream};

#[derive(Debug)]
pub(super) struct Listener {
    inner: UnixListener,
}

impl Listener {
    pub(super) fn bind(home: &Home) -> io::Result<Listener> {
        let path = home.control_socket();
        home.ensure_socket_dir().map_err(io::Error::other)?;
        // We hold the instance lock, so a socket file here was left by a gateway that died.
        herald_home::atomic::remove_if_exists(&path)?;
        let inner = UnixListener::bind(&path)?;
        set_private(&path)?;
        Ok(Listener { inner })
    }

    pub(super) async fn accept(&mut self) -> io::Result<UnixStream> {
        loop {
            let (stream, _) = self.inner.accept().await?;
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == my_uid() => return Ok(stream),
                Ok(cred) => tracing::warn!("control channel: rejected a connection from uid {}", cred.uid()),
                Err(e) => tracing::warn!("control channel: cannot identify a peer: {e}"),
            }
        }
    }
}

pub(super) fn cleanup(home: &Home) {
    let _ = herald_home::atomic::remove_if_exists(&home.control_socket());
}

fn set_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

fn my_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
