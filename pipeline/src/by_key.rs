//! A table sorted by its series key, read a range of keys at a time: a stage that works
//! series by series holds one group of series, never the table, and reads it once.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;

use crate::BoxError;
use crate::columns::column;

/// The batches of a table sorted by the string column `key` (as every table of series the
/// stages write is), handed out in order, a range of keys at a time.
pub struct ByKey<I> {
    batches: I,
    table: String,
    key: &'static str,
    /// The rows of the last batch read that belong to a later range.
    rest: Option<RecordBatch>,
    /// The last key read, to check the order across batches.
    last: Option<String>,
    taken: usize,
}

impl<I, E> ByKey<I>
where
    I: Iterator<Item = Result<RecordBatch, E>>,
    E: Into<BoxError>,
{
    pub fn new(batches: I, table: &str, key: &'static str) -> ByKey<I> {
        ByKey { batches, table: table.to_string(), key, rest: None, last: None, taken: 0 }
    }

    /// The rows handed out so far: where the next range starts in the table.
    pub fn taken(&self) -> usize {
        self.taken
    }

    /// The next rows whose key is at most `last` (with `None`, every row left), a batch at a
    /// time; the next range starts where this one was read to, so read it to its end.
    pub fn through<'a>(&'a mut self, last: Option<&'a str>) -> Through<'a, I> {
        Through { by_key: self, last, done: false }
    }

    /// The next batch of rows whose key is at most `last`, and whether rows past `last`
    /// follow it.
    fn next_within(&mut self, last: Option<&str>) -> Result<Option<(RecordBatch, bool)>, BoxError> {
        let batch = match self.rest.take() {
            Some(b) => b,
            None => match self.batches.next() {
                Some(b) => self.checked(b.map_err(Into::into)?)?,
                None => return Ok(None),
            },
        };
        let keys = column(&batch, &self.table, self.key, &DataType::Utf8)?;
        let keys = keys.as_string::<i32>();
        let within = match last {
            Some(last) => (0..batch.num_rows()).take_while(|&i| keys.value(i) <= last).count(),
            None => batch.num_rows(),
        };
        self.taken += within;
        if within < batch.num_rows() {
            self.rest = Some(batch.slice(within, batch.num_rows() - within));
            return Ok(Some((batch.slice(0, within), true)));
        }
        Ok(Some((batch, false)))
    }

    /// `batch`, once its keys are known to follow the last one read, in order.
    fn checked(&mut self, batch: RecordBatch) -> Result<RecordBatch, BoxError> {
        let keys = column(&batch, &self.table, self.key, &DataType::Utf8)?;
        let keys = keys.as_string::<i32>();
        for i in 0..keys.len() {
            let key = keys.value(i);
            if let Some(before) = self.last.as_deref().filter(|before| key < *before) {
                return Err(format!(
                    "the {} table is not sorted by `{}`: `{key}` follows `{before}` near row {}; \
                     rebuild it with this version (`--force`)",
                    self.table,
                    self.key,
                    self.taken + i
                )
                .into());
            }
            if i + 1 == keys.len() || keys.value(i + 1) != key {
                self.last = Some(key.to_string());
            }
        }
        Ok(batch)
    }
}

/// The batches of one range of keys, read as they are asked for.
pub struct Through<'a, I> {
    by_key: &'a mut ByKey<I>,
    last: Option<&'a str>,
    done: bool,
}

impl<I, E> Iterator for Through<'_, I>
where
    I: Iterator<Item = Result<RecordBatch, E>>,
    E: Into<BoxError>,
{
    type Item = Result<RecordBatch, BoxError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.by_key.next_within(self.last) {
                Ok(Some((batch, ended))) => {
                    self.done = ended;
                    if batch.num_rows() > 0 {
                        return Some(Ok(batch));
                    }
                }
                Ok(None) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::ByKey;
    use arrow::array::{RecordBatch, StringArray, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(keys: &[&str], from: u32) -> Result<RecordBatch, String> {
        let schema =
            Schema::new(vec![Field::new("key", DataType::Utf8, false), Field::new("row", DataType::UInt32, false)]);
        let rows = UInt32Array::from_iter_values(from..from + keys.len() as u32);
        let columns = vec![Arc::new(StringArray::from(keys.to_vec())) as _, Arc::new(rows) as _];
        Ok(RecordBatch::try_new(Arc::new(schema), columns).unwrap())
    }

    /// The rows of the next range, by their `row` column.
    fn rows<I: Iterator<Item = Result<RecordBatch, String>>>(by_key: &mut ByKey<I>, last: Option<&str>) -> Vec<u32> {
        let column = |b: RecordBatch| b.column(1).as_any().downcast_ref::<UInt32Array>().unwrap().values().to_vec();
        by_key.through(last).flat_map(|b| column(b.unwrap())).collect()
    }

    #[test]
    fn hands_out_key_ranges_across_batches_in_one_pass() {
        let batches = vec![batch(&["a", "a", "b"], 0), batch(&["b", "c"], 3), batch(&["d"], 5)];
        let mut by_key = ByKey::new(batches.into_iter(), "features", "key");
        assert_eq!(rows(&mut by_key, Some("a")), vec![0, 1]);
        assert_eq!(by_key.taken(), 2);
        // A key with no rows takes nothing; the next range starts where the last ended.
        assert_eq!(rows(&mut by_key, Some("a")), Vec::<u32>::new());
        assert_eq!(rows(&mut by_key, Some("bz")), vec![2, 3]);
        assert_eq!(by_key.taken(), 4);
        assert_eq!(rows(&mut by_key, None), vec![4, 5]);
        assert!(rows(&mut by_key, None).is_empty());
    }

    #[test]
    fn a_table_out_of_key_order_is_an_error_naming_it() {
        let batches = vec![batch(&["a", "c"], 0), batch(&["b"], 2)];
        let mut by_key = ByKey::new(batches.into_iter(), "resampled", "key");
        let error = by_key.through(None).collect::<Result<Vec<_>, _>>().unwrap_err().to_string();
        assert!(error.contains("resampled table is not sorted by `key`: `b` follows `c` near row 2"), "{error}");
    }
}
