//! Fuzz the saved-plan reader (`bagboy apply PLAN.json`): no input panics it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("bagboy-fuzz-{}-plan.json", std::process::id()));
    std::fs::write(&path, data).unwrap();
    if let Ok(plan) = bagboy::ops::apply::read_plan(&path) {
        let _ = bagboy::ops::apply::compare(&plan, &plan);
    }
});
