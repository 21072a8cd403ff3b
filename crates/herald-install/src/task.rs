//! The Task Scheduler XML for a per-user logon task, and a reader for existing ones (drift detection).
//!
//! **Invariant:** the task starts the GUI-subsystem `heraldw.exe` directly — no cmd.exe, VBS or
//! PowerShell in the chain — so no console window is ever created and focus is never stolen; it runs the
//! supervised `run` (Herald's own monitor restarts crashes: a polling task as a "supervisor" flashed a
//! console on every tick). Every value is XML-escaped; the arguments are quoted by the
//! `CommandLineToArgvW` rules ([`super::winargs`]). Output is UTF-16LE with a BOM and CRLF line endings,
//! the encoding the XML declaration names and `schtasks /Create /XML` expects.
//!
//! Settings, and why: a `LogonTrigger` for `UserId` only (not every user who logs on); `InteractiveToken`
//! and `LeastPrivilege` (no stored password, no elevation: a standard user can register it);
//! `ExecutionTimeLimit` `PT0S` (the default 72 h limit killed gateways); no battery conditions (laptops
//! stopped the gateway); `Hidden`; `Priority` 5 (normal; the task default 7 is below normal);
//! `RestartOnFailure` every minute, 3 times (when the monitor itself gives up after a crash loop).
//!
//! `MultipleInstancesPolicy` is `IgnoreNew`: a second logon or a `schtasks /Run` while the gateway runs
//! must not start a second one (`Parallel` would only spawn a monitor that exits "already running") and
//! must never kill the running one (`StopExisting` is TerminateProcess: no drain, turns lost). The cost,
//! known from the field notes, is that "restart" through the task is a no-op while the old instance
//! lives, so a restart must first stop the gateway and wait for its exit (as `herald stop` does) before
//! `schtasks /Run`.

use super::error::InstallError;
use super::spec::{Backend, Invocation, Scope, ServiceSpec, refuse_chars, require_absolute, text};
use super::winargs::{join_windows_args, parse_windows_args};

const B: Backend = Backend::Task;

/// The task XML as UTF-16LE bytes with a BOM; register it as `names::task_name(profile)`.
pub fn render_task(spec: &ServiceSpec) -> Result<Vec<u8>, InstallError> {
    Ok(utf16le_with_bom(&render_task_text(spec)?))
}

/// The same XML as text (CRLF line endings), for `--dry-run` and tests.
pub fn render_task_text(spec: &ServiceSpec) -> Result<String, InstallError> {
    if spec.scope == Scope::System {
        return Err(InstallError::NoSystemScope { backend: B });
    }
    let invocation = spec.invocation(B)?;
    let user = spec
        .run_as
        .as_deref()
        .ok_or(InstallError::MissingRunAs { backend: B })?;
    if user.is_empty() {
        return Err(InstallError::InvalidUser {
            backend: B,
            name: user.to_owned(),
        });
    }
    let home = text(B, "home", &spec.home_root)?;
    for (what, value) in [("heraldw", &invocation.program), ("home", &home)] {
        require_absolute(B, what, value)?;
        refuse_chars(B, what, value, windows_path_forbidden)?;
    }
    refuse_chars(B, "user", user, char::is_control)?;
    let arguments = join_windows_args(&invocation.args);
    let description = match &spec.profile {
        Some(p) => format!("Herald gateway (profile {p})"),
        None => "Herald gateway".to_owned(),
    };
    let lines = [
        r#"<?xml version="1.0" encoding="UTF-16"?>"#.to_owned(),
        r#"<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">"#.to_owned(),
        "  <RegistrationInfo>".to_owned(),
        format!("    <Description>{}</Description>", escape_xml(&description)),
        "  </RegistrationInfo>".to_owned(),
        "  <Triggers>".to_owned(),
        "    <LogonTrigger>".to_owned(),
        "      <Enabled>true</Enabled>".to_owned(),
        format!("      <UserId>{}</UserId>", escape_xml(user)),
        "    </LogonTrigger>".to_owned(),
        "  </Triggers>".to_owned(),
        "  <Principals>".to_owned(),
        r#"    <Principal id="Author">"#.to_owned(),
        format!("      <UserId>{}</UserId>", escape_xml(user)),
        "      <LogonType>InteractiveToken</LogonType>".to_owned(),
        "      <RunLevel>LeastPrivilege</RunLevel>".to_owned(),
        "    </Principal>".to_owned(),
        "  </Principals>".to_owned(),
        "  <Settings>".to_owned(),
        "    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>".to_owned(),
        "    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>".to_owned(),
        "    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>".to_owned(),
        "    <AllowHardTerminate>true</AllowHardTerminate>".to_owned(),
        "    <StartWhenAvailable>false</StartWhenAvailable>".to_owned(),
        "    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>".to_owned(),
        "    <IdleSettings>".to_owned(),
        "      <StopOnIdleEnd>false</StopOnIdleEnd>".to_owned(),
        "      <RestartOnIdle>false</RestartOnIdle>".to_owned(),
        "    </IdleSettings>".to_owned(),
        "    <AllowStartOnDemand>true</AllowStartOnDemand>".to_owned(),
        "    <Enabled>true</Enabled>".to_owned(),
        "    <Hidden>true</Hidden>".to_owned(),
        "    <RunOnlyIfIdle>false</RunOnlyIfIdle>".to_owned(),
        "    <WakeToRun>false</WakeToRun>".to_owned(),
        "    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>".to_owned(),
        "    <Priority>5</Priority>".to_owned(),
        "    <RestartOnFailure>".to_owned(),
        "      <Interval>PT1M</Interval>".to_owned(),
        "      <Count>3</Count>".to_owned(),
        "    </RestartOnFailure>".to_owned(),
        "  </Settings>".to_owned(),
        r#"  <Actions Context="Author">"#.to_owned(),
        "    <Exec>".to_owned(),
        format!("      <Command>{}</Command>", escape_xml(&invocation.program)),
        format!("      <Arguments>{}</Arguments>", escape_xml(&arguments)),
        format!("      <WorkingDirectory>{}</WorkingDirectory>", escape_xml(&home)),
        "    </Exec>".to_owned(),
        "  </Actions>".to_owned(),
        "</Task>".to_owned(),
    ];
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    Ok(out)
}

/// Characters a Windows path cannot contain (and that XML 1.0 cannot carry): `"`, `<`, `>`, `|`, `*`,
/// `?` and control characters. (`:` is legal after the drive letter and in `\\?\` paths; not checked.)
pub(crate) fn windows_path_forbidden(c: char) -> bool {
    c.is_control() || matches!(c, '"' | '<' | '>' | '|' | '*' | '?')
}

/// `& < > " '` as entities.
pub fn escape_xml(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The five predefined entities and numeric character references back to text.
pub fn unescape_xml(value: &str) -> Result<String, InstallError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..]
            .find(';')
            .ok_or_else(|| unparsable(format!("unterminated entity in {value:?}")))?;
        let entity = &rest[at + 1..at + end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            e => e
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| e.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32)
                .ok_or_else(|| unparsable(format!("unknown entity &{e};")))?,
        };
        out.push(c);
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn unparsable(reason: String) -> InstallError {
    InstallError::Unparsable { backend: B, reason }
}

/// `text` as UTF-16LE, preceded by the byte-order mark FF FE.
pub fn utf16le_with_bom(text: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFE];
    out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    out
}

/// Decodes task XML as exported by `schtasks /Query /XML` or read from `System32\Tasks`: UTF-16LE or BE
/// with a BOM, else UTF-8 (with or without a BOM). Unpaired surrogates are an error, not a guess.
pub fn decode_task_bytes(bytes: &[u8]) -> Result<String, InstallError> {
    let utf16 = |le: bool, body: &[u8]| -> Result<String, InstallError> {
        if !body.len().is_multiple_of(2) {
            return Err(unparsable("odd length UTF-16".to_owned()));
        }
        let units: Vec<u16> = body
            .chunks_exact(2)
            .map(|b| {
                if le {
                    u16::from_le_bytes([b[0], b[1]])
                } else {
                    u16::from_be_bytes([b[0], b[1]])
                }
            })
            .collect();
        String::from_utf16(&units).map_err(|e| unparsable(e.to_string()))
    };
    match bytes {
        [0xFF, 0xFE, body @ ..] => utf16(true, body),
        [0xFE, 0xFF, body @ ..] => utf16(false, body),
        [0xEF, 0xBB, 0xBF, body @ ..] => {
            String::from_utf8(body.to_vec()).map_err(|e| unparsable(e.to_string()))
        }
        body => String::from_utf8(body.to_vec()).map_err(|e| unparsable(e.to_string())),
    }
}

/// What an existing task says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskFacts {
    pub command: Option<String>,
    pub arguments: Option<String>,
    pub working_directory: Option<String>,
    /// The principal's `UserId` (the logon trigger's, when the principal names none).
    pub user_id: Option<String>,
    pub multiple_instances_policy: Option<String>,
    pub execution_time_limit: Option<String>,
    pub hidden: Option<String>,
}

impl TaskFacts {
    /// The invocation the task runs; tasks carry no environment, so `herald_home` is `None`.
    pub fn invocation(&self) -> Result<Invocation, InstallError> {
        let program = self
            .command
            .clone()
            .ok_or_else(|| unparsable("no <Command>".to_owned()))?;
        Ok(Invocation {
            program: program.trim_matches('"').to_owned(),
            args: parse_windows_args(self.arguments.as_deref().unwrap_or("")),
            herald_home: None,
        })
    }
}

/// Reads the facts out of task XML bytes. This is not a general XML parser: it finds the first
/// `<Name>…</Name>` text of each element Herald writes, which is all drift detection needs.
pub fn parse_task(bytes: &[u8]) -> Result<TaskFacts, InstallError> {
    let xml = decode_task_bytes(bytes)?;
    let element = |name: &str| -> Result<Option<String>, InstallError> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let Some(start) = xml.find(&open) else {
            return Ok(None);
        };
        let body = &xml[start + open.len()..];
        let end = body
            .find(&close)
            .ok_or_else(|| unparsable(format!("unclosed <{name}>")))?;
        unescape_xml(&body[..end]).map(Some)
    };
    let principal_user = xml
        .find("<Principal ")
        .and_then(|at| xml[at..].find("<UserId>").map(|u| at + u))
        .map(|at| {
            let body = &xml[at + "<UserId>".len()..];
            body.find("</UserId>")
                .map(|end| unescape_xml(&body[..end]))
                .transpose()
        })
        .transpose()?
        .flatten();
    Ok(TaskFacts {
        command: element("Command")?,
        arguments: element("Arguments")?,
        working_directory: element("WorkingDirectory")?,
        user_id: match principal_user {
            Some(user) => Some(user),
            None => element("UserId")?,
        },
        multiple_instances_policy: element("MultipleInstancesPolicy")?,
        execution_time_limit: element("ExecutionTimeLimit")?,
        hidden: element("Hidden")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_home::paths::HomeRequest;
    use herald_home::{Home, ProfileName};

    fn windows_spec(root: &str, heraldw: &str) -> ServiceSpec {
        let home = Home::resolve(HomeRequest {
            flag: Some("/x".into()),
            profile: Some(ProfileName::new("work").unwrap()),
            ..HomeRequest::default()
        })
        .unwrap();
        let mut spec =
            ServiceSpec::for_home(&home, r"C:\Herald\herald.exe", herald_home::StopBudget::new(30));
        spec.home_root = root.into();
        spec.gui_executable = Some(heraldw.into());
        spec.run_as = Some(r"DESKTOP-1\Zoë & Co".into());
        spec
    }

    #[test]
    fn the_task_is_utf16_with_a_bom_and_round_trips() {
        let spec = windows_spec(
            r"C:\Users\Zoë\50% & ^ ! (x)\herald\",
            r"C:\Program Files\Herald\heraldw.exe",
        );
        let bytes = render_task(&spec).unwrap();
        assert_eq!(&bytes[..4], &[0xFF, 0xFE, b'<', 0]);
        let facts = parse_task(&bytes).unwrap();
        assert_eq!(facts.invocation().unwrap(), spec.invocation(B).unwrap());
        assert_eq!(facts.user_id.as_deref(), Some(r"DESKTOP-1\Zoë & Co"));
        assert_eq!(facts.multiple_instances_policy.as_deref(), Some("IgnoreNew"));
        assert_eq!(facts.execution_time_limit.as_deref(), Some("PT0S"));
        assert_eq!(facts.hidden.as_deref(), Some("true"));
        let text = render_task_text(&spec).unwrap();
        assert!(
            text.contains("&amp; Co</UserId>") && text.contains("<LogonType>InteractiveToken</LogonType>")
        );
        assert_eq!(
            text.matches('\n').count(),
            text.matches("\r\n").count(),
            "CRLF line endings"
        );
        assert!(text.contains("<DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>"));
        assert!(text.contains("<RunLevel>LeastPrivilege</RunLevel>"));
    }

    #[test]
    fn invalid_inputs_are_typed_errors() {
        let mut spec = windows_spec(r"C:\h", r"C:\H\heraldw.exe");
        spec.run_as = None;
        assert_eq!(
            render_task(&spec).unwrap_err(),
            InstallError::MissingRunAs { backend: B }
        );
        let spec = windows_spec(r"C:\h", "heraldw.exe");
        assert!(matches!(
            render_task(&spec).unwrap_err(),
            InstallError::NotAbsolute { .. }
        ));
        let spec = windows_spec("C:\\h\"x", r"C:\H\heraldw.exe");
        assert!(matches!(
            render_task(&spec).unwrap_err(),
            InstallError::Unrepresentable { ch: '"', .. }
        ));
        let mut spec = windows_spec(r"C:\h", r"C:\H\heraldw.exe");
        spec.scope = Scope::System;
        assert!(matches!(
            render_task(&spec).unwrap_err(),
            InstallError::NoSystemScope { .. }
        ));
    }

    #[test]
    fn xml_entities_round_trip() {
        let s = "a&b<c>d\"e'f é";
        assert_eq!(unescape_xml(&escape_xml(s)).unwrap(), s);
        assert_eq!(unescape_xml("&#65;&#x42;").unwrap(), "AB");
        assert!(unescape_xml("&bogus;").is_err());
        assert!(parse_task(&[0xFF, 0xFE, 0x00]).is_err());
    }
}
