//! The Windows Service entry point through the `windows-service` crate: the dispatcher, the control
//! handler and `SetServiceStatus`. Same signature as `other.rs`; the decisions are in `mod.rs`.

use herald_home::sync::MutexExt;
use std::ffi::OsString;
use std::sync::Mutex;

use herald_home::ExitCode;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

use super::ServiceError;
use crate::readiness::Notifier;
use crate::readiness::scm::{Phase, ScmExitReport, ScmSession, StatusUpdate};
use crate::run::{RunError, RunOptions};
use crate::signals::ServiceControl as Control;

const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;

/// The options handed to the service's main function, and its result handed back: the dispatcher calls
/// a plain function on its own thread.
static OPTIONS: Mutex<Option<(RunOptions, String)>> = Mutex::new(None);
static RESULT: Mutex<Option<Result<ExitCode, RunError>>> = Mutex::new(None);

define_windows_service!(ffi_service_main, service_main);

pub(super) fn run_as_service(
    options: RunOptions,
    service: String,
) -> Result<Result<ExitCode, RunError>, ServiceError> {
    *OPTIONS.lock_unpoisoned() = Some((options, service.clone()));
    match service_dispatcher::start(&service, ffi_service_main) {
        Ok(()) => Ok(RESULT
            .lock_unpoisoned()
            .take()
            .unwrap_or_else(|| Err(RunError::Service("the service main function did not run".into())))),
        Err(windows_service::Error::Winapi(e))
            if e.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) =>
        {
            Err(ServiceError::NotUnderScm { service })
        }
        Err(windows_service::Error::Winapi(e)) => Err(ServiceError::Os {
            what: "StartServiceCtrlDispatcher",
            code: e.raw_os_error().unwrap_or(-1),
        }),
        Err(_) => Err(ServiceError::Os {
            what: "StartServiceCtrlDispatcher",
            code: -1,
        }),
    }
}

fn status(update: &StatusUpdate) -> ServiceStatus {
    let (current_state, exit_code) = match update.phase {
        Phase::Starting => (ServiceState::StartPending, ServiceExitCode::NO_ERROR),
        Phase::Running => (ServiceState::Running, ServiceExitCode::NO_ERROR),
        Phase::Stopping => (ServiceState::StopPending, ServiceExitCode::NO_ERROR),
        Phase::Stopped(ScmExitReport::Clean) => (ServiceState::Stopped, ServiceExitCode::NO_ERROR),
        Phase::Stopped(ScmExitReport::ServiceSpecific(code)) => {
            (ServiceState::Stopped, ServiceExitCode::ServiceSpecific(code))
        }
    };
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state,
        controls_accepted: if update.accept_stop {
            ServiceControlAccept::STOP | ServiceControlAccept::PRESHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code,
        checkpoint: update.checkpoint,
        wait_hint: update.wait_hint,
        process_id: None,
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let Some((mut options, service)) = OPTIONS.lock_unpoisoned().take() else {
        return;
    };
    let session = std::sync::Arc::new(ScmSession::new());
    options.notifier = Notifier::Scm(session.clone());
    let for_handler = session.clone();
    let handler = move |control| match control {
        ServiceControl::Stop => {
            for_handler.control(Control::Stop);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Preshutdown => {
            for_handler.control(Control::Preshutdown);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = match service_control_handler::register(&service, handler) {
        Ok(handle) => handle,
        Err(e) => {
            *RESULT.lock_unpoisoned() = Some(Err(RunError::Service(format!(
                "cannot register the service control handler: {e}"
            ))));
            return;
        }
    };
    session.set_reporter(move |update| {
        if let Err(e) = handle.set_service_status(status(update)) {
            tracing::warn!("SetServiceStatus failed: {e}");
        }
    });
    session.begin();
    let ticking = session.clone();
    let ticker = std::thread::Builder::new()
        .name("herald-scm-status".into())
        .spawn(move || while ticking.tick() {});
    if let Err(e) = &ticker {
        tracing::warn!("cannot start the service status thread: {e}");
    }
    let result = crate::run(options);
    let code = match &result {
        Ok(code) => *code,
        Err(e) => e.exit_code(),
    };
    *RESULT.lock_unpoisoned() = Some(result);
    session.finish(code);
    if let Ok(ticker) = ticker {
        let _ = ticker.join();
    }
}
