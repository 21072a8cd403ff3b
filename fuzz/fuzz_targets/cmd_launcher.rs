//! The Startup-folder `.cmd` launcher: any home path Windows allows is written so that cmd.exe (as
//! `parse_launcher` decodes it) runs exactly that home; parsing any bytes never panics.
#![no_main]

use herald_install::{Scope, ServiceSpec, startup};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = startup::parse_launcher(data, &startup::SystemOemCodePage);
    let text = String::from_utf8_lossy(data);
    let component: String = text
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | '|' | '*' | '?' | ':' | '/' | '\\'))
        .take(40)
        .collect();
    let spec = ServiceSpec {
        executable: r"C:\Herald\herald.exe".into(),
        gui_executable: Some(r"C:\Herald\heraldw.exe".into()),
        home_root: format!(r"C:\Users\u\{component}").into(),
        profile: None,
        stop_budget: herald_home::StopBudget::new(30),
        stdio_log: r"C:\Herald\logs\stdio.log".into(),
        scope: Scope::User,
        run_as: Some("u".into()),
    };
    if let Ok(bytes) = startup::render_launcher(&spec, &startup::SystemOemCodePage) {
        let facts = startup::parse_launcher(&bytes, &startup::SystemOemCodePage).expect("a rendered launcher parses");
        let invocation = facts.invocation();
        let home = invocation.args.iter().skip_while(|a| *a != "--home").nth(1).cloned();
        assert_eq!(home.as_deref(), Some(format!(r"C:\Users\u\{component}").as_str()));
    }
});
