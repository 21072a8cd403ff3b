//! Will every variable `herald.toml` names have a value for the gateway? Asked by `config check`,
//! `install`, `doctor` and `status --deep`.
//!
//! The question depends on who starts the gateway. From this shell (`herald start`, `herald run`), the
//! gateway inherits this environment, then reads the store. Under a service manager it inherits the
//! manager's environment instead — systemd's user manager has its own (`systemctl --user
//! show-environment`); launchd, a Scheduled Task, the Startup folder and the SCM give it nothing of this
//! shell — so a variable exported in this shell alone does not reach it.
//!
//! **Invariant:** the judgement ([`judge`]) is a pure function of where the name was found; only
//! gathering the facts (the store, this environment, the manager's environment) touches the system.

use std::collections::BTreeSet;

use herald_home::Home;
use herald_home::config::Config;
use herald_home::secrets::{SecretStore, SecretsError};
use herald_install::plan::Cmd;
use herald_install::runner::{CommandRunner, SystemRunner};
use herald_install::{Backend, Scope};

/// Where a variable's value will come from, or that it will not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// This process's environment (a gateway started from this shell inherits it).
    Environment,
    /// The home's secrets store.
    Store,
    /// The service manager's own environment (systemd's `show-environment`).
    ServiceEnvironment { manager: &'static str },
    /// Only this shell has it: the gateway the service manager starts will not.
    OnlyInThisShell { manager: &'static str },
    /// Nowhere: the start will fail (exit 78).
    Missing,
}

impl Found {
    /// Whether the gateway in question will have a value.
    pub fn resolves(&self) -> bool {
        matches!(
            self,
            Found::Environment | Found::Store | Found::ServiceEnvironment { .. }
        )
    }
}

/// One named variable and where its value will come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableCheck {
    /// The key naming it (`agent.openai.api_key_env`).
    pub key: &'static str,
    pub variable: String,
    pub found: Found,
}

impl VariableCheck {
    /// One line for a person: what was found, or what is missing and the fix.
    pub fn describe(&self) -> String {
        let (key, var) = (self.key, &self.variable);
        match &self.found {
            Found::Environment => format!("{var} ({key}): from this environment"),
            Found::Store => format!("{var} ({key}): from the secrets store"),
            Found::ServiceEnvironment { manager } => format!("{var} ({key}): from {manager}'s environment"),
            Found::OnlyInThisShell { manager } => format!(
                "{var} ({key}) is set in this shell only: the gateway {manager} starts will not see it; \
                 run `herald secret set {var}`"
            ),
            Found::Missing => format!(
                "{var} ({key}) is neither set nor in the secrets store: the gateway will not start; run \
                 `herald secret set {var}`"
            ),
        }
    }
}

/// The environment the gateway will get from a service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEnvironment {
    pub manager: &'static str,
    /// The names it sets (systemd's `show-environment`); empty for managers that pass nothing on.
    pub names: BTreeSet<String>,
}

/// The pure rule. `service` is `None` for a gateway started from this shell, else whether the manager's
/// environment has the name.
pub fn judge(in_store: bool, in_environment: bool, service: Option<(&'static str, bool)>) -> Found {
    match service {
        None if in_environment => Found::Environment,
        None if in_store => Found::Store,
        None => Found::Missing,
        Some(_) if in_store => Found::Store,
        Some((manager, true)) => Found::ServiceEnvironment { manager },
        Some((manager, false)) if in_environment => Found::OnlyInThisShell { manager },
        Some(_) => Found::Missing,
    }
}

/// Every variable `config` names, judged for a gateway started from this shell (`service: None`) or by
/// a service manager.
pub fn check(
    home: &Home,
    config: &Config,
    service: Option<&ServiceEnvironment>,
) -> Result<Vec<VariableCheck>, SecretsError> {
    let named = config.named_variables();
    if named.is_empty() {
        return Ok(Vec::new());
    }
    let secrets = SecretStore::of(home).load()?;
    Ok(named
        .into_iter()
        .map(|named| {
            let in_store = secrets.get(&named.variable).is_some();
            let in_environment = std::env::var(&named.variable).is_ok_and(|v| !v.trim().is_empty());
            let service = service.map(|s| (s.manager, s.names.contains(&named.variable)));
            VariableCheck {
                key: named.key,
                found: judge(in_store, in_environment, service),
                variable: named.variable,
            }
        })
        .collect())
}

/// The environment a gateway registered with `backend` gets. For systemd the names `systemctl [--user]
/// show-environment` lists (`None` when the manager cannot be asked: then only the store counts). Every
/// other manager passes none of this shell's variables on.
pub fn service_environment(backend: Backend, scope: Scope) -> Option<ServiceEnvironment> {
    match backend {
        Backend::Systemd => {
            let mut runner = SystemRunner {
                timeout: std::time::Duration::from_secs(5),
            };
            let args: &[&str] = match scope {
                Scope::User => &["--user", "show-environment"],
                Scope::System => &["show-environment"],
            };
            let out = runner.run(&Cmd::new("systemctl", args.iter().copied()));
            if !out.success() {
                return None;
            }
            Some(ServiceEnvironment {
                manager: "systemd",
                names: parse_show_environment(&out.stdout),
            })
        }
        Backend::Launchd => Some(ServiceEnvironment {
            manager: "launchd",
            names: BTreeSet::new(),
        }),
        Backend::Task | Backend::Startup => Some(ServiceEnvironment {
            manager: "the logon task",
            names: BTreeSet::new(),
        }),
        Backend::WindowsService => Some(ServiceEnvironment {
            manager: "the Windows Service",
            names: BTreeSet::new(),
        }),
    }
}

/// The names in `systemctl show-environment` output (`NAME=value` lines; values may be quoted).
pub fn parse_show_environment(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(name, value)| !name.is_empty() && !value.trim().trim_matches(['"', '\'']).is_empty())
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_this_shell_the_environment_then_the_store() {
        assert_eq!(judge(true, true, None), Found::Environment);
        assert_eq!(judge(true, false, None), Found::Store);
        assert_eq!(judge(false, true, None), Found::Environment);
        assert_eq!(judge(false, false, None), Found::Missing);
    }

    #[test]
    fn under_a_manager_this_shell_does_not_count() {
        let systemd = |has| Some(("systemd", has));
        assert_eq!(judge(true, false, systemd(false)), Found::Store);
        assert_eq!(
            judge(false, true, systemd(true)),
            Found::ServiceEnvironment { manager: "systemd" }
        );
        assert_eq!(
            judge(false, true, systemd(false)),
            Found::OnlyInThisShell { manager: "systemd" }
        );
        assert!(!Found::OnlyInThisShell { manager: "systemd" }.resolves());
        assert_eq!(judge(false, false, systemd(false)), Found::Missing);
    }

    #[test]
    fn show_environment_names() {
        let names = parse_show_environment("HOME=/home/a\nOPENAI_API_KEY=sk-1\nEMPTY=\nQUOTED=\"x y\"\n");
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["HOME", "OPENAI_API_KEY", "QUOTED"]
        );
    }

    #[test]
    fn a_missing_variable_is_named_with_its_key_and_fix() {
        let check = VariableCheck {
            key: "agent.openai.api_key_env",
            variable: "OPENAI_API_KEY".into(),
            found: Found::Missing,
        };
        let line = check.describe();
        assert!(
            line.contains("OPENAI_API_KEY (agent.openai.api_key_env)"),
            "{line}"
        );
        assert!(line.contains("herald secret set OPENAI_API_KEY"), "{line}");
    }
}
