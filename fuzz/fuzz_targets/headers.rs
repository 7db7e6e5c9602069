//! Fuzz the registry response headers bagboy parses: `WWW-Authenticate` and `Link`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = bagboy::registry::oci::Challenge::parse_all(&s);
    let _ = bagboy::registry::oci::next_link(&s);
});
