//! `herald secret set | list | rm`: the home's secrets store (see `herald_home::secrets`).
//!
//! **Invariant:** a value enters only through standard input — read without echo from a terminal, read
//! whole from a pipe — and is never printed, logged or put in an error: not in argv (shell history,
//! process lists), not in the output of `list`.

use std::io::{IsTerminal, Read};

use herald_home::ExitCode;
use herald_home::secrets::{MAX_VALUE_BYTES, SecretName, SecretStore, SecretValue, SecretsError};
use herald_lifecycle::Target;

use crate::cli::SecretCommand;

pub fn secret(target: &Target, command: &SecretCommand) -> ExitCode {
    match run(target, command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald: {e}");
            match e {
                SecretsError::InvalidName(_) | SecretsError::InvalidValue(_) => ExitCode::Usage,
                SecretsError::Unsafe(_) | SecretsError::Invalid { .. } => ExitCode::Config,
                SecretsError::Home(ref e) if e.is_unsafe() => ExitCode::Config,
                _ => ExitCode::Failure,
            }
        }
    }
}

fn run(target: &Target, command: &SecretCommand) -> Result<ExitCode, SecretsError> {
    let home = target.home();
    let store = SecretStore::of(home);
    match command {
        SecretCommand::Set { name } => {
            let name = SecretName::new(name)?;
            let value = read_value(&name)?;
            home.ensure()?;
            let replaced = store.set(&name, value)?;
            let verb = if replaced { "replaced" } else { "stored" };
            println!("{verb} {name} in {}", store.path().display());
            if std::env::var_os(name.as_str()).is_some() {
                eprintln!(
                    "note: {name} is also set in this environment, which wins over the store for a gateway \
                     started from here"
                );
            }
            if !named_by_config(target, &name) {
                eprintln!("note: herald.toml names no variable {name} (api_key_env, token_env)");
            }
            eprintln!(
                "note: a running gateway reads secrets when it starts or reloads: `herald reload` applies it"
            );
            Ok(ExitCode::Ok)
        }
        SecretCommand::List => {
            let secrets = store.load()?;
            let named = target.config().map(|c| c.named_variables()).unwrap_or_default();
            let mut printed = false;
            for name in secrets.names() {
                let users: Vec<&str> = named
                    .iter()
                    .filter(|n| n.variable == name)
                    .map(|n| n.key)
                    .collect();
                let note = if users.is_empty() {
                    "not named by herald.toml".to_owned()
                } else {
                    format!("named by {}", users.join(", "))
                };
                println!("{name:<28} {note}");
                printed = true;
            }
            for missing in named.iter().filter(|n| secrets.get(&n.variable).is_none()) {
                let source = if std::env::var(&missing.variable).is_ok_and(|v| !v.trim().is_empty()) {
                    "not stored; set in this environment only"
                } else {
                    "not stored and not set: the gateway will not start"
                };
                println!("{:<28} named by {}: {source}", missing.variable, missing.key);
                printed = true;
            }
            if !printed {
                eprintln!(
                    "no secrets stored in {}, and herald.toml names none",
                    store.path().display()
                );
            }
            Ok(ExitCode::Ok)
        }
        SecretCommand::Rm { name } => {
            let name = SecretName::new(name)?;
            if store.remove(&name)? {
                println!("removed {name} from {}", store.path().display());
                Ok(ExitCode::Ok)
            } else {
                eprintln!("herald: {name} is not in the secrets store");
                Ok(ExitCode::Failure)
            }
        }
    }
}

fn named_by_config(target: &Target, name: &SecretName) -> bool {
    target.config().is_ok_and(|config| {
        config
            .named_variables()
            .iter()
            .any(|n| n.variable == name.as_str())
    })
}

/// The value from standard input: a hidden prompt on a terminal, else everything piped in.
fn read_value(name: &SecretName) -> Result<SecretValue, SecretsError> {
    let stdin = std::io::stdin();
    let text = if stdin.is_terminal() {
        rpassword::prompt_password(format!("value of {name} (not shown): ")).map_err(|source| {
            SecretsError::Read {
                path: "standard input".into(),
                source,
            }
        })?
    } else {
        let mut bytes = Vec::new();
        stdin
            .lock()
            .take(MAX_VALUE_BYTES as u64 + 1024)
            .read_to_end(&mut bytes)
            .map_err(|source| SecretsError::Read {
                path: "standard input".into(),
                source,
            })?;
        String::from_utf8(bytes).map_err(|_| SecretsError::InvalidValue("it is not valid UTF-8"))?
    };
    SecretValue::new(&text)
}
