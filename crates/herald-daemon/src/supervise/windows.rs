//! Windows leaf of the monitor: the worker runs windowless in its own process group (console Ctrl+C goes
//! to the monitor only), and a stop is forwarded over the worker's control channel; a worker that cannot
//! be reached that way is terminated.

use std::process::ExitStatus;
use std::time::Duration;

use herald_home::Home;
use tokio::process::{Child, Command};
use windows_sys::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW};

use herald_process::control::{self, Request};

use crate::signals::StopSource;

pub(super) fn spawn_worker(mut cmd: Command) -> std::io::Result<Child> {
    cmd.creation_flags(CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW);
    cmd.spawn()
}

/// Forwards a stop over the worker's control channel (whatever its source: Windows has no signals to
/// pass on), killing the worker if the channel does not take it.
pub(super) async fn forward_stop(child: &mut Child, home: &Home, _source: StopSource) {
    let request = Request::Stop { restart: false };
    match control::call_async(home, request, Duration::from_secs(2)).await {
        Ok(reply) if reply.ok => {}
        _ => {
            let _ = child.start_kill();
        }
    }
}

pub(super) fn exit_signal(_status: &ExitStatus) -> Option<i32> {
    None
}

/// Windows: an agent runs in a job object of its own (see the command agent); nothing to adopt here.
pub(super) fn adopt_orphans() {}

/// Windows: nothing is handed to the monitor when a worker dies.
pub(super) fn end_orphans() -> usize {
    0
}

/// Windows: nothing is handed to the monitor; waits forever (a `select!` branch that never fires).
pub(super) struct Orphans;

impl Orphans {
    pub(super) fn watch() -> Orphans {
        Orphans
    }

    pub(super) async fn reap(&mut self, _worker: u32) {
        std::future::pending::<()>().await;
    }
}
