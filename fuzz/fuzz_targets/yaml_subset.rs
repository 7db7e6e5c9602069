//! Fuzz the fast reader of the subset bagboy writes against serde-saphyr: whatever it accepts,
//! the full parser reads to the same nodes, positions included.
#![no_main]

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use bagboy::yaml::{self, Node};
use libfuzzer_sys::fuzz_target;

fn read(data: &[u8], full: bool) -> Result<(Node, Vec<Node>), String> {
    let items = Rc::new(RefCell::new(Vec::new()));
    let sink = {
        let items = items.clone();
        Box::new(move |n: Node| items.borrow_mut().push(n))
    };
    let path = Path::new("h.yml");
    let root = if full {
        yaml::parse_streaming_full(path, data, "deployments", sink)
    } else {
        let restart_items = items.clone();
        let mut restart = move || restart_items.borrow_mut().clear();
        yaml::parse_streaming(path, data, "deployments", sink, &mut restart)
    };
    let root = root.map_err(|e| e.to_string())?;
    let items = items.take();
    Ok((root, items))
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(read(data, false), read(data, true), "{}", String::from_utf8_lossy(data));
});
