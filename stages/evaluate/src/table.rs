//! Reading and writing the tables these stages exchange.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use applearner_contracts::tables::resampled as table;
use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::{
    ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
};
use applearner_pipeline::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use applearner_pipeline::columns::{column, floats, ints};

use crate::baselines::Series;

/// The usage of one series: every point of every segment, in cores and bytes.
#[derive(Debug, Default)]
pub struct Usage {
    pub cpu: Series,
    pub memory: Series,
}

impl Usage {
    pub fn column(&self, name: &str) -> Option<&Series> {
        match name {
            "cpu" => Some(&self.cpu),
            "memory" => Some(&self.memory),
            _ => None,
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
    type Points = (Vec<(i64, f64)>, HashSet<i64>);
    let mut points: BTreeMap<String, [Points; 2]> = BTreeMap::new();
    for b in batches {
        let b = b.map_err(Into::into)?;
        let keys = column(&b, table::NAME, table::KEY, &DataType::Utf8)?;
        let (keys, times) = (keys.as_string::<i32>(), ints(&b, table::NAME, table::TIMESTAMP)?);
        let mut columns = Vec::new();
        for name in ["cpu", "memory"] {
            let values = if b.column_by_name(name).is_some() { floats(&b, table::NAME, name)? } else { Vec::new() };
            let filled = match b.column_by_name(&format!("{name}_filled")) {
                Some(c) => c.as_boolean_opt().map(|a| a.iter().map(|f| f == Some(true)).collect()).unwrap_or_default(),
                None => Vec::new(),
            };
            columns.push((values, filled));
        }
        for (i, key) in keys.iter().enumerate() {
            let key = key.unwrap_or_default();
            if !points.contains_key(key) {
                points.insert(key.to_string(), Default::default());
            }
            let entry = points.get_mut(key).expect("inserted");
            for ((values, filled), (to, filled_at)) in columns.iter().zip(entry.iter_mut()) {
                if let Some(v) = values.get(i).filter(|v| v.is_finite()) {
                    to.push((times[i], *v));
                    if filled.get(i) == Some(&true) {
                        filled_at.insert(times[i]);
                    }
                }
            }
        }
    }
    Ok(points
        .into_iter()
        .map(|(k, [(c, cf), (m, mf)])| {
            (k, Usage { cpu: Series::with_filled(c, &cf), memory: Series::with_filled(m, &mf) })
        })
        .collect())
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
