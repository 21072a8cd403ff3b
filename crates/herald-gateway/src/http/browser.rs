//! The local API against the user's own browser: no web page may drive the agent or read the
//! conversations, whatever it does.
//!
//! A page the user visits can send requests to `127.0.0.1` (a "simple" cross-site POST with a
//! `text/plain` body needs no CORS preflight), and a page on a name it controls can rebind that name to
//! `127.0.0.1` and then read the answers as same-origin (DNS rebinding). Neither needs the token when
//! there is none, and loopback listeners have none by default. So every `/v1` request must pass, before
//! anything else runs:
//!
//! - **Host**: an IP literal, `localhost` (or a `*.localhost` name, which resolves to loopback only), or a
//!   name in `[http] allowed_hosts`. Rebinding needs a DNS name of the attacker's, so it ends here; a
//!   request without `Host` is not from a browser and passes.
//! - **Origin**: absent (not a browser, or a same-origin GET), the origin of the `Host` itself, or one in
//!   `[http] allowed_origins`. `Origin: null` (sandboxed frames, `file:` pages) is refused unless listed.
//! - **Sec-Fetch-Site: cross-site** is refused unless the `Origin` is explicitly allowed.
//! - **Writes** (`POST`) must say `Content-Type: application/json`: the types a page may send without a
//!   preflight (`text/plain`, forms) are refused with 415.
//!
//! **Invariant:** the decision is a pure function of the request's headers and the policy ([`judge`]), so
//! every combination is unit-tested; the middleware only reads headers and answers.

use axum::http::{HeaderMap, Method, StatusCode, header};

/// Which hosts and origins a browser may use besides the gateway's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowserPolicy {
    /// Host names (no port) a request may name in `Host`, besides IP literals and `localhost`.
    pub allowed_hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) a page may call from.
    pub allowed_origins: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn forbidden(code: &'static str, message: String) -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            code,
            message,
        }
    }
}

/// Decides whether a `/v1` request may proceed.
pub fn judge(policy: &BrowserPolicy, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().map(str::trim));
    let host = match text(header::HOST) {
        None => None,
        Some(Ok(host)) => Some(host),
        Some(Err(_)) => {
            return Err(Refusal::forbidden(
                "forbidden_host",
                "the Host header is not text".into(),
            ));
        }
    };
    if let Some(host) = host
        && !host_allowed(policy, host)
    {
        return Err(Refusal::forbidden(
            "forbidden_host",
            format!(
                "Host `{host}` is not this gateway's: use 127.0.0.1 or localhost, or add the name to [http] \
                 allowed_hosts"
            ),
        ));
    }
    let origin = match text(header::ORIGIN) {
        None => None,
        Some(Ok(origin)) => Some(origin),
        Some(Err(_)) => {
            return Err(Refusal::forbidden(
                "cross_origin",
                "the Origin header is not text".into(),
            ));
        }
    };
    let listed = origin.is_some_and(|o| policy.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(o)));
    if let Some(origin) = origin
        && !listed
        && !host.is_some_and(|host| same_origin(origin, host))
    {
        return Err(Refusal::forbidden(
            "cross_origin",
            format!(
                "requests from the page `{origin}` are refused; list it in [http] allowed_origins to allow it"
            ),
        ));
    }
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    if cross_site && !listed {
        return Err(Refusal::forbidden(
            "cross_origin",
            "cross-site requests are refused; list the page's origin in [http] allowed_origins to allow it"
                .into(),
        ));
    }
    if method == Method::POST && !is_json(headers.get(header::CONTENT_TYPE)) {
        return Err(Refusal {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: "a write must be sent as `Content-Type: application/json`".into(),
        });
    }
    Ok(())
}

/// `host[:port]` → host, with IPv6 brackets kept (`[::1]:7878` → `[::1]`).
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |end| &authority[..=end]);
    }
    match authority.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => authority,
    }
}

fn host_allowed(policy: &BrowserPolicy, authority: &str) -> bool {
    let name = host_name(authority);
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    let lower = lower.trim_end_matches('.');
    lower == "localhost"
        || lower.ends_with(".localhost")
        || policy.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(lower))
}

/// Whether `origin` (`scheme://authority`) names the same authority as the request's `Host`. The scheme
/// is `http` (this listener speaks nothing else).
fn same_origin(origin: &str, host: &str) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

fn is_json(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn code(policy: &BrowserPolicy, method: Method, pairs: &[(&str, &str)]) -> Option<&'static str> {
        judge(policy, &method, &headers(pairs)).err().map(|r| r.code)
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn local_clients_pass() {
        let p = BrowserPolicy::default();
        for host in [
            "127.0.0.1:7878",
            "localhost:7878",
            "[::1]:7878",
            "LOCALHOST",
            "app.localhost:1",
            "10.1.2.3:7878",
        ] {
            assert_eq!(code(&p, Method::GET, &[("host", host)]), None, "{host}");
            assert_eq!(code(&p, Method::POST, &[("host", host), JSON]), None, "{host}");
        }
        // No Host at all: not a browser.
        assert_eq!(code(&p, Method::POST, &[JSON]), None);
        // A same-origin page (the gateway serving its own UI, say) and charset parameters.
        assert_eq!(
            code(
                &p,
                Method::POST,
                &[
                    ("host", "127.0.0.1:7878"),
                    ("origin", "http://127.0.0.1:7878"),
                    ("sec-fetch-site", "same-origin"),
                    ("content-type", "Application/JSON; charset=utf-8"),
                ]
            ),
            None
        );
    }

    #[test]
    fn a_rebinding_page_cannot_read_the_api() {
        let p = BrowserPolicy::default();
        assert_eq!(
            code(&p, Method::GET, &[("host", "rebind.evil.example:7878")]),
            Some("forbidden_host")
        );
        assert_eq!(
            code(&p, Method::GET, &[("host", "localhost.evil.example")]),
            Some("forbidden_host")
        );
        let listed = BrowserPolicy {
            allowed_hosts: vec!["herald.lan".into()],
            ..BrowserPolicy::default()
        };
        assert_eq!(code(&listed, Method::GET, &[("host", "Herald.LAN:7878")]), None);
    }

    #[test]
    fn a_cross_site_page_cannot_drive_the_agent() {
        let p = BrowserPolicy::default();
        // The reviewer's request: evil Host, evil Origin, text/plain, cross-site.
        let attack = [
            ("host", "evil.example:7878"),
            ("origin", "https://evil.example"),
            ("content-type", "text/plain;charset=UTF-8"),
            ("sec-fetch-site", "cross-site"),
        ];
        assert!(code(&p, Method::POST, &attack).is_some());
        // Even with the right Host (a page posting straight to 127.0.0.1).
        let direct = [
            ("host", "127.0.0.1:7878"),
            ("origin", "https://evil.example"),
            JSON,
        ];
        assert_eq!(code(&p, Method::POST, &direct), Some("cross_origin"));
        // Another local port is another origin.
        let dev = [
            ("host", "localhost:7878"),
            ("origin", "http://localhost:3000"),
            JSON,
        ];
        assert_eq!(code(&p, Method::POST, &dev), Some("cross_origin"));
        assert_eq!(
            code(&p, Method::GET, &[("host", "localhost:7878"), ("origin", "null")]),
            Some("cross_origin")
        );
        // Sec-Fetch-Site alone (an Origin-less cross-site navigation or GET).
        assert_eq!(
            code(
                &p,
                Method::GET,
                &[("host", "127.0.0.1:7878"), ("sec-fetch-site", "cross-site")]
            ),
            Some("cross_origin")
        );
        // A form or text/plain post, even from the right origin, is not JSON.
        let plain = [("host", "127.0.0.1:7878"), ("content-type", "text/plain")];
        assert_eq!(code(&p, Method::POST, &plain), Some("unsupported_media_type"));
        assert_eq!(
            code(&p, Method::POST, &[("host", "127.0.0.1:7878")]),
            Some("unsupported_media_type")
        );
    }

    #[test]
    fn an_allowed_origin_may_call_cross_site() {
        let p = BrowserPolicy {
            allowed_origins: vec!["https://app.example".into()],
            ..BrowserPolicy::default()
        };
        let call = [
            ("host", "127.0.0.1:7878"),
            ("origin", "https://app.example"),
            ("sec-fetch-site", "cross-site"),
            JSON,
        ];
        assert_eq!(code(&p, Method::POST, &call), None);
        // Still not a text/plain write.
        let plain = [
            ("host", "127.0.0.1:7878"),
            ("origin", "https://app.example"),
            ("content-type", "text/plain"),
        ];
        assert_eq!(code(&p, Method::POST, &plain), Some("unsupported_media_type"));
    }

    #[test]
    fn host_names_and_ports() {
        assert_eq!(host_name("a:80"), "a");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("a"), "a");
    }
}
