//! Which messages of a chat are for the bot, and which conversation each belongs to.
//!
//! **Invariant:** a message from a bot — another bot, or this one — is never answered, so two bots in a
//! group cannot talk each other into a loop. In a group, unless the chat says `respond = "all"`, only a
//! message that mentions the bot (`@name`), replies to one of its messages, or is one of its commands is
//! for it; the rest is people talking among themselves, and is neither answered nor stored. Pure: the
//! adapter passes in what the update says and what `getMe` said.
//!
//! Telegram's side of it: a bot in a group has *privacy mode* on by default, and then Telegram shows it
//! only commands, mentions and replies to it — `respond = "all"` needs privacy mode off (@BotFather,
//! `/setprivacy`) or the bot made a group admin.

use herald_home::config::{GroupRespond, GroupSessions};
use serde_json::Value;

use crate::api::BotIdentity;

/// What to do with a text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Not for the bot (why, for the debug log).
    Ignore(&'static str),
    /// For the bot: the conversation (a session's chat id) and the text for the agent.
    Answer { conversation: String, text: String },
}

/// The chat a conversation's replies go to: a conversation of one person in a group is
/// `<group id>:<user id>`, any other is the chat id itself.
pub fn chat_of(conversation: &str) -> Option<i64> {
    conversation.split(':').next()?.parse().ok()
}

/// Whether the message is addressed to the bot: a mention, or a reply to one of its messages.
pub fn addressed(message: &Value, text: &str, me: Option<&BotIdentity>) -> bool {
    let Some(me) = me else { return false };
    let replied = message
        .get("reply_to_message")
        .and_then(|r| r.get("from"))
        .and_then(|f| f.get("id"))
        .and_then(Value::as_i64)
        == Some(me.id);
    replied
        || me
            .username
            .as_deref()
            .is_some_and(|name| mention_at(text, name).is_some())
}

/// Routes a text message from `user` in chat `chat` (of Telegram type `chat_type`).
pub fn route(
    message: &Value,
    text: &str,
    is_command: bool,
    me: Option<&BotIdentity>,
    rule: (GroupRespond, GroupSessions),
) -> Route {
    let from = message.get("from");
    if from.and_then(|f| f.get("is_bot")).and_then(Value::as_bool) == Some(true) {
        return Route::Ignore("a bot's message (never answered: no loops)");
    }
    let chat = message.get("chat");
    let chat_id = chat
        .and_then(|c| c.get("id"))
        .and_then(Value::as_i64)
        .unwrap_or_default();
    let user = from
        .and_then(|f| f.get("id"))
        .and_then(Value::as_i64)
        .unwrap_or_default();
    match chat.and_then(|c| c.get("type")).and_then(Value::as_str) {
        Some("private") | None => Route::Answer {
            conversation: chat_id.to_string(),
            text: text.to_owned(),
        },
        Some("group" | "supergroup") => {
            let (respond, sessions) = rule;
            if respond == GroupRespond::Mention && !is_command && !addressed(message, text, me) {
                return Route::Ignore("a group message not addressed to the bot");
            }
            let conversation = match sessions {
                GroupSessions::Shared => chat_id.to_string(),
                GroupSessions::PerUser => format!("{chat_id}:{user}"),
            };
            let name = me.and_then(|m| m.username.as_deref());
            Route::Answer {
                conversation,
                text: name.map_or_else(|| text.to_owned(), |name| strip_leading_mention(text, name)),
            }
        }
        Some(_) => Route::Ignore("a channel post"),
    }
}

/// Where `@name` appears in `text` as a whole word, case-insensitively.
fn mention_at(text: &str, name: &str) -> Option<usize> {
    let needle = format!("@{}", name.to_ascii_lowercase());
    let haystack = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = haystack[from..].find(&needle) {
        let at = from + found;
        let end = at + needle.len();
        let word_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if !haystack[end..].starts_with(word_char) {
            return Some(at);
        }
        from = end;
    }
    None
}

/// `@bot what is 2+2` → `what is 2+2`: the agent needs the question, not the address.
fn strip_leading_mention(text: &str, name: &str) -> String {
    let trimmed = text.trim_start();
    match mention_at(trimmed, name) {
        Some(0) => {
            let rest = trimmed[name.len() + 1..]
                .trim_start_matches([',', ':'])
                .trim_start();
            if rest.is_empty() {
                text.to_owned()
            } else {
                rest.to_owned()
            }
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn me() -> BotIdentity {
        BotIdentity {
            id: 999,
            username: Some("herald_bot".into()),
        }
    }

    fn group_message(text: &str, extra: Value) -> Value {
        let mut message = json!({
            "message_id": 5, "from": {"id": 7, "is_bot": false},
            "chat": {"id": -100, "type": "supergroup"}, "text": text,
        });
        if let (Some(m), Some(e)) = (message.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        message
    }

    const MENTION: (GroupRespond, GroupSessions) = (GroupRespond::Mention, GroupSessions::Shared);

    #[test]
    fn in_a_group_only_what_addresses_the_bot_is_answered() {
        let me = me();
        let chatter = group_message("lunch?", json!({}));
        assert!(matches!(
            route(&chatter, "lunch?", false, Some(&me), MENTION),
            Route::Ignore(_)
        ));
        let mention = group_message("@Herald_Bot, what is 2+2?", json!({}));
        assert_eq!(
            route(&mention, "@Herald_Bot, what is 2+2?", false, Some(&me), MENTION),
            Route::Answer {
                conversation: "-100".into(),
                text: "what is 2+2?".into()
            }
        );
        let not_us = group_message("ask @herald_bot_fan", json!({}));
        assert!(matches!(
            route(&not_us, "ask @herald_bot_fan", false, Some(&me), MENTION),
            Route::Ignore(_)
        ));
        let reply = group_message("and then?", json!({"reply_to_message": {"from": {"id": 999}}}));
        assert!(matches!(
            route(&reply, "and then?", false, Some(&me), MENTION),
            Route::Answer { .. }
        ));
        assert!(matches!(
            route(&chatter, "/new", true, Some(&me), MENTION),
            Route::Answer { .. }
        ));
        let all = (GroupRespond::All, GroupSessions::PerUser);
        assert_eq!(
            route(&chatter, "lunch?", false, Some(&me), all),
            Route::Answer {
                conversation: "-100:7".into(),
                text: "lunch?".into()
            }
        );
        assert_eq!(chat_of("-100:7"), Some(-100));
        assert_eq!(chat_of("42"), Some(42));
    }

    #[test]
    fn bots_are_never_answered_anywhere() {
        let me = me();
        let bot = json!({"from": {"id": 8, "is_bot": true}, "chat": {"id": 8, "type": "private"}});
        assert!(matches!(
            route(&bot, "hi", false, Some(&me), MENTION),
            Route::Ignore(_)
        ));
        let in_group = group_message("@herald_bot hi", json!({"from": {"id": 8, "is_bot": true}}));
        let all = (GroupRespond::All, GroupSessions::Shared);
        assert!(matches!(
            route(&in_group, "@herald_bot hi", false, Some(&me), all),
            Route::Ignore(_)
        ));
    }
}
