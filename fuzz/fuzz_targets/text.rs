//! `promtool tsdb dump` output, Prometheus text exposition and OpenMetrics with timestamps.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = applearner_ingest::text::parse("fuzz.txt", data);
});
