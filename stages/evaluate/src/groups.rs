//! The backtest's inputs a group of series at a time. Every step of the backtest but the
//! fleet's scores is per series, so it holds one group's windows, usage and tracks, never
//! the data's: its memory grows with the group, not with the fleet. The `windows`,
//! `features` and `resampled` tables and the forward forecast are sorted by series key, and
//! the groups read each once, in order.

use std::collections::BTreeMap;

use applearner_contracts::tables::{features, resampled, windows};
use applearner_contracts::{Part, WindowSet};
use applearner_pipeline::arrow::array::{AsArray, RecordBatch, UInt64Array};
use applearner_pipeline::arrow::compute::cast;
use applearner_pipeline::arrow::datatypes::{DataType, UInt64Type};
use applearner_pipeline::by_key::ByKey;
use applearner_pipeline::columns::{ints, strings};
use applearner_pipeline::{BoxError, StageContext};
use applearner_plan::table::{Usage, read_usage};

/// One group of series: its validation and test windows, its usage and its rows of the
/// forward forecast.
pub(crate) struct Group {
    pub windows: WindowSet,
    pub usage: BTreeMap<String, Usage>,
    pub forward: Vec<RecordBatch>,
}

type Batches<'a> = Box<dyn Iterator<Item = Result<RecordBatch, BoxError>> + 'a>;

/// The groups still to read.
pub(crate) struct Groups<'a> {
    /// The feature columns the model sees and forecasts.
    inputs: &'a [String],
    targets: &'a [String],
    /// The last key of each group (`None`: every series left).
    lasts: std::vec::IntoIter<Option<String>>,
    windows: ByKey<Batches<'a>>,
    features: ByKey<Batches<'a>>,
    usage: ByKey<Batches<'a>>,
    forward: ByKey<Batches<'a>>,
}

impl<'a> Groups<'a> {
    /// Groups of about `per_group` validation and test windows each, of whole series, with
    /// their rows of `forward` (the model's forecast ahead, made in one pass).
    pub(crate) fn open(
        ctx: &'a StageContext,
        (inputs, targets): (&'a [String], &'a [String]),
        forward: RecordBatch,
        per_group: usize,
    ) -> Result<Groups<'a>, BoxError> {
        // One row per run of windows: small beside the features it indexes.
        let runs = ctx.read_table(windows::NAME)?;
        let lasts = cut(&runs, per_group)?.into_iter();
        let table = |slot: &str| -> Result<Batches<'a>, BoxError> {
            Ok(Box::new(ctx.table_batches(slot, None, &[])?.map(|b| b.map_err(BoxError::from))))
        };
        Ok(Groups {
            inputs,
            targets,
            lasts,
            windows: ByKey::new(Box::new(runs.into_iter().map(Ok)), windows::NAME, windows::KEY),
            features: ByKey::new(table(features::NAME)?, features::NAME, features::KEY),
            usage: ByKey::new(table(resampled::NAME)?, resampled::NAME, resampled::KEY),
            forward: ByKey::new(Box::new(std::iter::once(Ok(forward))), "forward forecast", "key"),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.lasts.len()
    }

    /// The next group, if any is left.
    pub(crate) fn next(&mut self) -> Result<Option<Group>, BoxError> {
        let Some(last) = self.lasts.next() else { return Ok(None) };
        let last = last.as_deref();
        let first_row = self.features.taken();
        let runs: Vec<RecordBatch> = self.windows.through(last).collect::<Result<_, _>>()?;
        let runs = runs.iter().map(|b| renumbered(b, first_row));
        // The features stream through: only the rows some window reads are held.
        let features = self.features.through(last);
        let parts = [Part::Validation, Part::Test];
        let windows = WindowSet::of_parts(features, runs, self.inputs, self.targets, &parts)?;
        let usage = read_usage(self.usage.through(last))?;
        let forward = self.forward.through(last).collect::<Result<_, _>>()?;
        Ok(Some(Group { windows, usage, forward }))
    }
}

/// Where the groups end: the series in key order, cut once a group holds `per_group`
/// validation and test windows; the last group takes every series left.
fn cut(runs: &[RecordBatch], per_group: usize) -> Result<Vec<Option<String>>, BoxError> {
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for b in runs {
        let (split, key) = (strings(b, windows::NAME, windows::SPLIT)?, strings(b, windows::NAME, windows::KEY)?);
        let count = ints(b, windows::NAME, windows::WINDOWS)?;
        for i in (0..b.num_rows()).filter(|&i| split[i] != Part::Train.name()) {
            *per_key.entry(key[i].clone()).or_default() += count[i] as usize;
        }
    }
    let (mut lasts, mut held) = (Vec::new(), 0);
    for (key, n) in per_key {
        held += n;
        if held >= per_group.max(1) {
            lasts.push(Some(key));
            held = 0;
        }
    }
    match lasts.last_mut() {
        Some(last) if held == 0 => *last = None,
        _ => lasts.push(None),
    }
    Ok(lasts)
}

/// A group's runs of windows with their first rows counted from `first_row`, the group's
/// first row of the features table.
fn renumbered(b: &RecordBatch, first_row: usize) -> Result<RecordBatch, BoxError> {
    let at = b.schema().index_of(windows::START)?;
    let start = cast(b.column(at), &DataType::UInt64)?;
    let rebased = start.as_primitive::<UInt64Type>().values().iter().map(|&s| s.checked_sub(first_row as u64));
    let rebased: Option<Vec<u64>> = rebased.collect();
    let rebased = rebased.ok_or_else(|| {
        format!(
            "the {} table names rows of another series' features: it and the {} table were not written together; \
             rebuild them (`--force`)",
            windows::NAME,
            features::NAME
        )
    })?;
    let mut columns = b.columns().to_vec();
    columns[at] = cast(&UInt64Array::from(rebased), b.schema().field(at).data_type())?;
    Ok(RecordBatch::try_new(b.schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::cut;
    use applearner_contracts::tables::windows;
    use applearner_pipeline::arrow::array::{RecordBatch, StringArray, UInt64Array};
    use applearner_pipeline::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn runs(rows: &[(&str, &str, u64)]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new(windows::SPLIT, DataType::Utf8, false),
            Field::new(windows::KEY, DataType::Utf8, false),
            Field::new(windows::WINDOWS, DataType::UInt64, false),
        ]);
        let columns = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as _,
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))) as _,
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.2))) as _,
        ];
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    #[test]
    fn groups_hold_whole_series_by_their_validation_and_test_windows() {
        let b = runs(&[
            ("train", "a", 1000),
            ("validation", "a", 30),
            ("test", "a", 30),
            ("test", "b", 50),
            ("validation", "c", 70),
            ("train", "d", 1000),
        ]);
        let some = |k: &str| Some(k.to_string());
        // Training windows do not count; a series is never split; the last group takes the rest.
        assert_eq!(cut(std::slice::from_ref(&b), 100).unwrap(), vec![some("b"), None]);
        assert_eq!(cut(std::slice::from_ref(&b), 60).unwrap(), vec![some("a"), None]);
        assert_eq!(cut(std::slice::from_ref(&b), 50).unwrap(), vec![some("a"), some("b"), None]);
        assert_eq!(cut(std::slice::from_ref(&b), 1_000_000).unwrap(), vec![None]);
    }
}
