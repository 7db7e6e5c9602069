//! Fuzz the `bagboy.yaml` loader: no input panics it.
#![no_main]

use bagboy::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("bagboy-fuzz-{}-config.yml", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let _ = Config::load(&path);
});
