//! Windows leaf of the control channel's server: a named pipe whose DACL grants access to the current user's SID
//! only — and to the home directory's owner when that is another account (a Windows Service running as
//! LocalSystem on a user's home: the owner can already write every file of the home, stop markers
//! included, so this grants nothing new, and `status --deep` can ping) — created as the first instance
//! (so a squatter that created the name first makes us fail loudly rather than serve through its pipe)
//! and rejecting remote clients.

use std::ffi::c_void;
use std::io;

use herald_home::Home;
use herald_home::ownership::SecurityDescriptor;
use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;

#[derive(Debug)]
pub(super) struct Listener {
    name: String,
    descriptor: SecurityDescriptor,
    next: NamedPipeServer,
}

impl Listener {
    pub(super) fn bind(home: &Home) -> io::Result<Listener> {
        let name = home.control_pipe_name();
        let descriptor = descriptor_for_home(home.root())?;
        let next = create(&name, &descriptor, true)?;
        Ok(Listener {
            name,
            descriptor,
            next,
        })
    }

    pub(super) async fn accept(&mut self) -> io::Result<NamedPipeServer> {
        self.next.connect().await?;
        let fresh = create(&self.name, &self.descriptor, false)?;
        Ok(std::mem::replace(&mut self.next, fresh))
    }
}

fn create(name: &str, descriptor: &SecurityDescriptor, first: bool) -> io::Result<NamedPipeServer> {
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor.as_ptr(),
        bInheritHandle: 0,
    };
    let mut options = ServerOptions::new();
    options.first_pipe_instance(first).reject_remote_clients(true);
    // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor is owned by `descriptor`, which
    // outlives this call; the pipe keeps its own copy of the security information.
    unsafe { options.create_with_security_attributes_raw(name, (&raw mut attributes).cast::<c_void>()) }
}

pub(super) fn cleanup(_home: &Home) {
    // A named pipe disappears with its last handle.
}

/// `D:P(A;;GA;;;<current user SID>)`: a protected DACL with full access for this user, plus the same entry
/// for the owner of `home` when that is another account (unknown owner: this user only).
fn descriptor_for_home(home: &std::path::Path) -> io::Result<SecurityDescriptor> {
    let sid = herald_home::ownership::current_user_sid()?;
    let mut sddl = format!("D:P(A;;GA;;;{sid})");
    match herald_home::ownership::owner_sid(home) {
        Ok(owner) if owner != sid => sddl.push_str(&format!("(A;;GA;;;{owner})")),
        Ok(_) => {}
        Err(e) => tracing::debug!("cannot read the owner of {}: {e}", home.display()),
    }
    SecurityDescriptor::from_sddl(&sddl)
}
