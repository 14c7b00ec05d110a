//! A table's columns as plain vectors, with errors that name the table and what it has.

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use crate::BoxError;

/// A column of `batch` cast to `to`.
pub fn column(batch: &RecordBatch, table: &str, name: &str, to: &DataType) -> Result<ArrayRef, BoxError> {
    let c = batch.column_by_name(name).ok_or_else(|| {
        let has: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        format!("the {table} table has no `{name}` column (it has {}); rebuild it with this version", has.join(", "))
    })?;
    Ok(cast(c, to)?)
}

/// Strings (null → empty).
pub fn strings(batch: &RecordBatch, table: &str, name: &str) -> Result<Vec<String>, BoxError> {
    let c = column(batch, table, name, &DataType::Utf8)?;
    Ok(c.as_string::<i32>().iter().map(|v| v.unwrap_or_default().to_string()).collect())
}

/// Integers, timestamps as epoch units (null → 0).
pub fn ints(batch: &RecordBatch, table: &str, name: &str) -> Result<Vec<i64>, BoxError> {
    let c = column(batch, table, name, &DataType::Int64)?;
    Ok(c.as_primitive::<Int64Type>().iter().map(|v| v.unwrap_or_default()).collect())
}

/// Floats (null → NaN).
pub fn floats(batch: &RecordBatch, table: &str, name: &str) -> Result<Vec<f64>, BoxError> {
    let c = column(batch, table, name, &DataType::Float64)?;
    Ok(c.as_primitive::<Float64Type>().iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}
