//! Merging the shards of a sharded stage back into its tables.
//!
//! Every shard's table is sorted by the columns the stage names (`Stage::shard_order`) and
//! the shards hold disjoint series, so a k-way merge of the sorted shards is the table one
//! unsharded run writes — bit for bit, as the table writer's bytes depend on the rows alone.
//! The merge streams: it holds one batch per shard, never a whole table. A column that
//! holds row numbers of another table (`Stage::shard_row_columns`: a window's first row in
//! `features`) is renumbered to the merged table's rows as it passes.

use std::cmp::Ordering;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, UInt64Array};
use arrow::datatypes::{SchemaRef, UInt64Type};
use arrow::row::{RowConverter, Rows, SortField};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde_json::Value;

use crate::context::StageContext;
use crate::run::StageRecord;
use crate::stage::{BoxError, Summary};

/// A shard's current batch, the shard's row number of its first row, its sort keys as
/// comparable rows, and the next row to take.
struct Head {
    batch: RecordBatch,
    offset: u64,
    rows: Rows,
    pos: usize,
}

struct Shard {
    reader: ParquetRecordBatchReader,
    head: Option<Head>,
    read: u64,
}

/// Where each shard's rows of a table went in the merged one: per shard, runs of (its row,
/// the merged row, how many), in order.
type RowMap = Vec<Vec<(u64, u64, u64)>>;

/// Writes each table of `order` through `ctx`, merged from the shards' records, renumbering
/// the row columns of `links` (`(table, column, rows of)`), and returns the merged summary.
pub(crate) fn merge(
    order: &[(&str, Vec<&str>)],
    links: &[(&str, &str, &str)],
    ctx: &StageContext,
    shards: &[StageRecord],
) -> Result<Summary, BoxError> {
    let mut maps: BTreeMap<&str, RowMap> = BTreeMap::new();
    for (table, columns) in order {
        let referenced = links.iter().any(|l| l.2 == *table);
        let link = links.iter().find(|l| l.0 == *table);
        let mut map: RowMap = vec![Vec::new(); shards.len()];
        let mut written = 0u64;
        let mut schema: Option<SchemaRef> = None;
        let mut readers = Vec::new();
        for rec in shards {
            let out = rec.outputs.get(*table).ok_or_else(|| format!("shard `{}` has no table `{table}`", rec.stage))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(ctx.store().get(&out.path)?)?;
            schema.get_or_insert_with(|| builder.schema().clone());
            readers.push(builder.build()?);
        }
        let schema = schema.ok_or("no shards to merge")?;
        let keys: Vec<usize> = columns.iter().map(|c| schema.index_of(c)).collect::<Result<_, _>>()?;
        let converter =
            RowConverter::new(keys.iter().map(|&k| SortField::new(schema.field(k).data_type().clone())).collect())?;
        let advance = |reader: &mut ParquetRecordBatchReader, read: &mut u64| -> Result<Option<Head>, BoxError> {
            for batch in reader {
                // The reader drops the schema's metadata; the merged table keeps it.
                let batch = batch?.with_schema(schema.clone())?;
                let offset = *read;
                *read += batch.num_rows() as u64;
                if batch.num_rows() > 0 {
                    let rows = converter
                        .convert_columns(&keys.iter().map(|&k| batch.column(k).clone()).collect::<Vec<_>>())?;
                    return Ok(Some(Head { batch, offset, rows, pos: 0 }));
                }
            }
            Ok(None)
        };
        let mut open = Vec::new();
        for mut reader in readers {
            let mut read = 0;
            let head = advance(&mut reader, &mut read)?;
            open.push(Shard { reader, head, read });
        }
        // Rows compare by key, then by shard, so ties (which disjoint series never make)
        // still merge the same way every time.
        let before = |a: (&Head, usize, usize), b: (&Head, usize, usize)| {
            a.0.rows.row(a.1).cmp(&b.0.rows.row(b.1)).then(a.2.cmp(&b.2)) == Ordering::Less
        };
        let mut writer = ctx.table_writer(table, schema.clone())?;
        loop {
            ctx.check_cancelled()?;
            let live: Vec<usize> = (0..open.len()).filter(|&s| open[s].head.is_some()).collect();
            let head_of =
                |s: usize| (open[s].head.as_ref().expect("live"), open[s].head.as_ref().expect("live").pos, s);
            let Some(&first) = live
                .iter()
                .min_by(|&&a, &&b| if before(head_of(a), head_of(b)) { Ordering::Less } else { Ordering::Greater })
            else {
                break;
            };
            let second = live
                .iter()
                .copied()
                .filter(|&s| s != first)
                .min_by(|&a, &b| if before(head_of(a), head_of(b)) { Ordering::Less } else { Ordering::Greater });
            // Take the first shard's rows up to the second shard's next row (a binary search:
            // the rows are sorted).
            let head = open[first].head.as_ref().expect("live");
            let (mut lo, mut hi) = (head.pos + 1, head.rows.num_rows());
            if let Some(second) = second {
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if before((head, mid, first), head_of(second)) {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
            } else {
                lo = hi;
            }
            let len = lo - head.pos;
            let mut slice = head.batch.slice(head.pos, len);
            if let Some((_, column, of)) = link {
                let runs =
                    maps.get(of).ok_or_else(|| format!("`{table}.{column}` refers to `{of}`, not merged before it"))?;
                slice = renumber(&slice, column, &runs[first])?;
            }
            if referenced {
                map[first].push((head.offset + head.pos as u64, written, len as u64));
            }
            written += len as u64;
            writer.write(&slice)?;
            let shard = &mut open[first];
            if lo == shard.head.as_ref().expect("live").rows.num_rows() {
                shard.head = advance(&mut shard.reader, &mut shard.read)?;
            } else {
                shard.head.as_mut().expect("live").pos = lo;
            }
        }
        writer.finish()?;
        if referenced {
            maps.insert(table, map);
        }
    }
    Ok(merge_summaries(shards))
}

/// `batch` with the shard's row numbers in `column` turned into the merged table's.
fn renumber(batch: &RecordBatch, column: &str, runs: &[(u64, u64, u64)]) -> Result<RecordBatch, BoxError> {
    let index = batch.schema().index_of(column)?;
    let rows = batch.column(index).as_primitive_opt::<UInt64Type>().ok_or_else(|| format!("`{column}` is not u64"))?;
    let merged = rows
        .values()
        .iter()
        .map(|&row| {
            let run = runs.partition_point(|r| r.0 <= row).checked_sub(1).map(|i| runs[i]);
            match run {
                Some((from, to, len)) if row < from + len => Ok(to + (row - from)),
                _ => Err(format!("`{column}` names row {row}, which the shard's table does not have")),
            }
        })
        .collect::<Result<Vec<u64>, _>>()?;
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(UInt64Array::from(merged));
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Per key: numbers summed, a value all shards agree on kept, lists joined, and otherwise
/// the list of the shards' values; plus `shards`, their number.
fn merge_summaries(shards: &[StageRecord]) -> Summary {
    let mut keys: Vec<&String> = shards.iter().flat_map(|r| r.summary.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Summary::new();
    for key in keys {
        let values: Vec<&Value> = shards.iter().filter_map(|r| r.summary.get(key)).collect();
        let merged = if values.iter().all(|v| v.is_u64()) {
            values.iter().map(|v| v.as_u64().expect("checked")).sum::<u64>().into()
        } else if values.iter().all(|v| v.is_number()) {
            values.iter().map(|v| v.as_f64().expect("numbers are f64")).sum::<f64>().into()
        } else if values.windows(2).all(|w| w[0] == w[1]) {
            values[0].clone()
        } else if values.iter().all(|v| v.is_array()) {
            values.iter().flat_map(|v| v.as_array().expect("checked").iter().cloned()).collect::<Vec<_>>().into()
        } else {
            values.into_iter().cloned().collect::<Vec<_>>().into()
        };
        out.insert(key.clone(), merged);
    }
    out.insert("shards".into(), shards.len().into());
    out
}
