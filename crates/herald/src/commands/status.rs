//! `herald status`: exit 0 when running, 3 when not (LSB).

use std::time::Instant;

use herald_home::ExitCode;
use herald_home::records::HealthRecord;
use herald_home::time::human_duration;
use herald_home::words::count;
use herald_install::scm::SystemScm;
use herald_lifecycle::Target;
use herald_lifecycle::deep::{self, DeepFacts};
use herald_lifecycle::status::{OtherGateway, StatusReport, other_running};
use serde_json::json;

use crate::cli::StatusArgs;
use crate::paint::Paint;

pub fn status(target: &Target, args: &StatusArgs) -> ExitCode {
    if args.deep {
        return deep(target, args.json);
    }
    let home = target.home();
    let mut report = StatusReport::gather(home);
    report.read_service(home, &SystemScm);
    let others = other_running(home);
    let missing = super::missing_home(home);
    if let Some(missing) = &missing {
        report.warnings.push(missing.clone());
    }
    if let (Some(missing), false) = (&missing, args.json) {
        // Nothing else is known about a home that does not exist; the other gateways may show the right one.
        print!("herald: not running: {missing}\n{}", others_text(&others));
    } else if args.json {
        println!("{}", to_json(&report, &others));
    } else {
        print!("{}", to_text(&report, &others));
    }
    if report.running {
        ExitCode::Ok
    } else {
        ExitCode::NotRunning
    }
}

/// The stable JSON document (documented in README.md).
fn to_json(report: &StatusReport, others: &[OtherGateway]) -> String {
    let value = json!({
        "running": report.running,
        "pid": report.pid,
        "version": report.version,
        "state": report.state.map(|s| s.as_str()),
        "uptime_secs": report.uptime_secs,
        "in_flight": report.in_flight,
        "queued": report.queued,
        "turn_slots": report.turn_slots,
        "home": report.home.display().to_string(),
        "control": report.control,
        "http_url": report.http_url,
        "waiting": report.waiting,
        "last_exit": report.last_exit.as_ref().map(|e| json!({
            "code": e.code,
            "reason": e.reason,
            "at": herald_home::time::rfc3339_ms(e.at_ms),
        })),
        "worker_pid": report.worker_pid,
        "restarts": report.restarts,
        "last_restart_reason": report.last_restart_reason,
        "adapters": report.adapters.iter().map(health_json).collect::<Vec<_>>(),
        "agent": report.agent.as_ref().map(health_json),
        "cluster": report.cluster,
        "journal_outage": report.journal_outage.as_ref().map(|o| json!({
            "since": herald_home::time::rfc3339_ms(o.since_ms),
            "error": o.error,
        })),
        "service": report.service.as_ref().map(|s| json!({
            "manager": s.manager,
            "name": s.name,
            "state": s.state,
            "pid": s.pid,
            "start": s.start,
            "exit": s.exit,
        })),
        "warnings": report.warnings,
        "others": others.iter().map(|o| json!({
            "profile": o.profile,
            "home": o.home.display().to_string(),
            "pid": o.pid,
        })).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&value).unwrap_or_else(|_| "{}".into())
}

/// One adapter's (or the agent's) health in `status --json` (documented in README.md).
fn health_json(record: &HealthRecord) -> serde_json::Value {
    let at = |ms: Option<u64>| ms.map(herald_home::time::rfc3339_ms);
    json!({
        "name": record.name,
        "state": record.state.as_str(),
        "message": record.message,
        "since": herald_home::time::rfc3339_ms(record.since_ms),
        "last_inbound": at(record.last_inbound_ms),
        "last_outbound": at(record.last_outbound_ms),
        "last_error": record.last_error,
        "last_error_at": at(record.last_error_ms),
        "restarts": record.restarts,
        "notice_sent": at(record.notice_sent_ms),
    })
}

fn to_text(report: &StatusReport, others: &[OtherGateway]) -> String {
    let mut out = String::new();
    if report.running {
        let pid = report
            .pid
            .map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"));
        let state = report.state.map_or("unknown state", |s| s.as_str());
        out.push_str(&format!("herald: running ({pid}), {state}"));
        if let Some(up) = report.uptime_secs {
            out.push_str(&format!(
                ", up {}",
                human_duration(std::time::Duration::from_secs(up))
            ));
        }
        out.push('\n');
        if let Some(version) = &report.version {
            out.push_str(&format!("  version: herald {version}\n"));
        }
        if let Some(reason) = &report.waiting {
            out.push_str(&format!(
                "  not serving: {reason}\n  waiting for herald.toml (or the secrets) to change; `herald stop` ends the wait\n"
            ));
        }
        if let Some(worker) = report.worker_pid {
            out.push_str(&format!("  worker: pid {worker} (supervised"));
            if let Some(restarts) = report.restarts {
                out.push_str(&format!(
                    ", {}",
                    count(u64::from(restarts), "restart", "restarts")
                ));
            }
            if let Some(reason) = &report.last_restart_reason {
                out.push_str(&format!(", last: {reason}"));
            }
            out.push_str(")\n");
        }
        if let Some(n) = report.in_flight {
            out.push_str(&format!("  turns in flight: {n}"));
            match (report.queued.unwrap_or(0), report.turn_slots) {
                (0, _) => {}
                (queued, Some(slots)) => out.push_str(&format!(
                    " ({queued} waiting in line, at most {slots} run at once)"
                )),
                (queued, None) => out.push_str(&format!(" ({queued} waiting in line)")),
            }
            out.push('\n');
        }
        if let Some(c) = &report.control {
            out.push_str(&format!("  control: {c}\n"));
        }
        if let Some(url) = &report.http_url {
            out.push_str(&format!("  http: {url}\n"));
        }
        let now = herald_home::time::now_ms();
        if let Some(agent) = &report.agent {
            out.push_str(&format!("  agent {}\n", deep::describe_health(agent, now)));
        }
        for adapter in &report.adapters {
            out.push_str(&format!("  {}\n", deep::describe_health(adapter, now)));
        }
        if let Some(outage) = &report.journal_outage {
            out.push_str(&format!(
                "  journal: degraded, the database has not answered since {} ({}); writes wait and retry\n",
                herald_home::time::rfc3339_ms(outage.since_ms),
                outage.error
            ));
        }
        if let Some(cluster) = &report.cluster {
            out.push_str(&cluster_text(cluster, now));
        }
    } else {
        out.push_str("herald: not running\n");
        if let Some(exit) = &report.last_exit {
            out.push_str(&format!(
                "  last exit: code {} ({}) at {}\n",
                exit.code,
                exit.reason,
                herald_home::time::rfc3339_ms(exit.at_ms)
            ));
        }
    }
    if let Some(service) = &report.service {
        out.push_str(&format!("  service: {}\n", service.describe()));
    }
    out.push_str(&format!("  home: {}\n", report.home.display()));
    for warning in &report.warnings {
        out.push_str(&format!("  warning: {warning}\n"));
    }
    out.push_str(&others_text(others));
    out
}

/// The replicas sharing the journal: one line each, this one marked, then the turns nobody owns.
fn cluster_text(cluster: &herald_home::records::ClusterView, now: u64) -> String {
    let live = cluster.replicas.iter().filter(|r| r.alive).count();
    let mut out = format!(
        "  replicas: {live} live of {} (lease {} s)\n",
        cluster.replicas.len(),
        cluster.lease_secs
    );
    for replica in &cluster.replicas {
        let mut line = format!(
            "    {} {} pid {} v{}, up {}, {}",
            if replica.me { "*" } else { "-" },
            replica.name,
            replica.pid,
            replica.version,
            human_duration(std::time::Duration::from_millis(
                now.saturating_sub(replica.started_ms)
            )),
            herald_home::words::count(replica.turns, "turn in flight", "turns in flight"),
        );
        if !replica.adapters.is_empty() {
            line.push_str(&format!(", runs {}", replica.adapters.join(", ")));
        }
        if !replica.alive {
            line.push_str(", lease expired");
        }
        out.push_str(&line);
        out.push('\n');
    }
    if cluster.orphaned > 0 {
        out.push_str(&format!(
            "    {} waiting for a replica to take them over\n",
            herald_home::words::count(cluster.orphaned, "turn", "turns")
        ));
    }
    out
}

/// `also running: profile work (pid 42) at /home/me/.herald/profiles/work`, one line each.
fn others_text(others: &[OtherGateway]) -> String {
    let mut out = String::new();
    for other in others {
        let name = other
            .profile
            .as_deref()
            .map_or_else(|| "default home".to_owned(), |p| format!("profile {p}"));
        let pid = other
            .pid
            .map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"));
        out.push_str(&format!(
            "also running: {name} ({pid}) at {}\n",
            other.home.display()
        ));
    }
    out
}

fn deep(target: &Target, json: bool) -> ExitCode {
    let home = target.home();
    if let Some(missing) = super::missing_home(home) {
        eprintln!("herald: {missing}");
    }
    let started = Instant::now();
    let facts = DeepFacts::gather(target);
    let probes = deep::probes(&facts);
    let verdict = deep::verdict(&facts, &probes);
    let report = StatusReport::gather(home);
    let healthy = probes.iter().all(|p| p.ok);
    if json {
        let mut value: serde_json::Value = serde_json::from_str(&to_json(&report, &[])).unwrap_or_default();
        value["probes"] = json!(
            probes
                .iter()
                .map(|p| json!({
                    "id": p.id,
                    "name": p.name,
                    "ok": p.ok,
                    "result": p.word().to_ascii_lowercase(),
                    "detail": p.detail,
                }))
                .collect::<Vec<_>>()
        );
        value["verdict"] = json!(verdict);
        value["healthy"] = json!(healthy && report.running);
        value["elapsed_ms"] = json!(started.elapsed().as_secs_f64() * 1000.0);
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        let paint = Paint::stdout();
        for p in &probes {
            let mark = paint.verdict(p.word());
            println!("{mark}  {:>2}. {:<18} {}", p.id, p.name, p.detail);
        }
        println!("verdict: {verdict}");
        if let Some(upgrade) = herald_lifecycle::upgrade::describe_unfinished(home) {
            println!("note: {upgrade}");
        }
    }
    match (report.running, healthy) {
        (false, _) => ExitCode::NotRunning,
        (true, true) => ExitCode::Ok,
        (true, false) => ExitCode::Failure,
    }
}
