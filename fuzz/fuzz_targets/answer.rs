//! Prometheus `query` / `query_range` answers (JSON), as saved files or from a live server.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = applearner_ingest::answer::parse("fuzz.json", data, Some("m"));
    let _ = applearner_ingest::answer::parse("fuzz.json", data, None);
});
