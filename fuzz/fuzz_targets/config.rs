//! `herald.toml` parsing: any bytes give a config or a located error, never a panic; a config that parses
//! renders to TOML that parses back to itself.
#![no_main]

use std::path::Path;

use herald_home::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = Config::parse(Path::new("herald.toml"), data) {
        let again = Config::parse(Path::new("herald.toml"), config.to_toml().as_bytes())
            .expect("a rendered config parses");
        assert_eq!(again, config);
    }
});
