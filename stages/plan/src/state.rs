//! The loop's state between refreshes: per workload and line, the last decision, the value in
//! force, the change budget it has used and the adaptive factor. Kept in the store as
//! numbered, write-once Parquet tables (`state/<name>/00000007.parquet`): a refresh reads the
//! highest and writes the next number only if no one has. Two refreshes racing from the same
//! state cannot both write it: the second stops with an error, and nothing is overwritten or
//! half-written.

use super::*;
use applearner_pipeline::Store;
use applearner_pipeline::arrow::datatypes::Schema;
use std::sync::Arc;

/// The state table's format; another one is refused with what to do.
pub const VERSION: &str = "1";
const VERSION_KEY: &str = "applearner.state_version";

/// (workload, line) → the rule its factor scales (as labelled), and its loop.
pub type States = BTreeMap<(String, String), (String, Loop)>;

/// The latest state in the store: its number (0: none yet) and where it was read.
#[derive(Default)]
pub struct Stored {
    pub number: u64,
    pub path: Option<String>,
    pub states: States,
}

fn folder(name: &str) -> String {
    format!("state/{name}")
}

/// The number and path of the highest-numbered state under `state/<name>/`, unread.
pub fn latest_path(store: &Store, name: &str) -> Result<Option<(u64, String)>, BoxError> {
    let numbered = |p: &String| p.rsplit('/').next()?.strip_suffix(".parquet")?.parse::<u64>().ok();
    Ok(store.list(&folder(name))?.into_iter().filter_map(|p| Some((numbered(&p)?, p))).max())
}

/// The highest-numbered state under `state/<name>/`, read.
pub fn latest(store: &Store, name: &str) -> Result<Stored, BoxError> {
    let Some((number, path)) = latest_path(store, name)? else { return Ok(Stored::default()) };
    let batches = applearner_pipeline::read_parquet(&path, store.get(&path)?)?;
    let states = read(&path, &batches)?;
    Ok(Stored { number, path: Some(path), states })
}

/// Writes `states` as number `previous + 1`, unless another refresh already has.
pub fn write_next(store: &Store, name: &str, previous: u64, states: &States) -> Result<String, BoxError> {
    let path = format!("{}/{:08}.parquet", folder(name), previous + 1);
    let bytes = applearner_pipeline::encode::to_parquet(&table(states)?)?;
    if !store.put_new(&path, bytes.into())? {
        return Err(PlanError::StateRace { path, previous }.into());
    }
    Ok(path)
}

fn table(states: &States) -> Result<RecordBatch, BoxError> {
    let rows: Vec<(&(String, String), &(String, Loop))> = states.iter().collect();
    let (_, batch) = TableBuilder::default()
        .strings("key", rows.iter().map(|r| &r.0.0))
        .strings("line", rows.iter().map(|r| &r.0.1))
        .strings("rule", rows.iter().map(|r| &r.1.0))
        .times("decided_at", rows.iter().map(|r| r.1.1.at).collect())
        .floats("value", rows.iter().map(|r| r.1.1.held.value).collect())
        .times("since", rows.iter().map(|r| r.1.1.held.since).collect())
        .strings("changed_last_day", rows.iter().map(|r| join(&r.1.1.held.last_day)))
        .u32s("changes", rows.iter().map(|r| r.1.1.held.changes as u32).collect())
        .floats("factor", rows.iter().map(|r| r.1.1.k).collect())
        .finish()?;
    let metadata = [(VERSION_KEY.to_string(), VERSION.to_string())].into();
    let schema = Arc::new(Schema::new_with_metadata(batch.schema().fields().clone(), metadata));
    Ok(batch.with_schema(schema)?)
}

/// Times in ms, comma-separated: the changes of the last day (at most the daily budget).
fn join(times: &[i64]) -> String {
    times.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

fn read(path: &str, batches: &[RecordBatch]) -> Result<States, BoxError> {
    let mut out = States::new();
    for b in batches {
        let version = b.schema().metadata().get(VERSION_KEY).cloned().unwrap_or_else(|| "none".into());
        if version != VERSION {
            return Err(PlanError::StateVersion { path: path.to_string(), version }.into());
        }
        let name = "state";
        let (key, line, rule) = (strings(b, name, "key")?, strings(b, name, "line")?, strings(b, name, "rule")?);
        let (at, since, value) = (ints(b, name, "decided_at")?, ints(b, name, "since")?, floats(b, name, "value")?);
        let (changed, changes, factor) =
            (strings(b, name, "changed_last_day")?, ints(b, name, "changes")?, floats(b, name, "factor")?);
        for i in 0..b.num_rows() {
            let last_day = changed[i].split(',').filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_, _>>();
            let last_day = last_day.map_err(|error| PlanError::StateRow { path: path.to_string(), row: i, error })?;
            let held = Held { value: value[i], since: since[i], last_day, changes: changes[i] as usize };
            let l = Loop { at: at[i], held, k: factor[i] };
            out.insert((key[i].clone(), line[i].clone()), (rule[i].clone(), l));
        }
    }
    Ok(out)
}
