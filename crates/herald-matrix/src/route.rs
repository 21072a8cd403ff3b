//! Which room messages are for the bot, and which conversation each belongs to.
//!
//! **Invariant:** pure. The sync loop hands over what the event says (sender, type, text, mentions)
//! and how many people the room has; everything decided here is unit-tested without a homeserver.
//!
//! The rules, in order: the bot never answers itself; never a `m.notice` (the Matrix convention for
//! bots — answering one is how two bots loop); only text (`m.text`, `m.emote`); never an edit (the
//! original was the turn). A room of two (the bot and one person) is a direct chat: every message is
//! for the bot. A bigger room answers, by default, only messages that mention the bot (the
//! `m.mentions` the client set, or its id or name in the text) and its commands.

use herald_home::config::{GroupRespond, GroupSessions};

/// A room message as the router needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming<'a> {
    pub room: &'a str,
    pub sender: &'a str,
    /// `m.text`, `m.notice`, `m.emote`, ...
    pub msgtype: &'a str,
    pub body: &'a str,
    /// The users the message's `m.mentions` names.
    pub mentions: &'a [String],
    /// The message replaces an earlier one (`m.relates_to.rel_type = m.replace`).
    pub is_edit: bool,
    /// Joined and invited members, the bot included.
    pub members: u64,
}

/// The bot itself, as others write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me<'a> {
    pub user_id: &'a str,
    /// The display name, when the bot has one.
    pub display_name: Option<&'a str>,
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Answer it, in this conversation, with the mention taken off the text.
    Answer {
        conversation: String,
        text: String,
        /// The room has other people in it.
        shared: bool,
    },
    Ignore(&'static str),
}

/// Whether the text is a command (`/new`, or `!new`: Element keeps `/` for its own commands).
pub fn command_text(text: &str) -> Option<String> {
    let trimmed = text.trim_start();
    if let Some(rest) = trimmed.strip_prefix('!')
        && rest.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
    {
        return Some(format!("/{rest}"));
    }
    trimmed.starts_with('/').then(|| trimmed.to_owned())
}

pub fn route(message: &Incoming<'_>, me: &Me<'_>, respond: GroupRespond, sessions: GroupSessions) -> Route {
    if message.sender == me.user_id {
        return Route::Ignore("the bot's own message");
    }
    if message.msgtype == "m.notice" {
        return Route::Ignore("a notice (bots send those; never answered)");
    }
    if message.msgtype != "m.text" && message.msgtype != "m.emote" {
        return Route::Ignore("not a text message");
    }
    if message.is_edit {
        return Route::Ignore("an edit of an earlier message");
    }
    let shared = message.members > 2;
    let (mentioned, text) = strip_mention(message.body, me);
    let mentioned = mentioned || message.mentions.iter().any(|m| m == me.user_id);
    if shared && respond == GroupRespond::Mention && !mentioned && command_text(&text).is_none() {
        return Route::Ignore("a room message that does not mention the bot");
    }
    if text.trim().is_empty() {
        return Route::Ignore("empty once the mention is taken off");
    }
    let conversation = if shared && sessions == GroupSessions::PerUser {
        per_user(message.room, message.sender)
    } else {
        message.room.to_owned()
    };
    Route::Answer {
        conversation,
        text,
        shared: shared && sessions == GroupSessions::Shared,
    }
}

/// The conversation of one person in a room: `<room>/<user>` (a user id starts with `@`, a room id's
/// own text never has `/@`).
pub fn per_user(room: &str, user: &str) -> String {
    format!("{room}/{user}")
}

/// The room a conversation is in.
pub fn room_of(conversation: &str) -> &str {
    conversation
        .split_once("/@")
        .map_or(conversation, |(room, _)| room)
}

/// Takes a leading mention (`@herald:example.org: hi`, `Herald: hi`, `herald, hi`) off the text, and
/// says whether the text mentions the bot anywhere.
fn strip_mention(body: &str, me: &Me<'_>) -> (bool, String) {
    let localpart = me
        .user_id
        .strip_prefix('@')
        .and_then(|rest| rest.split_once(':'))
        .map(|(local, _)| local);
    let names: Vec<&str> = [Some(me.user_id), me.display_name, localpart]
        .into_iter()
        .flatten()
        .filter(|n| !n.is_empty())
        .collect();
    let trimmed = body.trim_start();
    for name in &names {
        let Some(head) = trimmed.get(..name.len()) else {
            continue;
        };
        if head.eq_ignore_ascii_case(name) {
            let rest = &trimmed[name.len()..];
            // A name followed by punctuation or space: "Herald: hi", "herald, hi", "@h:s hi".
            if rest.is_empty() || rest.starts_with([':', ',', ' ', '\n']) {
                let text = rest.trim_start_matches([':', ',']).trim_start();
                return (true, text.to_owned());
            }
        }
    }
    let lower = body.to_lowercase();
    let anywhere = names
        .iter()
        .any(|n| n.len() > 2 && lower.contains(&n.to_lowercase()));
    (anywhere, body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Me<'static> = Me {
        user_id: "@herald:example.org",
        display_name: Some("Herald"),
    };

    fn message(body: &'static str, members: u64) -> Incoming<'static> {
        Incoming {
            room: "!room:example.org",
            sender: "@alice:example.org",
            msgtype: "m.text",
            body,
            mentions: &[],
            is_edit: false,
            members,
        }
    }

    fn answer(route: Route) -> (String, String, bool) {
        match route {
            Route::Answer {
                conversation,
                text,
                shared,
            } => (conversation, text, shared),
            Route::Ignore(why) => panic!("ignored: {why}"),
        }
    }

    #[test]
    fn a_direct_chat_is_answered_whole_and_is_the_room() {
        let (conversation, text, shared) = answer(route(
            &message("hello", 2),
            &ME,
            GroupRespond::Mention,
            GroupSessions::Shared,
        ));
        assert_eq!(
            (conversation.as_str(), text.as_str(), shared),
            ("!room:example.org", "hello", false)
        );
    }

    #[test]
    fn a_room_answers_mentions_and_commands_only_by_default() {
        let r = |body| {
            route(
                &message(body, 3),
                &ME,
                GroupRespond::Mention,
                GroupSessions::Shared,
            )
        };
        assert!(matches!(r("hello all"), Route::Ignore(_)));
        assert_eq!(answer(r("Herald: what time is it")).1, "what time is it");
        assert_eq!(answer(r("@herald:example.org hi")).1, "hi");
        assert_eq!(answer(r("herald, hi")).1, "hi");
        // Named in the middle: answered, the text kept whole.
        assert_eq!(answer(r("ask herald about it")).1, "ask herald about it");
        assert_eq!(answer(r("!new")).1, "!new");
        assert!(answer(r("Herald: x")).2, "one conversation for the room");
        let mentions = ["@herald:example.org".to_owned()];
        let pill = Incoming {
            mentions: &mentions,
            ..message("Heraldbot please", 3)
        };
        assert!(matches!(
            route(&pill, &ME, GroupRespond::Mention, GroupSessions::Shared),
            Route::Answer { .. }
        ));
        assert!(matches!(
            route(
                &message("hello all", 3),
                &ME,
                GroupRespond::All,
                GroupSessions::Shared
            ),
            Route::Answer { .. }
        ));
    }

    #[test]
    fn per_user_rooms_key_each_person_and_find_the_room_again() {
        let (conversation, _, shared) = answer(route(
            &message("herald hi", 5),
            &ME,
            GroupRespond::Mention,
            GroupSessions::PerUser,
        ));
        assert_eq!(conversation, "!room:example.org/@alice:example.org");
        assert!(!shared);
        assert_eq!(room_of(&conversation), "!room:example.org");
        assert_eq!(room_of("!room:example.org"), "!room:example.org");
    }

    #[test]
    fn the_bot_itself_notices_edits_and_other_types_are_never_answered() {
        let own = Incoming {
            sender: "@herald:example.org",
            ..message("hi", 2)
        };
        let notice = Incoming {
            msgtype: "m.notice",
            ..message("hi", 2)
        };
        let image = Incoming {
            msgtype: "m.image",
            ..message("cat.png", 2)
        };
        let edit = Incoming {
            is_edit: true,
            ..message("* hi", 2)
        };
        for m in [own, notice, image, edit] {
            assert!(
                matches!(
                    route(&m, &ME, GroupRespond::All, GroupSessions::Shared),
                    Route::Ignore(_)
                ),
                "{m:?}"
            );
        }
        assert!(matches!(
            route(
                &message("Herald:", 3),
                &ME,
                GroupRespond::Mention,
                GroupSessions::Shared
            ),
            Route::Ignore(_)
        ));
    }

    #[test]
    fn commands_come_with_a_slash_or_a_bang() {
        assert_eq!(command_text("!new").as_deref(), Some("/new"));
        assert_eq!(command_text("  /status").as_deref(), Some("/status"));
        assert_eq!(command_text("!!"), None);
        assert_eq!(command_text("hi"), None);
    }
}
