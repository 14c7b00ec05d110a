//! A table's columns as plain vectors, with errors that name the table and what it has.

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use std::sync::Arc;

use arrow::datatypes::{DataType, Float64Type, Int64Type, Schema, SchemaRef};

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

/// A string column held as a dictionary: each distinct string once, each row its index.
pub fn dictionary_of_strings() -> DataType {
    DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8))
}

/// `schema` with its string columns `names` as [`dictionary_of_strings`]; the table writer
/// writes such a column as the strings, and the table readers read one so when asked.
pub fn as_dictionaries(schema: &Schema, names: &[&str]) -> SchemaRef {
    let fields =
        schema.fields().iter().map(|f| match names.contains(&f.name().as_str()) && *f.data_type() == DataType::Utf8 {
            true => Arc::new(f.as_ref().clone().with_data_type(dictionary_of_strings())),
            false => f.clone(),
        });
    Arc::new(Schema::new_with_metadata(fields.collect::<Vec<_>>(), schema.metadata().clone()))
}

/// Casts a query result to the declared schema (SQL integers are Int64, times bare ms).
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, BoxError> {
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
