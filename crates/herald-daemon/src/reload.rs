//! A reload (SIGHUP, `herald reload`): read `herald.toml` and the secrets again and apply what can
//! change while turns run; name exactly what cannot.
//!
//! What applies live: the whole `[agent]` section but `max_concurrent_turns` — the agent is rebuilt
//! and replaces the running one for the turns that start from then on (a turn in progress finishes
//! with the agent it started with: nothing is dropped) — the agent's key when its secret changed, and
//! what each push adapter applies itself (Telegram: `allowed_users`, `allow_all`). Everything else — the
//! listen address, the HTTP token, the Telegram token, limits, the supervisor, the drain budget — is
//! held by sockets, tasks and budgets set up at start, and is reported as needing a restart.
//!
//! **Invariant:** a reload that cannot be carried out whole (a config that does not parse, a store
//! that cannot be read, an agent that cannot be built) changes nothing: the gateway keeps serving with
//! what it had, and the error says why. The classification is pure ([`classify`]).

use std::collections::BTreeSet;

use herald_home::config::{Config, changed_keys};
use herald_home::secrets::Variables;
use herald_process::control::ReloadSummary;

/// `[agent]` keys that a reload cannot apply (the turn line's slots are sized at start).
const AGENT_KEYS_NEEDING_RESTART: [&str; 1] = ["agent.max_concurrent_turns"];

/// Whether a changed key applies live (given what the adapters applied; `telegram.chats.*` stands for
/// every key under `telegram.chats.`).
fn applies_live(key: &str, adapter_live: &BTreeSet<&str>) -> bool {
    (key.starts_with("agent.") && !AGENT_KEYS_NEEDING_RESTART.contains(&key))
        || adapter_live.contains(key)
        || adapter_live.iter().any(|live| {
            live.strip_suffix('*')
                .is_some_and(|prefix| key.starts_with(prefix))
        })
}

/// A secret whose value changed: its variable and the key that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangedSecret {
    pub key: &'static str,
    pub variable: String,
}

impl ChangedSecret {
    fn describe(&self) -> String {
        format!("secret {} ({})", self.variable, self.key)
    }
}

/// The secrets `config` names whose values differ between `old` and `new` (names only, never values).
pub(crate) fn changed_secrets(config: &Config, old: &Variables, new: &Variables) -> Vec<ChangedSecret> {
    config
        .named_variables()
        .into_iter()
        .filter(|named| old.value(&named.variable) != new.value(&named.variable))
        .map(|named| ChangedSecret {
            key: named.key,
            variable: named.variable,
        })
        .collect()
}

/// What this reload applies and what still needs a restart. `since_last` are the keys changed since the
/// last reload (or the start), `since_start` those changed since the gateway started (a key that needs a
/// restart keeps being reported until one happens), `secrets` the secrets whose values changed.
pub(crate) fn classify(
    since_last: &[String],
    since_start: &[String],
    secrets: &[ChangedSecret],
    adapter_live: &BTreeSet<&str>,
) -> ReloadSummary {
    let mut summary = ReloadSummary::default();
    for key in since_last.iter().filter(|k| applies_live(k, adapter_live)) {
        summary.applied.push(key.clone());
    }
    for key in since_start.iter().filter(|k| !applies_live(k, adapter_live)) {
        summary.restart_needed.push(key.clone());
    }
    for secret in secrets {
        if secret.key.starts_with("agent.") {
            summary.applied.push(secret.describe());
        } else {
            summary.restart_needed.push(secret.describe());
        }
    }
    summary
}

/// Whether the agent must be rebuilt: an `[agent]` key or the agent's secret changed.
pub(crate) fn agent_changed(since_last: &[String], secrets: &[ChangedSecret]) -> bool {
    since_last.iter().any(|k| k.starts_with("agent.")) || secrets.iter().any(|s| s.key.starts_with("agent."))
}

/// The keys changed between two configs (re-exported for the host).
pub(crate) fn diff(old: &Config, new: &Config) -> Vec<String> {
    changed_keys(old, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn agent_settings_and_adapter_keys_apply_the_rest_waits_for_a_restart() {
        let live: BTreeSet<&str> =
            ["telegram.allowed_users", "telegram.allow_all", "telegram.chats.*"].into();
        let changed = keys(&[
            "agent.backend",
            "agent.max_concurrent_turns",
            "agent.openai.model",
            "http.listen",
            "telegram.allowed_users",
            "telegram.chats.-100.respond",
        ]);
        let summary = classify(&changed, &changed, &[], &live);
        assert_eq!(
            summary.applied,
            [
                "agent.backend",
                "agent.openai.model",
                "telegram.allowed_users",
                "telegram.chats.-100.respond"
            ]
        );
        assert_eq!(
            summary.restart_needed,
            ["agent.max_concurrent_turns", "http.listen"]
        );
    }

    #[test]
    fn a_pending_restart_is_restated_and_secrets_are_named_not_shown() {
        let live = BTreeSet::new();
        let secrets = [
            ChangedSecret {
                key: "agent.openai.api_key_env",
                variable: "OPENAI_API_KEY".into(),
            },
            ChangedSecret {
                key: "telegram.token_env",
                variable: "TG".into(),
            },
        ];
        let summary = classify(&[], &keys(&["http.listen"]), &secrets, &live);
        assert_eq!(
            summary.applied,
            ["secret OPENAI_API_KEY (agent.openai.api_key_env)"]
        );
        assert_eq!(
            summary.restart_needed,
            ["http.listen", "secret TG (telegram.token_env)"]
        );
        assert!(agent_changed(&[], &secrets[..1]));
        assert!(!agent_changed(&keys(&["http.listen"]), &secrets[1..]));
    }
}
