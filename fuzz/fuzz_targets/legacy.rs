//! The original AppLearner's JSON dumps.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = applearner_ingest::legacy::parse("fuzz.json", data);
});
