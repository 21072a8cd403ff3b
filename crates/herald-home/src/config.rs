//! `herald.toml`: optional, strict, and explained when wrong.
//!
//! **Invariant:** a config that parses is a config that works. Unknown keys and out-of-range values are
//! errors (a typo must not silently fall back to a default), and every error names the key, the line and
//! the column. A missing file means the embedded defaults, so `herald run` works on a fresh machine.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// The whole configuration. Every section and key has a default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub supervisor: SupervisorConfig,
    pub http: HttpConfig,
    pub agent: AgentConfig,
    pub telegram: TelegramConfig,
    pub matrix: MatrixConfig,
    pub journal: JournalConfig,
    /// `[[webhook]]`: one table per integration (see [`WebhookConfig`]).
    #[serde(rename = "webhook", skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
}

/// `[[webhook]]`: an integration that posts messages to `/v1/webhooks/{name}`, signed the Standard
/// Webhooks way, and (with `callback_url`) receives the replies the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The integration's name: its URL path and the prefix of its sessions (`[a-z0-9_-]`, 1 to 64).
    #[serde(deserialize_with = "webhook_name")]
    pub name: String,
    /// The variable (environment, then secrets store) holding the `whsec_…` secret both ways are signed
    /// with. The secret itself never goes in this file.
    #[serde(deserialize_with = "variable_name")]
    pub secret_env: String,
    /// Where replies are POSTed; without it only `?wait=true` (the reply in the response) is offered.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "callback_url"
    )]
    pub callback_url: Option<String>,
    /// Where in the posted JSON the session is (a JSON pointer).
    #[serde(default = "default_session_field", deserialize_with = "json_pointer")]
    pub session_field: String,
    /// Where in the posted JSON the message text is (a JSON pointer).
    #[serde(default = "default_text_field", deserialize_with = "json_pointer")]
    pub text_field: String,
    /// How long a callback is retried before the reply is set aside as failed (`herald deliveries`).
    #[serde(default = "default_retry_for", deserialize_with = "retry_for")]
    pub retry_for_secs: u64,
}

fn default_session_field() -> String {
    "/session".into()
}

fn default_text_field() -> String {
    "/text".into()
}

fn default_retry_for() -> u64 {
    86_400
}

fn webhook_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(name)
    } else {
        Err(serde::de::Error::custom(format!(
            "{name:?} is not a webhook name: 1 to 64 of a-z, 0-9, `-` and `_`"
        )))
    }
}

fn variable_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    if name.trim().is_empty() || name.contains('=') || name.contains('\0') {
        return Err(serde::de::Error::custom(
            "must name an environment variable (or secrets-store entry) holding the secret",
        ));
    }
    Ok(name)
}

fn callback_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let url = String::deserialize(d)?;
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(Some(url))
    } else {
        Err(serde::de::Error::custom("must start with http:// or https://"))
    }
}

fn json_pointer<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let pointer = String::deserialize(d)?;
    if pointer.starts_with('/') {
        Ok(pointer)
    } else {
        Err(serde::de::Error::custom(
            "must be a JSON pointer such as \"/text\" or \"/message/body\"",
        ))
    }
}

fn retry_for<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(u64::deserialize(d)?, 10, 30 * 86_400)
}

/// `[journal]`: where conversations are kept. Unset `url`: `state.db` in the home (SQLite, embedded);
/// a `postgres://` URL: a PostgreSQL database, which several gateways may share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// `postgres://USER@HOST:PORT/DATABASE[?sslmode=disable|prefer|require]`, without a password.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "journal_url")]
    pub url: Option<String>,
    /// The variable (environment, then secrets store) holding the database password. Unset: no password
    /// (trust, peer or certificate authentication).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// A PEM file of extra certificate authorities to trust for the database's TLS certificate (a
    /// private CA); the public web roots are always trusted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How long a replica's lease on its turns lasts without a renewal (renewed every third of it):
    /// the longest the turns of a replica that died wait for another to take them over.
    #[serde(
        default = "default_lease_ttl_secs",
        deserialize_with = "lease_ttl_secs",
        skip_serializing_if = "is_default_lease_ttl"
    )]
    pub lease_ttl_secs: u64,
}

impl Default for JournalConfig {
    fn default() -> JournalConfig {
        JournalConfig {
            url: None,
            password_env: None,
            ca_file: None,
            lease_ttl_secs: DEFAULT_LEASE_TTL_SECS,
        }
    }
}

/// `[journal] lease_ttl_secs` unless set.
pub const DEFAULT_LEASE_TTL_SECS: u64 = 10;

fn default_lease_ttl_secs() -> u64 {
    DEFAULT_LEASE_TTL_SECS
}

fn is_default_lease_ttl(secs: &u64) -> bool {
    *secs == DEFAULT_LEASE_TTL_SECS
}

fn lease_ttl_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(u64::deserialize(d)?, 3, 300)
}

impl JournalConfig {
    /// Whether the journal is a PostgreSQL database rather than the home's `state.db`.
    pub fn is_postgres(&self) -> bool {
        self.url.is_some()
    }
}

fn journal_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let url = String::deserialize(d)?;
    postgres_url_problem(&url).map_or(Ok(Some(url)), |problem| Err(serde::de::Error::custom(problem)))
}

/// Why `url` cannot name the journal's database, if it cannot: not a `postgres://` URL, or one with a
/// password in it (a password belongs in `password_env`, never in a file).
pub fn postgres_url_problem(url: &str) -> Option<String> {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return Some("must be a postgres:// URL (leave it unset for the home's state.db)".into());
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'))
    {
        return Some(
            "must not hold a password: put it in a variable and name it in `password_env`              (`herald secret set HERALD_JOURNAL_PASSWORD`)"
                .into(),
        );
    }
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    if query.split('&').any(|pair| {
        pair.split('=')
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("password"))
    }) {
        return Some("must not hold a password: name the variable holding it in `password_env`".into());
    }
    if authority.rsplit('@').next().is_none_or(str::is_empty) {
        return Some("must name the database server: postgres://USER@HOST:PORT/DATABASE".into());
    }
    None
}

/// `[matrix]`: the Matrix adapter (a bot account on a homeserver, end-to-end encryption included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatrixConfig {
    pub enabled: bool,
    /// The homeserver's client-server API base (`https://matrix.example.org`).
    pub homeserver: String,
    /// The bot's Matrix id (`@herald:example.org`).
    pub user_id: String,
    /// The variable (environment, then secrets store) holding the bot's password. Herald logs in with
    /// it at each start, on the same device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Or the variable holding an access token (its device is the one the token belongs to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token_env: Option<String>,
    /// Matrix ids allowed to talk to the agent (and whose invites are accepted). Everyone else is
    /// ignored (and their invites declined).
    pub allowed_users: Vec<String>,
    /// Let every Matrix user talk to the agent (explicit opt-in).
    pub allow_all: bool,
    /// Matrix ids with admin access (`/stop` in shared rooms, the whole `/status`). Unset: everyone in
    /// `allowed_users`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_users: Option<Vec<String>>,
    /// In rooms with more than two members, which messages the bot answers.
    pub room_respond: GroupRespond,
    /// In rooms with more than two members, one conversation per room or one per person in it.
    pub room_sessions: GroupSessions,
    /// Replies as `m.notice` (the convention for bots: clients show them dimmed, other bots ignore them)
    /// or as `m.text`.
    pub reply_as: MatrixReplyKind,
    /// The device's display name, seen by the people in its rooms.
    pub device_name: String,
    /// How long one `/sync` long poll may wait on the server.
    #[serde(deserialize_with = "poll_timeout")]
    pub sync_timeout_secs: u64,
}

/// `[matrix] reply_as`: the message type replies are sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatrixReplyKind {
    #[default]
    Notice,
    Text,
}

impl Default for MatrixConfig {
    fn default() -> Self {
        MatrixConfig {
            enabled: false,
            homeserver: String::new(),
            user_id: String::new(),
            password_env: None,
            access_token_env: None,
            allowed_users: Vec::new(),
            allow_all: false,
            admin_users: None,
            room_respond: GroupRespond::Mention,
            room_sessions: GroupSessions::Shared,
            reply_as: MatrixReplyKind::Notice,
            device_name: "Herald".into(),
            sync_timeout_secs: 25,
        }
    }
}

/// Whether `id` has the shape of a Matrix user id: `@localpart:server`.
pub fn is_matrix_user_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix('@') else {
        return false;
    };
    let Some((local, server)) = rest.split_once(':') else {
        return false;
    };
    !local.is_empty()
        && !server.is_empty()
        && id.len() <= 255
        && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `[telegram]`: the Telegram Bot API adapter (long polling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    pub enabled: bool,
    /// Name of an environment variable holding the bot token (keeps the secret out of the file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// The bot token itself; accepted, with a warning when the file is readable by others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The Bot API base URL (tests point it at an emulator).
    pub api_base: String,
    /// Telegram user ids allowed to talk to the agent. Everyone else is denied (and told how to ask).
    pub allowed_users: Vec<i64>,
    /// Let every Telegram user talk to the agent (explicit opt-in).
    pub allow_all: bool,
    /// Telegram user ids with admin access: they may `/stop` answers in shared chats and see the whole
    /// `/status`. Unset: everyone in `allowed_users` is an admin (people let in by pairing or by
    /// `allow_all` are users unless their pairing code said admin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_users: Option<Vec<i64>>,
    /// How long one `getUpdates` long poll may wait on the server.
    #[serde(deserialize_with = "poll_timeout")]
    pub poll_timeout_secs: u64,
    /// The least time between two polls that brought nothing (a server that answers at once must not
    /// make the gateway spin).
    #[serde(deserialize_with = "poll_interval")]
    pub min_poll_interval_ms: u64,
    /// Tell the allowed users, in one line, when the agent or this bot has been failing for
    /// `[gateway] outage_notice_secs` (and when it recovers).
    pub outage_notices: bool,
    /// Most messages sent per second overall (Telegram allows a bot about 30). Each part of a long
    /// reply counts.
    #[serde(deserialize_with = "send_per_second")]
    pub send_per_second: u32,
    /// Most messages per second to one private chat (Telegram: about 1).
    #[serde(deserialize_with = "send_per_chat_per_second")]
    pub send_per_chat_per_second: u32,
    /// Most messages per minute to one group or supergroup (Telegram: 20).
    #[serde(deserialize_with = "send_per_group_per_minute")]
    pub send_per_group_per_minute: u32,
    /// In group chats, which messages the bot answers (each chat may say otherwise in `chats`).
    pub group_respond: GroupRespond,
    /// In group chats, one conversation for the whole group or one per person.
    pub group_sessions: GroupSessions,
    /// Per-chat rules, by chat id (`[telegram.chats."-1001234567890"]`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub chats: std::collections::BTreeMap<ChatId, ChatRule>,
}

/// Which messages of a group chat the bot answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRespond {
    /// Only those that mention it (`@botname`), reply to one of its messages, or are its commands.
    #[default]
    Mention,
    /// Every message (the bot must see them: see Telegram's privacy mode in the README).
    All,
}

/// How a group chat's messages are grouped into conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupSessions {
    /// One conversation for the whole group.
    #[default]
    Shared,
    /// One conversation per person in the group.
    PerUser,
}

/// `[telegram.chats."ID"]`: what one chat does differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub respond: Option<GroupRespond>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<GroupSessions>,
}

/// A Telegram chat id as a TOML key (`"-1001234567890"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChatId(pub i64);

impl Serialize for ChatId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for ChatId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ChatId, D::Error> {
        let text = String::deserialize(d)?;
        text.trim().parse::<i64>().map(ChatId).map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is not a Telegram chat id (an integer, like \"-1001234567890\" for a group)"
            ))
        })
    }
}

impl TelegramConfig {
    /// The rule for chat `chat`: its own, else the `group_*` defaults.
    pub fn group_rule(&self, chat: i64) -> (GroupRespond, GroupSessions) {
        let own = self.chats.get(&ChatId(chat)).copied().unwrap_or_default();
        (
            own.respond.unwrap_or(self.group_respond),
            own.sessions.unwrap_or(self.group_sessions),
        )
    }
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            enabled: false,
            token_env: None,
            token: None,
            api_base: "https://api.telegram.org".into(),
            allowed_users: Vec::new(),
            allow_all: false,
            admin_users: None,
            group_respond: GroupRespond::Mention,
            group_sessions: GroupSessions::Shared,
            chats: std::collections::BTreeMap::new(),
            poll_timeout_secs: 25,
            min_poll_interval_ms: 1000,
            outage_notices: true,
            send_per_second: 30,
            send_per_chat_per_second: 1,
            send_per_group_per_minute: 20,
        }
    }
}

fn send_per_second<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(u32::deserialize(d)?, 1, 1000)
}

fn send_per_chat_per_second<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(u32::deserialize(d)?, 1, 100)
}

fn send_per_group_per_minute<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(u32::deserialize(d)?, 1, 6000)
}

fn poll_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(u64::deserialize(d)?, 0, 50)
}

fn poll_interval<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(u64::deserialize(d)?, 50, 60_000)
}

/// `[http]`: the local HTTP API adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub enabled: bool,
    /// `IP:PORT`; port 0 picks a free port (the bound URL is in the state record).
    #[serde(deserialize_with = "socket_addr")]
    pub listen: String,
    /// Bearer token every `/v1` request must carry. Required when `listen` is not a loopback address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Name of an environment variable holding the token (keeps the secret out of the file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Largest accepted request body.
    #[serde(deserialize_with = "max_body_bytes")]
    pub max_body_bytes: usize,
    /// Most connections open at once; more wait in the kernel's backlog until one closes.
    #[serde(deserialize_with = "max_connections")]
    pub max_connections: usize,
    /// A connection that sends no complete request header within this long (a new one, or an idle
    /// keep-alive one) is closed.
    #[serde(deserialize_with = "timeout_secs")]
    pub idle_timeout_secs: u64,
    /// A request body must arrive within this long.
    #[serde(deserialize_with = "timeout_secs")]
    pub body_timeout_secs: u64,
    /// Host names (no port) a request's `Host` may name besides IP literals and `localhost` (a reverse
    /// proxy's name, a LAN name); anything else is refused as a possible DNS-rebinding page.
    #[serde(deserialize_with = "host_names", skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) of web pages allowed to call the API from a browser; every
    /// other cross-site page is refused.
    #[serde(deserialize_with = "origins", skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: "127.0.0.1:7878".into(),
            token: None,
            token_env: None,
            max_body_bytes: 64 * 1024,
            max_connections: 256,
            idle_timeout_secs: 10,
            body_timeout_secs: 30,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// The parsed listen address (validated when the config was parsed).
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.listen.parse().ok()
    }
}

fn host_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    for name in &names {
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(serde::de::Error::custom(format!(
                "`{name}` is not a host name (letters, digits, '-' and '.'; no scheme, port or path)"
            )));
        }
    }
    Ok(names.into_iter().map(|n| n.to_ascii_lowercase()).collect())
}

fn origins<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let origins = Vec::<String>::deserialize(d)?;
    for origin in &origins {
        let ok = origin.split_once("://").is_some_and(|(scheme, authority)| {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                && !authority.is_empty()
                && !authority.contains(['/', '?', '#', ' ', '@'])
        });
        if !ok {
            return Err(serde::de::Error::custom(format!(
                "`{origin}` is not an origin: write scheme://host[:port], as a browser sends it (e.g. \
                 \"https://app.example\"; no path, no trailing slash; `null` cannot be allowed)"
            )));
        }
    }
    Ok(origins)
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    // `localhost:PORT` is what people write; it means the IPv4 loopback (no name lookup at start-up).
    let text = match text.split_once(':') {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost") => format!("127.0.0.1:{port}"),
        _ => text,
    };
    text.parse::<std::net::SocketAddr>().map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not an IP:PORT address (for example \"127.0.0.1:7878\", \"localhost:7878\" \
             or \"[::1]:0\")"
        ))
    })?;
    Ok(text)
}

fn max_body_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    in_range(usize::deserialize(d)?, 1024, 16 * 1024 * 1024)
}

fn max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    in_range(usize::deserialize(d)?, 1, 65_536)
}

fn timeout_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(u64::deserialize(d)?, 1, 3600)
}

/// Which agent answers turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentBackend {
    /// Replies `echo: <text>`; needs nothing.
    #[default]
    Echo,
    /// Any OpenAI-compatible `/v1/chat/completions` endpoint.
    Openai,
    /// A local program run per turn (JSON on stdin, the reply on stdout).
    Command,
}

/// `[agent]`: the backend and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub backend: AgentBackend,
    /// At most this many turns run their agent at once; the rest wait in line (first in, first out per
    /// session, round-robin across sessions). Unset: sized to the machine ([`AgentConfig::concurrent_turns`]).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "max_concurrent_turns"
    )]
    pub max_concurrent_turns: Option<usize>,
    pub openai: OpenAiConfig,
    pub command: CommandConfig,
}

/// The most `max_concurrent_turns` may be set to.
pub const MAX_CONCURRENT_TURNS: usize = 4096;

impl AgentConfig {
    /// How many turns may run at once: `max_concurrent_turns`, or when unset four per CPU the process
    /// may use, between 8 and 64. Turns mostly wait on their agent (a remote model, a program), so a few
    /// per CPU keep the machine busy; the ceiling keeps a flood from starting hundreds of agent
    /// processes (each with its pipes and a waiter thread).
    pub fn concurrent_turns(&self) -> usize {
        self.max_concurrent_turns.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            cpus.saturating_mul(4).clamp(8, 64)
        })
    }
}

fn max_concurrent_turns<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    in_range(usize::deserialize(d)?, 1, MAX_CONCURRENT_TURNS).map(Some)
}

/// `[agent.openai]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiConfig {
    /// The API base, up to and including `/v1`.
    pub base_url: String,
    pub model: String,
    /// Name of the variable holding the API key (the key itself never goes in this file): from the
    /// environment, else the secrets store. Empty: send no key (a local server that needs none).
    pub api_key_env: String,
    /// Optional system prompt sent before the history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Ask for a streamed answer (server-sent events).
    pub stream: bool,
    /// Whole-turn time budget, retries included.
    #[serde(deserialize_with = "agent_timeout")]
    pub timeout_secs: u64,
    /// Retries after a 429 or 5xx answer or a connection failure.
    #[serde(deserialize_with = "max_retries")]
    pub max_retries: u32,
    /// How many earlier messages of the session are sent with each turn.
    #[serde(deserialize_with = "history_messages")]
    pub history_messages: usize,
    /// Voice notes and audio are transcribed with this model (`POST …/audio/transcriptions` on the same
    /// server) and the agent gets the text; unset: the agent is only told a file came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcribe_model: Option<String>,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            system_prompt: None,
            stream: true,
            timeout_secs: 120,
            max_retries: 3,
            history_messages: 50,
            transcribe_model: None,
        }
    }
}

/// `[agent.command]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandConfig {
    /// Program and arguments, run directly (no shell).
    pub command: Vec<String>,
    /// Per-turn time budget; the whole process tree is killed when it runs out.
    #[serde(deserialize_with = "agent_timeout")]
    pub timeout_secs: u64,
    /// How many earlier messages of the session are passed on stdin.
    #[serde(deserialize_with = "history_messages")]
    pub history_messages: usize,
    /// Show each line the program writes as the answer so far (chats see a draft grow, edited in
    /// place); the reply is still the whole output.
    pub stream: bool,
}

impl Default for CommandConfig {
    fn default() -> Self {
        CommandConfig {
            command: Vec::new(),
            timeout_secs: 120,
            history_messages: 50,
            stream: false,
        }
    }
}

fn agent_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(u64::deserialize(d)?, 1, 86_400)
}

fn max_retries<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(u32::deserialize(d)?, 0, 10)
}

fn history_messages<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    in_range(usize::deserialize(d)?, 0, 10_000)
}

/// `[supervisor]`: the monitor that restarts a failed worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// More unexpected worker exits than this within `crash_loop_window_secs` trips the breaker.
    #[serde(deserialize_with = "crash_loop_max_exits")]
    pub crash_loop_max_exits: u32,
    #[serde(deserialize_with = "crash_loop_window")]
    pub crash_loop_window_secs: u64,
    /// How often the worker's main loop tells the monitor it is alive (one byte on a pipe); 0 turns the
    /// watchdog off.
    #[serde(deserialize_with = "watchdog_interval")]
    pub watchdog_interval_secs: u64,
    /// A worker silent for this many intervals is wedged: recorded, killed and replaced.
    #[serde(deserialize_with = "watchdog_missed_beats")]
    pub watchdog_missed_beats: u32,
}

/// Upper bound for `watchdog_interval_secs`.
pub const MAX_WATCHDOG_INTERVAL_SECS: u64 = 300;

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            crash_loop_max_exits: 5,
            crash_loop_window_secs: 300,
            watchdog_interval_secs: 4,
            watchdog_missed_beats: 2,
        }
    }
}

fn watchdog_interval<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(u64::deserialize(d)?, 0, MAX_WATCHDOG_INTERVAL_SECS)
}

/// At least 2: with 1, a beat that is merely a little late would count as a wedge.
fn watchdog_missed_beats<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(u32::deserialize(d)?, 2, 100)
}

fn crash_loop_max_exits<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(u32::deserialize(d)?, 1, 1000)
}

fn crash_loop_window<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(u64::deserialize(d)?, 1, 86_400)
}

fn in_range<T: PartialOrd + fmt::Display, E: serde::de::Error>(value: T, min: T, max: T) -> Result<T, E> {
    if value < min || value > max {
        return Err(E::custom(format!("must be between {min} and {max}, got {value}")));
    }
    Ok(value)
}

/// `[gateway]`: the process itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// How long a planned stop waits for in-flight turns before cutting them (they resume after restart).
    #[serde(deserialize_with = "drain_timeout")]
    pub drain_timeout_secs: u64,
    /// Put message and reply texts in each turn's log line (a debugging aid; conversations stay out of
    /// logs by default).
    pub log_message_text: bool,
    /// How long a chat adapter or the agent must have been failing before the people it serves are told
    /// (once per outage, through each adapter whose notices are on); 0: never tell them (`status` still
    /// shows it).
    #[serde(deserialize_with = "outage_notice")]
    pub outage_notice_secs: u64,
    /// The largest file a chat may send (a photo, a document, a voice note), in MB; bigger ones are
    /// refused with a reply saying so.
    #[serde(deserialize_with = "media_max_mb")]
    pub media_max_mb: u64,
    /// Files older than this many days are removed from the media store (0: kept forever).
    #[serde(deserialize_with = "media_retention")]
    pub media_retention_days: u64,
}

fn media_max_mb<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(u64::deserialize(d)?, 1, 2000)
}

fn media_retention<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(u64::deserialize(d)?, 0, 36_500)
}

/// Upper bound for `drain_timeout_secs`: service managers must be told a finite stop timeout.
pub const MAX_DRAIN_TIMEOUT_SECS: u64 = 3600;

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            drain_timeout_secs: 30,
            log_message_text: false,
            outage_notice_secs: 300,
            media_max_mb: 20,
            media_retention_days: 30,
        }
    }
}

fn outage_notice<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(u64::deserialize(d)?, 0, 86_400)
}

fn drain_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(u64::deserialize(d)?, 0, MAX_DRAIN_TIMEOUT_SECS)
}

/// The commented file `herald config init` writes. Parsing it yields [`Config::default`] (tested).
pub const TEMPLATE: &str = r#"# herald.toml — configuration for one Herald home.
# Every key is optional; the values shown are the defaults.
# Check a change with `herald config check`; see the effective values with `herald config show`.

[gateway]
# Seconds a planned stop (herald stop, a service manager, Ctrl+C) waits for in-flight turns to finish
# before cutting them. Cut turns are resumed after the next start. 0..=3600.
drain_timeout_secs = 30
# Every turn logs one line (session, turn number, agent, outcome, milliseconds). true adds the message
# and reply texts to it: for debugging only — logs are often shared, conversations are private.
log_message_text = false
# When a chat adapter (Telegram) or the agent has been failing this many seconds, the people it serves
# are told once, in one line (and again when it recovers); `herald status` shows it either way.
# 0 never tells them. 0..=86400.
outage_notice_secs = 300
# Files sent in a chat (photos, documents, voice notes) are stored in the home's media/ folder and given
# to the agent. Bigger than media_max_mb (1..=2000; Telegram's bots download at most 20): refused with a
# reply. Older than media_retention_days: removed (0 keeps them).
media_max_mb = 20
media_retention_days = 30

[supervisor]
# `herald run` supervises the gateway: a monitor process restarts a worker that exits unexpectedly, at
# once and then with a doubling delay capped at 30 s (reset after 60 s of healthy running). More than
# crash_loop_max_exits unexpected exits within crash_loop_window_secs trips the breaker: the monitor
# records `crash_looping` and exits 1, so an outer service manager (if any) takes over.
crash_loop_max_exits = 5      # 1..=1000
crash_loop_window_secs = 300  # 1..=86400
# The watchdog: the worker's event loop sends its monitor a beat every watchdog_interval_secs; a worker
# that misses watchdog_missed_beats in a row is alive but deaf (a wedged loop, a stopped process): the
# monitor records a `wedged` event, kills it and starts a new one (counted by the breaker above).
# With these a wedged worker is replaced 4 to 8 s after it wedged, a loop may stall 4 s without being
# taken for wedged, and an idle gateway wakes under once a second for it (BENCHMARKS.md).
# watchdog_interval_secs = 0 turns it off.
watchdog_interval_secs = 4    # 0..=300
watchdog_missed_beats = 2     # 2..=100

[http]
# The local HTTP API: POST /v1/sessions/{session}/messages, GET /v1/sessions, /healthz, /readyz.
enabled = true
# IP:PORT (or localhost:PORT). Port 0 picks a free port; `herald status` shows the bound URL.
listen = "127.0.0.1:7878"
# A listen address other than loopback requires a bearer token, given inline (at least 16 characters)
# or, better, through a variable (the environment, else `herald secret set HERALD_HTTP_TOKEN`):
# token = "..."
# token_env = "HERALD_HTTP_TOKEN"
max_body_bytes = 65536        # 1024..=16777216
# Bounds, applied before any token is checked: open connections (1..=65536; more wait until one closes,
# and the process's file-descriptor limit may lower it), and how long a connection may take to send a
# request header or sit idle between requests, and to send a body (seconds, 1..=3600).
max_connections = 256
idle_timeout_secs = 10
body_timeout_secs = 30
# Browsers: a web page may not use this API (a cross-site page could drive your agent; a DNS-rebinding
# page could read your conversations). Requests must name an IP address, localhost, or one of these
# host names, and pages from other origins are refused unless listed here.
# allowed_hosts = ["herald.lan"]
# allowed_origins = ["https://app.example"]

[agent]
# Who answers: "echo" (replies `echo: <text>`), "openai" (any OpenAI-compatible endpoint) or
# "command" (a local program per turn: JSON on stdin, the reply on stdout).
backend = "echo"
# At most this many turns run their agent at once; more wait in line, in order per session and taking
# turns across sessions (`herald status` shows the line). Default: 4 per CPU, between 8 and 64.
# max_concurrent_turns = 16   # 1..=4096

[agent.openai]
base_url = "https://api.openai.com/v1"
model = "gpt-4o-mini"
# The API key is read from this variable: the environment, else the secrets store
# (`herald secret set OPENAI_API_KEY` — what a service-managed gateway needs). A missing key stops the
# start; "" sends no key (a local server that needs none).
api_key_env = "OPENAI_API_KEY"
# system_prompt = "You are a helpful assistant."
stream = true
timeout_secs = 120            # whole turn, retries included; 1..=86400
max_retries = 3               # on 429, 5xx and connection failures; 0..=10
history_messages = 50         # earlier messages sent with each turn; 0..=10000
# Voice notes and audio are transcribed on the same server (POST …/audio/transcriptions) and the model
# reads the text. Unset: it is only told that a file came.
# transcribe_model = "whisper-1"

[agent.command]
# command = ["my-agent", "--json"]
timeout_secs = 120            # the whole process tree is killed when it runs out; 1..=86400
history_messages = 50
stream = false                # show each line it writes as the answer so far (a draft edited in place)

[telegram]
# A Telegram bot (long polling; no public address needed). Create one with @BotFather.
enabled = false
# The bot token, read from this variable (better: the environment, else `herald secret set
# HERALD_TELEGRAM_TOKEN`), or given inline (then keep this file private: herald warns when others can
# read it):
# token_env = "HERALD_TELEGRAM_TOKEN"
# token = "123456:ABC..."
api_base = "https://api.telegram.org"
# Default deny: only these Telegram user ids may talk to the agent. Anyone else gets a short reply
# with their id, which you can add here — or give them a one-time code from `herald pair telegram`,
# which they send to the bot as /pair CODE (`herald access list` shows who paired). allow_all = true
# lets everyone in.
allowed_users = []
allow_all = false
# Who may /stop answers in group chats and see the whole /status. Unset: everyone in allowed_users.
# admin_users = [123456789]
poll_timeout_secs = 25        # long-poll wait on the server; 0..=50
min_poll_interval_ms = 1000   # least time between two empty polls; 50..=60000
# Tell the allowed users when the agent or this bot has been failing for [gateway] outage_notice_secs
# (one line per outage, and one when it is over).
outage_notices = true
# How fast replies go out: Telegram answers 429 beyond about 30 messages a second overall, 1 a second
# per chat and 20 a minute per group. Each part of a long reply is a message. Replies to different chats
# go out concurrently; one chat's replies keep their order.
send_per_second = 30            # 1..=1000
send_per_chat_per_second = 1    # 1..=100
send_per_group_per_minute = 20  # 1..=6000
# Group chats: answer only messages that mention the bot, reply to it or are its commands ("mention"),
# or every message ("all": turn off the bot's privacy mode with @BotFather /setprivacy, or Telegram
# never shows it the rest). Other bots' messages are never answered.
group_respond = "mention"
# One conversation per group ("shared") or one per person in it ("per_user").
group_sessions = "shared"
# A chat of its own: [telegram.chats."-1001234567890"] with respond = "all", sessions = "per_user".

[journal]
# Where conversations are kept. Unset url: state.db in the home (SQLite). A PostgreSQL database instead
# (several gateways may share it; README "Running more than one replica"):
# url = "postgres://herald@db.example:5432/herald?sslmode=require"
# The password is read from this variable (the environment, else `herald secret set
# HERALD_JOURNAL_PASSWORD`), never from this file:
# password_env = "HERALD_JOURNAL_PASSWORD"
# ca_file = "/etc/herald/db-ca.pem"   # a private CA for the server's certificate

[matrix]
# A Matrix bot account (https://matrix.org): any homeserver, encrypted rooms included. Register the
# account first (on your homeserver, or with Element), then invite it to a room or a direct chat.
enabled = false
# homeserver = "https://matrix.example.org"
# user_id = "@herald:example.org"
# The password (or an access token) is read from this variable: the environment, else
# `herald secret set HERALD_MATRIX_PASSWORD`. Herald logs in at each start on the same device, whose keys
# (matrix/ in the home) let it read encrypted rooms.
# password_env = "HERALD_MATRIX_PASSWORD"
# access_token_env = "HERALD_MATRIX_TOKEN"
# Default deny: only these Matrix ids may talk to the agent, and only their invites are accepted.
allowed_users = []
allow_all = false
# admin_users = ["@you:example.org"]
# Rooms with more than two members: answer only messages that mention the bot or are its commands
# ("mention"), or every message ("all"); one conversation per room ("shared") or per person ("per_user").
# Messages from other bots (m.notice) are never answered.
room_respond = "mention"
room_sessions = "shared"
reply_as = "notice"           # or "text"
device_name = "Herald"
sync_timeout_secs = 25        # long-poll wait on the server; 0..=50

# Webhooks (Standard Webhooks: https://www.standardwebhooks.com), one table per integration. Messages are
# POSTed to /v1/webhooks/<name> as {"session": "...", "text": "..."}, signed with the secret (headers
# webhook-id, webhook-timestamp, webhook-signature); with ?wait=true the reply is the response, else it
# is POSTed to callback_url, signed the same way, and retried for retry_for_secs.
# [[webhook]]
# name = "n8n"
# secret_env = "HERALD_WEBHOOK_N8N"   # holds whsec_<base64>: `herald secret set HERALD_WEBHOOK_N8N`
# callback_url = "https://n8n.example/webhook/herald"
# session_field = "/session"          # JSON pointers into the posted body
# text_field = "/text"
# retry_for_secs = 86400              # then the reply is set aside: `herald deliveries list --failed`
"#;

/// Why a config could not be used. `Display` gives `file:line:column: key: message`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Invalid(InvalidConfig),
    /// Another user owns or can write the file: it names what the gateway runs.
    #[error("{0}")]
    Unsafe(#[from] crate::ownership::UnsafePath),
}

/// A parse or validation error located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    pub path: PathBuf,
    /// 1-based line and column, when the parser knows them.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key path (`gateway.drain_timeout_secs`), when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Where the effective config came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    Defaults,
}

impl Config {
    /// Loads `path`, or the defaults when it does not exist. A file another user owns or can write is
    /// refused ([`ConfigError::Unsafe`]): it names the command the gateway runs.
    pub fn load(path: &Path) -> Result<(Config, ConfigSource), ConfigError> {
        crate::ownership::check_file(path)?;
        match std::fs::read(path) {
            Ok(bytes) => {
                let config = Config::parse(path, &bytes).map_err(ConfigError::Invalid)?;
                Ok((config, ConfigSource::File(path.to_path_buf())))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((Config::default(), ConfigSource::Defaults)),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses config text. `path` is only used in error messages.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Config, InvalidConfig> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let (line, column) = line_column(&bytes[..e.valid_up_to()], e.valid_up_to());
            InvalidConfig {
                path: path.to_path_buf(),
                line: Some(line),
                column: Some(column),
                key: None,
                message: "the file is not valid UTF-8".into(),
            }
        })?;
        let deserializer = toml::Deserializer::parse(text).map_err(|e| toml_error(path, text, &e, None))?;
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let key = (key != "." && !key.is_empty()).then_some(key);
            toml_error(path, text, e.inner(), key)
        })?;
        match config.problem() {
            None => Ok(config),
            Some((key, message)) => {
                let (line, column) = match locate(text, key) {
                    Some(offset) => {
                        let (l, c) = line_column(text.as_bytes(), offset);
                        (Some(l), Some(c))
                    }
                    None => (None, None),
                };
                Err(InvalidConfig {
                    path: path.to_path_buf(),
                    line,
                    column,
                    key: Some(key.join(".")),
                    message,
                })
            }
        }
    }

    /// The first combination of values that parse one by one but cannot work together: the key to
    /// blame and why.
    fn problem(&self) -> Option<(&'static [&'static str], String)> {
        if self.http.enabled {
            let exposed = self.http.listen_addr().is_some_and(|a| !a.ip().is_loopback());
            if exposed && self.http.token.is_none() && self.http.token_env.is_none() {
                return Some((
                    &["http", "listen"],
                    format!(
                        "`{}` is reachable from other machines, so [http] needs `token` or `token_env`; \
                         or listen on 127.0.0.1",
                        self.http.listen
                    ),
                ));
            }
            if self.http.token.as_deref().is_some_and(|t| t.trim().len() < 16) {
                return Some((&["http", "token"], "must be at least 16 characters".into()));
            }
            if self.http.token.as_deref().is_some_and(|t| t != t.trim()) {
                return Some((
                    &["http", "token"],
                    "must not begin or end with whitespace: no client could send it (HTTP trims header values)"
                        .into(),
                ));
            }
            if self.http.token_env.as_deref().is_some_and(str::is_empty) {
                return Some((&["http", "token_env"], "must name an environment variable".into()));
            }
        }
        if self.telegram.enabled {
            let t = &self.telegram;
            if t.token.is_none() && t.token_env.is_none() {
                return Some((
                    &["telegram", "enabled"],
                    "the Telegram adapter needs a bot token: set `token_env` (the name of an environment \
                     variable holding it) or `token`"
                        .into(),
                ));
            }
            if t.token_env.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Some((
                    &["telegram", "token_env"],
                    "must name an environment variable".into(),
                ));
            }
            if t.token.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Some((&["telegram", "token"], "must not be empty".into()));
            }
        }
        if !(self.telegram.api_base.starts_with("http://") || self.telegram.api_base.starts_with("https://"))
        {
            return Some((
                &["telegram", "api_base"],
                "must start with http:// or https://".into(),
            ));
        }
        if self.matrix.enabled {
            let m = &self.matrix;
            if !(m.homeserver.starts_with("http://") || m.homeserver.starts_with("https://")) {
                return Some((
                    &["matrix", "homeserver"],
                    "the Matrix adapter needs its homeserver's URL, starting with http:// or https://".into(),
                ));
            }
            if !is_matrix_user_id(&m.user_id) {
                return Some((
                    &["matrix", "user_id"],
                    format!(
                        "{:?} is not a Matrix user id (like \"@herald:example.org\")",
                        m.user_id
                    ),
                ));
            }
            match (&m.password_env, &m.access_token_env) {
                (None, None) => {
                    return Some((
                        &["matrix", "enabled"],
                        "the Matrix adapter needs a secret: set `password_env` or `access_token_env` (the \
                         name of a variable holding it)"
                            .into(),
                    ));
                }
                (Some(_), Some(_)) => {
                    return Some((
                        &["matrix", "access_token_env"],
                        "set either `password_env` or `access_token_env`, not both".into(),
                    ));
                }
                (Some(v), None) if v.trim().is_empty() || v.contains('=') => {
                    return Some((
                        &["matrix", "password_env"],
                        "must name an environment variable".into(),
                    ));
                }
                (None, Some(v)) if v.trim().is_empty() || v.contains('=') => {
                    return Some((
                        &["matrix", "access_token_env"],
                        "must name an environment variable".into(),
                    ));
                }
                _ => {}
            }
            let lists = m.allowed_users.iter().chain(m.admin_users.iter().flatten());
            if let Some(bad) = lists.into_iter().find(|id| !is_matrix_user_id(id)) {
                return Some((
                    &["matrix", "allowed_users"],
                    format!("{bad:?} is not a Matrix user id (like \"@alice:example.org\")"),
                ));
            }
            if m.device_name.trim().is_empty() {
                return Some((&["matrix", "device_name"], "must not be empty".into()));
            }
        }
        if let Some(v) = &self.journal.password_env
            && (v.trim().is_empty() || v.contains('='))
        {
            return Some((
                &["journal", "password_env"],
                "must name an environment variable".into(),
            ));
        }
        if self.journal.url.is_none()
            && (self.journal.password_env.is_some() || self.journal.ca_file.is_some())
        {
            return Some((
                &["journal", "url"],
                "`password_env` and `ca_file` are for a PostgreSQL journal: set `url` too, or remove them"
                    .into(),
            ));
        }
        for (index, webhook) in self.webhooks.iter().enumerate() {
            if self.webhooks[..index].iter().any(|w| w.name == webhook.name) {
                return Some((
                    &["webhook", "name"],
                    format!(
                        "two [[webhook]] tables are named {:?}: names must differ",
                        webhook.name
                    ),
                ));
            }
        }
        match self.agent.backend {
            AgentBackend::Command if self.agent.command.command.first().is_none_or(String::is_empty) => {
                Some((
                    &["agent", "command", "command"],
                    "backend \"command\" needs a program: command = [\"program\", \"arg\", ...]".into(),
                ))
            }
            AgentBackend::Openai if self.agent.openai.model.trim().is_empty() => {
                Some((&["agent", "openai", "model"], "must name a model".into()))
            }
            AgentBackend::Openai
                if !(self.agent.openai.base_url.starts_with("http://")
                    || self.agent.openai.base_url.starts_with("https://")) =>
            {
                Some((
                    &["agent", "openai", "base_url"],
                    "must start with http:// or https://".into(),
                ))
            }
            _ => None,
        }
    }

    /// Things that work but are probably not what was meant, as `(key, message)`. `path` is the file
    /// the config came from (its permissions matter when it holds a secret).
    pub fn warnings(&self, path: Option<&Path>) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let t = &self.telegram;
        if t.enabled && !t.allow_all && t.allowed_users.is_empty() {
            out.push((
                "telegram.allowed_users",
                "empty and allow_all is false: every Telegram user will be denied (each is told their id, \
                 which you can add here)"
                    .to_owned(),
            ));
        }
        if t.token.is_some()
            && let Some(path) = path
            && readable_by_others(path)
        {
            out.push((
                "telegram.token",
                format!(
                    "{} holds the bot token and is readable by other users; restrict it (chmod 600) or use \
                     token_env",
                    path.display()
                ),
            ));
        }
        let m = &self.matrix;
        if m.enabled && !m.allow_all && m.allowed_users.is_empty() {
            out.push((
                "matrix.allowed_users",
                "empty and allow_all is false: every Matrix user will be ignored and their invites declined"
                    .to_owned(),
            ));
        }
        out
    }

    /// The variables this config names for a secret, with the key that names each: `[http] token_env`
    /// (when no literal token is set), `[agent.openai] api_key_env` (backend openai, unless empty: a
    /// server that needs no key), `[telegram] token_env` (when enabled) and each `[[webhook]]`'s
    /// `secret_env`. Each must resolve for the gateway to start.
    pub fn named_variables(&self) -> Vec<NamedVariable> {
        let mut out = Vec::new();
        if self.http.enabled
            && self.http.token.is_none()
            && let Some(var) = &self.http.token_env
        {
            out.push(NamedVariable {
                key: "http.token_env",
                variable: var.clone(),
            });
        }
        if self.agent.backend == AgentBackend::Openai && !self.agent.openai.api_key_env.trim().is_empty() {
            out.push(NamedVariable {
                key: "agent.openai.api_key_env",
                variable: self.agent.openai.api_key_env.trim().to_owned(),
            });
        }
        if self.telegram.enabled
            && let Some(var) = &self.telegram.token_env
        {
            out.push(NamedVariable {
                key: "telegram.token_env",
                variable: var.trim().to_owned(),
            });
        }
        if self.matrix.enabled {
            if let Some(var) = &self.matrix.password_env {
                out.push(NamedVariable {
                    key: "matrix.password_env",
                    variable: var.trim().to_owned(),
                });
            }
            if let Some(var) = &self.matrix.access_token_env {
                out.push(NamedVariable {
                    key: "matrix.access_token_env",
                    variable: var.trim().to_owned(),
                });
            }
        }
        if self.journal.is_postgres()
            && let Some(var) = &self.journal.password_env
        {
            out.push(NamedVariable {
                key: "journal.password_env",
                variable: var.trim().to_owned(),
            });
        }
        for webhook in &self.webhooks {
            out.push(NamedVariable {
                key: "webhook.secret_env",
                variable: webhook.secret_env.trim().to_owned(),
            });
        }
        out
    }

    /// The effective config as TOML, literal secrets (`[http] token`, `[telegram] token`) redacted.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        for secret in [&mut shown.http.token, &mut shown.telegram.token]
            .into_iter()
            .flatten()
        {
            *secret = REDACTED.to_owned();
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// The dotted keys whose values differ between two configs (`agent.openai.model`,
/// `telegram.allowed_users`), sorted: what a reload has to apply or report.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    fn flatten(prefix: &str, value: &toml::Value, out: &mut std::collections::BTreeMap<String, toml::Value>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    flatten(&path, value, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let tree = |config: &Config| {
        let mut out = std::collections::BTreeMap::new();
        if let Ok(value) = toml::Value::try_from(config) {
            flatten("", &value, &mut out);
        }
        out
    };
    let (old, new) = (tree(old), tree(new));
    let mut keys: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|key| old.get(*key) != new.get(*key))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// What [`Config::to_toml`] shows in place of a literal secret.
pub const REDACTED: &str = "<redacted>";

/// A secret the config names by variable: which key names it, and the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedVariable {
    /// The dotted key (`agent.openai.api_key_env`).
    pub key: &'static str,
    pub variable: String,
}

/// Whether users other than the owner may read the file (Unix permission bits; elsewhere the file
/// system's ACLs decide and this reports `false`).
fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

fn toml_error(path: &Path, text: &str, err: &toml::de::Error, key: Option<String>) -> InvalidConfig {
    let (line, column) = match err.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let (l, c) = line_column(text.as_bytes(), start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    InvalidConfig {
        path: path.to_path_buf(),
        line,
        column,
        key,
        message: err.message().trim().to_owned(),
    }
}

/// Byte offset of the deepest part of `key` present in the file: the key itself, or the nearest table
/// that should hold it.
fn locate(text: &str, key: &[&str]) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut found = None;
    for part in key {
        let (name, value) = table.get_key_value(*part)?;
        found = Some(name.span().start);
        match value.get_ref().as_table() {
            Some(inner) => table = inner,
            None => break,
        }
    }
    found
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, InvalidConfig> {
        Config::parse(Path::new("herald.toml"), text.as_bytes())
    }

    #[test]
    fn a_journal_url_names_a_postgres_database_without_its_password() {
        let ok = "[journal]\nurl = \"postgres://herald@db.example:5432/herald?sslmode=require\"\n\
                  password_env = \"HERALD_JOURNAL_PASSWORD\"\n";
        let config = parse(ok).unwrap();
        assert!(config.journal.is_postgres());
        assert!(!Config::default().journal.is_postgres());
        assert_eq!(
            config.named_variables(),
            [NamedVariable {
                key: "journal.password_env",
                variable: "HERALD_JOURNAL_PASSWORD".into()
            }]
        );
        for (text, key, says) in [
            (
                ok.replace("postgres://", "mysql://"),
                "journal.url",
                "postgres://",
            ),
            (
                ok.replace("herald@db", "herald:hunter2@db"),
                "journal.url",
                "must not hold a password",
            ),
            (
                ok.replace("sslmode=require", "sslmode=require&password=hunter2"),
                "journal.url",
                "password_env",
            ),
            (
                ok.replace("herald@db.example:5432", ""),
                "journal.url",
                "database server",
            ),
            (
                ok.replace("HERALD_JOURNAL_PASSWORD", " "),
                "journal.password_env",
                "environment variable",
            ),
            (
                "[journal]\npassword_env = \"P\"\n".to_owned(),
                "journal.url",
                "PostgreSQL",
            ),
            ("[journal]\nurl = 5\n".to_owned(), "journal.url", "string"),
        ] {
            let err = parse(&text).unwrap_err();
            assert_eq!(err.key.as_deref(), Some(key), "{text}: {err}");
            assert!(err.to_string().contains(says), "{text}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        // The line and column of the key are given.
        let err = parse(&ok.replace("herald@db", "herald:pw@db")).unwrap_err();
        assert_eq!((err.line, err.column), (Some(2), Some(7)), "{err}");
    }

    #[test]
    fn a_matrix_section_is_read_and_each_mistake_is_refused_at_its_key() {
        let ok = "[matrix]\nenabled = true\nhomeserver = \"http://127.0.0.1:8008\"\nuser_id = \"@bot:localhost\"\n\
                  password_env = \"P\"\nallowed_users = [\"@alice:localhost\"]\nreply_as = \"text\"\n";
        let config = parse(ok).unwrap();
        assert_eq!(config.matrix.reply_as, MatrixReplyKind::Text);
        assert_eq!(config.matrix.room_respond, GroupRespond::Mention);
        assert_eq!(
            config.named_variables(),
            [NamedVariable {
                key: "matrix.password_env",
                variable: "P".into()
            }]
        );
        for (text, key, says) in [
            (
                ok.replace("http://127.0.0.1:8008", "matrix.org"),
                "matrix.homeserver",
                "http",
            ),
            (
                ok.replace("@bot:localhost", "bot"),
                "matrix.user_id",
                "not a Matrix user id",
            ),
            (
                ok.replace("password_env = \"P\"", ""),
                "matrix.enabled",
                "password_env",
            ),
            (
                ok.replace(
                    "password_env = \"P\"",
                    "password_env = \"P\"\naccess_token_env = \"T\"",
                ),
                "matrix.access_token_env",
                "not both",
            ),
            (
                ok.replace("@alice:localhost", "alice"),
                "matrix.allowed_users",
                "\"alice\"",
            ),
            (
                ok.replace("\"text\"", "\"html\""),
                "matrix.reply_as",
                "unknown variant",
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert_eq!(err.key.as_deref(), Some(key), "{text}: {err}");
            assert!(err.to_string().contains(says), "{text}: {err}");
        }
        // Disabled, nothing is required.
        assert!(parse("[matrix]\nuser_id = \"x\"\n").is_ok());
        assert!(is_matrix_user_id("@a:b.c") && !is_matrix_user_id("@a b:c") && !is_matrix_user_id("@:c"));
    }

    #[test]
    fn a_token_with_surrounding_spaces_is_refused_where_it_is_written() {
        let err = parse("[http]\ntoken = \" abcdefghijklmnopqrstuvwxyz \"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("http.token"), "{err}");
        assert!(err.message.contains("whitespace"), "{err}");
        assert!(parse("[http]\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n").is_ok());
    }

    #[test]
    fn browser_allowances_are_checked_where_they_are_written() {
        let config = parse(
            "[http]\nallowed_hosts = [\"Herald.LAN\"]\nallowed_origins = [\"https://app.example:8443\", \"tauri://localhost\"]\n",
        )
        .unwrap();
        assert_eq!(config.http.allowed_hosts, ["herald.lan"]);
        assert_eq!(config.http.allowed_origins.len(), 2);
        for (text, key) in [
            (
                "[http]\nallowed_hosts = [\"herald.lan:7878\"]\n",
                "http.allowed_hosts",
            ),
            (
                "[http]\nallowed_hosts = [\"http://herald.lan\"]\n",
                "http.allowed_hosts",
            ),
            (
                "[http]\nallowed_origins = [\"https://app.example/\"]\n",
                "http.allowed_origins",
            ),
            ("[http]\nallowed_origins = [\"null\"]\n", "http.allowed_origins"),
            (
                "[http]\nallowed_origins = [\"app.example\"]\n",
                "http.allowed_origins",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.key.as_deref(), Some(key), "{text}: {err}");
            assert_eq!(err.line, Some(2), "{text}: {err}");
        }
    }

    #[test]
    fn localhost_is_accepted_as_the_loopback() {
        let config = parse("[http]\nlisten = \"localhost:7979\"\n").unwrap();
        assert_eq!(config.http.listen, "127.0.0.1:7979");
        let err = parse("[http]\nlisten = \"localhost:port\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("http.listen"), "{err}");
        assert!(parse("[http]\nlisten = \"example.com:80\"\n").is_err());
    }

    #[test]
    fn concurrent_turns_are_configured_or_sized_to_the_machine() {
        let default = parse("").unwrap().agent.concurrent_turns();
        assert!((8..=64).contains(&default), "{default}");
        let set = parse("[agent]\nmax_concurrent_turns = 3\n").unwrap();
        assert_eq!(set.agent.concurrent_turns(), 3);
        for bad in ["0", "4097", "-1", "\"8\""] {
            let err = parse(&format!("[agent]\nmax_concurrent_turns = {bad}\n")).unwrap_err();
            assert_eq!(
                err.key.as_deref(),
                Some("agent.max_concurrent_turns"),
                "{bad}: {err}"
            );
            assert_eq!(err.line, Some(2), "{bad}: {err}");
        }
    }

    #[test]
    fn named_variables_are_those_a_start_needs() {
        let names = |text: &str| {
            parse(text)
                .unwrap()
                .named_variables()
                .into_iter()
                .map(|n| format!("{}={}", n.key, n.variable))
                .collect::<Vec<_>>()
        };
        assert!(names("").is_empty());
        assert_eq!(
            names("[agent]\nbackend = \"openai\"\n"),
            ["agent.openai.api_key_env=OPENAI_API_KEY"]
        );
        assert!(names("[agent]\nbackend = \"openai\"\n[agent.openai]\napi_key_env = \"\"\n").is_empty());
        assert_eq!(
            names("[http]\ntoken_env = \"H\"\n[telegram]\nenabled = true\ntoken_env = \"T\"\n"),
            ["http.token_env=H", "telegram.token_env=T"]
        );
        assert_eq!(
            names(
                "[[webhook]]\nname = \"a\"\nsecret_env = \"WA\"\n[[webhook]]\nname = \"b\"\nsecret_env = \"WB\"\n"
            ),
            ["webhook.secret_env=WA", "webhook.secret_env=WB"]
        );
        // A literal token wins over [http] token_env; a disabled adapter needs nothing.
        assert!(
            names("[http]\ntoken = \"0123456789abcdef\"\ntoken_env = \"H\"\n[telegram]\ntoken_env = \"T\"\n")
                .is_empty()
        );
    }

    #[test]
    fn changed_keys_name_each_leaf_that_differs() {
        let old = parse("[telegram]\nallowed_users = [1]\n").unwrap();
        let new = parse(
            "[telegram]\nallowed_users = [1, 2]\n[agent.openai]\nmodel = \"x\"\n[http]\ntoken = \"0123456789abcdef\"\n",
        )
        .unwrap();
        assert_eq!(
            changed_keys(&old, &new),
            ["agent.openai.model", "http.token", "telegram.allowed_users"]
        );
        assert!(changed_keys(&new, &new).is_empty());
    }

    #[test]
    fn shown_config_redacts_literal_secrets() {
        let config =
            parse("[http]\ntoken = \"0123456789abcdef-secret\"\n[telegram]\ntoken = \"123:tg-secret\"\n")
                .unwrap();
        let shown = config.to_toml();
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(shown.matches(REDACTED).count(), 2, "{shown}");
    }

    #[test]
    fn template_parses_to_the_defaults() {
        assert_eq!(parse(TEMPLATE).unwrap(), Config::default());
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(parse("[gateway]\n").unwrap(), Config::default());
    }

    #[test]
    fn values_are_read() {
        let config = parse("[gateway]\ndrain_timeout_secs = 5\n").unwrap();
        assert_eq!(config.gateway.drain_timeout_secs, 5);
        assert!(!config.gateway.log_message_text);
        let config = parse("[gateway]\nlog_message_text = true\n").unwrap();
        assert!(config.gateway.log_message_text);
        let err = parse("[gateway]\nlog_message_text = \"yes\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("gateway.log_message_text"), "{err}");
    }

    #[test]
    fn unknown_key_names_key_line_and_column() {
        let err = parse("[gateway]\ndrain_timeout_secs = 5\n  drain_timout = 3\n").unwrap_err();
        assert_eq!((err.line, err.column), (Some(3), Some(3)), "{err}");
        assert!(err.message.contains("drain_timout"), "{err}");
        assert!(err.to_string().starts_with("herald.toml:3:3: "), "{err}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let err = parse("[gatway]\n").unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(err.message.contains("gatway"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse("[gateway]\ndrain_timeout_secs = \"30\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("gateway.drain_timeout_secs"), "{err}");
        assert_eq!((err.line, err.column), (Some(2), Some(22)), "{err}");
    }

    #[test]
    fn out_of_range_names_the_key_and_the_limit() {
        for bad in ["-1", "3601", "99999999999999999999"] {
            let err = parse(&format!("[gateway]\ndrain_timeout_secs = {bad}\n")).unwrap_err();
            assert_eq!(err.line, Some(2), "{bad}: {err}");
            assert!(err.to_string().contains("drain_timeout_secs"), "{bad}: {err}");
        }
        let err = parse("[gateway]\ndrain_timeout_secs = 3601\n").unwrap_err();
        assert!(err.message.contains("3600"), "{err}");
    }

    #[test]
    fn watchdog_keys_are_read_range_checked_and_zero_turns_it_off() {
        let config = parse("[supervisor]\nwatchdog_interval_secs = 0\nwatchdog_missed_beats = 5\n").unwrap();
        assert_eq!(config.supervisor.watchdog_interval_secs, 0);
        assert_eq!(config.supervisor.watchdog_missed_beats, 5);
        for (key, bad, limit) in [
            ("watchdog_interval_secs", "301", "300"),
            ("watchdog_interval_secs", "-1", ""),
            ("watchdog_missed_beats", "1", "between 2 and 100"),
            ("watchdog_missed_beats", "101", "100"),
        ] {
            let err = parse(&format!("[supervisor]\n{key} = {bad}\n")).unwrap_err();
            assert_eq!(
                err.key.as_deref(),
                Some(format!("supervisor.{key}").as_str()),
                "{err}"
            );
            assert_eq!(err.line, Some(2), "{err}");
            assert!(err.message.contains(limit), "{err}");
        }
    }

    #[test]
    fn telegram_send_limits_are_read_and_range_checked() {
        let config = parse("[telegram]\n").unwrap();
        assert_eq!(
            (
                config.telegram.send_per_second,
                config.telegram.send_per_chat_per_second,
                config.telegram.send_per_group_per_minute
            ),
            (30, 1, 20)
        );
        let config = parse("[telegram]\nsend_per_second = 5\nsend_per_group_per_minute = 60\n").unwrap();
        assert_eq!(config.telegram.send_per_second, 5);
        assert_eq!(config.telegram.send_per_group_per_minute, 60);
        for (key, bad, limit) in [
            ("send_per_second", "0", "between 1 and 1000"),
            ("send_per_second", "1001", "1000"),
            ("send_per_chat_per_second", "0", "between 1 and 100"),
            ("send_per_chat_per_second", "-1", ""),
            ("send_per_group_per_minute", "6001", "between 1 and 6000"),
        ] {
            let err = parse(&format!("[telegram]\n{key} = {bad}\n")).unwrap_err();
            assert_eq!(
                err.key.as_deref(),
                Some(format!("telegram.{key}").as_str()),
                "{err}"
            );
            assert_eq!(err.line, Some(2), "{err}");
            assert!(err.message.contains(limit), "{err}");
        }
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let err = parse("[gateway\n").unwrap_err();
        assert_eq!(err.line, Some(1), "{err}");
        let err = parse("[gateway]\ndrain_timeout_secs = \n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
    }

    #[test]
    fn non_utf8_is_located() {
        let err = Config::parse(Path::new("h.toml"), b"[gateway]\n# caf\xe9\n").unwrap_err();
        assert_eq!((err.line, err.column), (Some(2), Some(6)), "{err}");
    }

    #[test]
    fn group_rules_default_per_chat_and_bad_chat_ids_are_named() {
        let config = parse(
            "[telegram]\ngroup_respond = \"all\"\n[telegram.chats.\"-100\"]\nrespond = \"mention\"\n\
             [telegram.chats.\"-200\"]\nsessions = \"per_user\"\n",
        )
        .unwrap();
        let t = &config.telegram;
        assert_eq!(t.group_rule(-100), (GroupRespond::Mention, GroupSessions::Shared));
        assert_eq!(t.group_rule(-200), (GroupRespond::All, GroupSessions::PerUser));
        assert_eq!(t.group_rule(-300), (GroupRespond::All, GroupSessions::Shared));
        let err = parse("[telegram.chats.general]\nrespond = \"all\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("telegram.chats") && err.contains("not a Telegram chat id"),
            "{err}"
        );
        let err = parse("[telegram]\ngroup_respond = \"always\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("telegram.group_respond") && err.contains("herald.toml:2"),
            "{err}"
        );
    }

    #[test]
    fn telegram_needs_a_token_source_when_enabled() {
        let err = parse("[telegram]\nenabled = true\nallow_all = true\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("telegram.enabled"), "{err}");
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("token_env"), "{err}");
        // Disabled: no token needed.
        parse("[telegram]\nenabled = false\n").unwrap();
        let err = parse("[telegram]\nenabled = true\ntoken_env = \"\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("telegram.token_env"), "{err}");
        let err = parse("[telegram]\napi_base = \"ftp://x\"\n").unwrap_err();
        assert_eq!(
            (err.key.as_deref(), err.line),
            (Some("telegram.api_base"), Some(2)),
            "{err}"
        );
        let err = parse("[telegram]\nallowed_users = [\"bob\"]\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
    }

    #[test]
    fn telegram_without_allowed_users_warns_that_everyone_is_denied() {
        let config = parse("[telegram]\nenabled = true\ntoken_env = \"T\"\n").unwrap();
        let warnings = config.warnings(None);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].0, "telegram.allowed_users");
        let config = parse("[telegram]\nenabled = true\ntoken_env = \"T\"\nallowed_users = [42]\n").unwrap();
        assert_eq!(config.telegram.allowed_users, vec![42]);
        assert!(config.warnings(None).is_empty());
        assert!(
            parse("[telegram]\nenabled = true\ntoken_env = \"T\"\nallow_all = true\n")
                .unwrap()
                .warnings(None)
                .is_empty()
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_literal_token_in_a_world_readable_file_warns() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, "[telegram]\ntoken = \"1:abc\"\nallow_all = true\n").unwrap();
        let config = Config::load(&path).unwrap().0;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warnings = config.warnings(Some(&path));
        assert!(
            warnings.iter().any(|(key, _)| *key == "telegram.token"),
            "{warnings:?}"
        );
        assert!(
            !warnings.iter().any(|(_, m)| m.contains("1:abc")),
            "the token leaked: {warnings:?}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(config.warnings(Some(&path)).is_empty());
    }

    #[test]
    fn missing_file_means_defaults_and_rendering_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let (config, source) = Config::load(&dir.path().join("herald.toml")).unwrap();
        assert_eq!(source, ConfigSource::Defaults);
        assert_eq!(parse(&config.to_toml()).unwrap(), config);
    }
}
