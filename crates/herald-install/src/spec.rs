//! What a service registration must say: [`ServiceSpec`], the one input of every generator.
//!
//! **Invariant:** the spec has no place for a secret. A unit, plist, task or launcher names the program,
//! the home and a few timeouts; tokens and keys stay in the home, readable by its owner only, so a
//! registration can be printed by `--dry-run`, diffed for drift and read by other users without leaking.
//!
//! **Invariant:** the gateway finds its home the same way whoever starts it: the arguments carry
//! `--home <root> [--profile NAME]` (the profile's *root*, so `status` still sees sibling profiles) and the
//! environment carries `HERALD_HOME=<root>` where the manager has one for us (systemd, launchd); both name
//! the same directory.

use std::path::{Path, PathBuf};

use herald_home::{Home, ProfileName, StopBudget};

use super::error::InstallError;
pub use crate::backend::{Backend, Scope};

/// The hidden flag that makes `herald run` the service's entry point (it connects to the SCM).
pub const SERVICE_FLAG: &str = "--windows-service";

/// The hidden flag a launchd job passes to `herald run --no-supervise`: a start that fails with exit 78
/// waits for a fix instead of exiting (launchd cannot exempt one exit code from `KeepAlive` and would
/// restart it every `ThrottleInterval`, forever).
pub const LAUNCHD_FLAG: &str = "--launchd";

/// Everything a generator needs, and nothing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The `herald` executable (`herald.exe` on Windows), absolute.
    pub executable: PathBuf,
    /// The windowless GUI-subsystem build (`heraldw.exe`, next to `herald.exe`) that a logon task or a
    /// Startup fallback's Run value starts, so no console window is ever created. Unused elsewhere.
    pub gui_executable: Option<PathBuf>,
    /// The home root handed to `--home` and `HERALD_HOME`: for a profile, the root *above*
    /// `profiles/NAME`.
    pub home_root: PathBuf,
    pub profile: Option<ProfileName>,
    /// The config's stop budget: every stop timeout a manager is given derives from it.
    pub stop_budget: StopBudget,
    /// Where stdout and stderr go when the manager redirects them (`Home::stdio_log()`).
    pub stdio_log: PathBuf,
    pub scope: Scope,
    /// The account the gateway runs as: `User=` (system systemd unit), `UserName` (LaunchDaemon), the
    /// task's `UserId` (required for a task: the logon trigger is for this user only).
    pub run_as: Option<String>,
}

/// The command a registration runs and the home it names: what drift detection compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    /// `HERALD_HOME` in the registration's environment (`None` where the backend has no environment: the
    /// task and the launcher rely on `--home`).
    pub herald_home: Option<String>,
}

impl ServiceSpec {
    /// A per-user spec for `home`, with `heraldw` (if any) expected next to `executable`.
    pub fn for_home(home: &Home, executable: impl Into<PathBuf>, stop_budget: StopBudget) -> ServiceSpec {
        let executable = executable.into();
        ServiceSpec {
            gui_executable: None,
            home_root: home_root(home),
            profile: home.profile().cloned(),
            stop_budget,
            stdio_log: home.stdio_log(),
            scope: Scope::User,
            run_as: None,
            executable,
        }
    }

    /// Seconds a manager waits for a planned stop before killing ([`StopBudget::stop_timeout`]).
    pub fn stop_timeout_secs(&self) -> u64 {
        self.stop_budget.stop_timeout_secs()
    }

    /// The program the backend starts: `heraldw` for the task and the launcher, `herald` otherwise.
    pub fn program(&self, backend: Backend) -> Result<&Path, InstallError> {
        match backend {
            Backend::Task | Backend::Startup => self
                .gui_executable
                .as_deref()
                .ok_or(InstallError::MissingGuiExecutable { backend }),
            _ => Ok(&self.executable),
        }
    }

    /// The exact arguments after the program: `--home <root> [--profile NAME] run [--no-supervise]`, for
    /// launchd `--launchd` (exit 78 waits instead: see [`LAUNCHD_FLAG`]), and for the Windows Service
    /// `--windows-service` (the entry point that connects to the SCM).
    pub fn run_args(&self, backend: Backend) -> Result<Vec<String>, InstallError> {
        let mut args = vec!["--home".to_owned(), text(backend, "home", &self.home_root)?];
        if let Some(profile) = &self.profile {
            args.push("--profile".to_owned());
            args.push(profile.as_str().to_owned());
        }
        args.push("run".to_owned());
        if backend.supervises() {
            args.push("--no-supervise".to_owned());
        }
        match backend {
            Backend::WindowsService => args.push(SERVICE_FLAG.to_owned()),
            Backend::Launchd => args.push(LAUNCHD_FLAG.to_owned()),
            _ => {}
        }
        Ok(args)
    }

    /// The full invocation this spec registers with `backend`.
    pub fn invocation(&self, backend: Backend) -> Result<Invocation, InstallError> {
        let herald_home = match backend {
            Backend::Systemd | Backend::Launchd => Some(text(backend, "home", &self.home_root)?),
            // The SCM registration carries no environment of ours: `--home` names the home.
            Backend::Task | Backend::Startup | Backend::WindowsService => None,
        };
        Ok(Invocation {
            program: text(backend, "executable", self.program(backend)?)?,
            args: self.run_args(backend)?,
            herald_home,
        })
    }
}

/// The root above `profiles/NAME` for a profile home, else the home itself: what `--home` names in a
/// registration (and in the elevated relaunch).
pub fn home_root(home: &Home) -> PathBuf {
    match home.profile() {
        Some(_) => home
            .root()
            .parent()
            .and_then(Path::parent)
            .map_or_else(|| home.root().to_path_buf(), Path::to_path_buf),
        None => home.root().to_path_buf(),
    }
}

/// A path as UTF-8 text, or a typed error: every registration format here is text.
pub(crate) fn text(backend: Backend, what: &'static str, path: &Path) -> Result<String, InstallError> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| InstallError::NonUnicode {
            backend,
            what,
            path: path.to_path_buf(),
        })
}

/// Checks that `value` is an absolute path in the backend's flavour (`/…`; `X:\…` or `\\server\…`),
/// independently of the OS this runs on, so Windows registrations are generated and tested anywhere.
pub(crate) fn require_absolute(
    backend: Backend,
    what: &'static str,
    value: &str,
) -> Result<(), InstallError> {
    let absolute = if backend.windows() {
        let b = value.as_bytes();
        (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/'))
            || value.starts_with(r"\\")
    } else {
        value.starts_with('/')
    };
    if absolute {
        Ok(())
    } else {
        Err(InstallError::NotAbsolute {
            backend,
            what,
            value: value.to_owned(),
        })
    }
}

/// Refuses the first character `bad` flags.
pub(crate) fn refuse_chars(
    backend: Backend,
    what: &'static str,
    value: &str,
    bad: impl Fn(char) -> bool,
) -> Result<(), InstallError> {
    match value.chars().find(|&c| bad(c)) {
        Some(ch) => Err(InstallError::Unrepresentable {
            backend,
            what,
            value: value.to_owned(),
            ch,
        }),
        None => Ok(()),
    }
}

/// Why registering `exe` would not last, if it would not: a program inside a cargo build directory
/// (`cargo clean` or the next `cargo build` of another profile deletes or replaces it) or inside the
/// temporary directory `temp` (cleaned at boot or by the system). Pure: the caller passes both paths.
pub fn fragile_executable(exe: &Path, temp: &Path) -> Option<String> {
    if exe.starts_with(temp) {
        return Some(format!(
            "{} is in the temporary directory {}: it may be gone after a reboot, and the registration \
             with it; install herald somewhere lasting first (`cargo install --path crates/herald --locked` \
             puts it in ~/.cargo/bin) and run `herald install` from there",
            exe.display(),
            temp.display()
        ));
    }
    let parent = exe.parent()?;
    let profile = parent.file_name()?.to_str()?;
    let in_target = parent
        .ancestors()
        .skip(1)
        .take(2)
        .any(|dir| dir.file_name().is_some_and(|name| name == "target"));
    if in_target && matches!(profile, "debug" | "release") {
        return Some(format!(
            "{} is a cargo build output: `cargo clean` (or the next build) deletes or replaces it, and the \
             service with it; install herald first (`cargo install --path crates/herald --locked` puts it \
             in ~/.cargo/bin) and run `herald install` from there",
            exe.display()
        ));
    }
    None
}

/// Specs with Unix-flavoured paths that stay Unix paths when the tests run on Windows (where `Home`
/// would make `/h` absolute as `C:\h`).
#[cfg(test)]
pub(crate) fn unix_spec(
    executable: &str,
    root: &str,
    profile: Option<&str>,
    drain_timeout_secs: u64,
) -> ServiceSpec {
    let profile = profile.map(|p| ProfileName::new(p).unwrap());
    let home = match &profile {
        Some(p) => format!("{root}/profiles/{p}"),
        None => root.to_owned(),
    };
    ServiceSpec {
        executable: executable.into(),
        gui_executable: None,
        home_root: root.into(),
        profile,
        stop_budget: StopBudget::new(drain_timeout_secs),
        stdio_log: format!("{home}/logs/stdio.log").into(),
        scope: Scope::User,
        run_as: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_home::paths::HomeRequest;

    fn profile_home() -> Home {
        Home::resolve(HomeRequest {
            flag: Some("/srv/h r".into()),
            profile: Some(ProfileName::new("work").unwrap()),
            ..HomeRequest::default()
        })
        .unwrap()
    }

    #[test]
    fn a_profile_spec_names_the_root_and_the_profile() {
        let home = profile_home();
        let spec = ServiceSpec::for_home(&home, "/usr/bin/herald", StopBudget::new(30));
        assert_eq!(spec.home_root, home.root().parent().unwrap().parent().unwrap());
        assert_eq!(spec.stdio_log, home.stdio_log());
        assert_eq!(
            spec.run_args(Backend::Systemd).unwrap()[2..],
            ["--profile", "work", "run", "--no-supervise"]
        );
        assert_eq!(spec.stop_timeout_secs(), 45);
    }

    #[test]
    fn only_supervising_managers_get_no_supervise() {
        let mut spec = unix_spec("/usr/bin/herald", "/h", None, 30);
        spec.gui_executable = Some(r"C:\H\heraldw.exe".into());
        assert_eq!(
            spec.run_args(Backend::Systemd).unwrap()[2..],
            ["run", "--no-supervise"]
        );
        // launchd cannot exempt exit 78 from KeepAlive: the job's gateway waits for a fix instead.
        assert_eq!(
            spec.run_args(Backend::Launchd).unwrap()[2..],
            ["run", "--no-supervise", "--launchd"]
        );
        assert_eq!(
            spec.run_args(Backend::WindowsService).unwrap()[2..],
            ["run", "--windows-service"]
        );
        assert_eq!(
            spec.invocation(Backend::WindowsService).unwrap().herald_home,
            None
        );
        for backend in [Backend::Task, Backend::Startup] {
            assert_eq!(spec.run_args(backend).unwrap().last().unwrap(), "run");
            assert_eq!(spec.invocation(backend).unwrap().program, r"C:\H\heraldw.exe");
        }
    }

    #[test]
    fn windowless_backends_need_heraldw() {
        let spec = unix_spec("/usr/bin/herald", "/h", None, 30);
        assert_eq!(
            spec.invocation(Backend::Task).unwrap_err(),
            InstallError::MissingGuiExecutable {
                backend: Backend::Task
            }
        );
    }

    #[test]
    fn absolute_paths_are_judged_in_the_backends_flavour() {
        assert!(require_absolute(Backend::Task, "x", r"C:\a").is_ok());
        assert!(require_absolute(Backend::Task, "x", r"\\srv\share\a").is_ok());
        assert!(require_absolute(Backend::Task, "x", "/a").is_err());
        assert!(require_absolute(Backend::Systemd, "x", "/a").is_ok());
        assert!(require_absolute(Backend::Systemd, "x", "a/b").is_err());
    }

    #[test]
    fn a_build_output_or_a_temp_file_is_a_fragile_executable() {
        let temp = Path::new("/tmp");
        for fragile in [
            "/home/u/src/herald/target/release/herald",
            "/home/u/src/herald/target/debug/herald",
            "/home/u/src/herald/target/x86_64-pc-windows-gnu/release/herald.exe",
            "/tmp/herald-test/herald",
        ] {
            assert!(
                fragile_executable(Path::new(fragile), temp).is_some(),
                "{fragile}"
            );
        }
        for lasting in [
            "/home/u/.cargo/bin/herald",
            "/usr/local/bin/herald",
            "/opt/target/bin/herald",
            "/home/u/release/herald",
        ] {
            assert_eq!(fragile_executable(Path::new(lasting), temp), None, "{lasting}");
        }
    }
}
