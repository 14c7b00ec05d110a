//! What can go wrong in building features, each with the fix.

#[derive(Debug, thiserror::Error)]
pub enum FeaturesError {
    #[error(
        "series `{key}` has {points} points and its features are built at once, more than `max_points_in_memory` \
         ({max}); raise it to at least {points} (about {} MB)",
        points / 8_000
    )]
    SeriesTooLarge { key: String, points: u64, max: u64 },
    #[error("the input has no column `{column}`; it has {available}")]
    UnknownColumn { column: String, available: String },
    #[error("the input table is empty")]
    EmptyInput,
    #[error(
        "the resampled table is not in key and time order at series `{key}` ({what}); it is clean.resample's \
         output, sorted by key and time: rerun clean with --force=clean"
    )]
    OutOfOrder { key: String, what: String },
    #[error(
        "the {part} part has no windows: in all {series} series it is shorter than the {need} steps a window \
         needs (lookback {lookback} + horizon {horizon}{warmup}); the longest {part} part has {longest} points. \
         Lower lookback/horizon, or give the {part} part a larger fraction or an earlier cut-off"
    )]
    EmptyPart { part: &'static str, series: u64, need: u32, lookback: u32, horizon: u32, warmup: String, longest: u64 },
    #[error(
        "no segment holds one window: a window needs {need} steps (lookback {lookback} + horizon {horizon} + \
         warm-up {warmup}), and the longest segment, of series `{key}`, has {longest} points. Lower {settings}"
    )]
    SegmentsTooShort {
        need: u32,
        lookback: u32,
        horizon: u32,
        warmup: u32,
        longest: u64,
        key: String,
        settings: String,
    },
}
