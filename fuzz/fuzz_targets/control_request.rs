//! The control-channel request parser: any line is a request or a protocol error; a request renders
//! back to a line that parses to the same request.
#![no_main]

use herald_process::control::protocol::{parse_request, to_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = parse_request(data) {
        let line = to_line(&request);
        assert_eq!(parse_request(&line).expect("a rendered request parses"), request);
    }
});
