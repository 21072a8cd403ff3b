//! Windows command lines: joining arguments with Herald's quoting, then splitting the line by the
//! CommandLineToArgvW rules, gives the arguments back; splitting any line never panics.
#![no_main]

use herald_install::winargs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = winargs::parse_windows_args(&text);
    // Arguments of a real command line carry no NUL; the first word is the program (never empty here).
    let mut args: Vec<String> = text.split('\u{1f}').map(|a| a.replace('\0', "")).collect();
    args.insert(0, r"C:\Herald\heraldw.exe".to_owned());
    let line = winargs::join_windows_args(&args);
    assert_eq!(winargs::parse_windows_args(&line), args, "{line:?}");
});
