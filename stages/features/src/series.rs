//! The series of `resampled`, read one at a time in key and time order.

use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::{AsArray, RecordBatch, StringArray, UInt32Array};
use applearner_pipeline::arrow::datatypes::{DataType, Float64Type, Int64Type, UInt32Type};
use applearner_pipeline::columns::{self, dictionary_of_strings};

use applearner_contracts::tables::{features as feature_table, resampled};

use super::*;
use crate::{FeaturesError, derive};

/// One series as read: its points and fill flags.
pub(super) struct Series {
    pub(super) points: derive::Points,
    pub(super) flags: Vec<Vec<bool>>,
}

/// The series of `resampled` batches one at a time, checked to come in key and time order.
pub(super) struct SeriesReader<'a, I> {
    input: I,
    layout: &'a Layout,
    max_points: u64,
    admit: &'a dyn Fn(&str) -> bool,
    /// The batch being read, its keys and the next row in it.
    batch: Option<(RecordBatch, Keys, usize)>,
    last_key: Option<String>,
}

/// A batch's keys as a dictionary: a row's key is its index into the strings, so runs of
/// one key are found by comparing integers (the stage reads the column so; a plain column
/// handed to [`build`] is cast).
pub(super) struct Keys {
    rows: UInt32Array,
    strings: StringArray,
}

impl Keys {
    fn of(batch: &RecordBatch) -> Result<Keys, BoxError> {
        let column = columns::column(batch, "resampled", feature_table::KEY, &dictionary_of_strings())?;
        let dictionary = column.as_dictionary::<UInt32Type>();
        Ok(Keys { rows: dictionary.keys().clone(), strings: dictionary.values().as_string::<i32>().clone() })
    }

    fn value(&self, row: usize) -> &str {
        self.strings.value(self.rows.value(row) as usize)
    }

    /// The end of the rows from `pos` on that share its key (a dictionary may hold a string
    /// twice: where the index changes, the strings are compared).
    fn run_end(&self, pos: usize) -> usize {
        let (rows, mut index) = (self.rows.values(), self.rows.value(pos));
        for (i, &next) in rows.iter().enumerate().skip(pos + 1) {
            if next != index {
                if self.strings.value(next as usize) != self.value(pos) {
                    return i;
                }
                index = next;
            }
        }
        rows.len()
    }
}

impl<'a, I: Iterator<Item = Result<RecordBatch, BoxError>>> SeriesReader<'a, I> {
    pub(super) fn new(input: I, layout: &'a Layout, max_points: u64, admit: &'a dyn Fn(&str) -> bool) -> Self {
        SeriesReader { input, layout, max_points, admit, batch: None, last_key: None }
    }

    /// The next series' key and rows (skipping those `admit` refuses), or None at the end.
    fn next_series(&mut self) -> Result<Option<(String, Series)>, BoxError> {
        loop {
            let Some(key) = self.peek_key()? else { return Ok(None) };
            if let Some(last) = &self.last_key
                && *last >= key
            {
                let what = format!("it comes after `{last}`");
                return Err(FeaturesError::OutOfOrder { key, what }.into());
            }
            let admitted = (self.admit)(&key);
            let mut one = Series {
                points: derive::Points { values: vec![Vec::new(); self.layout.columns.len()], ..Default::default() },
                flags: vec![Vec::new(); self.layout.flags.len()],
            };
            while self.peek_key()?.as_deref() == Some(key.as_str()) {
                let (batch, keys, pos) = self.batch.as_mut().expect("peeked");
                let end = keys.run_end(*pos);
                if admitted {
                    append(&mut one, batch, *pos..end, self.layout)?;
                    let n = one.points.times.len() as u64;
                    if n > self.max_points {
                        return Err(FeaturesError::SeriesTooLarge { key, points: n, max: self.max_points }.into());
                    }
                }
                *pos = end;
            }
            self.last_key = Some(key.clone());
            if admitted {
                if one.points.times.windows(2).any(|t| t[0] >= t[1]) {
                    let what = "its rows are not in time order".to_string();
                    return Err(FeaturesError::OutOfOrder { key, what }.into());
                }
                return Ok(Some((key, one)));
            }
        }
    }

    /// The key at the next row, reading the next batch when this one is done.
    fn peek_key(&mut self) -> Result<Option<String>, BoxError> {
        loop {
            if let Some((batch, keys, pos)) = &self.batch
                && *pos < batch.num_rows()
            {
                return Ok(Some(keys.value(*pos).to_string()));
            }
            match self.input.next() {
                Some(batch) => {
                    let batch = batch?;
                    let keys = Keys::of(&batch)?;
                    self.batch = Some((batch, keys, 0));
                }
                None => return Ok(None),
            }
        }
    }
}

impl<I: Iterator<Item = Result<RecordBatch, BoxError>>> Iterator for SeriesReader<'_, I> {
    type Item = Result<(String, Series), BoxError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_series().transpose()
    }
}

/// Appends rows `range` of a resampled batch to a series.
fn append(
    one: &mut Series,
    batch: &RecordBatch,
    range: std::ops::Range<usize>,
    layout: &Layout,
) -> Result<(), BoxError> {
    let rows = batch.slice(range.start, range.len());
    let column = |name: &str, to: &DataType| applearner_pipeline::columns::column(&rows, resampled::NAME, name, to);
    let segments = column(feature_table::SEGMENT, &DataType::UInt32)?;
    one.points.segments.extend(segments.as_primitive::<UInt32Type>().values());
    let times = column(feature_table::TIMESTAMP, &DataType::Int64)?;
    one.points.times.extend(times.as_primitive::<Int64Type>().values());
    for (values, c) in one.points.values.iter_mut().zip(&layout.columns) {
        // `resampled` values are never null (its contract): every step has a value.
        values.extend(column(c, &DataType::Float64)?.as_primitive::<Float64Type>().values());
    }
    for (flags, f) in one.flags.iter_mut().zip(&layout.flags) {
        flags.extend(column(f, &DataType::Boolean)?.as_boolean().values().iter());
    }
    Ok(())
}

#[cfg(test)]
mod keys_tests {
    use super::*;
    use applearner_pipeline::arrow::array::DictionaryArray;
    use applearner_pipeline::arrow::datatypes::Field;

    /// Runs end where the string changes, not where the index does: a dictionary may hold a
    /// string twice.
    #[test]
    pub(super) fn runs_of_a_key_end_where_its_string_changes() {
        let strings = StringArray::from(vec!["a", "b", "a", "c"]);
        let rows = UInt32Array::from(vec![0, 0, 2, 2, 1, 1, 3, 3]);
        let column = Arc::new(DictionaryArray::new(rows, Arc::new(strings))) as ArrayRef;
        let schema = Arc::new(Schema::new(vec![Field::new(feature_table::KEY, column.data_type().clone(), false)]));
        let keys = Keys::of(&RecordBatch::try_new(schema, vec![column]).unwrap()).unwrap();
        assert_eq!([0, 4, 6].map(|p| keys.run_end(p)), [4, 6, 8]);
        // A plain column (as `build` is handed) is read the same way.
        let plain = Arc::new(StringArray::from(vec!["a", "a", "b"])) as ArrayRef;
        let schema = Arc::new(Schema::new(vec![Field::new(feature_table::KEY, DataType::Utf8, false)]));
        let keys = Keys::of(&RecordBatch::try_new(schema, vec![plain]).unwrap()).unwrap();
        assert_eq!((keys.run_end(0), keys.value(2)), (2, "b"));
    }
}
