//! Hosting the gateway inside the serving process: build the payload, resume what an earlier process
//! left unfinished, open the adapters, and take them down again after the drain.
//!
//! **Invariant:** unfinished turns are registered with the engine before any adapter accepts traffic,
//! so a client retrying a message from before the restart joins its resumed turn instead of making a
//! second one; and the adapters close only after the drain, so a client waiting on a turn hears how it
//! ended (its reply, or "interrupted, retry with the same id").
//!
//! Push adapters (Telegram) are attached — their outboxes registered — before the resume too, so the
//! reply of a resumed or given-up turn is delivered to its chat; they start taking messages with the
//! HTTP adapter, stop taking them by themselves when the drain begins, and close after it. One of them can
//! be restarted alone (`restart_adapter`) while everything else serves.
//!
//! Two background tasks watch the health board, each asleep while all is well: the agent's recheck
//! (probes a failing agent with a growing pause, so its recovery is seen without a user's turn), and the
//! outage notices (`herald_gateway::notice`: the people an adapter serves are told once when the agent or
//! an adapter has been failing for `[gateway] outage_notice_secs`, and again when it works).

use std::sync::Arc;
use std::time::Duration;

use herald_gateway::adapter::PushAdapter;
use herald_gateway::agent::health::{AgentHealth, Watched};
use herald_gateway::agent::outfiles::OutFiles;
use herald_gateway::engine::{Engine, EngineOptions};
use herald_gateway::health::HealthBoard;
use herald_gateway::http::browser::BrowserPolicy;
use herald_gateway::http::{HttpLimits, HttpOptions, HttpServer};
use herald_gateway::notice::{OutageNotices, Part};
use herald_gateway::{ResumeLedger, TurnTracker};
use herald_home::Home;
use herald_home::config::Config;
use herald_home::lifecycle::EventKind;
use herald_home::records::HealthState;
use herald_home::secrets::Variables;
use herald_home::sync::MutexExt;
use herald_process::control::{AgentStatus, ReloadSummary};
use herald_process::descriptors;

use crate::payload::SharedFactory;
use crate::reload;
use crate::startup::StartError;
use crate::state::RecordKeeper;

/// How long open HTTP responses may take to finish once the drain is over.
const HTTP_GRACE: Duration = Duration::from_secs(1);
/// How long push adapters may take to send replies still queued once the drain is over.
const PUSH_GRACE: Duration = Duration::from_secs(2);

/// A started gateway.
#[derive(Debug)]
pub(crate) struct GatewayHost {
    engine: Arc<Engine>,
    agent_health: AgentHealth,
    /// The hosted agent: its turns are noted in `agent_health`, and a reload replaces what it wraps.
    agent: Arc<Watched>,
    factory: SharedFactory,
    /// The config the gateway started with, and the one the last reload (or the start) applied.
    started: Config,
    loaded: std::sync::Mutex<(Config, Variables)>,
    http: Option<HttpServer>,
    adapters: Vec<Arc<dyn PushAdapter>>,
    board: HealthBoard,
    /// The journal's database outage as it changes (a journal on a server).
    outages: Option<tokio::sync::watch::Receiver<Option<herald_home::records::JournalOutage>>>,
    /// The agent's recheck and the outage notices (see the module docs), ended at stop.
    watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl GatewayHost {
    pub(crate) async fn start(
        keeper: &mut RecordKeeper,
        config: &Config,
        turns: &TurnTracker,
        payload: &SharedFactory,
    ) -> Result<GatewayHost, StartError> {
        let home = keeper.home().clone();
        // The secrets the config names: the environment, then the home's store (read once per start).
        let variables = Variables::load(&home).map_err(StartError::Secrets)?;
        let parts = {
            let factory = payload.0.clone();
            let config = config.clone();
            let variables = variables.clone();
            tokio::task::spawn_blocking(move || factory.build(&home, &config, &variables))
                .await
                .map_err(|e| StartError::BuildPanicked(e.to_string()))??
        };
        for event in parts.events {
            keeper.log(event.with("role", keeper.role().as_str()));
        }
        for (key, warning) in config.warnings(Some(&keeper.home().config_file())) {
            tracing::warn!("herald.toml: {key}: {warning}");
        }
        // Every turn's outcome is noted, and a probe runs now, so `status --deep` knows the agent's
        // health without waiting for it.
        let board = HealthBoard::new();
        let agent_health = AgentHealth::new(&board, parts.agent.name());
        let agent = Arc::new(Watched::new(parts.agent, agent_health.clone()));
        let options = EngineOptions {
            log_message_text: config.gateway.log_message_text,
        };
        let outages = parts.journal.outages();
        let engine = Engine::with_options(parts.journal, agent.clone(), turns.clone(), options);
        let adapters: Vec<Arc<dyn PushAdapter>> = parts.adapters.into_iter().map(Arc::from).collect();
        // Replicas sharing a journal run each push adapter on the one holding its lease (see
        // `herald_gateway::cluster`): here it waits, standing by, until this replica takes it.
        let cluster = engine.cluster().cloned();
        let waits = |adapter: &Arc<dyn PushAdapter>| cluster.is_some() && adapter.leased();
        for adapter in &adapters {
            let health = board.adapter(adapter.name());
            if waits(adapter) {
                health.set(HealthState::Starting, Some(STANDBY.into()));
            } else {
                adapter.attach(&engine, health);
            }
        }
        keeper.set_health_board(board.clone());
        let resumed = engine.resume().await.map_err(StartError::Resume)?;
        if resumed.resumed + resumed.gave_up > 0 {
            keeper.log(
                keeper
                    .event(EventKind::TurnsResumed)
                    .with("resumed", resumed.resumed)
                    .with("gave_up", resumed.gave_up),
            );
        }
        let http = if config.http.enabled {
            let options = http_options(keeper.home(), config, &variables, &board)?;
            let server = HttpServer::start(engine.clone(), options).await.map_err(|e| {
                if e.source.kind() == std::io::ErrorKind::AddrInUse {
                    StartError::HttpAddrInUse {
                        addr: e.addr.to_string(),
                        holder: herald_process::port_holder::port_holder(e.addr.port())
                            .map(|h| h.to_string()),
                    }
                } else {
                    StartError::HttpBind(e.to_string())
                }
            })?;
            keeper.set_http_url(Some(server.url.clone()));
            Some(server)
        } else {
            None
        };
        for adapter in adapters.iter().filter(|a| !waits(a)) {
            adapter.open();
        }
        let mut watchers = vec![
            tokio::spawn(
                agent_health
                    .clone()
                    .recheck_while_failing(agent.clone(), board.clone()),
            ),
            tokio::spawn(tell_of_outages(
                board.clone(),
                adapters.clone(),
                Duration::from_secs(config.gateway.outage_notice_secs),
            )),
        ];
        if let Some(cluster) = cluster {
            watchers.push(tokio::spawn(adopt_while_serving(
                engine.clone(),
                cluster.adopt_every(),
            )));
            for adapter in adapters.iter().filter(|a| a.leased()) {
                let health = board.adapter(adapter.name());
                watchers.push(tokio::spawn(lead(
                    adapter.clone(),
                    engine.clone(),
                    cluster.clone(),
                    health,
                )));
            }
        }
        Ok(GatewayHost {
            engine,
            agent_health,
            agent,
            factory: payload.clone(),
            started: config.clone(),
            loaded: std::sync::Mutex::new((config.clone(), variables)),
            http,
            adapters,
            board,
            outages,
            watchers,
        })
    }

    /// The engine every adapter feeds.
    /// The journal's database outage as it changes, for a journal on a server.
    pub(crate) fn journal_outages(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<Option<herald_home::records::JournalOutage>>> {
        self.outages.clone()
    }

    pub(crate) fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// The adapters' and the agent's health (the state record follows its changes).
    pub(crate) fn health_board(&self) -> &HealthBoard {
        &self.board
    }

    /// Restarts the push adapter named `name` alone (`herald restart --adapter`): `Ok` once it runs
    /// again, `Err` saying why not.
    pub(crate) fn restart_adapter(
        &self,
        name: &str,
    ) -> impl std::future::Future<Output = Result<(), String>> + use<> {
        let adapter = self.adapters.iter().find(|a| a.name() == name).cloned();
        let known: Vec<&str> = self.adapters.iter().map(|a| a.name()).collect();
        let missing = if known.is_empty() {
            format!("no adapter named {name:?}: this gateway runs no push adapter (only HTTP)")
        } else {
            format!(
                "no adapter named {name:?}; this gateway runs: {}",
                known.join(", ")
            )
        };
        async move {
            match adapter {
                Some(adapter) => adapter.restart().await,
                None => Err(missing),
            }
        }
    }

    /// Probes the agent new turns get, in the background.
    fn probe_agent(&self) {
        let health = self.agent_health.clone();
        let agent = self.agent.current();
        tokio::spawn(async move { health.probe(agent.as_ref()).await });
    }

    /// Reads `herald.toml` and the secrets again and applies what can change live (see
    /// [`crate::reload`]); on any error nothing changes.
    pub(crate) async fn reload(&self, home: &Home) -> Result<ReloadSummary, String> {
        let path = home.config_file();
        let read_home = home.clone();
        let (config, variables) = tokio::task::spawn_blocking(move || {
            let config = Config::load(&path)
                .map(|(config, _)| config)
                .map_err(|e| e.to_string())?;
            let variables = Variables::load(&read_home).map_err(|e| e.to_string())?;
            Ok::<_, String>((config, variables))
        })
        .await
        .map_err(|e| format!("the reload panicked: {e}"))??;
        let (since_last, secrets) = {
            let loaded = self.loaded.lock_unpoisoned();
            (
                reload::diff(&loaded.0, &config),
                reload::changed_secrets(&config, &loaded.1, &variables),
            )
        };
        if reload::agent_changed(&since_last, &secrets) {
            let agent = self
                .factory
                .0
                .agent(home, &config, &variables)
                .map_err(|e| format!("cannot build the new agent ({e}); keeping the running one"))?;
            if agent.name() != self.agent.current().name() {
                self.agent_health.renamed(agent.name());
            }
            self.agent.replace(agent);
            self.probe_agent();
        }
        let mut adapter_live = std::collections::BTreeSet::new();
        for adapter in &self.adapters {
            adapter_live.extend(adapter.reconfigure(&config, &variables));
        }
        let since_start = reload::diff(&self.started, &config);
        let summary = reload::classify(&since_last, &since_start, &secrets, &adapter_live);
        *self.loaded.lock_unpoisoned() = (config, variables);
        Ok(summary)
    }

    /// Marks the gateway ready for traffic (`/readyz` turns 200), and probes the agent in the background.
    pub(crate) fn serving(&self) {
        let _ = self.agent_status();
        self.engine.set_serving(true);
    }

    pub(crate) fn ledger(&self) -> impl ResumeLedger + use<> {
        self.engine.ledger()
    }

    pub(crate) fn agent_name(&self) -> &'static str {
        self.engine.agent_name()
    }

    /// The agent's health as known now; a stale word starts a probe in the background (see
    /// `herald_gateway::agent::health`).
    pub(crate) fn agent_status(&self) -> AgentStatus {
        let (report, stale) = self.agent_health.report();
        if stale {
            self.probe_agent();
        }
        AgentStatus {
            backend: self.engine.agent_name().to_owned(),
            verdict: report.verdict.as_str().to_owned(),
            detail: report.detail,
            age_ms: (report.at_ms > 0).then(|| herald_home::time::now_ms().saturating_sub(report.at_ms)),
            health: self.board.agent_record(),
        }
    }

    /// After the drain: tell waiters of cut turns, close the adapters, and let the journal flush.
    pub(crate) async fn stop(self) {
        for watcher in &self.watchers {
            watcher.abort();
        }
        self.engine.set_serving(false);
        self.engine.interrupt_waiters();
        if let Some(http) = self.http {
            http.shutdown(HTTP_GRACE).await;
        }
        for adapter in self.adapters {
            adapter.close(PUSH_GRACE).await;
        }
        if let Err(e) = self.engine.close_journal().await {
            tracing::warn!("cannot close the journal: {e}");
        }
    }
}

/// How often a replica standing by for a push adapter asks for its lease: a planned stop hands it over,
/// and the bot should not wait long for its next poller (one small query each time).
const STANDBY_RETRY: Duration = Duration::from_millis(500);

/// What a push adapter's health says while another replica runs it.
const STANDBY: &str = "standby: another replica runs it; this one takes over if that one stops";

/// Waits for `adapter`'s lease, then starts it here: attached (its outbox sends what the previous
/// holder left undelivered), its turns taken over, then opened (polling).
async fn lead(
    adapter: Arc<dyn PushAdapter>,
    engine: Arc<Engine>,
    cluster: Arc<dyn herald_gateway::cluster::Cluster>,
    health: herald_gateway::health::HealthHandle,
) {
    let name = adapter.name();
    loop {
        if engine.turns().is_draining() {
            return;
        }
        match cluster.take_lease(name).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::debug!("cannot ask for the {name} adapter's lease: {e}"),
        }
        tokio::time::sleep(STANDBY_RETRY.min(cluster.adopt_every())).await;
    }
    tracing::info!("running the {name} adapter (this replica holds its lease)");
    adapter.attach(&engine, health);
    if let Err(e) = engine.adopt().await {
        tracing::warn!("cannot take over the {name} adapter's turns yet: {e}");
    }
    adapter.open();
}

/// A replica sharing its journal looks for turns others left (stopped, or dead past their lease) every
/// third of the lease TTL, and runs them.
async fn adopt_while_serving(engine: Arc<Engine>, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match engine.adopt().await {
            Ok(summary) if summary.resumed + summary.gave_up > 0 => tracing::info!(
                resumed = summary.resumed,
                gave_up = summary.gave_up,
                "took over turns another replica left"
            ),
            Ok(_) => {}
            Err(e) => tracing::debug!("cannot look for turns to take over: {e}"),
        }
    }
}

/// The adapter's options, with the token looked up in `variables` when `token_env` names it.
fn http_options(
    home: &Home,
    config: &Config,
    variables: &Variables,
    board: &HealthBoard,
) -> Result<HttpOptions, StartError> {
    let listen = config
        .http
        .listen_addr()
        .ok_or_else(|| StartError::HttpListen(config.http.listen.clone()))?;
    let token = match (&config.http.token, &config.http.token_env) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(var)) => match variables.value(var) {
            Some(token) if token.len() >= 16 => Some(token),
            Some(_) => {
                return Err(StartError::HttpTokenEnv {
                    var: var.clone(),
                    problem: "must hold at least 16 characters",
                });
            }
            None => {
                return Err(StartError::HttpTokenEnv {
                    var: var.clone(),
                    problem: "is neither set in the gateway's environment nor in the secrets store (run \
                              `herald secret set` with its name)",
                });
            }
        },
        (None, None) => None,
    };
    let webhooks = herald_gateway::webhook::resolve(&config.webhooks, variables)
        .map_err(|e| StartError::Payload(crate::PayloadError::Config(e.to_string())))?;
    Ok(HttpOptions {
        listen,
        token,
        max_body_bytes: config.http.max_body_bytes,
        browser: BrowserPolicy {
            allowed_hosts: config.http.allowed_hosts.clone(),
            allowed_origins: config.http.allowed_origins.clone(),
        },
        health: board.clone(),
        webhooks: std::sync::Arc::new(webhooks),
        files: Some(OutFiles::new(
            home.clone(),
            config.gateway.media_max_mb.saturating_mul(1 << 20),
        )),
        limits: HttpLimits {
            max_connections: connection_cap(config.http.max_connections),
            idle_timeout: Duration::from_secs(config.http.idle_timeout_secs),
            body_timeout: Duration::from_secs(config.http.body_timeout_secs),
        },
    })
}

/// `[http] max_connections`, lowered when the descriptor limit would not leave the gateway its reserve
/// (raised to the hard limit first).
fn connection_cap(wanted: usize) -> usize {
    let limit = descriptors::raise_limit();
    let cap = descriptors::connection_cap(wanted, limit);
    if cap < wanted {
        tracing::warn!(
            "[http] max_connections = {wanted} lowered to {cap}: this process may open only {} files and \
             sockets, and keeps {} for itself",
            limit.unwrap_or(0),
            descriptors::RESERVED
        );
    }
    cap
}

/// Tells the people the adapters serve when the agent or an adapter has been failing for `after` (and
/// when it works again): wakes on a board change or at the one deadline the decision names.
async fn tell_of_outages(board: HealthBoard, adapters: Vec<Arc<dyn PushAdapter>>, after: Duration) {
    if after.is_zero() {
        return;
    }
    let mut changes = board.subscribe();
    let mut notices = OutageNotices::new(after);
    loop {
        let records: Vec<(Part, herald_home::records::HealthRecord)> = board
            .agent_record()
            .map(|r| (Part::Agent, r))
            .into_iter()
            .chain(
                board
                    .adapters()
                    .into_iter()
                    .map(|r| (Part::Adapter(r.name.clone()), r)),
            )
            .collect();
        let parts: Vec<(Part, &herald_home::records::HealthRecord)> =
            records.iter().map(|(p, r)| (p.clone(), r)).collect();
        let now = herald_home::time::now_ms();
        let (due, next) = notices.review(&parts, now);
        for notice in due {
            let listeners: Vec<_> = adapters.iter().filter(|a| a.announces()).cloned().collect();
            tracing::warn!("outage notice to {} adapter(s): {}", listeners.len(), notice.text);
            for adapter in listeners {
                adapter.announce(notice.text.clone()).await;
            }
            let handle = match &notice.part {
                Part::Agent => records
                    .iter()
                    .find(|(p, _)| *p == Part::Agent)
                    .map(|(_, r)| board.agent(&r.name)),
                Part::Adapter(name) => Some(board.adapter(name)),
            };
            if let Some(handle) = handle {
                handle.noticed(notice.failing.then_some(now));
            }
        }
        let sleep = next.map(|at| Duration::from_millis(at.saturating_sub(herald_home::time::now_ms())));
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = async {
                match sleep {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}
