//! Chat features through the whole gateway, over Telegram (the Bot API stand-in in
//! `support/bot_api.rs`, which has `editMessageText`) and the local HTTP API: in-chat commands (`/help`,
//! `/whoami`, `/status`, `/new`, `/stop`); pairing with `herald pair` / `herald access` and `/pair CODE`
//! (single use, expiry, the wrong-code limit, revocation at the next message); group rules; and streamed
//! answers shown as one draft edited in place, also across a kill -9; files in (to the agent) and out
//! (the agent's files back to the chat, and over the local API).

#[path = "support/bot_api.rs"]
mod bot_api;
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bot_api::{BOT_ID, BOT_USERNAME, BotApi};
use serde_json::json;
use support::{Gateway, TestHome, agent_inputs, http, post_message, test_agent, text, wait_for};

const TOKEN: &str = "4242:TEST-SECRET-TOKEN";
const OWNER: i64 = 7;

/// A home with Telegram on `api` (the owner allowed) and, when `log` is given, the `test_agent` command
/// agent logging there (else the echo agent).
fn home_for(api: &BotApi, log: Option<&Path>) -> TestHome {
    home_with(api, log, &format!("allowed_users = [{OWNER}]\n"))
}

/// As [`home_for`], with `telegram_keys` (who is allowed, group rules) in `[telegram]`.
fn home_with(api: &BotApi, log: Option<&Path>, telegram_keys: &str) -> TestHome {
    let home = TestHome::new();
    let agent = match log {
        Some(log) => {
            let quote = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap();
            format!(
                "[agent]\nbackend = \"command\"\n\n[agent.command]\ncommand = [{}, {}]\ntimeout_secs = 60\nstream = true\n",
                quote(&test_agent()),
                quote(log)
            )
        }
        None => String::new(),
    };
    home.write(
        "herald.toml",
        format!(
            "[gateway]\ndrain_timeout_secs = 2\n[http]\nlisten = \"127.0.0.1:0\"\n\n{agent}\n[telegram]\nenabled = true\n\
             token_env = \"HERALD_TEST_TG_TOKEN\"\napi_base = \"{}\"\n\
             poll_timeout_secs = 2\nmin_poll_interval_ms = 100\n{telegram_keys}",
            api.url
        )
        .as_bytes(),
    );
    home
}

/// A folder for the `test_agent`'s log, and the log's path in it.
fn agent_log() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    (dir, log)
}

/// The journal of a stopped gateway.
fn journal(home: &TestHome) -> herald_journal::SqliteJournal {
    herald_journal::SqliteJournal::open(&home.home().journal_file())
        .unwrap()
        .0
}

/// What the journal holds of Telegram chat `chat` (the gateway stopped).
fn stored(home: &TestHome, chat: &str) -> Vec<herald_gateway::journal::StoredMessage> {
    let session = herald_gateway::journal::SessionKey::new("telegram", chat);
    herald_gateway::journal::HistoryStore::history(&journal(home), &session, 100)
        .wait()
        .unwrap()
}

fn start(home: &TestHome) -> Gateway {
    home.start_with_token(&["run", "--no-supervise"], TOKEN)
}

fn stop(home: &TestHome, gateway: Gateway) -> String {
    let out = home.output(&["stop", "--timeout", "30"]);
    assert!(out.status.success(), "{}", text(&out));
    gateway.wait().1
}

/// `user` says `text` in their private chat; returns the bot's next message there.
fn ask(api: &BotApi, user: i64, text: &str) -> String {
    let before = api.sent_to(user).len();
    api.user_says(user, user, text);
    let mut answer = String::new();
    wait_for(&format!("an answer to {text:?}"), || {
        let sent = api.sent_to(user);
        match sent.get(before) {
            Some(message) => {
                answer = message.text.clone();
                true
            }
            None => false,
        }
    });
    answer
}

#[test]
fn commands_are_answered_by_the_gateway_and_other_slash_words_reach_the_agent() {
    let api = BotApi::start(TOKEN);
    let home = home_for(&api, None);
    let gateway = start(&home);

    let help = ask(&api, OWNER, "/help");
    for command in ["/new", "/stop", "/status", "/whoami", "/pair", "/help"] {
        assert!(help.contains(command), "{help}");
    }
    wait_for("the command menu", || api.commands().is_some());
    let menu = api.commands().unwrap();
    assert!(
        menu.as_array().unwrap().iter().any(|c| c["command"] == "stop"),
        "{menu}"
    );

    let whoami = ask(&api, OWNER, "/whoami");
    assert!(whoami.contains(&format!("Telegram user {OWNER}")), "{whoami}");
    assert!(
        whoami.contains("admin") && whoami.contains("allowed_users"),
        "{whoami}"
    );

    assert_eq!(ask(&api, OWNER, "hello"), "echo: hello");
    assert_eq!(
        ask(&api, OWNER, "/imagine a cat"),
        "echo: /imagine a cat",
        "not ours: the agent's"
    );
    let status = ask(&api, OWNER, "/status");
    assert!(
        status.contains("Herald is running") && status.contains("conversation 1"),
        "{status}"
    );
    assert!(
        status.contains("Adapter telegram: connected"),
        "admins see the adapters: {status}"
    );

    let new = ask(&api, OWNER, "/new");
    assert!(new.starts_with("Started a new conversation"), "{new}");
    let again = ask(&api, OWNER, "/reset");
    assert!(again.contains("already fresh"), "{again}");
    let status = ask(&api, OWNER, "/status");
    assert!(status.contains("conversation 2"), "{status}");
    // Commands never became turns: the journal holds the two messages only.
    let history = support::http(
        &home.http_url(),
        "GET",
        &format!("/v1/sessions/{OWNER}/messages"),
        &[],
        b"",
    );
    // The HTTP API reads its own sessions; the Telegram session is read through the journal below.
    assert_eq!(history.status, 200);
    stop(&home, gateway);
    let messages = stored(&home, &OWNER.to_string());
    let texts: Vec<_> = messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        ["hello", "echo: hello", "/imagine a cat", "echo: /imagine a cat"]
    );
}

#[test]
fn stop_kills_the_running_turn_and_no_reply_ever_follows() {
    let api = BotApi::start(TOKEN);
    let (_dir, log) = agent_log();
    let home = home_for(&api, Some(&log));
    let gateway = start(&home);

    assert_eq!(
        ask(&api, OWNER, "/stop"),
        "Nothing to stop: no answer is being written in this chat."
    );
    api.user_says(OWNER, OWNER, "sleep:8000:long job");
    wait_for("the agent to start", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("long job"))
    });
    let stopped_at = Instant::now();
    let answer = ask(&api, OWNER, "/stop");
    assert_eq!(answer, "Stopped. No answer will come for that message.");
    // The agent would have answered 8 s after it started: wait past that, and see nothing come.
    std::thread::sleep(Duration::from_secs(9).saturating_sub(stopped_at.elapsed()) + Duration::from_secs(1));
    let sent: Vec<String> = api.sent_to(OWNER).into_iter().map(|m| m.text).collect();
    assert!(
        !sent.iter().any(|t| t.contains("agent: sleep")),
        "a late reply: {sent:?}"
    );
    let agent_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        !agent_log.contains("end "),
        "the agent process was killed, not left to finish: {agent_log}"
    );
    // The chat goes on.
    assert_eq!(ask(&api, OWNER, "after"), "agent: after");
    stop(&home, gateway);
    let messages = stored(&home, &OWNER.to_string());
    let shown: Vec<_> = messages
        .iter()
        .map(|m| (m.text.as_str(), m.status.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            ("sleep:8000:long job", "cancelled"),
            ("Stopped with /stop before it was answered.", "cancelled"),
            ("after", "done"),
            ("agent: after", "done"),
        ]
    );
}

fn pair_code(home: &TestHome, extra: &[&str]) -> String {
    let mut args = vec!["pair", "telegram"];
    args.extend_from_slice(extra);
    let out = home.output(&args);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn access_list(home: &TestHome) -> serde_json::Value {
    let out = home.output(&["access", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn pairing_lets_one_stranger_in_once_until_revoked() {
    let api = BotApi::start(TOKEN);
    let home = home_for(&api, None);
    let gateway = start(&home);
    let (ann, bob, eve) = (101, 102, 103);

    assert!(
        ask(&api, ann, "hello").contains("/pair CODE"),
        "the denial says how to get in"
    );
    let code = pair_code(&home, &[]);
    assert_eq!(code.len(), 9, "{code}");
    // The code is on stdout once and stored nowhere.
    let stored: Vec<PathBuf> = walk(&home.home().access_dir());
    for file in &stored {
        let body = std::fs::read_to_string(file).unwrap();
        assert!(
            !body.contains(&code.replace('-', "")) && !body.contains(&code),
            "{}",
            file.display()
        );
    }

    let paired = ask(&api, ann, &format!("/pair {}", code.to_lowercase()));
    assert!(paired.starts_with("Paired"), "{paired}");
    assert_eq!(ask(&api, ann, "hello"), "echo: hello");
    let whoami = ask(&api, ann, "/whoami");
    assert!(whoami.contains("Access: user (paired"), "{whoami}");
    let status = ask(&api, ann, "/status");
    assert!(
        !status.contains("Adapter telegram"),
        "users see their chat, not the gateway: {status}"
    );

    // Single use.
    let reused = ask(&api, bob, &format!("/pair {code}"));
    assert!(reused.contains("unknown or already used"), "{reused}");
    assert!(ask(&api, bob, "hello").starts_with("Sorry, this bot only talks"));

    // Wrong guesses are limited per user (bob has one already).
    for _ in 0..4 {
        assert!(ask(&api, bob, "/pair AAAA-AAAA").contains("unknown or already used"));
    }
    let fresh = pair_code(&home, &[]);
    let limited = ask(&api, bob, &format!("/pair {fresh}"));
    assert!(
        limited.starts_with("Too many wrong codes"),
        "even a right code waits: {limited}"
    );
    // ...but not for others: eve uses it.
    assert!(ask(&api, eve, &format!("/pair {fresh}")).starts_with("Paired"));

    // Expiry.
    let short = pair_code(&home, &["--expires-in", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(ask(&api, 104, &format!("/pair {short}")).contains("expired"));

    let listed = access_list(&home);
    let users: Vec<&str> = listed["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, [ann.to_string(), eve.to_string()]);
    assert_eq!(listed["grants"][0]["level"], "user");

    // Revoked: the very next message is denied, without a reload.
    let out = home.output(&["access", "revoke", "telegram", &ann.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(ask(&api, ann, "hello again").starts_with("Sorry, this bot only talks"));
    let out = home.output(&["access", "revoke", "telegram", &ann.to_string()]);
    assert_eq!(out.status.code(), Some(1), "nothing to revoke: {}", text(&out));

    // An admin code makes an admin.
    let admin = pair_code(&home, &["--admin"]);
    assert!(ask(&api, 105, &format!("/pair {admin}")).contains("access: admin"));
    let log = stop(&home, gateway);
    assert!(
        !log.contains(&code) && !log.contains(&fresh),
        "codes never reach the log"
    );
    assert!(
        log.contains("pairing code that was refused"),
        "wrong codes are logged"
    );
}

#[test]
fn commands_work_over_the_local_api_too() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let url = home.http_url();
    let reply = post_message(&url, "s1", Some("m1"), "hello", "?wait=true");
    assert_eq!(reply.json()["reply"]["text"], "echo: hello");
    let new = post_message(&url, "s1", Some("c1"), "/new", "?wait=true");
    assert_eq!(new.status, 200, "{}", new.body);
    assert_eq!(new.json()["command"], "new");
    assert!(
        new.json()["reply"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Started a new conversation")
    );
    // The same command message again (a client retry) does not reset twice.
    post_message(&url, "s1", Some("m2"), "after", "?wait=true");
    let retried = post_message(&url, "s1", Some("c1"), "/new", "?wait=true");
    assert_eq!(retried.status, 200);
    let status = post_message(&url, "s1", None, "/status", "");
    let status_text = status.json()["reply"]["text"].as_str().unwrap().to_owned();
    assert!(status_text.contains("conversation 2"), "{status_text}");
    assert!(
        status_text.contains("slots"),
        "the local API is the owner: {status_text}"
    );
    let whoami = post_message(&url, "s1", None, "/whoami", "");
    assert!(
        whoami.json()["reply"]["text"]
            .as_str()
            .unwrap()
            .contains("local API")
    );
    assert!(home.output(&["stop"]).status.success());
    gateway.wait();
}

/// Waits for the bot's next message in `chat` after the first `before`, and returns it.
fn next_in(api: &BotApi, chat: i64, before: usize) -> bot_api::Sent {
    let mut found = None;
    wait_for(&format!("a message in chat {chat}"), || {
        found = api.sent_to(chat).get(before).cloned();
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn in_groups_the_bot_answers_only_when_addressed_and_never_another_bot() {
    const GROUP: i64 = -200;
    const PER_USER_GROUP: i64 = -300;
    const MEMBER: i64 = 8;
    let api = BotApi::start(TOKEN);
    let home = home_with(
        &api,
        None,
        &format!(
            "allowed_users = [{OWNER}, {MEMBER}]\nadmin_users = [{OWNER}]\n\
             [telegram.chats.\"{PER_USER_GROUP}\"]\nsessions = \"per_user\"\n"
        ),
    );
    let gateway = start(&home);
    let mention = format!("@{BOT_USERNAME}");

    // People talking among themselves are left alone; a mention is answered, in reply, without it.
    api.group_says(OWNER, GROUP, "lunch anyone?", json!({}));
    let asked = api.group_says(OWNER, GROUP, &format!("{mention} what is 2+2"), json!({}));
    let answer = next_in(&api, GROUP, 0);
    assert_eq!(
        (answer.text.as_str(), answer.reply_to),
        ("echo: what is 2+2", Some(asked))
    );
    // A reply to one of the bot's messages is addressed to it.
    api.group_says(
        MEMBER,
        GROUP,
        "and 3+3?",
        json!({"reply_to_message": {"message_id": 1, "from": {"id": BOT_ID, "is_bot": true}}}),
    );
    assert_eq!(next_in(&api, GROUP, 1).text, "echo: and 3+3?");
    // Another bot is never answered, even when it mentions this one; nor a stranger chatting.
    api.group_says(
        555,
        GROUP,
        &format!("{mention} ping"),
        json!({"from": {"id": 555, "is_bot": true, "first_name": "OtherBot"}}),
    );
    api.group_says(666, GROUP, "hello all", json!({}));
    api.group_says(OWNER, GROUP, "/new@some_other_bot", json!({}));
    // A stranger who addresses the bot is told how to get in.
    api.group_says(666, GROUP, &format!("{mention} let me in"), json!({}));
    assert!(
        next_in(&api, GROUP, 2)
            .text
            .starts_with("Sorry, this bot only talks")
    );
    assert_eq!(api.sent_to(GROUP).len(), 3, "{:?}", api.sent_to(GROUP));

    // In a shared group conversation only an admin may /stop (the answer may be someone else's).
    api.group_says(MEMBER, GROUP, "/stop", json!({}));
    assert!(next_in(&api, GROUP, 3).text.starts_with("Only an admin"));
    api.group_says(OWNER, GROUP, &format!("/stop@{BOT_USERNAME}"), json!({}));
    assert!(next_in(&api, GROUP, 4).text.starts_with("Nothing to stop"));

    // A per-person group: each member has a conversation of their own, answered in the group.
    api.group_says(OWNER, PER_USER_GROUP, &format!("{mention} mine"), json!({}));
    assert_eq!(next_in(&api, PER_USER_GROUP, 0).text, "echo: mine");
    api.group_says(MEMBER, PER_USER_GROUP, &format!("{mention} yours"), json!({}));
    assert_eq!(next_in(&api, PER_USER_GROUP, 1).text, "echo: yours");
    api.group_says(MEMBER, PER_USER_GROUP, "/stop", json!({}));
    assert!(
        next_in(&api, PER_USER_GROUP, 2)
            .text
            .starts_with("Nothing to stop"),
        "their own conversation: no admin needed"
    );
    stop(&home, gateway);

    let sessions = herald_gateway::journal::HistoryStore::sessions(&journal(&home), 100)
        .wait()
        .unwrap();
    let mut names: Vec<String> = sessions.iter().map(|s| s.session.chat_id.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            format!("{GROUP}"),
            format!("{PER_USER_GROUP}:{OWNER}"),
            format!("{PER_USER_GROUP}:{MEMBER}")
        ]
    );
}

#[test]
fn a_streamed_answer_grows_in_one_message_edited_at_most_once_a_second() {
    let api = BotApi::start(TOKEN);
    let (_dir, log) = agent_log();
    let home = home_for(&api, Some(&log));
    let gateway = start(&home);

    api.user_says(OWNER, OWNER, "stream:6:700:");
    // A draft shows while the agent still writes.
    wait_for("a draft", || {
        api.sent_to(OWNER)
            .first()
            .is_some_and(|m| m.text.starts_with("line 1"))
    });
    let agent_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        !agent_log.contains("end "),
        "the draft came before the answer: {agent_log}"
    );
    let final_text = (1..=6)
        .map(|i| format!("line {i}"))
        .collect::<Vec<_>>()
        .join("\n");
    wait_for("the final answer", || {
        api.sent_to(OWNER).first().is_some_and(|m| m.text == final_text)
    });
    let sent = api.sent_to(OWNER);
    assert_eq!(sent.len(), 1, "one message, edited: {sent:?}");
    let edits = api.edits();
    assert!(edits.len() >= 2, "it grew by edits: {edits:?}");
    assert!(edits.iter().all(|(_, id, _)| *id == sent[0].message_id));
    for pair in edits.windows(2) {
        let gap = pair[1].0.duration_since(pair[0].0);
        assert!(
            gap >= Duration::from_millis(900),
            "edits {gap:?} apart: {edits:?}"
        );
    }
    // The journal holds the one answer.
    stop(&home, gateway);
    let messages = stored(&home, &OWNER.to_string());
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].text, final_text);
}

#[test]
fn a_kill_mid_stream_leaves_one_answer_in_the_chat() {
    let api = BotApi::start(TOKEN);
    let (_dir, log) = agent_log();
    let home = home_for(&api, Some(&log));
    let gateway = start(&home);

    api.user_says(OWNER, OWNER, "stream:8:400:");
    wait_for("a draft with two lines", || {
        api.sent_to(OWNER)
            .first()
            .is_some_and(|m| m.text.starts_with("line 1\nline 2"))
    });
    gateway.kill();
    // The turn is resumed after the restart: the same draft is edited into the answer.
    let gateway = start(&home);
    let final_text = (1..=8)
        .map(|i| format!("line {i}"))
        .collect::<Vec<_>>()
        .join("\n");
    wait_for("the final answer", || {
        api.sent_to(OWNER).iter().any(|m| m.text == final_text)
    });
    let sent = api.sent_to(OWNER);
    assert_eq!(sent.len(), 1, "one answer, not a partial one beside it: {sent:?}");
    let starts = std::fs::read_to_string(&log).unwrap().matches("start ").count();
    assert_eq!(starts, 2, "the turn ran again after the kill");
    stop(&home, gateway);
}

#[test]
fn files_reach_the_agent_stored_once_and_oversized_ones_are_refused() {
    let api = BotApi::start(TOKEN);
    let (_dir, log) = agent_log();
    let home = home_for(&api, Some(&log));
    let mut config = std::fs::read_to_string(home.root.join("herald.toml")).unwrap();
    config = config.replace("[gateway]\n", "[gateway]\nmedia_max_mb = 1\n");
    home.write("herald.toml", config.as_bytes());
    let gateway = start(&home);

    let photo: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let before = api.sent_to(OWNER).len();
    let photo_id = api.user_sends_file(
        OWNER,
        "photo",
        json!({"width": 64, "height": 48}),
        &photo,
        Some("what is this?"),
    );
    assert_eq!(next_in(&api, OWNER, before).text, "agent: what is this?");
    let seen = agent_inputs(&log);
    let attachment = &seen[0]["attachments"][0];
    assert_eq!(attachment["kind"], "photo");
    assert_eq!(attachment["mime"], "image/jpeg");
    assert_eq!(attachment["size"], 3000);
    let path = PathBuf::from(attachment["path"].as_str().unwrap());
    assert!(path.starts_with(home.home().media_dir()), "{}", path.display());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        photo,
        "the agent reads the very bytes sent"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    api.user_sends_file(
        OWNER,
        "document",
        json!({"file_name": "notes.txt", "mime_type": "text/plain"}),
        b"remember the milk",
        None,
    );
    next_in(&api, OWNER, before + 1);
    let seen = agent_inputs(&log);
    let document = &seen[1]["attachments"][0];
    assert_eq!(
        (document["kind"].as_str(), document["name"].as_str()),
        (Some("document"), Some("notes.txt"))
    );
    assert_eq!(
        std::fs::read(document["path"].as_str().unwrap()).unwrap(),
        b"remember the milk"
    );
    assert_eq!(api.downloads().len(), 2);

    // The same file again (what a retried update is): stored already, not downloaded again.
    api.other_update(json!({"message": {
        "message_id": 900, "date": 1, "from": {"id": OWNER, "is_bot": false, "first_name": "Test"},
        "chat": {"id": OWNER, "type": "private"}, "caption": "again",
        "photo": [{"file_id": photo_id, "file_unique_id": format!("u{photo_id}"), "width": 64, "height": 48,
                   "file_size": 3000}],
    }}));
    assert_eq!(next_in(&api, OWNER, before + 2).text, "agent: again");
    assert_eq!(api.downloads().len(), 2, "{:?}", api.downloads());

    // Over [gateway] media_max_mb: refused with a reply, never downloaded, no turn.
    let big = vec![7u8; 1_200_000];
    api.user_sends_file(
        OWNER,
        "document",
        json!({"file_name": "big.bin"}),
        &big,
        Some("take this"),
    );
    let refused = next_in(&api, OWNER, before + 3).text;
    assert!(
        refused.starts_with("Sorry, that file is too big for me (1.1 MB; the limit is 1 MB)"),
        "{refused}"
    );
    assert_eq!(api.downloads().len(), 2);
    assert_eq!(agent_inputs(&log).len(), 3);
    stop(&home, gateway);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn files_an_agent_makes_go_back_as_photos_and_documents_and_nothing_outside_its_folder_does() {
    let api = BotApi::start(TOKEN);
    let (_dir, log) = agent_log();
    let home = home_for(&api, Some(&log));
    let gateway = start(&home);

    // Over Telegram: the text first, then each file, a picture as a photo and the rest as documents.
    let answer = ask(
        &api,
        OWNER,
        "files:chart.png,report.pdf,!/etc/passwd,!../../herald.toml",
    );
    assert!(answer.starts_with("here are your files"), "{answer}");
    assert!(
        answer.contains("the file \"/etc/passwd\" was not sent: it is not in the turn's files folder"),
        "{answer}"
    );
    assert!(
        answer
            .contains("the file \"../../herald.toml\" was not sent: its name leaves the turn's files folder"),
        "{answer}"
    );
    wait_for("two uploads", || api.uploads().len() >= 2);
    let uploads = api.uploads();
    assert_eq!(uploads.len(), 2, "{uploads:?}");
    assert_eq!(
        (
            uploads[0].method.as_str(),
            uploads[0].file_name.as_str(),
            uploads[0].mime.as_str()
        ),
        ("sendPhoto", "chart.png", "image/png")
    );
    assert_eq!(uploads[0].bytes, b"content of chart.png");
    assert_eq!(uploads[0].chat_id, OWNER);
    assert_eq!(
        (
            uploads[1].method.as_str(),
            uploads[1].file_name.as_str(),
            uploads[1].mime.as_str()
        ),
        ("sendDocument", "report.pdf", "application/pdf")
    );
    // The agent was told where its folder is; the files stay in the home's media store, private.
    let turn = agent_inputs(&log).pop().unwrap();
    let folder = PathBuf::from(turn["files_dir"].as_str().unwrap());
    assert!(
        folder.starts_with(home.root.join("media").join("out")),
        "{folder:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    // Over the local API: the reply lists the file with a URL that serves it, and only it.
    let url = home.http_url();
    let posted = post_message(
        &url,
        "s1",
        Some("f1"),
        "files:notes.txt,!missing.txt",
        "?wait=true",
    );
    assert_eq!(posted.status, 200, "{}", posted.body);
    let reply = posted.json()["reply"].clone();
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("the file \"missing.txt\" was not sent: there is no such file"),
        "{reply}"
    );
    let files = reply["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{reply}");
    assert_eq!(files[0]["name"], "notes.txt");
    assert_eq!(files[0]["mime"], "text/plain");
    assert_eq!(files[0]["size"], 20);
    let file_url = files[0]["url"].as_str().unwrap().to_owned();
    let got = http(&url, "GET", &file_url, &[], b"");
    assert_eq!((got.status, got.body.as_str()), (200, "content of notes.txt"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    assert!(
        got.header("content-disposition")
            .unwrap()
            .starts_with("attachment"),
        "{got:?}"
    );
    // The session's history lists the reply's files too, with the same URL.
    let history = http(&url, "GET", "/v1/sessions/s1/messages", &[], b"");
    let messages = history.json()["messages"].clone();
    let answer = messages
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant")
        .expect("the reply in the history");
    assert_eq!(answer["files"], reply["files"], "{messages}");
    // A retried message gets the same files.
    let again = post_message(
        &url,
        "s1",
        Some("f1"),
        "files:notes.txt,!missing.txt",
        "?wait=true",
    );
    assert_eq!(again.json()["reply"]["files"], reply["files"]);
    let turn_part = file_url
        .trim_start_matches("/v1/files/")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    for path in [
        format!("/v1/files/{turn_part}/..%2F..%2F..%2Fherald.toml"),
        format!("/v1/files/{turn_part}/missing.txt"),
        "/v1/files/999999/notes.txt".to_owned(),
        "/v1/files/x/notes.txt".to_owned(),
    ] {
        let refused = http(&url, "GET", &path, &[], b"");
        assert_eq!(refused.status, 404, "{path}: {}", refused.body);
        assert_eq!(refused.json()["error"], "no_such_file", "{path}");
    }
    stop(&home, gateway);
}
