//! Samples put aside by range in one pass over the input: in memory, or in a file per range.

use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::{AsArray, RecordBatch};
use applearner_pipeline::arrow::compute::cast;
use applearner_pipeline::arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMillisecondType, UInt64Type};

use crate::pass::Sample;
use std::collections::HashMap;

use super::{Groups, column};
use applearner_contracts::summaries::CleanSummary;
use applearner_contracts::tables::samples;

/// Each range's samples, put aside by one pass over the input.
pub(super) enum Aside {
    Memory(Vec<Sample>),
    /// A local file per range (`slot`, `ts`, `value`, little-endian), removed with the folder.
    Files(tempfile::TempDir, Vec<Option<std::io::BufWriter<std::fs::File>>>),
}

/// Bytes of one sample put aside in a file.
const SAMPLE_BYTES: usize = 20;

impl Aside {
    pub(super) fn new(ranges: usize) -> Result<Aside, BoxError> {
        if ranges <= 1 {
            return Ok(Aside::Memory(Vec::new()));
        }
        let dir = tempfile::Builder::new().prefix("applearner-clean").tempdir()?;
        let files = (0..ranges)
            .map(|i| Ok(Some(std::io::BufWriter::new(std::fs::File::create(dir.path().join(i.to_string()))?))))
            .collect::<Result<_, std::io::Error>>()?;
        Ok(Aside::Files(dir, files))
    }

    pub(super) fn push(&mut self, range: u32, s: Sample) -> Result<(), BoxError> {
        use std::io::Write;
        match self {
            Aside::Memory(samples) => samples.push(s),
            Aside::Files(_, files) => {
                let file = files[range as usize].as_mut().expect("a range is taken once, after the pass");
                let mut bytes = [0u8; SAMPLE_BYTES];
                bytes[..4].copy_from_slice(&s.slot.to_le_bytes());
                bytes[4..12].copy_from_slice(&s.ts.to_le_bytes());
                bytes[12..].copy_from_slice(&s.value.to_le_bytes());
                file.write_all(&bytes)?;
            }
        }
        Ok(())
    }

    /// The samples of range `i`, in input order.
    pub(super) fn take(&mut self, i: usize) -> Result<Vec<Sample>, BoxError> {
        match self {
            Aside::Memory(samples) => Ok(std::mem::take(samples)),
            Aside::Files(dir, files) => {
                let file = files[i].take().expect("a range is taken once").into_inner().map_err(|e| e.into_error())?;
                drop(file);
                let path = dir.path().join(i.to_string());
                let bytes = std::fs::read(&path)?;
                std::fs::remove_file(&path)?;
                Ok(bytes
                    .chunks_exact(SAMPLE_BYTES)
                    .map(|b| Sample {
                        slot: u32::from_le_bytes(b[..4].try_into().expect("4 bytes")),
                        ts: i64::from_le_bytes(b[4..12].try_into().expect("8 bytes")),
                        value: f64::from_le_bytes(b[12..].try_into().expect("8 bytes")),
                    })
                    .collect())
            }
        }
    }
}

/// Reads the samples once: those of the run's series are counted, non-finite and negative
/// ones dropped (counted), the rest put aside by range.
pub(super) fn put_aside(
    samples: &mut dyn Iterator<Item = Result<RecordBatch, BoxError>>,
    groups: &Groups,
    latest: &mut HashMap<u64, (i64, f64)>,
    counts: &mut CleanSummary,
    check_cancelled: &dyn Fn() -> Result<(), BoxError>,
) -> Result<Aside, BoxError> {
    let mut aside = Aside::new(groups.ranges.len())?;
    // Samples come a series at a time: look each series up once (its range and slot, or
    // whether its latest value is wanted).
    type Place = Option<(u32, u32)>;
    let mut last: Option<(u64, Place, bool)> = None;
    for batch in samples {
        let batch = batch?;
        check_cancelled()?;
        let ids = cast(column(&batch, samples::NAME, samples::SERIES_ID)?, &DataType::UInt64)?;
        let times = cast(
            column(&batch, samples::NAME, samples::TIMESTAMP)?,
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )?;
        let values = cast(column(&batch, samples::NAME, samples::VALUE)?, &DataType::Float64)?;
        let (ids, times, values) = (
            ids.as_primitive::<UInt64Type>(),
            times.as_primitive::<TimestampMillisecondType>(),
            values.as_primitive::<Float64Type>(),
        );
        for row in 0..batch.num_rows() {
            let id = ids.value(row);
            let (place, watched) = match last {
                Some((seen, place, watched)) if seen == id => (place, watched),
                _ => {
                    let (_, place, watched) =
                        last.insert((id, groups.slot_of.get(&id).copied(), latest.contains_key(&id)));
                    (*place, *watched)
                }
            };
            let Some((range, slot)) = place else {
                if watched
                    && let Some(last) = latest.get_mut(&id)
                    && times.value(row) >= last.0
                {
                    *last = (times.value(row), values.value(row));
                }
                continue;
            };
            counts.input_points += 1;
            let value = values.value(row);
            if !value.is_finite() {
                counts.non_finite_dropped += 1;
            } else if value < 0.0 {
                counts.negative_dropped += 1;
            } else {
                aside.push(range, Sample { slot, ts: times.value(row), value })?;
            }
        }
    }
    Ok(aside)
}
