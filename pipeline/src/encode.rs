//! A table in the formats users read it in: Parquet (the pipeline's writer settings), CSV and
//! JSON, for `applearner predict`, `applearner plan` and the plan's `plan.csv`.

use arrow::array::RecordBatch;

use crate::BoxError;

/// A table as a Parquet file, with the pipeline's writer settings.
pub fn to_parquet(batch: &RecordBatch) -> Result<Vec<u8>, BoxError> {
    let mut out = Vec::new();
    let props = crate::context::writer_properties(&batch.schema());
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}

/// Timestamps as users read them: RFC 3339 in UTC, to the second.
const TIME: &str = "%Y-%m-%dT%H:%M:%SZ";

/// A table as CSV (arrow's writer): a header, then one line per row; an unknown value is an
/// empty cell.
pub fn to_csv(batch: &RecordBatch) -> Result<Vec<u8>, BoxError> {
    let mut writer =
        arrow::csv::WriterBuilder::new().with_header(true).with_timestamp_format(TIME.into()).build(Vec::new());
    writer.write(batch)?;
    Ok(writer.into_inner())
}

/// A table as a JSON array of objects, pretty-printed.
pub fn to_json(batch: &RecordBatch) -> Result<Vec<u8>, BoxError> {
    let mut out = serde_json::to_vec_pretty(&rows(batch)?)?;
    out.push(b'\n');
    Ok(out)
}

/// Each row as a JSON object (arrow's writer): times in RFC 3339, an unknown value (a null,
/// a NaN) as null.
pub fn rows(batch: &RecordBatch) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, BoxError> {
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_timestamp_format(TIME.into())
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    writer.write(batch)?;
    writer.finish()?;
    Ok(serde_json::from_slice(&writer.into_inner())?)
}
