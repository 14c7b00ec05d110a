//! What can go wrong in cleaning, each with the fix.

#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error("the input holds no samples of role {roles}; check the ingest stage's `roles` (metric → cpu/memory)")]
    NoSamples { roles: String },
    #[error("all {count} samples of role {roles} are NaN or infinite; check the query that produced them")]
    AllNonFinite { count: u64, roles: String },
    #[error(
        "series `{key}` has {points} input points and is cleaned at once, more than `max_points_in_memory` ({max}); \
         raise it to at least {points} (about {} MB), or group less into one series (`group.by: series`)",
        points / 6_000
    )]
    GroupTooLarge { key: String, points: u64, max: u64 },
    #[error(
        "no input series has the label `{0}` that `group.labels` names; check its spelling against the series' labels (`applearner show <run>/ingest/series.parquet`)"
    )]
    MissingLabel(String),
    #[error(
        "nothing is left after cleaning: of {series} series, {without_roles} lack one of the roles, \
         {short} segments were shorter than min_points = {min_points} after trimming {trim} points \
         from each end, {zero} series were all zero and {constant} constant; lower `min_points` or \
         `trim`, or set `drop_constant`/`drop_zero` to false"
    )]
    NothingLeft { series: u64, without_roles: u64, short: u64, min_points: u32, trim: u32, zero: u64, constant: u64 },
    #[error(
        "the input `{input}` reads the metric `{metric}`, which no ingested series has; the data has: {available}. \
         Name one of those in `inputs.{input}.metric`, or ingest the metric (its saved answers or a live query)"
    )]
    UnknownInput { input: String, metric: String, available: String },
    #[error(
        "the {table} table has no `{column}` column: it was written by another version of AppLearner; run the stage that writes it again (--force)"
    )]
    MissingColumn { table: &'static str, column: String },
}
