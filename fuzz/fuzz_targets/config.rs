//! Pipeline configs: YAML parsing, then validation against a registered stage kind.
#![no_main]
use std::sync::LazyLock;

use applearner_pipeline::{Pipeline, Registry};

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let mut registry = Registry::new();
    applearner_ingest::register(&mut registry);
    registry
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Pipeline::from_yaml("fuzz.yaml", text, &[], &REGISTRY);
    }
});
