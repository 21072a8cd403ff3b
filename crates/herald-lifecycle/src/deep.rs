//! `herald status --deep`: every signal about a gateway checked on its own, then one verdict that names the
//! signal that disagrees with the others.
//!
//! Everything is gathered here, in one place ([`DeepFacts::gather`]): records, lock and OS identity, the
//! lifecycle log, a control-channel ping, `GET /readyz` on the HTTP adapter, and the service manager's
//! word (`herald_install::facts`, asked on its own thread while the gateway is pinged: two bounded waits,
//! overlapped). Turning facts into probes and a verdict is pure ([`probes`], [`verdict`]), so every
//! combination of lies is unit-testable.
//!
//! **Invariant:** `--deep` is bounded: every question has a timeout ([`PING_TIMEOUT`]), and HTTP is not
//! asked when the ping failed (a wedged loop cannot serve it either), so the worst case is one timeout,
//! not a sum of them.

use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use herald_home::Home;
use herald_home::atomic::{RecordRead, read_record};
use herald_home::lifecycle::{LifecycleEvent, parse_events};
use herald_home::lock::InstanceLock;
use herald_home::records::{
    GatewayState, HealthRecord, HealthState, MonitorPhase, MonitorRecord, PidRecord, StateRecord,
};
use herald_home::time::now_ms;
use herald_home::words::count;

use herald_install::context::Context;
pub use herald_install::facts::ServiceFacts;
use herald_install::runner::SystemRunner;
use herald_process::control::{self, AgentStatus, Request};
use herald_process::identity::{self, Identity};

use crate::route::{machine, service_spec};
use crate::target::Target;

/// The ping (and each HTTP readiness step) must come back within this, or the event loop counts as
/// wedged.
pub const PING_TIMEOUT: Duration = Duration::from_millis(500);

/// How much of the lifecycle log's end is read for the last event.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// The outcome of asking the gateway's event loop to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ping {
    Answered {
        pid: u32,
        elapsed: Duration,
    },
    Failed(String),
    /// Not attempted (nothing holds the lock).
    Skipped,
}

/// The outcome of asking the HTTP adapter whether it is ready (`GET /readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// 200 within the time limit.
    Ready { elapsed: Duration },
    /// Answered, but not 200 (503 while starting or draining), with what it said.
    NotReady { status: u16, detail: String },
    /// No answer: refused, timed out, or not HTTP.
    Failed(String),
    /// Not asked, because the process did not answer its ping (P7): a wedged event loop cannot serve
    /// HTTP either, and asking would only add another timeout to `--deep`'s worst case.
    NotTried,
    /// Not attempted: nothing holds the lock, or the state record names no HTTP adapter.
    Skipped,
}

/// Everything `--deep` looks at.
#[derive(Debug, Clone)]
pub struct DeepFacts {
    pub lock_held: Result<bool, String>,
    pub pid_record: RecordRead<PidRecord>,
    pub identity: Option<Identity>,
    pub monitor: Option<MonitorRecord>,
    /// Liveness of the monitor's worker, when there is one (verified by start time).
    pub worker_alive: Option<bool>,
    pub state: RecordRead<StateRecord>,
    pub now_ms: u64,
    pub last_event: Option<LifecycleEvent>,
    pub ping: Ping,
    /// The gateway's word on its agent, from the ping's reply (probe 11).
    pub agent: Option<AgentStatus>,
    /// The adapters' health as the ping's reply gives it (live; the state record's is as of its last
    /// write), for probe 10.
    pub adapters: Option<Vec<HealthRecord>>,
    /// The service manager's view (probe 9).
    pub service: ServiceFacts,
    /// The HTTP adapter's URL as the state record gives it, and what `/readyz` said.
    pub http_url: Option<String>,
    pub readiness: Readiness,
}

impl DeepFacts {
    /// Gathers every fact about the gateway of `target` (see the module documentation).
    pub fn gather(target: &Target) -> DeepFacts {
        let service = service_facts_in_background(target);
        let mut facts = DeepFacts::gather_local(target.home(), || ping(target.home()), readyz);
        facts.service = service.join().unwrap_or_else(|_| ServiceFacts::Unknown {
            manager: "service".into(),
            why: "the service probe panicked".into(),
        });
        facts
    }

    /// Reads locks, records, the OS process table and the lifecycle log; `ping` and `ready` (given the
    /// HTTP URL) ask the gateway itself.
    fn gather_local(
        home: &Home,
        ping: impl FnOnce() -> PingReply,
        ready: impl FnOnce(&str) -> Readiness,
    ) -> DeepFacts {
        let lock_held = InstanceLock::is_held(&home.lock_file()).map_err(|e| e.to_string());
        let pid_record = read_record::<PidRecord>(&home.pid_record());
        let identity = pid_record
            .as_present()
            .map(|r| identity::verify(r.key(), &r.argv, r.exe.as_deref(), &identity::probe(r.pid)));
        let monitor = read_record::<MonitorRecord>(&home.monitor_record())
            .present()
            .filter(|m| pid_record.as_present().is_some_and(|r| r.key() == m.key()));
        let worker_alive = monitor
            .as_ref()
            .and_then(|m| m.worker.as_ref())
            .map(|w| herald_process::wait::is_alive(w.key()));
        let PingReply {
            ping,
            agent,
            adapters,
        } = if lock_held == Ok(true) {
            ping()
        } else {
            PingReply::skipped()
        };
        let state = read_record::<StateRecord>(&home.state_record());
        let http_url = state.as_present().and_then(|s| s.endpoints.http_url.clone());
        let readiness = match (&http_url, &ping) {
            (Some(_), Ping::Failed(_)) => Readiness::NotTried,
            (Some(url), Ping::Answered { .. }) => ready(url),
            _ => Readiness::Skipped,
        };
        DeepFacts {
            lock_held,
            pid_record,
            identity,
            monitor,
            worker_alive,
            state,
            now_ms: now_ms(),
            last_event: last_event(home),
            ping,
            agent,
            adapters,
            service: ServiceFacts::None,
            http_url,
            readiness,
        }
    }

    fn running(&self) -> bool {
        self.lock_held == Ok(true)
    }

    fn verified(&self) -> Option<&PidRecord> {
        match (&self.pid_record, &self.identity) {
            (RecordRead::Present(r), Some(Identity::Verified)) => Some(r),
            _ => None,
        }
    }

    /// The state record, when it belongs to the verified gateway.
    fn own_state(&self) -> Option<&StateRecord> {
        let record = self.verified()?;
        self.state.as_present().filter(|s| s.key() == record.key())
    }
}

/// Asks the service manager on a thread of its own, bounded by [`PING_TIMEOUT`] per command.
fn service_facts_in_background(target: &Target) -> std::thread::JoinHandle<ServiceFacts> {
    let spec = service_spec(target);
    let home = target.home().clone();
    std::thread::spawn(move || {
        let Ok(spec) = spec else {
            return ServiceFacts::None;
        };
        let ctx = Context::current();
        let mut runner = SystemRunner {
            timeout: PING_TIMEOUT,
        };
        herald_install::facts::service_facts(&spec, &mut machine(&home, &ctx, &mut runner))
    })
}

/// What a ping brought back.
#[derive(Debug, Clone)]
pub struct PingReply {
    pub ping: Ping,
    pub agent: Option<AgentStatus>,
    pub adapters: Option<Vec<HealthRecord>>,
}

impl PingReply {
    fn skipped() -> PingReply {
        PingReply::failed(Ping::Skipped)
    }

    fn failed(ping: Ping) -> PingReply {
        PingReply {
            ping,
            agent: None,
            adapters: None,
        }
    }
}

/// A control-channel ping within [`PING_TIMEOUT`].
fn ping(home: &Home) -> PingReply {
    let sent = Instant::now();
    match control::call(home, Request::Ping, PING_TIMEOUT) {
        Ok(reply) if reply.ok => PingReply {
            ping: Ping::Answered {
                pid: reply.pid,
                elapsed: sent.elapsed(),
            },
            agent: reply.agent,
            adapters: reply.adapters,
        },
        Ok(reply) => PingReply::failed(Ping::Failed(reply.error.unwrap_or_else(|| "refused".into()))),
        Err(e) => PingReply::failed(Ping::Failed(e.to_string())),
    }
}

/// `GET /readyz` on the gateway's own URL, over a plain socket (loopback, one request: no client
/// library needed), within [`PING_TIMEOUT`] per step.
fn readyz(url: &str) -> Readiness {
    use std::io::Write;
    use std::net::ToSocketAddrs;
    let sent = Instant::now();
    let Some(authority) = url.strip_prefix("http://") else {
        return Readiness::Failed(format!("not an http:// URL: {url}"));
    };
    let attempt = || -> std::io::Result<(u16, String)> {
        let addr = authority
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut stream = std::net::TcpStream::connect_timeout(&addr, PING_TIMEOUT)?;
        stream.set_read_timeout(Some(PING_TIMEOUT))?;
        stream.set_write_timeout(Some(PING_TIMEOUT))?;
        write!(
            stream,
            "GET /readyz HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("the answer is not HTTP"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .trim()
            .to_owned();
        Ok((status, body))
    };
    match attempt() {
        Ok((200, _)) => Readiness::Ready {
            elapsed: sent.elapsed(),
        },
        Ok((status, body)) => Readiness::NotReady { status, detail: body },
        Err(e) => Readiness::Failed(format!("GET {url}/readyz: {e}")),
    }
}

fn last_event(home: &Home) -> Option<LifecycleEvent> {
    let mut file = std::fs::File::open(home.lifecycle_log()).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    // Skip a partial first line when reading from the middle.
    let body = if start > 0 {
        bytes
            .iter()
            .position(|b| *b == b'\n')
            .map_or(&bytes[..0], |i| &bytes[i + 1..])
    } else {
        &bytes[..]
    };
    parse_events(body).0.pop()
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub id: u8,
    pub name: &'static str,
    /// Not a failure: passed, or not run.
    pub ok: bool,
    /// Not run (nothing to look at, or an earlier probe made it pointless); `ok` is then true and
    /// `detail` says why. Shown as SKIP, never as PASS.
    pub skipped: bool,
    pub detail: String,
}

impl Check {
    /// `PASS`, `FAIL` or `SKIP`.
    pub fn word(&self) -> &'static str {
        match (self.skipped, self.ok) {
            (true, _) => "SKIP",
            (false, true) => "PASS",
            (false, false) => "FAIL",
        }
    }
}

fn check(id: u8, name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        id,
        name,
        ok,
        skipped: false,
        detail: detail.into(),
    }
}

/// A probe that was not run, and why.
fn skip(id: u8, name: &'static str, why: impl Into<String>) -> Check {
    Check {
        id,
        name,
        ok: true,
        skipped: true,
        detail: why.into(),
    }
}

/// The probes, in the documented order. `ok` means "consistent with a healthy gateway, or with a cleanly
/// stopped one"; the verdict decides which of the two applies.
pub fn probes(f: &DeepFacts) -> Vec<Check> {
    let running = f.running();
    let mut out = Vec::with_capacity(10);

    out.push(match (&f.pid_record, running) {
        (RecordRead::Present(r), true) => check(1, "PID record", true, format!("pid {}", r.pid)),
        (RecordRead::Present(r), false) => check(
            1,
            "PID record",
            false,
            format!("stale: names pid {} but nothing holds the lock", r.pid),
        ),
        (RecordRead::Missing, false) => check(1, "PID record", true, "absent (not running)"),
        (RecordRead::Missing, true) => check(1, "PID record", false, "missing while the home is locked"),
        (RecordRead::Invalid { reason }, _) => check(1, "PID record", false, reason.clone()),
    });

    out.push(match &f.lock_held {
        Ok(true) => match f.verified() {
            Some(r) => check(2, "Instance lock", true, format!("held (pid {})", r.pid)),
            None => check(
                2,
                "Instance lock",
                false,
                "held, but not by a verified herald gateway",
            ),
        },
        Ok(false) => check(
            2,
            "Instance lock",
            !matches!(f.pid_record, RecordRead::Present(_)),
            "not held",
        ),
        Err(e) => check(2, "Instance lock", false, format!("cannot probe: {e}")),
    });

    out.push(match (&f.pid_record, &f.identity) {
        (RecordRead::Present(r), Some(Identity::Verified)) => check(
            3,
            "Gateway identity",
            running,
            format!("pid {} matches its start time and command line", r.pid),
        ),
        (RecordRead::Present(r), Some(other)) => check(
            3,
            "Gateway identity",
            false,
            format!("pid {}: {}", r.pid, other.describe()),
        ),
        _ if !running => skip(3, "Gateway identity", "no PID record to verify (not running)"),
        _ => check(3, "Gateway identity", false, "no PID record to verify"),
    });

    out.push(match (f.verified(), f.worker_alive, &f.monitor) {
        (None, _, _) if !running => skip(4, "Process liveness", "no verified gateway process (not running)"),
        (None, _, _) => check(4, "Process liveness", false, "no verified gateway process"),
        (Some(r), Some(false), Some(m)) if m.phase == MonitorPhase::Supervising => check(
            4,
            "Process liveness",
            false,
            format!("monitor pid {} alive, its worker is not", r.pid),
        ),
        (Some(r), _, Some(m)) => {
            let worker = m.worker.as_ref().map_or_else(
                || "no worker".to_owned(),
                |w| format!("worker pid {} alive", w.pid),
            );
            check(
                4,
                "Process liveness",
                true,
                format!("monitor pid {} alive, {worker}", r.pid),
            )
        }
        (Some(r), _, None) => check(4, "Process liveness", true, format!("pid {} alive", r.pid)),
    });

    out.push(match (&f.state, f.own_state()) {
        (RecordRead::Invalid { reason }, _) => check(5, "State record", false, reason.clone()),
        (_, Some(s)) => {
            let age = f.now_ms.saturating_sub(s.updated_at_ms) / 1000;
            if s.is_stale(f.now_ms) {
                check(
                    5,
                    "State record",
                    false,
                    format!(
                        "{} but not refreshed for {age}s (heartbeat {}s)",
                        s.state, s.heartbeat_secs
                    ),
                )
            } else {
                check(
                    5,
                    "State record",
                    s.state == GatewayState::Running,
                    format!("{}, updated {age}s ago", s.state),
                )
            }
        }
        (RecordRead::Present(s), None) if running => check(
            5,
            "State record",
            false,
            format!("belongs to pid {}, not the running gateway", s.pid),
        ),
        (RecordRead::Present(s), None) => check(
            5,
            "State record",
            !s.state.claims_alive(),
            format!("{} (pid {}, not running)", s.state, s.pid),
        ),
        (RecordRead::Missing, None) => check(5, "State record", !running, "absent"),
    });

    let restarts = f.monitor.as_ref().map_or(0, |m| m.restarts);
    let last_exit = f
        .state
        .as_present()
        .and_then(|s| s.last_exit.as_ref())
        .map(|e| format!("; last exit {} ({})", e.code, e.reason))
        .unwrap_or_default();
    out.push(match &f.last_event {
        Some(e) => {
            let bad = matches!(e.event.as_str(), "crash_loop" | "startup_failed" | "panic");
            check(
                6,
                "Lifecycle",
                !bad,
                format!(
                    "last event {} at {}; {}{last_exit}",
                    e.event,
                    e.ts,
                    count(u64::from(restarts), "restart", "restarts")
                ),
            )
        }
        None => check(6, "Lifecycle", true, format!("no events yet{last_exit}")),
    });

    out.push(match &f.ping {
        Ping::Answered { pid, elapsed } => check(
            7,
            "Control channel",
            true,
            format!(
                "ping answered by pid {pid} in {:.1} ms",
                elapsed.as_secs_f64() * 1000.0
            ),
        ),
        Ping::Failed(why) => check(7, "Control channel", false, why.clone()),
        Ping::Skipped if !running => skip(7, "Control channel", "not tried (nothing holds the lock)"),
        Ping::Skipped => check(7, "Control channel", false, "not tried"),
    });

    out.push(match &f.readiness {
        Readiness::Ready { elapsed } => check(
            8,
            "HTTP readiness",
            true,
            format!(
                "{}/readyz answered 200 in {:.1} ms",
                f.http_url.as_deref().unwrap_or_default(),
                elapsed.as_secs_f64() * 1000.0
            ),
        ),
        Readiness::NotReady { status, detail } => check(
            8,
            "HTTP readiness",
            false,
            format!("/readyz answered {status}: {detail}"),
        ),
        Readiness::Failed(why) => check(8, "HTTP readiness", false, why.clone()),
        Readiness::NotTried => skip(
            8,
            "HTTP readiness",
            "not asked: the process did not answer its ping (P7), so it cannot serve HTTP either",
        ),
        Readiness::Skipped if running && f.http_url.is_none() => skip(
            8,
            "HTTP readiness",
            "no HTTP adapter recorded (disabled in herald.toml, or still starting)",
        ),
        Readiness::Skipped => skip(8, "HTTP readiness", "not tried (nothing holds the lock)"),
    });
    out.push(service_probe(f, running));
    let (mut adapters_ok, mut adapters) = match (&f.http_url, &f.readiness) {
        (Some(url), Readiness::Failed(why)) => (false, format!("http: error at {url}: {why}")),
        (Some(url), Readiness::NotReady { status, .. }) => (
            true,
            format!("http: listening at {url}, not taking turns ({status})"),
        ),
        (Some(url), _) => (true, format!("http: listening at {url}")),
        (None, _) => (true, "http: not listening".to_owned()),
    };
    if running {
        let recorded = f
            .state
            .as_present()
            .map(|s| s.adapters.as_slice())
            .unwrap_or_default();
        let live = f.adapters.as_deref().unwrap_or(recorded);
        let findings: Vec<String> = live.iter().filter_map(|a| adapter_finding(a, f.now_ms)).collect();
        if findings.is_empty() {
            for adapter in live {
                adapters.push_str(&format!("; {}", describe_health(adapter, f.now_ms)));
            }
        } else {
            adapters_ok = false;
            adapters = findings.join("; ");
        }
    }
    out.push(check(10, "Adapters", adapters_ok, adapters));
    out.push(agent_probe(f, running));
    out
}

/// Probe 11: the gateway's own word on its agent (the outcome of its last turns, or a probe it ran at
/// start or when this word went stale: it never makes `--deep` wait for the agent).
fn agent_probe(f: &DeepFacts, running: bool) -> Check {
    let Some(agent) = &f.agent else {
        // No answer is P7's failure, not this probe's; and a gateway from before agent probes says nothing.
        return skip(
            11,
            "Agent",
            if running {
                "not reported (the gateway did not answer, or predates agent probes)"
            } else {
                "not tried (nothing holds the lock)"
            },
        );
    };
    let age = agent
        .age_ms
        .map(|ms| format!(" ({} s ago)", ms / 1000))
        .unwrap_or_default();
    match agent.verdict.as_str() {
        "failing" => check(
            11,
            "Agent",
            false,
            format!("{}: {}{age}", agent.backend, agent.detail),
        ),
        "ready" => check(
            11,
            "Agent",
            true,
            format!("{}: {}{age}", agent.backend, agent.detail),
        ),
        _ => skip(
            11,
            "Agent",
            format!("{}: not checked yet (a probe is running)", agent.backend),
        ),
    }
}

/// What is wrong with an adapter, if anything: a state that is not healthy, or — alive but deaf — a
/// `connected` adapter whose last message in is older than it promised ([`HealthRecord::inbound_every_ms`]).
pub fn adapter_finding(adapter: &HealthRecord, now_ms: u64) -> Option<String> {
    if !adapter.state.is_healthy() {
        return Some(describe_health(adapter, now_ms));
    }
    let (HealthState::Connected, Some(every), Some(last)) =
        (adapter.state, adapter.inbound_every_ms, adapter.last_inbound_ms)
    else {
        return None;
    };
    let quiet = now_ms.saturating_sub(last);
    (quiet > every).then(|| {
        format!(
            "alive but deaf: {} has not completed a poll for {} (a working one completes one at least \
             every {}); `herald restart --adapter {}` restarts it alone",
            adapter.name,
            ago(quiet),
            ago(every),
            adapter.name
        )
    })
}

fn ago(ms: u64) -> String {
    herald_home::time::human_duration(Duration::from_millis(ms))
}

/// `telegram: degraded since 2025-... (getUpdates ...); in 3s ago, out 5m ago; restarted 1 time`, for
/// status lines: the state and why, then when it last did its job.
pub fn describe_health(record: &HealthRecord, now_ms: u64) -> String {
    let mut text = format!(
        "{}: {} since {}",
        record.name,
        record.state,
        herald_home::time::rfc3339_ms(record.since_ms)
    );
    if let Some(message) = &record.message {
        text.push_str(&format!(" ({message})"));
    }
    let mut facts = Vec::new();
    if let Some(at) = record.last_inbound_ms {
        facts.push(format!("last in {} ago", ago(now_ms.saturating_sub(at))));
    }
    if let Some(at) = record.last_outbound_ms {
        facts.push(format!("last out {} ago", ago(now_ms.saturating_sub(at))));
    }
    if record.restarts > 0 {
        facts.push(format!(
            "restarted {}",
            count(u64::from(record.restarts), "time", "times")
        ));
    }
    if let (Some(at), Some(error)) = (record.last_error_ms, &record.last_error)
        && record.message.as_ref() != Some(error)
    {
        facts.push(format!(
            "last error {} ago: {error}",
            ago(now_ms.saturating_sub(at))
        ));
    }
    if let Some(at) = record.notice_sent_ms {
        facts.push(format!("users told {} ago", ago(now_ms.saturating_sub(at))));
    }
    if !facts.is_empty() {
        text.push_str(&format!("; {}", facts.join(", ")));
    }
    text
}

fn service_probe(f: &DeepFacts, running: bool) -> Check {
    match &f.service {
        ServiceFacts::None => check(
            9,
            "Service backend",
            true,
            "none installed (started by hand or by `herald start`)",
        ),
        ServiceFacts::Unknown { manager, why } => check(
            9,
            "Service backend",
            false,
            format!("{manager}: cannot ask the manager: {why}"),
        ),
        ServiceFacts::Autostart { entries } => {
            let gateway = match f.verified().map(|r| r.pid) {
                Some(pid) => format!("gateway pid {pid}"),
                None if running => "a gateway that is not verified".to_owned(),
                None => "not running".to_owned(),
            };
            let single = entries.len() == 1;
            let detail = format!(
                "{}; {}; the lock says {gateway}",
                entries.join("; "),
                if single {
                    "starts the gateway at logon (Herald's own monitor supervises it, not this entry)"
                } else {
                    "more than one autostart entry for this home: `herald install` keeps one"
                }
            );
            check(9, "Service backend", single, detail)
        }
        ServiceFacts::Managed {
            manager,
            enabled,
            state,
            active,
            main_pid,
        } => {
            let gateway = f.verified().map(|r| r.pid);
            let agrees = match (active, running) {
                (true, true) => main_pid.is_none_or(|m| Some(m) == gateway),
                (false, false) => true,
                _ => false,
            };
            let detail = format!(
                "{manager}: {}, {}, main pid {}; the lock says {}",
                state.as_deref().unwrap_or("state unknown"),
                match enabled {
                    Some(true) => "enabled at login",
                    Some(false) => "not enabled at login",
                    None => "enablement unknown",
                },
                main_pid.map_or("none".to_owned(), |p| p.to_string()),
                match gateway {
                    Some(pid) => format!("gateway pid {pid}"),
                    None if running => "a gateway that is not verified".to_owned(),
                    None => "not running".to_owned(),
                }
            );
            check(9, "Service backend", agrees, detail)
        }
    }
}

/// What a failing probe means while the gateway runs (and is verified), in the order the verdict looks:
/// the first failing one is the signal named. The agent (P11) comes before HTTP readiness (P8): an agent
/// that cannot work fails `/readyz` too, and the agent is the cause to name. Each gets the gateway's pid and the probe's detail.
type Explain = fn(u32, &str) -> String;
const RUNNING_FAILURES: [(u8, Explain); 8] = [
    (4, |pid, _| {
        format!(
            "monitor pid {pid} is alive but its worker is not (P4): it is being restarted; if this persists, \
             see `herald logs --lifecycle`"
        )
    }),
    (7, |pid, _| {
        format!(
            "gateway pid {pid} is alive (P4) but its control channel does not answer (P7): the event loop is \
             wedged. `herald stop` will force-kill it after its timeout; `herald logs` may show why"
        )
    }),
    (9, |pid, detail| {
        format!(
            "gateway pid {pid} is serving, but the service manager disagrees (P9: {detail}): it was probably \
             started outside the manager, which will not restart it; `herald restart` hands it back"
        )
    }),
    (11, |pid, detail| {
        format!(
            "gateway pid {pid} is serving, but its agent is failing (P11: {detail}); every turn gets an \
             apology until it is fixed: `herald doctor` checks the agent's setup"
        )
    }),
    (8, |pid, detail| {
        format!(
            "gateway pid {pid} answers on its control channel (P7), but its HTTP adapter does not serve \
             (P8: {detail}): clients cannot send messages. While it starts or drains this is expected; \
             otherwise see `herald logs`"
        )
    }),
    (10, |pid, detail| {
        format!(
            "gateway pid {pid} is serving, but an adapter is not working (P10: {detail}); the rest of the \
             gateway keeps serving; see `herald logs`"
        )
    }),
    (5, |pid, detail| {
        format!(
            "gateway pid {pid} answers (P7), but its state record disagrees (P5: {detail}); the heartbeat is \
             not being written — a full disk or a read-only home?"
        )
    }),
    (6, |pid, _| {
        format!("gateway pid {pid} is serving, but the last lifecycle event is a failure (P6)")
    }),
];

/// One line: healthy, or which probe disagrees and what to do.
pub fn verdict(f: &DeepFacts, checks: &[Check]) -> String {
    if f.lock_held.is_err() {
        return "cannot tell: the instance lock could not be probed (P2); check the home's permissions"
            .into();
    }
    if !f.running() {
        if let ServiceFacts::Managed {
            manager,
            active: true,
            ..
        } = &f.service
        {
            return format!(
                "not running — but {manager} says the service is active (P9 vs P2): the unit is restarting in \
                 a loop or its process is not this home's gateway; see `herald logs --lifecycle`"
            );
        }
        if let RecordRead::Present(r) = &f.pid_record {
            return format!(
                "not running — but a stale PID record names pid {} (P1): that gateway died without cleaning up \
                 (killed, crashed, power loss). Start it with `herald start`; see `herald logs --lifecycle`",
                r.pid
            );
        }
        if let Some(s) = f.state.as_present() {
            if s.state == GatewayState::CrashLooping {
                return "not running — the supervisor gave up after a crash loop (P6); the crash_loop event in \
                        `herald logs --lifecycle` has the worker's last output"
                    .into();
            }
            if s.state.claims_alive() {
                return format!(
                    "not running — but the state record still says {} (P5): the gateway was killed before it \
                     could record its exit",
                    s.state
                );
            }
        }
        return match f.state.as_present().and_then(|s| s.last_exit.as_ref()) {
            Some(e) => format!("not running (last exit: code {}, {})", e.code, e.reason),
            None => "not running".into(),
        };
    }
    if f.verified().is_none() {
        return "the home is locked, but not by a verified herald gateway (P2, P3): another process holds \
                run/instance.lock or the PID record was replaced; nothing will be signalled. Find the holder of \
                the lock file"
            .into();
    }
    let pid = f.verified().map_or(0, |r| r.pid);
    for (id, explain) in RUNNING_FAILURES {
        if let Some(check) = checks.iter().find(|c| c.id == id && !c.ok) {
            return explain(pid, &check.detail);
        }
    }
    format!("healthy: gateway pid {pid} is running and answering")
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_home::records::{Endpoints, ProcessKey};

    fn record(pid: u32) -> PidRecord {
        PidRecord {
            version: 1,
            pid,
            start_time: 100,
            argv: vec!["herald".into(), "run".into()],
            exe: None,
            home: "/h".into(),
            herald_version: "0".into(),
            started_at_ms: 0,
            control: "c".into(),
        }
    }

    fn state(pid: u32, state: GatewayState, updated_at_ms: u64) -> StateRecord {
        StateRecord {
            version: 1,
            state,
            pid,
            start_time: 100,
            started_at_ms: 0,
            updated_at_ms,
            heartbeat_secs: 30,
            in_flight: 0,
            queued: 0,
            turn_slots: 0,
            endpoints: Endpoints::default(),
            worker_pid: None,
            detail: None,
            last_exit: None,
            adapters: Vec::new(),
            agent: None,
            cluster: None,
            journal_outage: None,
        }
    }

    fn healthy() -> DeepFacts {
        DeepFacts {
            lock_held: Ok(true),
            pid_record: RecordRead::Present(record(7)),
            identity: Some(Identity::Verified),
            monitor: None,
            worker_alive: None,
            state: RecordRead::Present(state(7, GatewayState::Running, 1_000)),
            now_ms: 2_000,
            last_event: None,
            ping: Ping::Answered {
                pid: 7,
                elapsed: Duration::from_millis(1),
            },
            agent: Some(AgentStatus {
                backend: "echo".into(),
                verdict: "ready".into(),
                detail: "nothing to check".into(),
                age_ms: Some(5),
                health: None,
            }),
            adapters: None,
            service: ServiceFacts::None,
            http_url: None,
            readiness: Readiness::Skipped,
        }
    }

    #[test]
    fn a_connected_adapter_that_stopped_polling_is_alive_but_deaf() {
        let mut facts = healthy();
        let quiet = HealthRecord {
            last_inbound_ms: Some(1_000),
            inbound_every_ms: Some(60_000),
            ..HealthRecord::new("telegram", HealthState::Connected, 0)
        };
        facts.now_ms = 1_000 + 60_000;
        facts.state = RecordRead::Present(state(7, GatewayState::Running, facts.now_ms));
        facts.adapters = Some(vec![quiet.clone()]);
        let (failing, verdict) = run(&facts);
        assert!(failing.is_empty(), "within its promise: {verdict}");

        facts.now_ms = 1_000 + 190_000;
        facts.state = RecordRead::Present(state(7, GatewayState::Running, facts.now_ms));
        let (failing, verdict) = run(&facts);
        assert_eq!(failing, vec![10], "{verdict}");
        assert!(
            verdict.contains("alive but deaf: telegram has not completed a poll for 3m10s"),
            "{verdict}"
        );

        // A state that says what is wrong is named as such; the live word wins over the record's.
        let conflict = HealthRecord {
            message: Some("409 Conflict: another program".into()),
            ..HealthRecord::new("telegram", HealthState::Conflict, 0)
        };
        facts.adapters = Some(vec![conflict]);
        let (failing, verdict) = run(&facts);
        assert_eq!(failing, vec![10], "{verdict}");
        assert!(verdict.contains("telegram: conflict since"), "{verdict}");
    }

    fn run(f: &DeepFacts) -> (Vec<u8>, String) {
        let p = probes(f);
        assert_eq!(p.len(), 11);
        let failed = p.iter().filter(|p| !p.ok).map(|p| p.id).collect();
        (failed, verdict(f, &p))
    }

    #[test]
    fn every_running_verdict_names_its_probe_in_one_clean_line() {
        for (id, explain) in RUNNING_FAILURES {
            let text = explain(7, "some detail");
            assert!(text.contains(&format!("(P{id}")), "{id}: {text}");
            assert!(text.contains("pid 7"), "{id}: {text}");
            assert!(!text.contains("  ") && !text.contains('\n'), "{id}: {text:?}");
        }
        // An HTTP adapter that does not serve while the loop answers: P8, named with its detail.
        let f = DeepFacts {
            http_url: Some("http://127.0.0.1:1".into()),
            readiness: Readiness::NotReady {
                status: 503,
                detail: "draining".into(),
            },
            ..healthy()
        };
        let (failed, verdict) = run(&f);
        assert_eq!(failed, [8]);
        assert!(verdict.contains("(P8: ") && !verdict.contains("  "), "{verdict}");
    }

    #[test]
    fn a_failing_agent_is_named_by_the_verdict() {
        let f = DeepFacts {
            agent: Some(AgentStatus {
                backend: "command".into(),
                verdict: "failing".into(),
                detail: "the command `nope` is not found on PATH".into(),
                age_ms: Some(2_000),
                health: None,
            }),
            ..healthy()
        };
        let (failed, verdict) = run(&f);
        assert_eq!(failed, [11]);
        assert!(
            verdict.contains("agent is failing (P11: command: the command `nope` is not found on PATH"),
            "{verdict}"
        );
        // Not yet checked: not a failure.
        let f = DeepFacts {
            agent: Some(AgentStatus {
                backend: "openai".into(),
                verdict: "unknown".into(),
                detail: String::new(),
                age_ms: None,
                health: None,
            }),
            ..healthy()
        };
        assert!(run(&f).0.is_empty());
    }

    #[test]
    fn healthy_gateway() {
        let (failed, verdict) = run(&healthy());
        assert!(failed.is_empty(), "{failed:?}");
        assert!(verdict.starts_with("healthy"), "{verdict}");
    }

    #[test]
    fn cleanly_stopped_gateway_is_consistent() {
        let f = DeepFacts {
            lock_held: Ok(false),
            pid_record: RecordRead::Missing,
            identity: None,
            state: RecordRead::Present(state(7, GatewayState::Stopped, 1_000)),
            ping: Ping::Skipped,
            service: ServiceFacts::None,
            http_url: None,
            readiness: Readiness::Skipped,
            ..healthy()
        };
        let (failed, verdict) = run(&f);
        assert!(failed.is_empty(), "{failed:?}");
        assert!(verdict.starts_with("not running"), "{verdict}");
        // What cannot be asked of a stopped gateway is SKIP, never PASS.
        let skipped: Vec<(u8, &str)> = probes(&f)
            .iter()
            .filter(|p| p.skipped)
            .map(|p| (p.id, p.word()))
            .collect();
        assert_eq!(skipped, [(3, "SKIP"), (4, "SKIP"), (7, "SKIP"), (8, "SKIP")]);
    }

    #[test]
    fn http_is_skipped_not_failed_when_the_ping_failed() {
        let f = DeepFacts {
            ping: Ping::Failed("no answer within 500 ms".into()),
            http_url: Some("http://127.0.0.1:1".into()),
            readiness: Readiness::NotTried,
            ..healthy()
        };
        let p = probes(&f);
        assert_eq!((p[6].word(), p[7].word()), ("FAIL", "SKIP"));
        assert!(p[7].detail.contains("not asked"), "{}", p[7].detail);
    }

    #[test]
    fn stale_pid_record_is_named() {
        let f = DeepFacts {
            lock_held: Ok(false),
            identity: Some(Identity::Gone),
            ping: Ping::Skipped,
            service: ServiceFacts::None,
            http_url: None,
            readiness: Readiness::Skipped,
            ..healthy()
        };
        let (failed, verdict) = run(&f);
        assert!(failed.contains(&1) && failed.contains(&3), "{failed:?}");
        assert!(verdict.contains("stale PID record names pid 7"), "{verdict}");
    }

    #[test]
    fn foreign_lock_holder_is_named() {
        let f = DeepFacts {
            identity: Some(Identity::Recycled {
                actual: ProcessKey {
                    pid: 7,
                    start_time: 5,
                },
            }),
            ..healthy()
        };
        let (failed, verdict) = run(&f);
        assert!(failed.contains(&2) && failed.contains(&3), "{failed:?}");
        assert!(verdict.contains("not by a verified herald"), "{verdict}");
    }

    #[test]
    fn wedged_event_loop_fails_ping_but_not_liveness() {
        let f = DeepFacts {
            ping: Ping::Failed("no answer within 500 ms".into()),
            ..healthy()
        };
        let (failed, verdict) = run(&f);
        assert_eq!(failed, vec![7]);
        assert!(verdict.contains("wedged"), "{verdict}");
    }

    #[test]
    fn stale_state_record_is_named() {
        let f = DeepFacts {
            now_ms: 1_000 + 61_000,
            ..healthy()
        };
        let (failed, verdict) = run(&f);
        assert_eq!(failed, vec![5]);
        assert!(verdict.contains("state record disagrees"), "{verdict}");
    }

    #[test]
    fn a_logon_autostart_entry_is_not_a_supervisor() {
        let task = ServiceFacts::Autostart {
            entries: vec!["task Herald_Gateway registered for this home".into()],
        };
        // Registered and running: consistent.
        let (failed, verdict) = run(&DeepFacts {
            service: task.clone(),
            ..healthy()
        });
        assert!(failed.is_empty(), "{failed:?}");
        assert!(verdict.starts_with("healthy"), "{verdict}");
        let p = probes(&DeepFacts {
            service: task.clone(),
            ..healthy()
        });
        assert!(
            p[8].detail.contains("starts the gateway at logon"),
            "{}",
            p[8].detail
        );
        assert!(p[8].detail.contains("gateway pid 7"), "{}", p[8].detail);
        // Registered and not running: only autostart at logon, not a lie.
        let stopped = DeepFacts {
            lock_held: Ok(false),
            pid_record: RecordRead::Missing,
            identity: None,
            state: RecordRead::Present(state(7, GatewayState::Stopped, 1_000)),
            ping: Ping::Skipped,
            service: task,
            ..healthy()
        };
        let (failed, verdict) = run(&stopped);
        assert!(failed.is_empty(), "{failed:?}");
        assert!(verdict.starts_with("not running"), "{verdict}");
        // Two entries for one home are named.
        let (failed, _) = run(&DeepFacts {
            service: ServiceFacts::Autostart {
                entries: vec!["task Herald_Gateway".into(), "startup launcher x.cmd".into()],
            },
            ..healthy()
        });
        assert_eq!(failed, vec![9]);
    }

    #[test]
    fn a_windows_service_that_disagrees_with_the_lock_is_named() {
        let service = |state: &str, active: bool, main_pid: Option<u32>| ServiceFacts::Managed {
            manager: "windows service Herald_Gateway".into(),
            enabled: Some(true),
            state: Some(state.into()),
            active,
            main_pid,
        };
        let (failed, _) = run(&DeepFacts {
            service: service("running", true, Some(7)),
            ..healthy()
        });
        assert!(failed.is_empty(), "{failed:?}");
        // The SCM says running, but nothing holds the lock.
        let (failed, verdict) = run(&DeepFacts {
            lock_held: Ok(false),
            pid_record: RecordRead::Missing,
            identity: None,
            state: RecordRead::Present(state(7, GatewayState::Stopped, 1_000)),
            ping: Ping::Skipped,
            service: service("running", true, Some(9)),
            ..healthy()
        });
        assert_eq!(failed, vec![9]);
        assert!(
            verdict.contains("windows service Herald_Gateway says the service is active"),
            "{verdict}"
        );
        // A gateway runs outside the stopped service.
        let (failed, verdict) = run(&DeepFacts {
            service: service("stopped", false, None),
            ..healthy()
        });
        assert_eq!(failed, vec![9]);
        assert!(verdict.contains("started outside the manager"), "{verdict}");
    }
}
