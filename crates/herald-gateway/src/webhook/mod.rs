//! Webhooks: integrations (n8n, Home Assistant, CI, a shop backend) that post messages to
//! `POST /v1/webhooks/{name}` and get the replies back — in the response (`?wait=true`) or POSTed to
//! their `callback_url` — every request both ways signed the Standard Webhooks way ([`signature`]).
//!
//! **Invariant:** a webhook message is a turn like any other: stored before it is acknowledged, keyed by
//! its `webhook-id` (a retried delivery of the same message makes no second turn), answered once. Its
//! session is `<integration>:<session>` under the adapter [`ADAPTER`], so integrations never share a
//! conversation, and a callback is sent for the sessions of integrations that have a `callback_url`
//! only. The request's signature is its authentication: the local API's bearer token is not asked of it.
//!
//! This module is the part every side shares (the HTTP adapter's inbound route, the outbound sender in
//! `herald-webhook`); it holds no I/O.

pub mod signature;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::journal::SessionKey;
pub use signature::{Secret, SecretError, VerifyError};

/// The adapter name of webhook sessions.
pub const ADAPTER: &str = "webhook";

/// One configured integration (`[[webhook]]`), its secret resolved.
#[derive(Debug, Clone)]
pub struct Integration {
    pub name: String,
    pub secret: Secret,
    /// Where replies are POSTed; `None`: only `?wait=true`.
    pub callback_url: Option<String>,
    /// JSON pointers to the session and the text in a posted body.
    pub session_field: String,
    pub text_field: String,
    /// How long a callback is retried before its reply is set aside.
    pub retry_for: Duration,
}

impl Integration {
    /// The session a message of this integration belongs to.
    pub fn session(&self, session: &str) -> SessionKey {
        SessionKey::new(ADAPTER, format!("{}:{session}", self.name))
    }

    /// The session and the text of a posted body, or what is wrong with it.
    pub fn read_body(&self, body: &Value) -> Result<(String, String), String> {
        let field = |pointer: &str, what: &str| match body.pointer(pointer) {
            Some(Value::String(text)) => Ok(text.clone()),
            Some(Value::Number(n)) if what == "session" => Ok(n.to_string()),
            Some(_) => Err(format!("`{pointer}` ({what}) must be a string")),
            None => Err(format!("the body has no `{pointer}` ({what})")),
        };
        Ok((
            field(&self.session_field, "session")?,
            field(&self.text_field, "text")?,
        ))
    }
}

/// Every configured integration, by name.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    by_name: HashMap<String, Integration>,
}

impl Webhooks {
    pub fn new(integrations: Vec<Integration>) -> Webhooks {
        Webhooks {
            by_name: integrations.into_iter().map(|i| (i.name.clone(), i)).collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Integration> {
        self.by_name.get(name)
    }

    /// The integration a webhook session (`<name>:<session>`) belongs to, and the session within it.
    pub fn of_session<'a>(&self, chat_id: &'a str) -> Option<(&Integration, &'a str)> {
        let (name, session) = chat_id.split_once(':')?;
        Some((self.by_name.get(name)?, session))
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether any integration takes replies by callback (then the outbound sender runs).
    pub fn has_callbacks(&self) -> bool {
        self.by_name.values().any(|i| i.callback_url.is_some())
    }
}

/// Why the configured integrations cannot be used (a start-up error: the config is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSetupError {
    #[error(
        "[[webhook]] {name:?}: the variable {var} (secret_env) is neither set in the gateway's environment \
         nor in the secrets store; run `herald secret set {var}` with the integration's whsec_ secret"
    )]
    MissingSecret { name: String, var: String },
    #[error("[[webhook]] {name:?}: the secret in {var} is not usable: {problem}")]
    BadSecret {
        name: String,
        var: String,
        problem: SecretError,
    },
}

/// The integrations `[[webhook]]` configures, each secret looked up in `variables` (the environment,
/// then the secrets store).
pub fn resolve(
    config: &[herald_home::config::WebhookConfig],
    variables: &herald_home::secrets::Variables,
) -> Result<Webhooks, WebhookSetupError> {
    let mut integrations = Vec::with_capacity(config.len());
    for hook in config {
        let Some(value) = variables.value(&hook.secret_env) else {
            return Err(WebhookSetupError::MissingSecret {
                name: hook.name.clone(),
                var: hook.secret_env.clone(),
            });
        };
        let secret = Secret::parse(&value).map_err(|problem| WebhookSetupError::BadSecret {
            name: hook.name.clone(),
            var: hook.secret_env.clone(),
            problem,
        })?;
        integrations.push(Integration {
            name: hook.name.clone(),
            secret,
            callback_url: hook.callback_url.clone(),
            session_field: hook.session_field.clone(),
            text_field: hook.text_field.clone(),
            retry_for: Duration::from_secs(hook.retry_for_secs),
        });
    }
    Ok(Webhooks::new(integrations))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integration(session_field: &str, text_field: &str) -> Integration {
        Integration {
            name: "n8n".into(),
            secret: Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            callback_url: None,
            session_field: session_field.into(),
            text_field: text_field.into(),
            retry_for: Duration::from_secs(60),
        }
    }

    #[test]
    fn bodies_are_read_through_the_configured_pointers() {
        let plain = integration("/session", "/text");
        let body = serde_json::json!({"session": "s1", "text": "hi"});
        assert_eq!(plain.read_body(&body), Ok(("s1".into(), "hi".into())));
        let nested = integration("/chat/id", "/message/body");
        let body = serde_json::json!({"chat": {"id": 42}, "message": {"body": "hello"}});
        assert_eq!(nested.read_body(&body), Ok(("42".into(), "hello".into())));
        assert!(
            nested
                .read_body(&serde_json::json!({"chat": {"id": 1}}))
                .unwrap_err()
                .contains("/message/body")
        );
        let wrong = serde_json::json!({"session": "s", "text": 5});
        assert!(plain.read_body(&wrong).unwrap_err().contains("must be a string"));
    }

    #[test]
    fn sessions_are_named_by_integration() {
        let webhooks = Webhooks::new(vec![integration("/session", "/text")]);
        let key = webhooks.get("n8n").unwrap().session("s1");
        assert_eq!(
            (key.adapter.as_str(), key.chat_id.as_str()),
            ("webhook", "n8n:s1")
        );
        let (found, session) = webhooks.of_session("n8n:s1:x").unwrap();
        assert_eq!((found.name.as_str(), session), ("n8n", "s1:x"));
        assert!(webhooks.of_session("other:s1").is_none());
        assert!(!webhooks.has_callbacks());
    }
}
