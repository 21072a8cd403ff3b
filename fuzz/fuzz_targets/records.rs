//! Every runtime record reader: any bytes are Present, Missing or Invalid — never a panic.
#![no_main]

use herald_home::atomic::parse_record;
use herald_home::records::{MonitorRecord, PidRecord, StateRecord, StopMarker};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_record::<PidRecord>(data);
    let _ = parse_record::<StateRecord>(data);
    let _ = parse_record::<StopMarker>(data);
    let _ = parse_record::<MonitorRecord>(data);
});
