//! The lifecycle log reader: every line is an event or a reported bad line, never a panic.
#![no_main]

use herald_home::lifecycle::parse_events;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (events, bad) = parse_events(data);
    assert!(events.len() + bad.len() <= data.split(|b| *b == b'\n').count());
});
