//! The agent probe of the `openai` backend: `GET <base>/models` with the key, within [`PROBE_TIMEOUT`].
//!
//! Listing models is the cheapest authenticated request the OpenAI API and the compatible servers
//! (llama.cpp, Ollama, vLLM, LM Studio) share: it costs no tokens and proves the three things a turn
//! needs — the server is reachable, `base_url` points at the API, and the key is accepted.
//!
//! **Invariant:** the key never appears in what the probe says: errors name the URL and the variable the
//! key came from, and the server's own text is not quoted (a server may echo the header back).

use std::time::Duration;

use herald_gateway::agent::AgentError;
use reqwest::header::{self, HeaderValue};
use reqwest::{StatusCode, Url};

/// The whole probe's time budget.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `<base>/models` for the chat endpoint `<base>/chat/completions`.
pub(crate) fn models_url(endpoint: &Url) -> Url {
    let mut url = endpoint.clone();
    let path = endpoint.path();
    let base = path.strip_suffix("chat/completions").unwrap_or(path);
    url.set_path(&format!("{}/models", base.trim_end_matches('/')));
    url.set_query(None);
    url
}

/// Lists the models (see the module docs); `Ok` says what answered.
pub(crate) async fn list_models(
    client: &reqwest::Client,
    endpoint: &Url,
    authorization: Option<&HeaderValue>,
    key_env: &str,
) -> Result<String, AgentError> {
    let url = models_url(endpoint);
    let mut request = client.get(url.clone()).timeout(PROBE_TIMEOUT);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value.clone());
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => {
            return Err(AgentError::Unavailable(format!(
                "GET {url} did not answer within {} s",
                PROBE_TIMEOUT.as_secs()
            )));
        }
        Err(e) => {
            let why = if e.is_connect() {
                "cannot connect".to_owned()
            } else {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(inner) = source {
                    text = inner.to_string();
                    source = inner.source();
                }
                text
            };
            return Err(AgentError::Unavailable(format!("GET {url}: {why}")));
        }
    };
    judge(response.status(), &url, authorization.is_some(), key_env)
}

/// The pure verdict on the probe's answer.
pub(crate) fn judge(
    status: StatusCode,
    url: &Url,
    sent_key: bool,
    key_env: &str,
) -> Result<String, AgentError> {
    let code = status.as_u16();
    if status.is_success() {
        return Ok(if sent_key {
            format!("GET {url} answered {code}: reachable, and the key in {key_env} is accepted")
        } else {
            format!("GET {url} answered {code}: reachable (no key sent)")
        });
    }
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if sent_key => AgentError::Misconfigured(format!(
            "GET {url} refused the API key (HTTP {code}): the value of {key_env} is wrong or revoked; \
             replace it with `herald secret set {key_env}`"
        )),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => AgentError::Misconfigured(format!(
            "GET {url} wants an API key (HTTP {code}), and none is sent: set [agent.openai] api_key_env \
             and `herald secret set` it"
        )),
        StatusCode::NOT_FOUND => AgentError::Misconfigured(format!(
            "GET {url} answered 404: base_url does not point at an OpenAI-compatible API (it usually ends \
             in /v1)"
        )),
        _ if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
            AgentError::Unavailable(format!("GET {url} answered HTTP {code}"))
        }
        _ => AgentError::Failed(format!("GET {url} answered HTTP {code}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_models_url_sits_beside_chat_completions() {
        let url = |s: &str| models_url(&Url::parse(s).unwrap()).to_string();
        assert_eq!(
            url("https://api.openai.com/v1/chat/completions"),
            "https://api.openai.com/v1/models"
        );
        assert_eq!(
            url("http://127.0.0.1:8080/chat/completions"),
            "http://127.0.0.1:8080/models"
        );
        assert_eq!(
            url("http://h/openai/deployments/x/chat/completions?api-version=1"),
            "http://h/openai/deployments/x/models"
        );
    }

    #[test]
    fn the_verdict_names_the_url_and_the_variable_never_a_key() {
        let url = Url::parse("http://127.0.0.1:9/v1/models").unwrap();
        assert!(
            judge(StatusCode::OK, &url, true, "K")
                .unwrap()
                .contains("accepted")
        );
        let refused = judge(StatusCode::UNAUTHORIZED, &url, true, "K").unwrap_err();
        assert!(matches!(refused, AgentError::Misconfigured(_)));
        let text = refused.to_string();
        assert!(
            text.contains("http://127.0.0.1:9/v1/models") && text.contains("herald secret set K"),
            "{text}"
        );
        let missing = judge(StatusCode::NOT_FOUND, &url, true, "K").unwrap_err();
        assert!(missing.to_string().contains("/v1"), "{missing}");
        assert!(matches!(
            judge(StatusCode::SERVICE_UNAVAILABLE, &url, true, "K"),
            Err(AgentError::Unavailable(_))
        ));
    }
}
