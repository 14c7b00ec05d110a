//! A table in the formats users read it in: Parquet (the pipeline's writer settings), CSV and
//! JSON, for `applearner predict`, `applearner plan` and the plan's `plan.csv`.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::DataType;

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

/// A table as CSV: a header, then one line per row; timestamps in RFC 3339.
pub fn to_csv(batch: &RecordBatch) -> Result<Vec<u8>, BoxError> {
    let rows = rows(batch);
    let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    let mut out = names.join(",") + "\n";
    for row in rows {
        let cells: Vec<String> = names
            .iter()
            .map(|n| match &row[n] {
                serde_json::Value::String(s) if s.contains([',', '"', '\n']) => {
                    format!("\"{}\"", s.replace('"', "\"\""))
                }
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                v => v.to_string(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// A table as a JSON array of objects.
pub fn to_json(batch: &RecordBatch) -> Result<Vec<u8>, BoxError> {
    let mut out = serde_json::to_vec_pretty(&rows(batch))?;
    out.push(b'\n');
    Ok(out)
}

/// Each row as a JSON object, column by column (times in RFC 3339, nulls as null).
pub fn rows(batch: &RecordBatch) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let schema = batch.schema();
    (0..batch.num_rows())
        .map(|i| {
            schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(f, c)| {
                    let v = match c.data_type() {
                        // A null (an unknown value) stays null: JSON null, an empty CSV cell.
                        _ if c.is_null(i) => serde_json::Value::Null,
                        DataType::Utf8 => c.as_string::<i32>().value(i).into(),
                        DataType::UInt32 => c.as_primitive::<arrow::datatypes::UInt32Type>().value(i).into(),
                        DataType::Timestamp(..) => {
                            let ms = c.as_primitive::<arrow::datatypes::TimestampMillisecondType>().value(i);
                            chrono::DateTime::from_timestamp_millis(ms)
                                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                                .unwrap_or_default()
                                .into()
                        }
                        _ => c.as_primitive::<arrow::datatypes::Float64Type>().value(i).into(),
                    };
                    (f.name().clone(), v)
                })
                .collect()
        })
        .collect()
}
