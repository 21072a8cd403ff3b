//! This home's Windows Service as the SCM reports it: find it, tell whether it is this home's, and the
//! steps that remove it. Both Windows planners need this — the service planner ([`super::winsvc`]) and
//! the logon planner ([`super::logon`]), which deletes this home's service (one autostart entry per
//! home) — so it sits below both, and neither imports the other's internals.

use std::time::Duration;

use herald_home::Home;

use super::ManageError;
use crate::names;
use crate::plan::Step;
use crate::scm::{Scm, ScmError, ScmOp, ScmService};
use crate::spec::{self, ServiceSpec};

/// How long a Stop may take: the drain budget plus the margin, plus time for the process to end.
pub fn stop_timeout(spec: &ServiceSpec) -> Duration {
    spec.stop_budget.manager_wait()
}

/// The home root a registration must name to be this home's.
pub(crate) fn ours(spec: &ServiceSpec) -> String {
    spec.home_root.display().to_string()
}

/// Whether the registered service names this home (paths compared case-insensitively, as Windows does).
pub(crate) fn names_this_home(service: &ScmService, spec: &ServiceSpec) -> bool {
    names_root(service, &ours(spec))
}

fn names_root(service: &ScmService, root: &str) -> bool {
    service.home().is_some_and(|home| home.eq_ignore_ascii_case(root))
}

/// This home's service for `herald status`: `Herald_Gateway[_PROFILE]` when it names this home's root.
/// Needs no [`ServiceSpec`] (status knows no executable and reads no config); where there is no SCM
/// (not Windows) the answer is `None` at no cost.
pub fn registered_for_home(home: &Home, scm: &dyn Scm) -> Result<Option<ScmService>, ManageError> {
    let name = names::windows_service_name(home.profile());
    let root = spec::home_root(home).display().to_string();
    Ok(query(scm, &name)?.filter(|s| names_root(s, &root)))
}

/// This home's service, as the SCM reports it; `None` when the SCM does not know it (or there is no SCM).
pub(crate) fn query(scm: &dyn Scm, name: &str) -> Result<Option<ScmService>, ManageError> {
    match scm.query(name) {
        Ok(found) => Ok(found),
        Err(ScmError::Unsupported) => Ok(None),
        Err(source) => Err(ManageError::Scm {
            op: format!("scm: query service {name}"),
            source,
        }),
    }
}

/// Stop (drain) then delete: removing a running service leaves it running until it stops.
pub(crate) fn removal(spec: &ServiceSpec, name: &str, service: &ScmService) -> Vec<Step> {
    let mut steps = Vec::new();
    if service.status.state.active() {
        steps.push(Step::Scm(ScmOp::Stop {
            name: name.to_owned(),
            timeout: stop_timeout(spec),
        }));
    }
    steps.push(Step::Scm(ScmOp::Delete {
        name: name.to_owned(),
    }));
    steps
}
