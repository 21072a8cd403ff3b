//! The SCM leaf on Windows, through the `windows-service` crate: open, query, create, change, start, stop
//! and delete a service. Same signatures as `other.rs`. Errors are Win32 codes mapped by
//! [`super::os_error`]; nothing here reads localized text.
//!
//! Waiting for a state (after Start and Stop) asks the SCM every 50 ms: this is the installing command's
//! path, bounded by the operation's timeout, never the gateway's.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use windows_service::service::{
    Service, ServiceAccess, ServiceAction, ServiceActionType, ServiceErrorControl, ServiceExitCode,
    ServiceFailureActions, ServiceFailureResetPeriod, ServiceInfo, ServiceStartType, ServiceState,
    ServiceType,
};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use super::{
    Applied, FailurePolicy, LOCAL_SYSTEM, ScmConfig, ScmError, ScmExit, ScmOp, ScmService, ScmStart,
    ScmState, ScmStatus, codes, os_error, unsupported_setting,
};

const POLL: Duration = Duration::from_millis(50);

fn code(e: &windows_service::Error) -> i32 {
    match e {
        windows_service::Error::Winapi(io) => io.raw_os_error().unwrap_or(-1),
        _ => -1,
    }
}

fn fail(what: &str, e: &windows_service::Error) -> ScmError {
    match e {
        windows_service::Error::Winapi(_) => os_error(what, code(e)),
        other => ScmError::Invalid(format!("cannot {what}: {other}")),
    }
}

fn manager(access: ServiceManagerAccess) -> Result<ServiceManager, ScmError> {
    ServiceManager::local_computer(None::<&str>, access)
        .map_err(|e| fail("connect to the Service Control Manager", &e))
}

/// Opens `name`; `None` when the SCM does not know it.
fn open(name: &str, access: ServiceAccess) -> Result<Option<Service>, ScmError> {
    match manager(ServiceManagerAccess::CONNECT)?.open_service(name, access) {
        Ok(service) => Ok(Some(service)),
        Err(e) if code(&e) == codes::ERROR_SERVICE_DOES_NOT_EXIST => Ok(None),
        Err(e) => Err(fail(&format!("open the service {name}"), &e)),
    }
}

fn state(raw: ServiceState) -> ScmState {
    match raw {
        ServiceState::Stopped => ScmState::Stopped,
        ServiceState::StartPending => ScmState::StartPending,
        ServiceState::StopPending => ScmState::StopPending,
        ServiceState::Running => ScmState::Running,
        ServiceState::ContinuePending => ScmState::ContinuePending,
        ServiceState::PausePending => ScmState::PausePending,
        ServiceState::Paused => ScmState::Paused,
    }
}

fn status(service: &Service, name: &str) -> Result<ScmStatus, ScmError> {
    let raw = service
        .query_status()
        .map_err(|e| fail(&format!("query the status of {name}"), &e))?;
    Ok(ScmStatus {
        state: state(raw.current_state),
        pid: raw.process_id.filter(|&p| p != 0),
        exit: match raw.exit_code {
            ServiceExitCode::Win32(code) => ScmExit::Win32(code),
            ServiceExitCode::ServiceSpecific(code) => ScmExit::ServiceSpecific(code),
        },
        checkpoint: raw.checkpoint,
        wait_hint: raw.wait_hint,
    })
}

/// The failure policy the SCM reports. Any action other than a restart (none, reboot, a command) is not
/// Herald's policy: it reads as no restarts, which is drift.
fn policy(actions: ServiceFailureActions) -> FailurePolicy {
    let list = actions.actions.unwrap_or_default();
    let all_restarts = list.iter().all(|a| a.action_type == ServiceActionType::Restart);
    FailurePolicy {
        restart_delays: if all_restarts {
            list.iter().map(|a| a.delay).collect()
        } else {
            Vec::new()
        },
        reset_after: match actions.reset_period {
            ServiceFailureResetPeriod::After(d) => d,
            ServiceFailureResetPeriod::Never => Duration::MAX,
        },
    }
}

pub(crate) fn query(name: &str) -> Result<Option<ScmService>, ScmError> {
    let Some(service) = open(name, ServiceAccess::QUERY_CONFIG | ServiceAccess::QUERY_STATUS)? else {
        return Ok(None);
    };
    let config = service
        .query_config()
        .map_err(|e| fail(&format!("query the configuration of {name}"), &e))?;
    let failure = match service.get_failure_actions() {
        Ok(actions) => Some(policy(actions)),
        Err(e) if unsupported_setting(code(&e)) => None,
        Err(e) => return Err(fail(&format!("query the failure actions of {name}"), &e)),
    };
    let failure_on_non_crash = match service.get_failure_actions_on_non_crash_failures() {
        Ok(flag) => Some(flag),
        Err(e) if unsupported_setting(code(&e)) => None,
        Err(e) => return Err(fail(&format!("query the failure flag of {name}"), &e)),
    };
    Ok(Some(ScmService {
        command_line: config.executable_path.to_string_lossy().into_owned(),
        start: match config.start_type {
            ServiceStartType::AutoStart => ScmStart::Auto,
            ServiceStartType::OnDemand => ScmStart::Demand,
            ServiceStartType::Disabled => ScmStart::Disabled,
            _ => ScmStart::Other,
        },
        account: config.account_name.map(|a| a.to_string_lossy().into_owned()),
        failure,
        failure_on_non_crash,
        status: status(&service, name)?,
    }))
}

fn info(name: &str, config: &ScmConfig) -> ServiceInfo {
    ServiceInfo {
        name: name.into(),
        display_name: config.display_name.clone().into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: match config.start {
            ScmStart::Auto => ServiceStartType::AutoStart,
            ScmStart::Disabled => ServiceStartType::Disabled,
            ScmStart::Demand | ScmStart::Other => ServiceStartType::OnDemand,
        },
        error_control: ServiceErrorControl::Normal,
        executable_path: config.program.clone().into(),
        launch_arguments: config.args.iter().map(OsString::from).collect(),
        dependencies: Vec::new(),
        account_name: Some(config.account.as_deref().unwrap_or(LOCAL_SYSTEM).into()),
        account_password: None,
    }
}

/// Herald's failure policy as the SCM's failure actions: one restart per delay (the SCM repeats the last),
/// no reboot message, no command. [`policy`] reads it back.
fn failure_actions(policy: &FailurePolicy) -> ServiceFailureActions {
    ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(policy.reset_after),
        reboot_msg: None,
        command: None,
        actions: Some(
            policy
                .restart_delays
                .iter()
                .map(|&delay| ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay,
                })
                .collect(),
        ),
    }
}

/// The settings beyond `CreateService`/`ChangeServiceConfig`.
fn configure(service: &Service, name: &str, config: &ScmConfig) -> Result<Applied, ScmError> {
    let mut applied = Applied::default();
    service
        .update_failure_actions(failure_actions(&config.failure))
        .map_err(|e| fail(&format!("set the failure actions of {name}"), &e))?;
    match service.set_failure_actions_on_non_crash_failures(config.failure_on_non_crash) {
        Ok(()) => {}
        Err(e) if unsupported_setting(code(&e)) => applied.unsupported.push(format!(
            "failure actions on non-crash failures (Win32 error {})",
            code(&e)
        )),
        Err(e) => return Err(fail(&format!("set the failure flag of {name}"), &e)),
    }
    service
        .set_description(&config.description)
        .map_err(|e| fail(&format!("set the description of {name}"), &e))?;
    match service.set_preshutdown_timeout(config.preshutdown_timeout) {
        Ok(()) => {}
        Err(e) if unsupported_setting(code(&e)) => applied
            .unsupported
            .push(format!("the preshutdown timeout (Win32 error {})", code(&e))),
        Err(e) => return Err(fail(&format!("set the preshutdown timeout of {name}"), &e)),
    }
    Ok(applied)
}

const CONFIG_ACCESS: ServiceAccess = ServiceAccess::CHANGE_CONFIG
    .union(ServiceAccess::QUERY_CONFIG)
    .union(ServiceAccess::QUERY_STATUS)
    .union(ServiceAccess::START);

/// Waits until `service` is in `want` (or, waiting for Running, stopped again: a failed start).
fn wait(service: &Service, name: &str, want: ScmState, timeout: Duration) -> Result<(), ScmError> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = status(service, name)?;
        if now.state == want {
            return Ok(());
        }
        if want == ScmState::Running && now.state == ScmState::Stopped {
            return Err(ScmError::StartFailed {
                name: name.to_owned(),
                exit: now.exit,
            });
        }
        if Instant::now() >= deadline {
            return Err(ScmError::Timeout {
                name: name.to_owned(),
                state: want.as_str(),
                secs: timeout.as_secs(),
                now: now.state.as_str(),
            });
        }
        std::thread::sleep(POLL);
    }
}

pub(crate) fn apply(op: &ScmOp) -> Result<Applied, ScmError> {
    match op {
        ScmOp::Create { name, config } => {
            let manager = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
            let service = manager
                .create_service(&info(name, config), CONFIG_ACCESS)
                .map_err(|e| fail(&format!("create the service {name}"), &e))?;
            configure(&service, name, config)
        }
        ScmOp::Reconfigure { name, config } => {
            let service = open(name, CONFIG_ACCESS)?.ok_or_else(|| {
                os_error(
                    format!("reconfigure the service {name}"),
                    codes::ERROR_SERVICE_DOES_NOT_EXIST,
                )
            })?;
            service
                .change_config(&info(name, config))
                .map_err(|e| fail(&format!("reconfigure the service {name}"), &e))?;
            configure(&service, name, config)
        }
        ScmOp::Start { name, timeout } => {
            let service =
                open(name, ServiceAccess::START | ServiceAccess::QUERY_STATUS)?.ok_or_else(|| {
                    os_error(
                        format!("start the service {name}"),
                        codes::ERROR_SERVICE_DOES_NOT_EXIST,
                    )
                })?;
            match service.start::<&str>(&[]) {
                Ok(()) => {}
                Err(e) if code(&e) == codes::ERROR_SERVICE_ALREADY_RUNNING => {}
                Err(e) => return Err(fail(&format!("start the service {name}"), &e)),
            }
            wait(&service, name, ScmState::Running, *timeout)?;
            Ok(Applied::default())
        }
        ScmOp::Stop { name, timeout } => {
            let Some(service) = open(name, ServiceAccess::STOP | ServiceAccess::QUERY_STATUS)? else {
                return Ok(Applied::default());
            };
            if status(&service, name)?.state != ScmState::Stopped {
                match service.stop() {
                    Ok(_) => {}
                    Err(e) if code(&e) == codes::ERROR_SERVICE_NOT_ACTIVE => {}
                    Err(e) => return Err(fail(&format!("stop the service {name}"), &e)),
                }
                wait(&service, name, ScmState::Stopped, *timeout)?;
            }
            Ok(Applied::default())
        }
        ScmOp::Delete { name } => {
            let Some(service) = open(name, ServiceAccess::DELETE)? else {
                return Ok(Applied::default());
            };
            match service.delete() {
                Ok(()) => Ok(Applied::default()),
                Err(e) if code(&e) == codes::ERROR_SERVICE_MARKED_FOR_DELETE => Ok(Applied::default()),
                Err(e) => Err(fail(&format!("delete the service {name}"), &e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_policy_round_trips_through_the_scm_types() {
        let herald = FailurePolicy::herald();
        assert_eq!(policy(failure_actions(&herald)), herald);
        let actions = failure_actions(&herald);
        assert_eq!(actions.actions.as_ref().map(Vec::len), Some(3));
        assert!(actions.reboot_msg.is_none() && actions.command.is_none());
    }

    #[test]
    fn any_action_but_a_restart_reads_as_no_restarts() {
        let mut actions = failure_actions(&FailurePolicy::herald());
        if let Some(list) = actions.actions.as_mut() {
            list[1].action_type = ServiceActionType::Reboot;
        }
        assert!(policy(actions).restart_delays.is_empty());
    }
}
