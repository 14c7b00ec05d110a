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
        let link = match links.iter().find(|l| l.0 == *table) {
            Some(&(_, column, of)) => {
                let runs =
                    maps.get(of).ok_or_else(|| format!("`{table}.{column}` refers to `{of}`, not merged before it"))?;
                Some((column, runs))
            }
            None => None,
        };
        let map = merge_table(table, columns, link, ctx, shards)?;
        if links.iter().any(|l| l.2 == *table) {
            maps.insert(table, map);
        }
    }
    Ok(merge_summaries(shards))
}

/// The sort keys of one table being merged: their columns and how they become comparable rows.
struct Keys {
    schema: SchemaRef,
    columns: Vec<usize>,
    converter: RowConverter,
}

impl Keys {
    /// The shard's next non-empty batch as its head, or `None` once the shard is read.
    fn advance(&self, shard: &mut Shard) -> Result<(), BoxError> {
        shard.head = None;
        for batch in &mut shard.reader {
            // The reader drops the schema's metadata; the merged table keeps it.
            let batch = batch?.with_schema(self.schema.clone())?;
            let offset = shard.read;
            shard.read += batch.num_rows() as u64;
            if batch.num_rows() > 0 {
                let keys: Vec<_> = self.columns.iter().map(|&k| batch.column(k).clone()).collect();
                let rows = self.converter.convert_columns(&keys)?;
                shard.head = Some(Head { batch, offset, rows, pos: 0 });
                break;
            }
        }
        Ok(())
    }
}

/// Opens every shard's `table`, sorted by `columns`, each at its first batch.
fn open(
    table: &str,
    columns: &[&str],
    ctx: &StageContext,
    shards: &[StageRecord],
) -> Result<(Keys, Vec<Shard>), BoxError> {
    let mut schema: Option<SchemaRef> = None;
    let mut readers = Vec::new();
    for rec in shards {
        let out = rec.outputs.get(table).ok_or_else(|| format!("shard `{}` has no table `{table}`", rec.stage))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(ctx.store().get(&out.path)?)?;
        schema.get_or_insert_with(|| builder.schema().clone());
        readers.push(builder.build()?);
    }
    let schema = schema.ok_or("no shards to merge")?;
    let columns: Vec<usize> = columns.iter().map(|c| schema.index_of(c)).collect::<Result<_, _>>()?;
    let fields = columns.iter().map(|&k| SortField::new(schema.field(k).data_type().clone())).collect();
    let keys = Keys { schema, columns, converter: RowConverter::new(fields)? };
    let mut open = Vec::new();
    for reader in readers {
        let mut shard = Shard { reader, head: None, read: 0 };
        keys.advance(&mut shard)?;
        open.push(shard);
    }
    Ok((keys, open))
}

/// Whether row `a.1` of head `a` (of shard `a.2`) sorts before row `b.1` of head `b`. Rows
/// compare by key, then by shard, so ties (which disjoint series never make) still merge
/// the same way every time.
fn before(a: (&Head, usize, usize), b: (&Head, usize, usize)) -> bool {
    a.0.rows.row(a.1).cmp(&b.0.rows.row(b.1)).then(a.2.cmp(&b.2)) == Ordering::Less
}

/// The shard whose head row comes first, and where its run ends: its rows up to the next
/// shard's head row (a binary search: the rows are sorted). `None` once every shard is read.
fn next_run(open: &[Shard]) -> Option<(usize, usize)> {
    let head_of = |s: usize| open[s].head.as_ref().map(|h| (h, h.pos, s));
    let order = |a: &&usize, b: &&usize| match (head_of(**a), head_of(**b)) {
        (Some(x), Some(y)) if before(x, y) => Ordering::Less,
        _ => Ordering::Greater,
    };
    let live: Vec<usize> = (0..open.len()).filter(|&s| open[s].head.is_some()).collect();
    let first = *live.iter().min_by(order)?;
    let second = live.iter().filter(|&&s| s != first).min_by(order).copied();
    let head = open[first].head.as_ref().expect("live");
    let (mut lo, mut hi) = (head.pos + 1, head.rows.num_rows());
    let Some(second) = second.and_then(head_of) else { return Some((first, hi)) };
    while lo < hi {
        let mid = (lo + hi) / 2;
        if before((head, mid, first), second) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Some((first, lo))
}

/// Writes `table` merged from the shards, renumbering `link`'s column by its runs, and
/// returns where each shard's rows went.
fn merge_table(
    table: &str,
    columns: &[&str],
    link: Option<(&str, &RowMap)>,
    ctx: &StageContext,
    shards: &[StageRecord],
) -> Result<RowMap, BoxError> {
    let (keys, mut open) = open(table, columns, ctx, shards)?;
    let mut map: RowMap = vec![Vec::new(); shards.len()];
    let mut written = 0u64;
    let mut writer = ctx.table_writer(table, keys.schema.clone())?;
    while let Some((first, end)) = next_run(&open) {
        ctx.check_cancelled()?;
        let shard = &mut open[first];
        let head = shard.head.as_mut().expect("live");
        let len = end - head.pos;
        let mut slice = head.batch.slice(head.pos, len);
        if let Some((column, runs)) = link {
            slice = renumber(&slice, column, &runs[first])?;
        }
        map[first].push((head.offset + head.pos as u64, written, len as u64));
        written += len as u64;
        writer.write(&slice)?;
        head.pos = end;
        if end == head.rows.num_rows() {
            keys.advance(shard)?;
        }
    }
    writer.finish()?;
    Ok(map)
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
