//! Reading and writing the tables these stages exchange.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use applearner_contracts::Resource;
use applearner_contracts::tables::resampled as table;
use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::{
    ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
};
use applearner_pipeline::arrow::compute::cast;
use applearner_pipeline::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, UInt32Type};
use applearner_pipeline::columns::{column, floats, ints};

use crate::series::Series;

/// The usage of one series: every point of every segment, in cores and bytes.
#[derive(Debug, Default)]
pub struct Usage {
    pub cpu: Series,
    pub memory: Series,
    /// Replicas (pods of the workload) at the latest step; 1 for a table without the count.
    pub replicas: u32,
}

impl Usage {
    pub fn column(&self, name: &str) -> Option<&Series> {
        match Resource::ALL.into_iter().find(|r| r.name() == name)? {
            Resource::Cpu => Some(&self.cpu),
            Resource::Memory => Some(&self.memory),
        }
    }

    /// `(time, cores, bytes)` where both are known, in time order.
    pub fn samples(&self) -> Vec<(i64, f64, f64)> {
        self.cpu
            .times
            .iter()
            .zip(&self.cpu.values)
            .filter_map(|(&t, &c)| self.memory.at(t).map(|m| (t, c, m)))
            .filter(|s| s.1.is_finite() && s.2.is_finite())
            .collect()
    }
}

/// The `resampled` table of clean.resample, read a batch at a time, per series key, with
/// the points it filled in.
pub fn read_usage<E: Into<BoxError>>(
    batches: impl IntoIterator<Item = Result<RecordBatch, E>>,
) -> Result<BTreeMap<String, Usage>, BoxError> {
    let mut rows: BTreeMap<String, Rows> = BTreeMap::new();
    for b in batches {
        let b = b.map_err(Into::into)?;
        let keys = column(&b, table::NAME, table::KEY, &DataType::Utf8)?;
        let (keys, times) = (keys.as_string::<i32>(), ints(&b, table::NAME, table::TIMESTAMP)?);
        let replicas = match b.column_by_name(table::REPLICAS) {
            Some(c) => cast(c, &DataType::UInt32)?.as_primitive::<UInt32Type>().values().to_vec(),
            None => vec![1; b.num_rows()],
        };
        let mut columns = Vec::new();
        for name in Resource::ALL.map(Resource::name) {
            let values = if b.column_by_name(name).is_some() { floats(&b, table::NAME, name)? } else { Vec::new() };
            let filled = match b.column_by_name(&format!("{name}_filled")) {
                Some(c) => c.as_boolean_opt().map(|a| a.iter().map(|f| f == Some(true)).collect()).unwrap_or_default(),
                None => Vec::new(),
            };
            columns.push((values, filled));
        }
        for (i, key) in keys.iter().enumerate() {
            let key = key.unwrap_or_default();
            if !rows.contains_key(key) {
                rows.insert(key.to_string(), Rows::default());
            }
            let r = rows.get_mut(key).expect("inserted");
            r.times.push(times[i]);
            r.replicas = replicas[i];
            for (c, (values, filled)) in columns.iter().enumerate() {
                r.values[c].push(values.get(i).copied().unwrap_or(f64::NAN));
                r.filled[c].push(filled.get(i) == Some(&true));
            }
        }
    }
    Ok(rows.into_iter().map(|(k, r)| (k, r.usage())).collect())
}

/// One series' rows of `resampled` as read: times, and CPU then memory values and whether
/// they were filled in.
#[derive(Default)]
struct Rows {
    times: Vec<i64>,
    replicas: u32,
    values: [Vec<f64>; 2],
    filled: [Vec<bool>; 2],
}

impl Rows {
    /// Each column's known values as a series: in time order, a repeated time keeping the
    /// last value. The usual table (ascending times, both columns known at every row) is
    /// taken as it is, one time column for both.
    fn usage(self) -> Usage {
        let Rows { mut times, replicas, values: [mut cpu, mut memory], filled: [cpu_filled, memory_filled] } = self;
        // Vectors grown while reading hold up to twice their length.
        for v in [&mut cpu, &mut memory] {
            v.shrink_to_fit();
        }
        times.shrink_to_fit();
        let known = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if times.windows(2).all(|w| w[0] < w[1]) && known(&cpu) && known(&memory) {
            let times = Arc::new(times);
            return Usage {
                cpu: Series::sorted(times.clone(), cpu, cpu_filled),
                memory: Series::sorted(times, memory, memory_filled),
                replicas,
            };
        }
        let series = |values: Vec<f64>, filled: Vec<bool>| {
            let keep = |i: &usize| values[*i].is_finite();
            let points = (0..times.len()).filter(keep).map(|i| (times[i], values[i])).collect();
            let filled_at: HashSet<i64> =
                (0..times.len()).filter(keep).filter(|&i| filled[i]).map(|i| times[i]).collect();
            Series::with_filled(points, &filled_at)
        };
        Usage { cpu: series(cpu, cpu_filled), memory: series(memory, memory_filled), replicas }
    }
}

/// Builds a table column by column.
#[derive(Default)]
pub struct TableBuilder {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl TableBuilder {
    pub fn strings(mut self, name: &str, values: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.fields.push(Field::new(name, DataType::Utf8, false));
        self.arrays.push(Arc::new(StringArray::from_iter_values(values)));
        self
    }

    pub fn u32s(mut self, name: &str, values: Vec<u32>) -> Self {
        self.fields.push(Field::new(name, DataType::UInt32, false));
        self.arrays.push(Arc::new(UInt32Array::from(values)));
        self
    }

    pub fn times(mut self, name: &str, values: Vec<i64>) -> Self {
        self.fields.push(Field::new(name, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false));
        self.arrays.push(Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC")));
        self
    }

    /// Floats; `NaN` (undefined) is written as null.
    pub fn floats(mut self, name: &str, values: Vec<f64>) -> Self {
        self.fields.push(Field::new(name, DataType::Float64, true));
        self.arrays.push(Arc::new(Float64Array::from_iter(values.into_iter().map(|v| v.is_finite().then_some(v)))));
        self
    }

    pub fn finish(self) -> Result<(SchemaRef, RecordBatch), BoxError> {
        let schema = Arc::new(Schema::new(self.fields));
        let batch = RecordBatch::try_new(schema.clone(), self.arrays)?;
        Ok((schema, batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use applearner_pipeline::arrow::array::{BooleanArray, Int64Array};

    fn batch(keys: &[&str], times: &[i64], cpu: &[Option<f64>], memory: &[Option<f64>]) -> RecordBatch {
        let filled = BooleanArray::from(times.iter().map(|t| *t == 2).collect::<Vec<_>>());
        RecordBatch::try_from_iter([
            (table::KEY, Arc::new(StringArray::from(keys.to_vec())) as ArrayRef),
            (table::TIMESTAMP, Arc::new(Int64Array::from(times.to_vec()))),
            ("cpu", Arc::new(Float64Array::from(cpu.to_vec()))),
            ("memory", Arc::new(Float64Array::from(memory.to_vec()))),
            ("cpu_filled", Arc::new(filled.clone())),
            ("memory_filled", Arc::new(filled)),
        ])
        .unwrap()
    }

    #[test]
    fn usage_shares_one_time_column_only_where_both_columns_have_every_point() {
        let ok = |b| [Ok::<_, BoxError>(b)];
        // In order with both columns known: one time column for both; time 2 was filled in.
        let usage = read_usage(ok(batch(&["a"; 3], &[1, 2, 3], &[Some(1.0); 3], &[Some(5.0); 3]))).unwrap();
        let a = &usage["a"];
        assert!(Arc::ptr_eq(&a.cpu.times, &a.memory.times));
        assert_eq!((a.cpu.actual(2).map(f64::is_nan), a.cpu.actual(3)), (Some(true), Some(1.0)));
        // Out of order, a repeated time and a missing memory value: sorted, the last value of
        // a time kept, the missing point left out of memory only.
        let b = batch(
            &["b"; 4],
            &[3, 1, 3, 4],
            &[Some(1.0), Some(2.0), Some(3.0), Some(4.0)],
            &[Some(5.0), None, Some(6.0), Some(7.0)],
        );
        let usage = read_usage(ok(b)).unwrap();
        let b = &usage["b"];
        assert_eq!((b.cpu.times.as_slice(), b.cpu.values.as_slice()), (&[1, 3, 4][..], &[2.0, 3.0, 4.0][..]));
        assert_eq!((b.memory.times.as_slice(), b.memory.values.as_slice()), (&[3, 4][..], &[6.0, 7.0][..]));
    }
}
