//! Every generated plist passes the real `plistutil` (libplist) and round-trips through it, as XML and as
//! binary. With `CI=true` a missing tool fails the test; elsewhere the test is skipped with a loud message
//! (`ci/peers/install-service-tools.sh` installs it).
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;

use herald_home::paths::HomeRequest;
use herald_home::{Home, ProfileName};
use herald_install::{Backend, Scope, ServiceSpec, launchd};

fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is missing and CI=true: run ci/peers/install-service-tools.sh");
        }
        eprintln!("\n!!!!! SKIPPED: {name} is not installed (run ci/peers/install-service-tools.sh) !!!!!\n");
    }
    found
}

fn convert(plistutil: &Path, input: &Path, output: &Path, format: &str) {
    let out = Command::new(plistutil)
        .args([
            "-i".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            output.as_os_str(),
            "-f".as_ref(),
        ])
        .arg(format)
        .output()
        .unwrap();
    assert!(
        out.status.success() && std::fs::metadata(output).map(|m| m.len() > 0).unwrap_or(false),
        "plistutil -f {format} {} failed ({}): {}{}",
        input.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generated_plists_pass_plistutil_and_round_trip() {
    let Some(plistutil) = tool("plistutil") else {
        return;
    };
    for (i, name) in [
        "plain",
        "with space",
        "quote \" 'single' <lt> &amp; &",
        "percent 100% dollar $HOME ${X}",
        "caret ^ bang ! back\\slash",
        "non-ascii é 中文 😀",
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::resolve(HomeRequest {
            flag: Some(dir.path().join(format!("home {name}"))),
            profile: (i % 2 == 0).then(|| ProfileName::new("work").unwrap()),
            ..HomeRequest::default()
        })
        .unwrap();
        let mut spec = ServiceSpec::for_home(
            &home,
            dir.path().join(format!("bin {name}/herald")),
            herald_home::StopBudget::new(30),
        );
        if i == 3 {
            spec.scope = Scope::System;
            spec.run_as = Some("_herald".into());
        }
        let expected = spec.invocation(Backend::Launchd).unwrap();
        let source = dir.path().join("job.plist");
        std::fs::write(&source, launchd::render_plist(&spec).unwrap()).unwrap();

        let xml = dir.path().join("via-libplist.plist");
        convert(&plistutil, &source, &xml, "xml");
        let binary = dir.path().join("via-libplist.bplist");
        convert(&plistutil, &source, &binary, "bin");
        let original = launchd::parse_plist(&std::fs::read(&source).unwrap()).unwrap();
        for file in [&xml, &binary] {
            let facts = launchd::parse_plist(&std::fs::read(file).unwrap()).unwrap();
            assert_eq!(
                facts.invocation().unwrap(),
                expected,
                "{name} via {}",
                file.display()
            );
            assert_eq!(facts, original, "{name} via {}", file.display());
        }
        assert_eq!(original.umask, Some(0o077));
        // Exit 0 stays stopped, 1 and 75 come back; exit 78 is never taken under launchd (`--launchd`:
        // the gateway waits for a fix instead), since KeepAlive cannot exempt one exit code.
        assert_eq!(original.keep_alive_successful_exit, Some(false));
        assert_eq!(
            original.program_arguments[original.program_arguments.len() - 3..],
            ["run", "--no-supervise", "--launchd"],
            "{name}"
        );
    }
}
