//! What the service manager says about this home's registration, for `status --deep` (probe 9): the
//! registration found by [`manage::detect`], then the manager's own word — `systemctl show`,
//! `launchctl print`, the SCM's status, or on Windows without a service the logon task and Startup
//! launcher entries.
//!
//! **Invariant:** reading facts changes nothing, and every question is bounded by the runner's timeout;
//! a manager that cannot be asked is [`ServiceFacts::Unknown`] with why, never a guess. The parsing of the
//! managers' output is pure ([`parse_systemctl_show`], [`parse_launchctl_print`]) and tested on every OS.

use crate::context::TargetOs;
use crate::manage::systemd::{Bus, systemctl};
use crate::manage::{self, Machine, Registered};
use crate::names;
use crate::plan::Cmd;
use crate::scm::{ScmStart, ScmState};
use crate::spec::{Scope, ServiceSpec};

/// What the service manager says about this home's registration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServiceFacts {
    /// Nothing registered: started by hand or by `herald start`.
    #[default]
    None,
    /// A registration a manager supervises, and what the manager says.
    Managed {
        /// `systemd (user)`, `launchd`, ...
        manager: String,
        /// Starts at login/boot, when the manager says.
        enabled: Option<bool>,
        /// The manager's word for the state (`active`, `activating`, `inactive`, `failed`, `running`...).
        state: Option<String>,
        /// Whether `state` means the manager believes the service runs.
        active: bool,
        /// The pid the manager supervises, when it says.
        main_pid: Option<u32>,
    },
    /// Logon autostart entries (a Scheduled Task, a Startup-folder launcher): they start the gateway at
    /// logon and supervise nothing, so "registered but not running" is not a contradiction. One entry per
    /// home is the rule; more is reported.
    Autostart {
        /// One line per entry: `logon task Herald_Gateway registered for this home`, ...
        entries: Vec<String>,
    },
    /// The manager could not be asked.
    Unknown { manager: String, why: String },
}

/// Asks the manager this home is registered with (through `probe.runner`, whose timeout bounds it).
pub fn service_facts(spec: &ServiceSpec, probe: &mut Machine<'_>) -> ServiceFacts {
    match manage::detect(spec, probe) {
        Ok(None) if probe.ctx.os == TargetOs::Windows => autostart_facts(spec, probe),
        Ok(None) => ServiceFacts::None,
        Err(e) => ServiceFacts::Unknown {
            manager: "service".into(),
            why: e.to_string(),
        },
        Ok(Some(Registered::WindowsService(service))) => {
            let name = names::windows_service_name(spec.profile.as_ref());
            let status = &service.status;
            let state = match status.state {
                ScmState::Stopped => format!("{} ({})", status.state.as_str(), status.exit),
                other => other.as_str().to_owned(),
            };
            ServiceFacts::Managed {
                manager: format!("windows service {name}"),
                enabled: Some(service.start == ScmStart::Auto),
                state: Some(state),
                active: status.state.active(),
                main_pid: status.pid,
            }
        }
        Ok(Some(Registered::Systemd { scope })) => {
            let (bus, manager) = match scope {
                Scope::System => (Bus::System, "systemd (system)"),
                Scope::User => (Bus::User, "systemd (user)"),
            };
            let unit = names::systemd_unit(spec.profile.as_ref());
            let out = probe.runner.run(&systemctl(
                &bus,
                &[
                    "show",
                    &unit,
                    "--property=ActiveState,SubState,MainPID,UnitFileState",
                ],
            ));
            if out.code != Some(0) {
                let why = if out.stderr.trim().is_empty() {
                    format!("systemctl show exited {:?}", out.code)
                } else {
                    out.stderr.trim().to_owned()
                };
                return ServiceFacts::Unknown {
                    manager: manager.into(),
                    why,
                };
            }
            parse_systemctl_show(manager, &out.stdout)
        }
        Ok(Some(Registered::Launchd)) => {
            let label = names::launchd_label(spec.profile.as_ref());
            let target = format!("gui/{}/{label}", probe.ctx.uid.unwrap_or(0));
            let out = probe.runner.run(&Cmd {
                program: "launchctl".into(),
                args: vec!["print".into(), target],
            });
            if out.code != Some(0) {
                return ServiceFacts::Unknown {
                    manager: "launchd".into(),
                    why: format!("launchctl print exited {:?}", out.code),
                };
            }
            parse_launchctl_print(&out.stdout)
        }
    }
}

/// `systemctl show --property=ActiveState,SubState,MainPID,UnitFileState` (`Key=value` lines).
pub fn parse_systemctl_show(manager: &str, stdout: &str) -> ServiceFacts {
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
            .map(str::to_owned)
    };
    let state = value("ActiveState");
    ServiceFacts::Managed {
        manager: manager.into(),
        enabled: value("UnitFileState").map(|s| s == "enabled"),
        active: matches!(
            state.as_deref(),
            Some("active" | "activating" | "reloading" | "deactivating")
        ),
        state: match (state, value("SubState")) {
            (Some(a), Some(s)) => Some(format!("{a} ({s})")),
            (a, _) => a,
        },
        main_pid: value("MainPID").and_then(|p| p.parse().ok()).filter(|p| *p != 0),
    }
}

/// `launchctl print gui/UID/LABEL` (indented `key = value` lines).
pub fn parse_launchctl_print(stdout: &str) -> ServiceFacts {
    let value = |key: &str| {
        stdout.lines().find_map(|l| {
            let (k, v) = l.trim().split_once(" = ")?;
            (k == key).then(|| v.trim().to_owned())
        })
    };
    let state = value("state");
    ServiceFacts::Managed {
        manager: "launchd".into(),
        enabled: Some(true),
        active: state.as_deref() == Some("running"),
        state,
        main_pid: value("pid").and_then(|p| p.parse().ok()),
    }
}

/// On Windows with no service registered: this home's logon task, `Run` value and legacy launchers.
fn autostart_facts(spec: &ServiceSpec, probe: &mut Machine<'_>) -> ServiceFacts {
    match manage::logon::autostart_entries(spec, probe) {
        Ok(entries) if entries.is_empty() => ServiceFacts::None,
        Ok(entries) => ServiceFacts::Autostart {
            entries: entries
                .iter()
                .map(|e| {
                    let what = e.what;
                    let whose = match e.this_home {
                        Some(true) => "registered for this home",
                        Some(false) => "registered for another home",
                        None => "registered (unreadable)",
                    };
                    format!("{what} {} {whose}", e.name)
                })
                .collect(),
        },
        Err(e) => ServiceFacts::Unknown {
            manager: "task scheduler".into(),
            why: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_show_is_read_key_by_key() {
        let out = "ActiveState=active\nSubState=running\nMainPID=4242\nUnitFileState=enabled\n";
        assert_eq!(
            parse_systemctl_show("systemd (user)", out),
            ServiceFacts::Managed {
                manager: "systemd (user)".into(),
                enabled: Some(true),
                state: Some("active (running)".into()),
                active: true,
                main_pid: Some(4242),
            }
        );
        let stopped = "ActiveState=failed\nSubState=failed\nMainPID=0\nUnitFileState=disabled\n";
        assert_eq!(
            parse_systemctl_show("systemd (system)", stopped),
            ServiceFacts::Managed {
                manager: "systemd (system)".into(),
                enabled: Some(false),
                state: Some("failed (failed)".into()),
                active: false,
                main_pid: None,
            }
        );
    }

    #[test]
    fn launchctl_print_is_read_from_its_indented_lines() {
        let out = "gui/501/dev.herald.gateway = {\n\tactive count = 1\n\tstate = running\n\tpid = 77\n}\n";
        assert_eq!(
            parse_launchctl_print(out),
            ServiceFacts::Managed {
                manager: "launchd".into(),
                enabled: Some(true),
                state: Some("running".into()),
                active: true,
                main_pid: Some(77),
            }
        );
        assert!(matches!(
            parse_launchctl_print("state = not running\n"),
            ServiceFacts::Managed {
                active: false,
                main_pid: None,
                ..
            }
        ));
    }
}
