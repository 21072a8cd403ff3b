//! Where a gateway's files live.
//!
//! A *home* is one gateway's world: its config, its runtime records, its logs and its journal. Every
//! Herald process that talks about the same gateway must compute the same paths, so they are derived here
//! and nowhere else. Resolution order: `--home DIR` > `HERALD_HOME` > the platform default (`~/.herald`,
//! `%LOCALAPPDATA%\herald` on Windows); `--profile NAME` then selects `<that root>/profiles/NAME`.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Environment variable naming the home root.
pub const HOME_ENV: &str = "HERALD_HOME";

/// File names inside a home. Kept together so the layout reads in one place.
mod layout {
    pub const CONFIG: &str = "herald.toml";
    pub const JOURNAL: &str = "state.db";
    pub const SECRETS: &str = "secrets.json";
    pub const RUN_DIR: &str = "run";
    pub const LOGS_DIR: &str = "logs";
    pub const PROFILES_DIR: &str = "profiles";
    pub const PID_RECORD: &str = "pid.json";
    pub const STATE_RECORD: &str = "state.json";
    pub const MONITOR_RECORD: &str = "monitor.json";
    pub const WORKER_LOCK: &str = "worker.lock";
    pub const LOCK: &str = "instance.lock";
    pub const STOP_MARKER: &str = "stop.marker";
    pub const MARKER_DIR: &str = "stop";
    pub const CONTROL_SOCKET: &str = "control.sock";
    pub const LIFECYCLE_LOG: &str = "lifecycle.jsonl";
    pub const STDIO_LOG: &str = "stdio.log";
}

/// Longest Unix socket path we place inside the home; `sun_path` is 104 bytes on macOS, 108 on Linux.
const MAX_SOCKET_PATH: usize = 100;

/// Where the home path came from, so `status` can say why it looked where it looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeSource {
    /// `--home DIR`.
    Flag,
    /// The `HERALD_HOME` environment variable.
    Env,
    /// The platform default.
    Default,
}

impl HomeSource {
    pub fn describe(self) -> &'static str {
        match self {
            HomeSource::Flag => "--home",
            HomeSource::Env => HOME_ENV,
            HomeSource::Default => "default",
        }
    }
}

/// A validated profile name: `^[a-z0-9][a-z0-9_-]{0,63}$`.
///
/// The name ends up in file names, unit names, task names and pipe names on every OS, so it is restricted
/// to characters that need no quoting anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProfileName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid profile name {name:?}: use 1-64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
)]
pub struct InvalidProfileName {
    pub name: String,
}

impl ProfileName {
    pub fn new(name: &str) -> Result<ProfileName, InvalidProfileName> {
        let bytes = name.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
        if first_ok && rest_ok && bytes.len() <= 64 {
            Ok(ProfileName(name.to_owned()))
        } else {
            Err(InvalidProfileName {
                name: name.to_owned(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ProfileName {
    type Err = InvalidProfileName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProfileName::new(s)
    }
}

/// Everything needed to decide which home a command works on. Gathered by the binary, resolved here, so
/// resolution is a pure function that tests can drive without touching the environment.
#[derive(Debug, Clone, Default)]
pub struct HomeRequest {
    pub flag: Option<PathBuf>,
    pub env: Option<OsString>,
    pub profile: Option<ProfileName>,
    /// The platform default root; see [`platform_default_root`].
    pub platform_default: Option<PathBuf>,
}

impl HomeRequest {
    /// A request filled from this process's environment.
    pub fn from_env(flag: Option<PathBuf>, profile: Option<ProfileName>) -> HomeRequest {
        HomeRequest {
            flag,
            env: std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()),
            profile,
            platform_default: platform_default_root(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error(
        "cannot find a home directory: set {HOME_ENV} or pass --home (neither HOME nor LOCALAPPDATA is set)"
    )]
    NoDefault,
    #[error("cannot create the home {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("the home {path} exists but is not a directory")]
    NotADirectory { path: PathBuf },
    /// Another user owns or can write it, or a link stands where a directory must (exit 78).
    #[error("refusing an unsafe home: {0}")]
    Unsafe(#[from] crate::ownership::UnsafePath),
}

impl HomeError {
    /// Whether the fault is how the home is set up (owner, permissions, links): exit 78, not 1.
    pub fn is_unsafe(&self) -> bool {
        matches!(self, HomeError::Unsafe(_))
    }
}

/// `~/.herald` on Unix, `%LOCALAPPDATA%\herald` on Windows.
pub fn platform_default_root() -> Option<PathBuf> {
    if cfg!(windows) {
        std::env::var_os("LOCALAPPDATA")
            .filter(|v| !v.is_empty())
            .map(|d| PathBuf::from(d).join("herald"))
            .or_else(|| std::env::home_dir().map(|h| h.join("AppData").join("Local").join("herald")))
    } else {
        std::env::home_dir().map(|h| h.join(".herald"))
    }
}

/// One gateway's home directory and the layout inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
    source: HomeSource,
    profile: Option<ProfileName>,
}

impl Home {
    /// Resolves `--home` > `HERALD_HOME` > default, then the profile.
    pub fn resolve(request: HomeRequest) -> Result<Home, HomeError> {
        let (base, source) = if let Some(flag) = request.flag {
            (flag, HomeSource::Flag)
        } else if let Some(env) = request.env {
            (PathBuf::from(env), HomeSource::Env)
        } else {
            (
                request.platform_default.ok_or(HomeError::NoDefault)?,
                HomeSource::Default,
            )
        };
        let root = match &request.profile {
            Some(profile) => base.join(layout::PROFILES_DIR).join(profile.as_str()),
            None => base,
        };
        Ok(Home {
            root: absolute(root),
            source,
            profile: request.profile,
        })
    }

    /// A home at exactly `root` (tests, and processes handed a resolved home).
    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home {
            root: absolute(root.into()),
            source: HomeSource::Flag,
            profile: None,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn source(&self) -> HomeSource {
        self.source
    }
    pub fn profile(&self) -> Option<&ProfileName> {
        self.profile.as_ref()
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join(layout::CONFIG)
    }
    /// The session journal (SQLite, with `-wal` and `-shm` companions).
    pub fn journal_file(&self) -> PathBuf {
        self.root.join(layout::JOURNAL)
    }
    /// The secrets store (`herald secret`): values for the variables the config names.
    pub fn secrets_file(&self) -> PathBuf {
        self.root.join(layout::SECRETS)
    }
    pub fn run_dir(&self) -> PathBuf {
        self.root.join(layout::RUN_DIR)
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join(layout::LOGS_DIR)
    }
    /// Sibling profiles of this home (`<root>/profiles`), for listing other gateways.
    pub fn profiles_dir(&self) -> PathBuf {
        self.root.join(layout::PROFILES_DIR)
    }

    /// Every other home sharing this home's root: the root itself (when this is a profile) and each
    /// `profiles/NAME` with a valid name, except this one. Nothing is created.
    pub fn siblings(&self) -> Vec<Home> {
        let base = match &self.profile {
            Some(_) => self
                .root
                .parent()
                .and_then(Path::parent)
                .map_or_else(|| self.root.clone(), Path::to_path_buf),
            None => self.root.clone(),
        };
        let mut homes = Vec::new();
        if self.profile.is_some() {
            homes.push(Home {
                root: base.clone(),
                source: self.source,
                profile: None,
            });
        }
        if let Ok(entries) = std::fs::read_dir(base.join(layout::PROFILES_DIR)) {
            let mut names: Vec<ProfileName> = entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| ProfileName::new(n).ok()))
                .filter(|n| Some(n) != self.profile.as_ref())
                .collect();
            names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            homes.extend(names.into_iter().map(|name| Home {
                root: base.join(layout::PROFILES_DIR).join(name.as_str()),
                source: self.source,
                profile: Some(name),
            }));
        }
        homes
    }
    /// Files that came with chat messages (see [`crate::media`]).
    pub fn media_dir(&self) -> PathBuf {
        self.root.join("media")
    }
    /// The Matrix adapter's own state: its device (`device.json`) and the client library's stores
    /// (`store/`: the end-to-end encryption keys, room state). Private (0700) like the home.
    pub fn matrix_dir(&self) -> PathBuf {
        self.root.join("matrix")
    }
    /// `herald upgrade`'s plan (`upgrade/plan.json`) and its backups (`upgrade/<id>/`).
    pub fn upgrade_dir(&self) -> PathBuf {
        self.root.join("upgrade")
    }
    pub fn upgrade_plan(&self) -> PathBuf {
        self.upgrade_dir().join("plan.json")
    }
    /// Who was let in by pairing, and the pairing codes not yet used (see [`crate::access`]).
    pub fn access_dir(&self) -> PathBuf {
        self.root.join("access")
    }
    pub fn pid_record(&self) -> PathBuf {
        self.run_dir().join(layout::PID_RECORD)
    }
    pub fn state_record(&self) -> PathBuf {
        self.run_dir().join(layout::STATE_RECORD)
    }
    pub fn monitor_record(&self) -> PathBuf {
        self.run_dir().join(layout::MONITOR_RECORD)
    }
    /// Held by the serving worker, so that an orphaned worker (its monitor was killed) and the next
    /// monitor's worker can never serve at the same time.
    pub fn worker_lock(&self) -> PathBuf {
        self.run_dir().join(layout::WORKER_LOCK)
    }
    pub fn lock_file(&self) -> PathBuf {
        self.run_dir().join(layout::LOCK)
    }
    pub fn stop_marker(&self) -> PathBuf {
        self.marker_dir().join(layout::STOP_MARKER)
    }
    /// The directory the gateway watches for stop markers. It holds nothing else, so the frequent
    /// rewrites of the state record do not wake the watcher (an idle gateway stays asleep).
    pub fn marker_dir(&self) -> PathBuf {
        self.run_dir().join(layout::MARKER_DIR)
    }
    /// The file name the marker watcher listens for inside [`Home::run_dir`].
    pub fn stop_marker_name() -> &'static str {
        layout::STOP_MARKER
    }
    /// Where a detached gateway's stdout and stderr go.
    pub fn stdio_log(&self) -> PathBuf {
        self.logs_dir().join(layout::STDIO_LOG)
    }
    pub fn lifecycle_log(&self) -> PathBuf {
        self.logs_dir().join(layout::LIFECYCLE_LOG)
    }

    /// The Unix domain socket of the control channel: `run/control.sock` when that path fits in
    /// `sun_path`, otherwise a per-home name in this user's private runtime directory
    /// ([`Home::runtime_dir`]). Both ends compute it the same way; the server also checks the peer's uid
    /// and the client the server's.
    pub fn control_socket(&self) -> PathBuf {
        let inside = self.run_dir().join(layout::CONTROL_SOCKET);
        if inside.as_os_str().len() <= MAX_SOCKET_PATH {
            return inside;
        }
        runtime_dir().join(format!("{:016x}.sock", self.fingerprint()))
    }

    /// Creates the directory of the control socket when it lies outside the home (a long home path),
    /// private to this user (0700), after checking that an existing one is this user's own, writable by
    /// no one else and no link: in a shared temp dir, another user could otherwise take the socket's
    /// name first, or plant a link.
    pub fn ensure_socket_dir(&self) -> Result<(), HomeError> {
        let socket = self.control_socket();
        match socket.parent() {
            Some(dir) if dir != self.run_dir() => create_private_dir(dir, false),
            _ => Ok(()),
        }
    }

    /// The Windows named pipe of the control channel, unique per home.
    pub fn control_pipe_name(&self) -> String {
        format!(r"\\.\pipe\herald-{:016x}", self.fingerprint())
    }

    /// A stable 64-bit FNV-1a hash of the home path (case-folded, since Windows paths are
    /// case-insensitive), used where a name must be short and unique per home.
    pub fn fingerprint(&self) -> u64 {
        let text = self.root.to_string_lossy().to_lowercase();
        text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// Creates the home and its `run/`, `run/stop/` and `logs/` directories, after checking that those
    /// that exist belong to this user, are writable by no one else, and (but for the home itself) are no
    /// links (see [`crate::ownership`]). On Unix each is then made private (0700): the home holds the
    /// control socket and the conversations.
    pub fn ensure(&self) -> Result<(), HomeError> {
        for (dir, is_root) in [
            (self.root.clone(), true),
            (self.run_dir(), false),
            (self.marker_dir(), false),
            (self.logs_dir(), false),
        ] {
            create_private_dir(&dir, is_root)?;
        }
        Ok(())
    }

    /// Creates a folder of the home's own (`upgrade/`, a backup in it) with the same checks and
    /// permissions as [`Self::ensure`]'s.
    pub fn ensure_private_dir(&self, dir: &Path) -> Result<(), HomeError> {
        create_private_dir(dir, false)
    }
}

pub(crate) fn create_private_dir(dir: &Path, is_root: bool) -> Result<(), HomeError> {
    let create_err = |source| HomeError::Create {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if !meta.is_dir() && !meta.file_type().is_symlink() => {
            return Err(HomeError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        Ok(_) => crate::ownership::check_dir(dir, is_root)?,
        Err(_) => {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(create_err)?;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(create_err)?;
    }
    Ok(())
}

/// This user's private directory for sockets that do not fit in the home: `$XDG_RUNTIME_DIR/herald`
/// (the runtime dir is the user's own, 0700) or, without one, `<temp dir>/herald-<uid>`.
fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("herald"),
        None => std::env::temp_dir().join(format!("herald-{}", crate::ownership::current_user())),
    }
}

/// Makes a path absolute against the current directory without touching the file system (the home may not
/// exist yet), so every process derives identical child paths and pipe names.
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> HomeRequest {
        HomeRequest {
            flag: None,
            env: None,
            profile: None,
            platform_default: Some(PathBuf::from("/d/.herald")),
        }
    }

    #[test]
    fn flag_beats_env_beats_default() {
        let home = Home::resolve(HomeRequest {
            flag: Some("/f".into()),
            env: Some("/e".into()),
            ..request()
        })
        .unwrap();
        assert_eq!(home.source(), HomeSource::Flag);
        assert!(home.root().ends_with("f"));

        let home = Home::resolve(HomeRequest {
            env: Some("/e".into()),
            ..request()
        })
        .unwrap();
        assert_eq!(home.source(), HomeSource::Env);
        assert!(home.root().ends_with("e"));

        let home = Home::resolve(request()).unwrap();
        assert_eq!(home.source(), HomeSource::Default);
        assert!(home.root().ends_with(".herald"));
    }

    #[test]
    fn profile_selects_a_subdirectory_of_the_root() {
        let home = Home::resolve(HomeRequest {
            profile: Some(ProfileName::new("work").unwrap()),
            ..request()
        })
        .unwrap();
        assert!(
            home.root()
                .ends_with(Path::new(".herald").join("profiles").join("work"))
        );
    }

    #[test]
    fn no_default_is_a_clear_error() {
        let err = Home::resolve(HomeRequest::default()).unwrap_err();
        assert!(err.to_string().contains(HOME_ENV));
    }

    #[test]
    fn profile_names_follow_the_documented_pattern() {
        for good in ["a", "0", "work", "my-bot_2", &"a".repeat(64)] {
            assert!(ProfileName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "A",
            "a b",
            "a/b",
            "..",
            "a.b",
            "é",
            &"a".repeat(65),
            "a\\b",
            "a\0",
        ] {
            let err = ProfileName::new(bad).unwrap_err();
            assert!(err.to_string().contains("invalid profile name"), "{bad}");
        }
    }

    #[test]
    fn control_names_are_stable_and_per_home() {
        let a = Home::at("/x/a");
        let b = Home::at("/x/b");
        assert_eq!(a.control_pipe_name(), Home::at("/x/a").control_pipe_name());
        assert_ne!(a.control_pipe_name(), b.control_pipe_name());
        assert!(a.control_pipe_name().starts_with(r"\\.\pipe\herald-"));
    }

    #[test]
    fn long_homes_get_a_socket_path_that_fits() {
        let long = Home::at(PathBuf::from("/tmp").join("x".repeat(150)));
        assert!(long.control_socket().as_os_str().len() <= 108);
        let short = Home::at("/tmp/h");
        assert_eq!(short.control_socket(), short.run_dir().join("control.sock"));
    }

    #[cfg(unix)]
    #[test]
    fn ensure_makes_private_directories() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        std::fs::create_dir(home.root()).unwrap();
        std::fs::set_permissions(home.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
        home.ensure().unwrap();
        for d in [home.root().to_path_buf(), home.run_dir(), home.logs_dir()] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
    }

    #[test]
    fn ensure_refuses_a_file_where_the_home_should_be() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home");
        std::fs::write(&path, b"x").unwrap();
        let err = Home::at(&path).ensure().unwrap_err();
        assert!(matches!(err, HomeError::NotADirectory { .. }));
    }
}
