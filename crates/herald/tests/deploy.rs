//! What Herald ships for containers agrees with this herald: the Kubernetes manifest's `herald.toml` is
//! a config it accepts, the pod's grace period covers the stop budget that config gives, the probes name
//! endpoints the gateway serves, and the image's entrypoint puts the mounted config into the home as the
//! ownership rules want it. (Their syntax is linted by `ci/lint-deploy.sh`: hadolint and
//! kubernetes-validate.)

mod support;

use std::path::{Path, PathBuf};

use herald_home::budget::StopBudget;
use herald_home::config::Config;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifest() -> String {
    std::fs::read_to_string(repo().join("deploy/kubernetes/herald.yaml")).unwrap()
}

/// The ConfigMap's `herald.toml: |` block, unindented.
fn shipped_config(manifest: &str) -> String {
    let mut lines = manifest
        .lines()
        .skip_while(|l| l.trim() != "herald.toml: |")
        .skip(1);
    let first = lines.next().unwrap();
    let indent = first.len() - first.trim_start().len();
    std::iter::once(first)
        .chain(lines.take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent))
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The integer after `key:` in the manifest (the first occurrence).
fn number(manifest: &str, key: &str) -> u64 {
    manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the manifest"))
}

#[test]
fn the_manifest_runs_replicas_on_a_config_this_herald_accepts_and_waits_for_their_drain() {
    let manifest = manifest();
    let text = shipped_config(&manifest);
    let config = Config::parse(Path::new("herald.toml"), text.as_bytes())
        .unwrap_or_else(|e| panic!("the shipped herald.toml is refused: {e}\n{text}"));
    assert!(
        config.journal.is_postgres(),
        "replicas need the PostgreSQL journal"
    );
    assert!(
        config.http.token_env.is_some(),
        "a non-loopback listener needs a token"
    );
    assert!(config.journal.lease_ttl_secs <= 10);
    assert!(number(&manifest, "replicas:") >= 2);
    let budget = StopBudget::new(config.gateway.drain_timeout_secs);
    assert!(
        number(&manifest, "terminationGracePeriodSeconds:") >= budget.stop_timeout_secs(),
        "the pod must be given the drain and herald's margin ({} s)",
        budget.stop_timeout_secs()
    );
    for path in ["path: /readyz", "path: /healthz"] {
        assert!(manifest.contains(path), "{path}");
    }
    assert!(!manifest.contains("preStop:"), "SIGTERM drains: no preStop hook");
    assert!(
        !manifest.contains("kind: Secret"),
        "no secret is shipped in a file"
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("--features postgres"));
    assert!(dockerfile.contains(r#"CMD ["run", "--no-supervise"]"#));
}

/// The probes the manifest names are endpoints a gateway answers (without a token: a probe has none).
#[test]
fn the_probes_the_manifest_names_are_answered() {
    let home = support::TestHome::new();
    home.write("herald.toml", b"[http]\nlisten = \"127.0.0.1:0\"\n");
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    for path in ["/readyz", "/healthz"] {
        assert_eq!(support::http(&url, "GET", path, &[], b"").status, 200, "{path}");
    }
    home.output(&["stop"]);
}

#[cfg(unix)]
#[test]
fn the_entrypoint_puts_the_mounted_config_into_the_home_privately() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mounted = dir.path().join("mounted.toml");
    std::fs::write(&mounted, "[http]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    std::fs::set_permissions(&mounted, std::fs::Permissions::from_mode(0o644)).unwrap();
    let home = dir.path().join("data/home");
    let out = std::process::Command::new("sh")
        .arg(repo().join("deploy/container/entrypoint.sh"))
        .args(["doctor", "--json"])
        .env("HERALD_HOME", &home)
        .env("HERALD_CONFIG_FILE", &mounted)
        .env("HERALD_BIN", env!("CARGO_BIN_EXE_herald"))
        .output()
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", support::text(&out)));
    let config = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "config")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(config["verdict"], "PASS", "{report}");
    let copied = home.join("herald.toml");
    assert_eq!(std::fs::read(&copied).unwrap(), std::fs::read(&mounted).unwrap());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&copied), 0o600);
    assert_eq!(mode(&home), 0o700);
}
