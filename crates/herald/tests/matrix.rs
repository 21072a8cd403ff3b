//! The Matrix adapter end to end against a real homeserver: Synapse (PyPI `matrix-synapse`, installed by
//! `ci/peers/install-synapse.sh`), one per test, SQLite, on loopback (`ci/peers/synapse_server.py`).
//! The people are real Matrix clients too: matrix-sdk in this test crate, with its own end-to-end
//! encryption, reading the bot's replies from their own sync.
//!
//! Linux only: the Windows test binary cannot start Synapse (a Python program of this machine) under
//! Wine; the adapter is the same code on every platform. Built with the `matrix` feature only (the herald
//! under test must have the adapter): `cargo test --features herald/matrix`, as `ci/test.sh` runs it.
//! With `postgres` as well (as CI builds it), two replicas on the test cluster share the bot.
#![cfg(all(target_os = "linux", feature = "matrix"))]

#[cfg(feature = "postgres")]
#[path = "support/database.rs"]
mod database;
mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, Relation, RoomMessageEventContent,
};
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId, UserId};
use matrix_sdk::{Client, Room};
use support::{Gateway, TestHome, wait_for};

const BOT_PASSWORD: &str = "bot-password-1";
const PASSWORD: &str = "person-password-1";
/// What each test's config names in `[matrix] password_env`.
const PASSWORD_ENV: &str = "HERALD_TEST_MATRIX_PASSWORD";

/// A Synapse of the test's own. Killed on drop.
struct Synapse {
    dir: tempfile::TempDir,
    port: u16,
    python: PathBuf,
    child: Option<Child>,
}

impl Synapse {
    fn start() -> Synapse {
        let python = std::env::var_os("HERALD_SYNAPSE_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ci/peers/synapse-venv/bin/python")
            });
        assert!(
            python.exists(),
            "the Synapse test peer is missing at {}: run `bash ci/peers/install-synapse.sh`",
            python.display()
        );
        let mut synapse = Synapse {
            dir: tempfile::tempdir().unwrap(),
            port: 0,
            python,
            child: None,
        };
        // A port another test takes between the pick and Synapse's bind makes Synapse exit: pick again.
        for _ in 0..5 {
            synapse.port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if synapse.run() {
                return synapse;
            }
        }
        panic!(
            "Synapse did not start (see {})",
            synapse.dir.path().join("out.log").display()
        );
    }

    /// Starts (again) on the same folder and port; `false` when it exited instead of serving.
    fn run(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.path().join("out.log")).unwrap();
        let child = Command::new(&self.python)
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ci/peers/synapse_server.py"))
            .arg(self.dir.path().join("hs"))
            .arg(self.port.to_string())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("python for Synapse");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                eprintln!("synapse exited ({status}) on port {}", self.port);
                self.child = None;
                return false;
            }
            if support::try_http(&self.url(), "GET", "/_matrix/client/versions", &[], b"")
                .is_ok_and(|r| r.status == 200)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("Synapse did not answer within 60 s");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.run() {
            assert!(
                Instant::now() < deadline,
                "Synapse did not start again on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn register(&self, user: &str, password: &str) {
        let out = Command::new(self.python.with_file_name("register_new_matrix_user"))
            .args([
                "-u",
                user,
                "-p",
                password,
                "--no-admin",
                "-k",
                "herald-test-shared-secret",
            ])
            .arg(self.url())
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot register {user}: {}",
            support::text(&out)
        );
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A room message someone saw in their sync.
#[derive(Debug, Clone)]
struct Seen {
    room: OwnedRoomId,
    sender: String,
    msgtype: String,
    /// The text (an edit's new text, `m.new_content`).
    body: String,
    /// An edit (`m.replace`) of an earlier message.
    replaces: bool,
    encrypted: bool,
}

/// A person with a real Matrix client (in-memory store, end-to-end encryption on).
struct Person {
    client: Client,
    seen: Arc<Mutex<Vec<Seen>>>,
    rt: Arc<tokio::runtime::Runtime>,
}

impl Person {
    fn login(rt: &Arc<tokio::runtime::Runtime>, synapse: &Synapse, user: &str) -> Person {
        synapse.register(user, PASSWORD);
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let client = rt.block_on(async {
            let client = Client::builder()
                .homeserver_url(synapse.url())
                .build()
                .await
                .unwrap();
            client
                .matrix_auth()
                .login_username(user, PASSWORD)
                .send()
                .await
                .unwrap();
            client
        });
        let person = Person {
            client,
            seen,
            rt: rt.clone(),
        };
        person.install_handler();
        person.sync();
        person
    }

    fn install_handler(&self) {
        let log = self.seen.clone();
        self.client.add_event_handler(
            move |event: OriginalSyncRoomMessageEvent,
                  room: Room,
                  info: Option<matrix_sdk::deserialized_responses::EncryptionInfo>| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(Seen {
                        room: room.room_id().to_owned(),
                        sender: event.sender.to_string(),
                        msgtype: event.content.msgtype().to_owned(),
                        body: match &event.content.relates_to {
                            Some(Relation::Replacement(r)) => r.new_content.msgtype.body().to_owned(),
                            _ => event.content.body().to_owned(),
                        },
                        replaces: matches!(event.content.relates_to, Some(Relation::Replacement(_))),
                        encrypted: info.is_some(),
                    });
                }
            },
        );
    }

    fn user_id(&self) -> OwnedUserId {
        self.client.user_id().unwrap().to_owned()
    }

    fn sync(&self) {
        self.rt.block_on(async {
            self.client
                .sync_once(SyncSettings::default().timeout(Duration::from_millis(500)))
                .await
                .unwrap();
        });
    }

    /// Syncs until `condition` holds on what this person saw (at most 60 s).
    fn sync_until(&self, what: &str, mut condition: impl FnMut(&[Seen]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if condition(&self.seen.lock().unwrap()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; seen: {:#?}",
                self.seen.lock().unwrap()
            );
            self.sync();
        }
    }

    /// Creates a room with `others` invited: encrypted or not, a direct chat or not.
    fn create_room(&self, others: &[&UserId], encrypted: bool, direct: bool) -> Room {
        self.rt.block_on(async {
            if encrypted && direct && others.len() == 1 {
                return self.client.create_dm(others[0]).await.unwrap();
            }
            let mut request = CreateRoom::new();
            request.invite = others.iter().map(|u| (*u).to_owned()).collect();
            request.is_direct = direct;
            request.preset = Some(RoomPreset::PrivateChat);
            let room = self.client.create_room(request).await.unwrap();
            if encrypted {
                room.enable_encryption().await.unwrap();
            }
            room
        })
    }

    fn join(&self, room: &OwnedRoomId) {
        self.sync();
        self.rt.block_on(async {
            self.client.join_room_by_id(room).await.unwrap();
        });
    }

    /// Syncs until `user` is a joined member of `room`.
    fn wait_member(&self, room: &Room, user: &UserId, want: MembershipState) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.sync();
            let state = self.rt.block_on(async {
                room.get_member_no_sync(user)
                    .await
                    .unwrap()
                    .map(|m| m.membership().clone())
            });
            if state.as_ref() == Some(&want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{user} is {state:?} in the room, not {want:?}"
            );
        }
    }

    fn say(&self, room: &Room, text: &str) {
        self.rt.block_on(async {
            room.send(RoomMessageEventContent::text_plain(text))
                .await
                .unwrap();
        });
    }

    /// The bot's messages in `room` this person saw, final texts (edits applied in order).
    fn bot_said(&self, room: &Room) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.room == room.room_id() && s.sender == BOT_ID)
            .cloned()
            .collect()
    }
}

const BOT_ID: &str = "@herald:localhost";

fn runtime() -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    )
}

/// A home whose gateway is the Matrix bot `@herald:localhost` on `synapse`, letting in `allowed`.
fn home_for(synapse: &Synapse, allowed: &[&str], extra: &str) -> TestHome {
    let home = TestHome::new();
    let allowed: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n{extra}\n[matrix]\nenabled = true\nhomeserver = \"{}\"\n\
             user_id = \"{BOT_ID}\"\npassword_env = \"{PASSWORD_ENV}\"\nallowed_users = [{}]\nsync_timeout_secs = 2\n",
            synapse.url(),
            allowed.join(", ")
        )
        .as_bytes(),
    );
    home
}

fn start(home: &TestHome) -> Gateway {
    let gateway = home.start_with_env(&["run", "--no-supervise"], &[(PASSWORD_ENV, BOT_PASSWORD)]);
    wait_adapter(home, "connected");
    gateway
}

fn adapter(home: &TestHome) -> Option<(String, Option<String>)> {
    let state = home.state()?;
    let adapter = state.adapters.iter().find(|a| a.name == "matrix")?;
    Some((adapter.state.as_str().to_owned(), adapter.message.clone()))
}

fn wait_adapter(home: &TestHome, want: &str) -> Option<String> {
    let mut message = None;
    wait_for(&format!("the matrix adapter to be {want}"), || {
        match adapter(home) {
            Some((state, m)) if state == want => {
                message = m;
                true
            }
            _ => false,
        }
    });
    message
}

/// A Synapse with the bot registered, alice logged in, and a home whose bot lets in `allowed` (not
/// started: `start(&scene.home)`).
struct Scene {
    rt: Arc<tokio::runtime::Runtime>,
    synapse: Synapse,
    alice: Person,
    home: TestHome,
    bot: OwnedUserId,
}

fn scene(allowed: &[&str], extra: &str) -> Scene {
    let rt = runtime();
    let synapse = Synapse::start();
    synapse.register("herald", BOT_PASSWORD);
    let alice = Person::login(&rt, &synapse, "alice");
    let home = home_for(&synapse, allowed, extra);
    Scene {
        rt,
        synapse,
        alice,
        home,
        bot: BOT_ID.parse().unwrap(),
    }
}

impl Scene {
    /// A direct chat of alice's with the bot, once the bot joined it.
    fn direct_chat(&self, encrypted: bool) -> Room {
        let room = self.alice.create_room(&[&self.bot], encrypted, true);
        self.alice.wait_member(&room, &self.bot, MembershipState::Join);
        room
    }

    fn person(&self, user: &str) -> Person {
        Person::login(&self.rt, &self.synapse, user)
    }
}

/// `[agent]` for the `test_agent` command agent, logging to `log`.
fn command_agent(log: &std::path::Path, stream: bool) -> String {
    format!(
        "[agent]\nbackend = \"command\"\n[agent.command]\nstream = {stream}\ncommand = [{:?}, {:?}]\n",
        support::test_agent().display().to_string(),
        log.display().to_string()
    )
}

#[test]
fn a_direct_chat_is_answered_once_as_a_notice_and_a_strangers_invite_is_declined() {
    let scene = scene(&["@alice:localhost"], "");
    let mallory = scene.person("mallory");
    let Scene { alice, home, bot, .. } = &scene;
    let gateway = start(home);
    let room = scene.direct_chat(false);
    alice.say(&room, "hello");
    alice.sync_until("the bot's answer", |seen| {
        seen.iter().any(|s| s.sender == BOT_ID && s.body == "echo: hello")
    });
    let said = alice.bot_said(&room);
    assert_eq!(said.len(), 1, "{said:#?}");
    assert_eq!(said[0].msgtype, "m.notice");
    assert!(!said[0].encrypted);

    // Someone not let in: their invite is declined, and nothing they say reaches the agent.
    let theirs = mallory.create_room(&[bot], false, true);
    mallory.wait_member(&theirs, bot, MembershipState::Leave);
    // A command is answered before the agent.
    alice.say(&room, "!status");
    alice.sync_until("the answer to !status", |seen| {
        seen.iter().any(|s| s.sender == BOT_ID && s.body != "echo: hello")
    });
    let (_, status) = home.status_json();
    let adapters = status["adapters"].as_array().cloned().unwrap_or_default();
    assert!(
        adapters
            .iter()
            .any(|a| a["name"] == "matrix" && a["state"] == "connected"),
        "{status:#}"
    );
    // The password and the access tokens it got (Synapse's start `syt_`) are in no log.
    support::ok(&home.output(&["stop"]));
    let (_, logs) = gateway.wait();
    assert!(logs.contains("matrix: logged in"), "{logs}");
    assert!(!logs.contains(BOT_PASSWORD) && !logs.contains("syt_"), "{logs}");
    let device = std::fs::read_to_string(home.home().matrix_dir().join("device.json")).unwrap();
    assert!(
        !device.contains(BOT_PASSWORD) && !device.contains("syt_"),
        "{device}"
    );
}

#[test]
fn an_encrypted_direct_chat_is_read_and_answered_encrypted_and_its_keys_survive_a_restart() {
    let scene = scene(&["@alice:localhost"], "");
    let Scene { alice, home, .. } = &scene;
    let gateway = start(home);
    let room = scene.direct_chat(true);
    alice.say(&room, "a secret");
    alice.sync_until("the bot's encrypted answer", |seen| {
        seen.iter()
            .any(|s| s.sender == BOT_ID && s.body == "echo: a secret")
    });
    let said = alice.bot_said(&room);
    assert!(said.iter().all(|s| s.encrypted), "{said:#?}");
    let device = std::fs::read_to_string(home.home().matrix_dir().join("device.json")).unwrap();
    assert!(
        !device.contains(BOT_PASSWORD),
        "no secret in the device record: {device}"
    );

    // The same device after a restart: the room's keys are still there, the new message reads.
    drop(gateway);
    let gateway = start(home);
    let after = std::fs::read_to_string(home.home().matrix_dir().join("device.json")).unwrap();
    assert_eq!(device, after, "the device is kept across restarts");
    alice.say(&room, "another secret");
    alice.sync_until("the answer after a restart", |seen| {
        seen.iter()
            .any(|s| s.sender == BOT_ID && s.body == "echo: another secret")
    });

    // A lost key store is reported, not replaced.
    drop(gateway);
    std::fs::remove_dir_all(home.home().matrix_dir().join("store")).unwrap();
    let _gateway = home.start_with_env(&["run", "--no-supervise"], &[(PASSWORD_ENV, BOT_PASSWORD)]);
    let message = wait_adapter(home, "bad_credentials").unwrap_or_default();
    assert!(
        message.contains("missing") && message.contains("device.json"),
        "{message}"
    );
    assert!(
        !home
            .home()
            .matrix_dir()
            .join("store")
            .join("matrix-sdk-crypto.sqlite3")
            .exists()
    );
    // And doctor says the same.
    let out = home
        .cmd(&["doctor", "--json"])
        .env(PASSWORD_ENV, BOT_PASSWORD)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let matrix = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "matrix")
        .unwrap()
        .clone();
    assert_eq!(matrix["verdict"], "FAIL", "{json:#}");
    assert!(matrix["detail"].as_str().unwrap().contains("missing"), "{json:#}");
}

#[test]
fn a_streamed_answer_grows_in_one_message_edited_into_the_reply() {
    let log = tempfile::tempdir().unwrap();
    let scene = scene(
        &["@alice:localhost"],
        &command_agent(&log.path().join("agent.log"), true),
    );
    let Scene { alice, home, .. } = &scene;
    let _gateway = start(home);
    // Doctor: the homeserver answers, the device is there.
    let out = home
        .cmd(&["doctor", "--json"])
        .env(PASSWORD_ENV, BOT_PASSWORD)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["check"] == "matrix" && c["verdict"] == "PASS"),
        "{json:#}"
    );
    let room = scene.direct_chat(false);
    alice.say(&room, "stream:4:700:go");
    alice.sync_until("the final edit", |seen| {
        seen.iter()
            .any(|s| s.sender == BOT_ID && s.body.ends_with("line 4") && s.body.starts_with("line 1"))
    });
    let said = alice.bot_said(&room);
    // One message (the draft), then edits of it: never a second message beside it.
    assert_eq!(said.iter().filter(|s| !s.replaces).count(), 1, "{said:#?}");
    assert!(said.iter().filter(|s| s.replaces).count() >= 2, "{said:#?}");
    assert!(
        said[0].body.contains('…'),
        "the draft shows it is not done: {said:#?}"
    );
}

#[test]
fn in_a_room_of_three_only_mentions_and_commands_are_answered() {
    let scene = scene(&["@alice:localhost", "@carol:localhost"], "");
    let carol = scene.person("carol");
    let Scene { alice, home, bot, .. } = &scene;
    let _gateway = start(home);

    let room = alice.create_room(&[bot, &carol.user_id()], false, false);
    carol.join(&room.room_id().to_owned());
    alice.wait_member(&room, bot, MembershipState::Join);
    alice.wait_member(&room, &carol.user_id(), MembershipState::Join);
    alice.say(&room, "hello everyone");
    alice.say(&room, "herald: are you there");
    alice.sync_until("the answer to the mention", |seen| {
        seen.iter()
            .any(|s| s.sender == BOT_ID && s.body == "echo: are you there")
    });
    // Everything before the mention is in the room by now: only the mention was answered.
    let said = alice.bot_said(&room);
    assert_eq!(said.len(), 1, "{said:#?}");
}

#[test]
fn a_kill_mid_turn_and_a_stop_before_the_message_still_answer_each_message_once() {
    let log = tempfile::tempdir().unwrap();
    let agent_log = log.path().join("agent.log");
    let scene = scene(&["@alice:localhost"], &command_agent(&agent_log, false));
    let Scene { alice, home, .. } = &scene;
    let gateway = start(home);
    let room = scene.direct_chat(false);

    // kill -9 while the agent works on the turn.
    alice.say(&room, "sleep:1500:slow one");
    wait_for("the agent to start", || {
        std::fs::read_to_string(&agent_log).is_ok_and(|l| l.contains("slow one"))
    });
    gateway.kill();

    // A message sent while no gateway runs.
    alice.say(&room, "while it was down");
    let _gateway = start(home);
    alice.sync_until("both answers", |seen| {
        let bot = seen.iter().filter(|s| s.sender == BOT_ID);
        bot.clone().any(|s| s.body == "agent: sleep:1500:slow one")
            && bot.clone().any(|s| s.body == "agent: while it was down")
    });
    // Give a repeat the time to show, then count.
    std::thread::sleep(Duration::from_secs(3));
    alice.sync();
    let said = alice.bot_said(&room);
    for text in ["agent: sleep:1500:slow one", "agent: while it was down"] {
        assert_eq!(
            said.iter().filter(|s| s.body == text).count(),
            1,
            "{text}: {said:#?}"
        );
    }
    // A file the agent makes goes to the room's content repository, after the text.
    alice.say(&room, "files:report.txt");
    alice.sync_until("the file", |seen| {
        seen.iter()
            .any(|s| s.sender == BOT_ID && s.msgtype == "m.file" && s.body == "report.txt")
    });
    let said = alice.bot_said(&room);
    let text = said.iter().position(|s| s.body == "here are your files");
    let file = said.iter().position(|s| s.msgtype == "m.file");
    assert!(text.is_some() && text < file, "{said:#?}");
}

#[test]
fn synapse_restarting_under_a_running_gateway_makes_it_degraded_then_connected_and_loses_nothing() {
    let mut scene = scene(&["@alice:localhost"], "");
    let _gateway = start(&scene.home);
    let room = scene.direct_chat(false);

    scene.synapse.stop();
    wait_adapter(&scene.home, "degraded");
    scene.synapse.restart();
    wait_adapter(&scene.home, "connected");
    let alice = &scene.alice;
    alice.say(&room, "after the outage");
    alice.sync_until("the answer after the outage", |seen| {
        seen.iter()
            .any(|s| s.sender == BOT_ID && s.body == "echo: after the outage")
    });
    assert_eq!(alice.bot_said(&room).len(), 1);
}

/// Two replicas of the bot on one PostgreSQL journal (lease TTL 3 s): one syncs, the other stands by;
/// killed, the syncing one is replaced within two TTLs, and the new one goes on from the cursor the
/// journal holds — a message sent meanwhile is answered once, and nothing answered before is answered
/// again. (`tests/replicas.rs` does the same for Telegram, with pauses.)
#[cfg(feature = "postgres")]
#[test]
fn two_replicas_share_the_bot_one_syncing_and_the_other_takes_over_when_it_dies() {
    let Some(db) = database::Database::create() else {
        return;
    };
    let journal = format!(
        "[journal]\nurl = \"{}\"\npassword_env = \"HERALD_JOURNAL_PASSWORD\"\nlease_ttl_secs = 3\n",
        db.url()
    );
    let scene = scene(&["@alice:localhost"], &journal);
    let env = [
        (PASSWORD_ENV, BOT_PASSWORD),
        ("HERALD_JOURNAL_PASSWORD", db.password.as_str()),
    ];
    let first = scene.home.start_with_env(&["run", "--no-supervise"], &env);
    wait_adapter(&scene.home, "connected");
    let other = home_for(&scene.synapse, &["@alice:localhost"], &journal);
    let _second = other.start_with_env(&["run", "--no-supervise"], &env);
    let standby = wait_adapter(&other, "starting").unwrap_or_default();
    assert!(standby.contains("standby"), "{standby}");

    let alice = &scene.alice;
    let room = scene.direct_chat(false);
    alice.say(&room, "before");
    alice.sync_until("the first answer", |seen| {
        seen.iter()
            .any(|s| s.sender == BOT_ID && s.body == "echo: before")
    });

    first.kill();
    let killed = Instant::now();
    alice.say(&room, "after the kill");
    wait_adapter(&other, "connected");
    let took = killed.elapsed();
    alice.sync_until("the answer from the other replica", |seen| {
        seen.iter()
            .any(|s| s.sender == BOT_ID && s.body == "echo: after the kill")
    });
    // Give a repeat the time to show, then count.
    std::thread::sleep(Duration::from_secs(3));
    alice.sync();
    let said = alice.bot_said(&room);
    for text in ["echo: before", "echo: after the kill"] {
        assert_eq!(
            said.iter().filter(|s| s.body == text).count(),
            1,
            "{text}: {said:#?}"
        );
    }
    eprintln!("the bot moved {took:?} after the kill (lease 3 s)");
    assert!(took < Duration::from_secs(15), "{took:?}");
}
