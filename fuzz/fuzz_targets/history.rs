//! Fuzz the history loader: no input panics it, and whatever loads is written back readable and stable.
#![no_main]

use bagboy::history::{to_yaml, Store};
use libfuzzer_sys::fuzz_target;

// The loaders read files; one per process, on the fastest disk at hand.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("bagboy-fuzz-{}-{name}.yml", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let path = scratch("history");
    std::fs::write(&path, data).unwrap();
    let Ok(loaded) = Store::new(&path).load() else {
        return;
    };
    let first = to_yaml(&loaded.history);
    std::fs::write(&path, &first).unwrap();
    let again = Store::new(&path)
        .load()
        .unwrap_or_else(|e| panic!("bagboy cannot read what it wrote: {e}\n{first}"));
    assert_eq!(first, to_yaml(&again.history), "write-back is not stable");
});
