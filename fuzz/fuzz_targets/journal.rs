//! Fuzz the journal replay (`bagboy recover`): no input panics it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("bagboy-fuzz-{}-journal.jsonl", std::process::id()));
    std::fs::write(&path, data).unwrap();
    if let Ok(j) = bagboy::journal::Journal::open(&path) {
        let data = j.snapshot();
        for id in data.plan().changing_steps() {
            let _ = data.step(id);
        }
    }
});
