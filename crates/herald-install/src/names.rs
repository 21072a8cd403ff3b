//! The names a home's registration carries with each service manager.
//!
//! **Invariant:** one home, one name per manager, derived from the profile alone: the default home is
//! `herald.service`, `dev.herald.gateway`, `Herald_Gateway`; profile `work` is `herald-work.service`,
//! `dev.herald.gateway.work`, `Herald_Gateway_work`. Profile names are `[a-z0-9][a-z0-9_-]*`, so the
//! names need no quoting anywhere and two homes under one root never share one.
//!
//! [`legacy_names`] lists the names an older naming scheme used, which `install` must treat as stale
//! registrations of the *same* home (remove them, so two registrations never start two gateways on one
//! token) and `uninstall` must remove too. None of them can equal a current name of any profile.

use herald_home::ProfileName;

use super::backend::Backend;

/// `herald[-PROFILE].service`.
pub fn systemd_unit(profile: Option<&ProfileName>) -> String {
    match profile {
        Some(p) => format!("herald-{p}.service"),
        None => "herald.service".to_owned(),
    }
}

/// `dev.herald.gateway[.PROFILE]`.
pub fn launchd_label(profile: Option<&ProfileName>) -> String {
    match profile {
        Some(p) => format!("dev.herald.gateway.{p}"),
        None => "dev.herald.gateway".to_owned(),
    }
}

/// `<label>.plist`, the file name in `~/Library/LaunchAgents` (or `/Library/LaunchDaemons`).
pub fn launchd_plist_file(profile: Option<&ProfileName>) -> String {
    format!("{}.plist", launchd_label(profile))
}

/// `Herald_Gateway[_PROFILE]`: the Scheduled Task name (in the root folder) and the Windows Service name.
pub fn task_name(profile: Option<&ProfileName>) -> String {
    match profile {
        Some(p) => format!("Herald_Gateway_{p}"),
        None => "Herald_Gateway".to_owned(),
    }
}

/// The Windows Service name: the same as the task's, so one name identifies the home on Windows.
pub fn windows_service_name(profile: Option<&ProfileName>) -> String {
    task_name(profile)
}

/// `Herald_Gateway[_PROFILE]`: the value under the per-user `Run` key (the Startup fallback).
pub fn run_value_name(profile: Option<&ProfileName>) -> String {
    task_name(profile)
}

/// The current name of this home's registration with `backend`.
pub fn current_name(backend: Backend, profile: Option<&ProfileName>) -> String {
    match backend {
        Backend::Systemd => systemd_unit(profile),
        Backend::Launchd => launchd_label(profile),
        Backend::Task => task_name(profile),
        Backend::Startup => run_value_name(profile),
        Backend::WindowsService => windows_service_name(profile),
    }
}

/// A name a previous naming scheme used for the same home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyName {
    pub backend: Backend,
    pub name: String,
    /// Why it is on the list, for `install --dry-run` and `status --deep`.
    pub why: &'static str,
}

/// Stale names of this home's registrations, in the order they should be removed.
///
/// The list (kept deliberately small; every entry costs a lookup on every install):
/// - systemd `herald@PROFILE.service` / `herald@.service`: the instantiated-template form, the obvious
///   alternative scheme for per-profile units;
/// - launchd `dev.herald.herald[.PROFILE]`: the label before it named the *gateway* job;
/// - task `Herald Gateway[ PROFILE]` (with spaces): the display-style name, which needs quoting in every
///   `schtasks` call;
/// - Startup `Herald Gateway[ PROFILE].cmd`, and `Herald_Gateway[_PROFILE].vbs` / `.lnk`: the spaced name
///   and the script/shortcut wrappers that flashed consoles or stole focus (see the field notes);
/// - Startup `Herald_Gateway[_PROFILE].cmd`: the cmd.exe launcher the Startup fallback wrote before it
///   became a `Run` value (cmd.exe is a console program: a console flashed at every logon).
pub fn legacy_names(profile: Option<&ProfileName>) -> Vec<LegacyName> {
    let suffix = |sep: &str| profile.map(|p| format!("{sep}{p}")).unwrap_or_default();
    let task = task_name(profile);
    vec![
        LegacyName {
            backend: Backend::Systemd,
            name: format!(
                "herald@{}.service",
                profile.map(ProfileName::as_str).unwrap_or("")
            ),
            why: "the template-instance form of the unit name",
        },
        LegacyName {
            backend: Backend::Launchd,
            name: format!("dev.herald.herald{}", suffix(".")),
            why: "the label before it named the gateway job",
        },
        LegacyName {
            backend: Backend::Task,
            name: format!("Herald Gateway{}", suffix(" ")),
            why: "the spaced task name",
        },
        LegacyName {
            backend: Backend::Startup,
            name: format!("Herald Gateway{}.cmd", suffix(" ")),
            why: "the spaced launcher name",
        },
        LegacyName {
            backend: Backend::Startup,
            name: format!("{task}.vbs"),
            why: "a VBS wrapper (focus stealing, second consoles)",
        },
        LegacyName {
            backend: Backend::Startup,
            name: format!("{task}.lnk"),
            why: "a shortcut wrapper",
        },
        LegacyName {
            backend: Backend::Startup,
            name: format!("{task}.cmd"),
            why: "the cmd.exe launcher (a console flashed at every logon)",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> ProfileName {
        ProfileName::new(name).unwrap()
    }

    #[test]
    fn names_carry_the_profile() {
        assert_eq!(systemd_unit(None), "herald.service");
        assert_eq!(systemd_unit(Some(&p("work"))), "herald-work.service");
        assert_eq!(launchd_label(None), "dev.herald.gateway");
        assert_eq!(launchd_label(Some(&p("my_bot-2"))), "dev.herald.gateway.my_bot-2");
        assert_eq!(launchd_plist_file(Some(&p("w"))), "dev.herald.gateway.w.plist");
        assert_eq!(task_name(None), "Herald_Gateway");
        assert_eq!(task_name(Some(&p("work"))), "Herald_Gateway_work");
        assert_eq!(windows_service_name(Some(&p("work"))), "Herald_Gateway_work");
        assert_eq!(run_value_name(Some(&p("work"))), "Herald_Gateway_work");
    }

    #[test]
    fn legacy_names_never_collide_with_current_ones() {
        let profiles = [
            None,
            Some(p("work")),
            Some(p("gateway")),
            Some(p("herald")),
            Some(p("a-b_c")),
        ];
        for of in &profiles {
            for legacy in legacy_names(of.as_ref()) {
                for current in &profiles {
                    let name = current_name(legacy.backend, current.as_ref());
                    assert_ne!(legacy.name, name, "{legacy:?}");
                }
            }
        }
        assert_eq!(legacy_names(None)[0].name, "herald@.service");
        assert_eq!(legacy_names(Some(&p("w")))[2].name, "Herald Gateway w");
    }
}
