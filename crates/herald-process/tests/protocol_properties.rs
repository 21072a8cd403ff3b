//! The control-channel request parser under arbitrary input: never a panic, and every request herald
//! sends parses back to itself.

use herald_process::control::protocol::{Request, parse_request, to_line};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_request_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20_000)) {
        let _ = parse_request(&bytes);
    }

    #[test]
    fn parse_request_never_panics_on_near_json(text in r#"\{"op":"[a-z]{0,8}"(,"[a-z]{1,8}":(true|1|"x"|null|\{\}))?\}"#) {
        let _ = parse_request(text.as_bytes());
    }

    #[test]
    fn requests_round_trip(which in 0u8..4, restart in any::<bool>()) {
        let request = match which {
            0 => Request::Ping,
            1 => Request::Status,
            2 => Request::Stop { restart },
            _ => Request::Drain,
        };
        prop_assert_eq!(parse_request(&to_line(&request)), Ok(request));
    }
}
