//! Task Scheduler XML: escaping then unescaping gives the text back; decoding and parsing any bytes
//! never panics.
#![no_main]

use herald_install::task;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = task::parse_task(data);
    let _ = task::decode_task_bytes(data);
    let text = String::from_utf8_lossy(data);
    let _ = task::unescape_xml(&text);
    assert_eq!(task::unescape_xml(&task::escape_xml(&text)).expect("escaped text unescapes"), text);
    let bytes = task::utf16le_with_bom(&text);
    assert_eq!(task::decode_task_bytes(&bytes).expect("our encoding decodes"), text);
});
