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
    pub fn through<'a>(&'a mut self, last: Option<&'a str>) -> Range<'a, I> {
        Range { by_key: self, end: End::Through(last), keys: 0, last: None, done: false }
    }

    /// The rows of the next `n` (at least 1) keys, or of every key left where fewer are, a
    /// batch at a time: for a table whose ranges are not known ahead. Once read, the range's
    /// last key ([`Range::last_key`]) is where another table is read `through`.
    pub fn next_keys(&mut self, n: usize) -> Range<'_, I> {
        Range { by_key: self, end: End::Keys(n), keys: 0, last: None, done: false }
    }

    /// The rows left over from the last range, or the next batch of the table.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, BoxError> {
        match self.rest.take() {
            Some(b) => Ok(Some(b)),
            None => self.batches.next().map(|b| self.checked(b.map_err(Into::into)?)).transpose(),
        }
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

/// Where a range of keys ends: after a key (or at the table's end), or after so many keys.
enum End<'a> {
    Through(Option<&'a str>),
    Keys(usize),
}

/// The batches of one range of keys, read as they are asked for.
pub struct Range<'a, I> {
    by_key: &'a mut ByKey<I>,
    end: End<'a>,
    keys: usize,
    last: Option<String>,
    done: bool,
}

impl<I> Range<'_, I> {
    /// The last key read so far: the range's, once every batch is taken; `None` if no row was.
    pub fn last_key(&self) -> Option<&str> {
        self.last.as_deref()
    }
}

impl<I, E> Range<'_, I>
where
    I: Iterator<Item = Result<RecordBatch, E>>,
    E: Into<BoxError>,
{
    /// How many of `batch`'s first rows belong to the range, counting its keys.
    fn within(&mut self, batch: &RecordBatch) -> Result<usize, BoxError> {
        let keys = column(batch, &self.by_key.table, self.by_key.key, &DataType::Utf8)?;
        let keys = keys.as_string::<i32>();
        for i in 0..batch.num_rows() {
            let (key, new) = (keys.value(i), self.last.as_deref() != Some(keys.value(i)));
            let past = match self.end {
                End::Through(last) => last.is_some_and(|last| key > last),
                End::Keys(n) => new && self.keys == n,
            };
            if past {
                return Ok(i);
            }
            if new {
                (self.keys, self.last) = (self.keys + 1, Some(key.to_string()));
            }
        }
        Ok(batch.num_rows())
    }

    fn next_within(&mut self) -> Result<Option<RecordBatch>, BoxError> {
        let Some(batch) = self.by_key.next_batch()? else { return Ok(None) };
        let within = self.within(&batch)?;
        self.by_key.taken += within;
        if within < batch.num_rows() {
            self.done = true;
            self.by_key.rest = Some(batch.slice(within, batch.num_rows() - within));
        }
        Ok(Some(batch.slice(0, within)))
    }
}

impl<I, E> Iterator for Range<'_, I>
where
    I: Iterator<Item = Result<RecordBatch, E>>,
    E: Into<BoxError>,
{
    type Item = Result<RecordBatch, BoxError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.next_within() {
                Ok(Some(batch)) if batch.num_rows() > 0 => return Some(Ok(batch)),
                Ok(Some(_)) => {}
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
    fn hands_out_the_next_keys_across_batches_then_another_table_to_the_same_key() {
        let table = || vec![batch(&["a", "a", "b"], 0), batch(&["b", "c"], 3), batch(&["d"], 5)].into_iter();
        let mut by_key = ByKey::new(table(), "forecasts", "key");
        let column = |b: &RecordBatch| b.column(1).as_any().downcast_ref::<UInt32Array>().unwrap().values().to_vec();
        let mut next = |n| {
            let mut keys = by_key.next_keys(n);
            let rows: Vec<u32> = keys.by_ref().flat_map(|b| column(&b.unwrap())).collect();
            Some((rows, keys.last_key()?.to_string()))
        };
        assert_eq!(next(2), Some((vec![0, 1, 2, 3], "b".to_string())));
        assert_eq!(next(5), Some((vec![4, 5], "d".to_string())));
        assert_eq!(next(1), None);
        // The other table, read to the last key of each range.
        let mut other = ByKey::new(table(), "resampled", "key");
        assert_eq!(rows(&mut other, Some("b")), vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_table_out_of_key_order_is_an_error_naming_it() {
        let batches = vec![batch(&["a", "c"], 0), batch(&["b"], 2)];
        let mut by_key = ByKey::new(batches.into_iter(), "resampled", "key");
        let error = by_key.through(None).collect::<Result<Vec<_>, _>>().unwrap_err().to_string();
        assert!(error.contains("resampled table is not sorted by `key`: `b` follows `c` near row 2"), "{error}");
    }
}
