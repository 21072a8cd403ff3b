//! Files an agent returns: made in a folder of the turn's own, named in the answer, checked before any
//! of them leaves for a chat.
//!
//! **Invariant:** a file reaches a chat only if it is a regular file — not a symlink, not a folder —
//! inside its turn's own folder (`media/out/<turn id>/`, private to the gateway's user), at most
//! [`OutFiles::max_bytes`] long, and one of at most [`MAX_FILES`]. An agent, or a model steering it with a
//! crafted prompt, cannot make the gateway send `~/.ssh/id_ed25519` by naming it: a name that leaves the
//! folder (an absolute path elsewhere, `..`, a symlink on the way) is refused.
//!
//! **Why refusals do not fail the turn:** the agent's text is its answer, and losing it because one
//! attachment was bad would throw away what worked. The answer keeps its text and each refusal is said
//! under it in one line, so the user sees both what came and what did not.

use std::path::{Component, Path, PathBuf};

use herald_home::Home;

use super::Attachment;

/// Most files one answer may send.
pub const MAX_FILES: usize = 10;

/// Where a turn's agent may leave files, and how large they may be.
#[derive(Debug, Clone)]
pub struct OutFiles {
    home: Home,
    max_bytes: u64,
}

impl OutFiles {
    pub fn new(home: Home, max_bytes: u64) -> OutFiles {
        OutFiles { home, max_bytes }
    }

    /// The largest file an answer may send.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The folder of turn `turn_id`, created privately (kept if an earlier run of the turn made it).
    pub fn prepare(&self, turn_id: i64) -> Result<PathBuf, herald_home::media::MediaError> {
        herald_home::media::out_dir(&self.home, turn_id)
    }

    /// Checks the files an answer names (relative to `dir`, or absolute inside it) and returns those that
    /// may be sent, in order, and one line for each refused.
    pub fn collect(&self, dir: &Path, names: &[String]) -> (Vec<Attachment>, Vec<String>) {
        let mut files = Vec::new();
        let mut refused = Vec::new();
        for (index, name) in names.iter().enumerate() {
            if index >= MAX_FILES {
                refused.push(format!(
                    "{} more file(s) were not sent: an answer sends at most {MAX_FILES}",
                    names.len() - MAX_FILES
                ));
                break;
            }
            match self.check(dir, name) {
                Ok(file) => files.push(file),
                Err(why) => refused.push(format!("the file {name:?} was not sent: {why}")),
            }
        }
        (files, refused)
    }

    /// A file an answer sent, found again by its turn and its name within the turn's folder (what
    /// [`OutFiles::locate`] gave), checked as when it was sent.
    pub fn find(&self, turn_id: i64, name: &str) -> Result<Attachment, String> {
        let dir = self.root().join(turn_id.to_string());
        if Path::new(name).is_absolute() {
            return Err("its name leaves the turn's files folder".to_owned());
        }
        self.check(&dir, name)
    }

    /// Where a sent file is: its turn and its name within the turn's folder (`/`-separated); `None`
    /// for a path outside the folders of outgoing files.
    pub fn locate(&self, file: &Attachment) -> Option<(i64, String)> {
        let relative = Path::new(&file.path).strip_prefix(self.root()).ok()?;
        let mut parts = relative.components().map(|part| match part {
            Component::Normal(part) => part.to_str(),
            _ => None,
        });
        let turn = parts.next()??.parse().ok()?;
        let name: Vec<&str> = parts.collect::<Option<_>>()?;
        (!name.is_empty()).then(|| (turn, name.join("/")))
    }

    fn root(&self) -> PathBuf {
        self.home.media_dir().join("out")
    }

    fn check(&self, dir: &Path, name: &str) -> Result<Attachment, String> {
        let given = Path::new(name);
        // `has_root`: on Windows `/etc/passwd` is rooted without being absolute (no drive).
        let relative = if given.is_absolute() || given.has_root() {
            given
                .strip_prefix(dir)
                .map_err(|_| "it is not in the turn's files folder".to_owned())?
        } else {
            given
        };
        let mut path = dir.to_path_buf();
        let parts: Vec<&std::ffi::OsStr> = relative
            .components()
            .map(|part| match part {
                Component::Normal(part) => Ok(part),
                _ => Err("its name leaves the turn's files folder".to_owned()),
            })
            .collect::<Result<_, _>>()?;
        if parts.is_empty() {
            return Err("it names no file".to_owned());
        }
        // Every step is looked at without following it: a symlink anywhere is refused, not followed.
        for (index, part) in parts.iter().enumerate() {
            path.push(part);
            let meta = std::fs::symlink_metadata(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => "there is no such file".to_owned(),
                _ => format!("it cannot be read ({e})"),
            })?;
            let last = index + 1 == parts.len();
            if meta.file_type().is_symlink() {
                return Err("it is a symbolic link".to_owned());
            }
            if !last && !meta.is_dir() {
                return Err("there is no such file".to_owned());
            }
            if last {
                if !meta.is_file() {
                    return Err("it is not a regular file".to_owned());
                }
                if meta.len() == 0 {
                    return Err("it is empty".to_owned());
                }
                if meta.len() > self.max_bytes {
                    return Err(format!(
                        "it is larger than {} MB",
                        self.max_bytes.div_ceil(1 << 20)
                    ));
                }
                let mime = mime_guess::from_path(&path).first_or_octet_stream();
                let kind = match mime.essence_str() {
                    "image/jpeg" | "image/png" | "image/webp" => "photo",
                    _ => "document",
                };
                return Ok(Attachment {
                    kind: kind.to_owned(),
                    path: path.to_string_lossy().into_owned(),
                    mime: mime.essence_str().to_owned(),
                    name: parts.last().map(|n| n.to_string_lossy().into_owned()),
                    size: meta.len(),
                });
            }
        }
        Err("it names no file".to_owned())
    }
}

/// The answer's text with the refusals said under it.
pub fn with_refusals(text: String, refused: &[String]) -> String {
    if refused.is_empty() {
        return text;
    }
    let mut text = text;
    if !text.trim().is_empty() {
        text.push_str("\n\n");
    }
    for (index, line) in refused.iter().enumerate() {
        if index > 0 {
            text.push('\n');
        }
        text.push_str("(Herald: ");
        text.push_str(line);
        text.push(')');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, OutFiles, PathBuf) {
        let temp = tempfile::tempdir().unwrap();
        let out = OutFiles::new(Home::at(temp.path().join("home")), 1000);
        let dir = out.prepare(42).unwrap();
        (temp, out, dir)
    }

    #[test]
    fn files_inside_the_turns_folder_are_taken_with_their_kind_and_mime() {
        let (_temp, out, dir) = setup();
        assert!(dir.ends_with("media/out/42"));
        std::fs::write(dir.join("chart.png"), b"png").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub").join("report.pdf"), b"pdf").unwrap();
        let absolute = dir.join("chart.png").to_string_lossy().into_owned();
        let (files, refused) = out.collect(&dir, &["chart.png".into(), "sub/report.pdf".into(), absolute]);
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(files.len(), 3);
        assert_eq!(
            (files[0].kind.as_str(), files[0].mime.as_str()),
            ("photo", "image/png")
        );
        assert_eq!(files[0].name.as_deref(), Some("chart.png"));
        assert_eq!(files[0].size, 3);
        assert_eq!(
            (files[1].kind.as_str(), files[1].mime.as_str()),
            ("document", "application/pdf")
        );
        assert_eq!(files[2].path, files[0].path);
    }

    #[test]
    fn names_that_leave_the_folder_or_are_not_plain_files_are_refused() {
        let (temp, out, dir) = setup();
        let secret = temp.path().join("secret.txt");
        std::fs::write(&secret, b"key").unwrap();
        std::fs::write(dir.join("big.bin"), vec![0u8; 1001]).unwrap();
        std::fs::write(dir.join("empty.txt"), b"").unwrap();
        std::fs::create_dir(dir.join("folder")).unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&secret, dir.join("link.txt")).unwrap();
            std::os::unix::fs::symlink(temp.path(), dir.join("linked")).unwrap();
        }
        let mut names: Vec<String> = vec![
            secret.to_string_lossy().into_owned(),
            "../../../secret.txt".into(),
            "missing.txt".into(),
            "big.bin".into(),
            "empty.txt".into(),
            "folder".into(),
            String::new(),
        ];
        if cfg!(unix) {
            names.push("link.txt".into());
            names.push("linked/secret.txt".into());
        }
        let (files, refused) = out.collect(&dir, &names);
        assert!(files.is_empty(), "{files:?}");
        assert_eq!(refused.len(), names.len(), "{refused:?}");
        let all = refused.join("\n");
        for why in [
            "not in the turn's files folder",
            "leaves the turn's files folder",
            "no such file",
            "larger than 1 MB",
            "it is empty",
            "not a regular file",
            "names no file",
        ] {
            assert!(all.contains(why), "{why} in {all}");
        }
        if cfg!(unix) {
            assert_eq!(all.matches("symbolic link").count(), 2, "{all}");
        }
    }

    #[test]
    fn a_sent_file_is_found_again_by_turn_and_name_and_nothing_else_is() {
        let (_temp, out, dir) = setup();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub").join("r.pdf"), b"pdf").unwrap();
        let (files, _) = out.collect(&dir, &["sub/r.pdf".into()]);
        let (turn, name) = out.locate(&files[0]).unwrap();
        assert_eq!((turn, name.as_str()), (42, "sub/r.pdf"));
        assert_eq!(out.find(turn, &name).unwrap(), files[0]);
        assert!(out.find(41, &name).is_err());
        assert!(out.find(42, "../42/sub/r.pdf").is_err());
        assert!(out.find(42, &dir.join("sub/r.pdf").to_string_lossy()).is_err());
        let elsewhere = Attachment {
            path: "/etc/passwd".into(),
            ..files[0].clone()
        };
        assert_eq!(out.locate(&elsewhere), None);
    }

    #[test]
    fn at_most_ten_files_and_refusals_are_said_under_the_text() {
        let (_temp, out, dir) = setup();
        let names: Vec<String> = (0..12)
            .map(|i| {
                std::fs::write(dir.join(format!("{i}.txt")), b"x").unwrap();
                format!("{i}.txt")
            })
            .collect();
        let (files, refused) = out.collect(&dir, &names);
        assert_eq!(files.len(), MAX_FILES);
        assert_eq!(
            refused,
            vec!["2 more file(s) were not sent: an answer sends at most 10".to_owned()]
        );
        assert_eq!(
            with_refusals("Here.".into(), &refused),
            "Here.\n\n(Herald: 2 more file(s) were not sent: an answer sends at most 10)"
        );
        assert_eq!(with_refusals("Here.".into(), &[]), "Here.");
    }
}
