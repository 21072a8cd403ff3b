//! systemd `ExecStart=` quoting: quoting words then parsing the line gives the words back; parsing any
//! unit text never panics.
#![no_main]

use herald_install::systemd;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = systemd::parse_unit(&text);
    let _ = systemd::split_words(&text);
    // NUL cannot be represented in a unit file; '/' is the path separator of the program.
    let mut words = text.split('\u{1f}').map(|w| w.replace('\0', ""));
    let dir = words.next().unwrap_or_default().replace('/', "_");
    let program = format!("/opt/{dir}/herald");
    let args: Vec<String> = words.collect();
    let line = systemd::exec_line(&program, &args);
    let (p, a) = systemd::parse_exec_start(&line).expect("a rendered ExecStart parses");
    assert_eq!(p, program);
    assert_eq!(a, args);
});
