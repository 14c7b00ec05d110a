//! What a running stage sees: its inputs and outputs by name, the run's seed, a progress
//! reporter and the cancellation signal. Stages never see paths; everything goes through
//! the store.

use crate::PipelineError;
use crate::store::with_dictionaries;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use bytes::Bytes;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::progress::Progress;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowLeafColumn, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

mod streams;
pub use streams::{Sink, send, stream_tables};

use crate::stage::{BoxError, Output, OutputKind};
use crate::store::{ObjectWriter, Store, bad_table, digest, project, restore_schema};

/// An artifact committed to the store, as recorded in stage records and manifests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredOutput {
    /// Store-relative path.
    pub path: String,
    pub kind: OutputKind,
    /// blake3 of the bytes.
    pub digest: String,
    pub bytes: u64,
    /// Rows, for tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

impl<'de> Deserialize<'de> for OutputKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "table" => Ok(OutputKind::Table),
            "artifact" => Ok(OutputKind::Artifact),
            other => Err(serde::de::Error::custom(format!("unknown output kind `{other}`"))),
        }
    }
}

/// Parquet as every stage writes it: zstd, with row-group and page statistics so readers
/// (DataFusion, DuckDB) can prune, and nothing time-dependent, so equal data gives equal
/// bytes and equal digests. Strings (keys, labels, parts) are dictionary-encoded: a table
/// repeats them row after row. Numbers are not — times, row numbers and usage are nearly all
/// distinct, so a dictionary only costs a hash per value: integers and times are delta-encoded
/// (they ascend within a series: the benchmark's `windows` table at 1× shrank from 326 KB to
/// 10 KB) and floats byte-stream-split, which zstd compresses better than plain floats.
pub fn writer_properties(schema: &Schema) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("3 is a valid zstd level")))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("applearner {}", env!("CARGO_PKG_VERSION")));
    for field in schema.fields() {
        let t = field.data_type();
        let encoding = match t {
            DataType::Timestamp(..) => Encoding::DELTA_BINARY_PACKED,
            _ if t.is_integer() => Encoding::DELTA_BINARY_PACKED,
            _ if t.is_floating() => Encoding::BYTE_STREAM_SPLIT,
            _ => continue,
        };
        let column = ColumnPath::from(field.name().as_str());
        builder = builder.set_column_dictionary_enabled(column.clone(), false).set_column_encoding(column, encoding);
    }
    builder.build()
}

/// Reads a whole Parquet object into record batches.
pub fn read_parquet(path: &str, bytes: Bytes) -> Result<Vec<RecordBatch>, PipelineError> {
    parquet_batches(path, bytes, None, &[])?.collect()
}

/// The batches of a Parquet file in memory, decoded one at a time as they are taken: every
/// column (with the file's schema, metadata included, on each) or only `columns` (a column
/// the file lacks is simply absent); the string columns named in `dictionaries` come as
/// dictionaries of strings ([`crate::store::with_dictionaries`]).
pub fn parquet_batches(
    path: &str,
    bytes: Bytes,
    columns: Option<&[&str]>,
    dictionaries: &[&str],
) -> Result<impl Iterator<Item = Result<RecordBatch, PipelineError>> + use<>, PipelineError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).map_err(|e| bad_table(path, &e))?;
    let builder = match with_dictionaries(builder.metadata(), builder.schema(), dictionaries) {
        Ok(None) => builder,
        Ok(Some(metadata)) => ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, metadata),
        Err(e) => return Err(bad_table(path, &e)),
    };
    let schema = restore_schema(builder.schema().clone(), columns);
    let reader = project(builder, columns).build().map_err(|e| bad_table(path, &e))?;
    let path = path.to_string();
    Ok(reader.map(move |b| b.and_then(&schema).map_err(|e| bad_table(&path, &e))))
}

/// Context handed to [`crate::Stage::run`].
pub struct StageContext<'a> {
    pub(crate) stage: &'a str,
    pub(crate) run_id: &'a str,
    pub(crate) seed: u64,
    pub(crate) store: &'a Store,
    pub(crate) inputs: BTreeMap<String, StoredOutput>,
    pub(crate) outputs: Vec<Output>,
    /// Run-relative folder of this stage's outputs.
    pub(crate) dir: String,
    /// Store folder for resumable state, named by the stage's cache key.
    pub(crate) scratch: String,
    pub(crate) written: Mutex<BTreeMap<String, StoredOutput>>,
    pub(crate) progress: &'a MultiProgress,
    pub(crate) cancel: &'a AtomicBool,
    /// `(i, n)`: this run of the stage handles shard `i` of `n`.
    pub(crate) shard: Option<(u32, u32)>,
}

/// The shard (of `n`) a series belongs to: by the hash of its id, so the split is the same
/// on every run and every machine.
pub fn shard_of(series: &[u8], n: u32) -> u32 {
    let hash = blake3::hash(series);
    (u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes")) % u64::from(n)) as u32
}

impl StageContext<'_> {
    pub fn stage(&self) -> &str {
        self.stage
    }

    pub fn run_id(&self) -> &str {
        self.run_id
    }

    /// The run's seed; stages derive their random streams from it.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether this run of the stage handles the series with this id: always, unless the
    /// stage runs sharded (see [`crate::Stage::shard_order`]).
    pub fn in_shard(&self, series: &[u8]) -> bool {
        self.shard.is_none_or(|(i, n)| shard_of(series, n) == i)
    }

    /// `(i, n)` when this run of the stage is shard `i` of `n`.
    pub fn shard(&self) -> Option<(u32, u32)> {
        self.shard
    }

    /// A store folder for state worth keeping if the stage is killed (checkpoints). It is
    /// named by the stage's cache key, so a rerun with the same parameters, inputs and seed
    /// finds it, and any change starts afresh. The stage removes it when it is done.
    pub fn scratch(&self) -> &str {
        &self.scratch
    }

    pub fn store(&self) -> &Store {
        self.store
    }

    /// The stored input behind a slot (for readers that go to the store themselves).
    pub fn input(&self, slot: &str) -> Result<&StoredOutput, PipelineError> {
        self.inputs
            .get(slot)
            .ok_or_else(|| PipelineError::UnknownInput { stage: self.stage.to_string(), slot: slot.to_string() })
    }

    /// The commit record (`_stage.json`) of the stage that wrote an input: its summary says
    /// what that stage did (what cleaning removed, how training went).
    pub fn input_record(&self, slot: &str) -> Result<serde_json::Value, BoxError> {
        let path = &self.input(slot)?.path;
        let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        Ok(serde_json::from_slice(&self.store.get(&format!("{dir}/_stage.json"))?)?)
    }

    /// Reads a whole input table.
    pub fn read_table(&self, slot: &str) -> Result<Vec<RecordBatch>, BoxError> {
        let input = self.input(slot)?;
        let bytes = self.store.get(&input.path)?;
        Ok(read_parquet(&input.path, bytes)?)
    }

    /// An input table's batches (every column, or only `columns`; the string columns named in
    /// `dictionaries` as dictionaries), decoded one at a time; a large table is read a row
    /// group at a time ([`Store::parquet_batches`]), so a stage that folds them holds about
    /// one row group.
    pub fn table_batches(
        &self,
        slot: &str,
        columns: Option<&[&str]>,
        dictionaries: &[&str],
    ) -> Result<impl Iterator<Item = Result<RecordBatch, PipelineError>> + '_, BoxError> {
        let input = self.input(slot)?;
        Ok(self.store.parquet_batches(&input.path, input.bytes, columns, dictionaries)?)
    }

    /// Reads a whole input artifact.
    pub fn read_artifact(&self, slot: &str) -> Result<Bytes, BoxError> {
        Ok(self.store.get(&self.input(slot)?.path)?)
    }

    /// A writer for the declared table `name`: write batches, then `finish` commits it.
    /// It streams to the store, so a table need not fit in memory.
    pub fn table_writer(&self, name: &str, schema: SchemaRef) -> Result<TableWriter<'_>, BoxError> {
        let output = self.declared(name, OutputKind::Table)?;
        self.check_unwritten(name)?;
        let path = format!("{}/{}", self.dir, output.file_name());
        let mut props = writer_properties(&schema);
        // Readers (pyarrow, DuckDB, us) restore dictionaries and time zones from it.
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let parquet_schema = ArrowSchemaConverter::new().with_coerce_types(props.coerce_types()).convert(&schema)?;
        let file =
            SerializedFileWriter::new(self.store.writer(&path)?, parquet_schema.root_schema_ptr(), Arc::new(props))?;
        let factory = ArrowRowGroupWriterFactory::new(&file, schema.clone());
        Ok(TableWriter {
            ctx: self,
            name: name.to_string(),
            path,
            schema,
            file,
            factory,
            encoders: Vec::new(),
            pending: Vec::new(),
            pending_rows: 0,
            group_rows: 0,
            row_groups: 0,
            rows: 0,
        })
    }

    /// Writes a declared table from batches in one go.
    pub fn write_table(&self, name: &str, schema: SchemaRef, batches: &[RecordBatch]) -> Result<(), BoxError> {
        let mut writer = self.table_writer(name, schema)?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.finish()
    }

    /// Writes a declared artifact (JSON, HTML, weights…).
    pub fn write_artifact(&self, name: &str, bytes: impl Into<Bytes>) -> Result<(), BoxError> {
        let output = self.declared(name, OutputKind::Artifact)?;
        self.check_unwritten(name)?;
        let bytes: Bytes = bytes.into();
        let path = format!("{}/{}", self.dir, output.file_name());
        self.store.put(&path, bytes.clone())?;
        self.record(
            name,
            StoredOutput {
                path,
                kind: OutputKind::Artifact,
                digest: digest(&bytes),
                bytes: bytes.len() as u64,
                rows: None,
            },
        )
    }

    /// Progress through `len` units of work: a bar on a terminal, log lines otherwise.
    pub fn progress(&self, len: u64, message: &str) -> Progress {
        let bar = self.progress.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} {bar:30} {pos}/{len} {msg} ({eta})")
                .expect("the template is valid"),
        );
        bar.set_prefix(self.stage.to_string());
        bar.set_message(message.to_string());
        Progress::new(bar, self.stage, message)
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once the run is being stopped; call it between units of work.
    pub fn check_cancelled(&self) -> Result<(), PipelineError> {
        if self.is_cancelled() { Err(PipelineError::Cancelled) } else { Ok(()) }
    }

    fn declared(&self, name: &str, kind: OutputKind) -> Result<&Output, PipelineError> {
        self.outputs
            .iter()
            .find(|o| o.name == name && o.kind == kind)
            .ok_or_else(|| PipelineError::UndeclaredOutput { stage: self.stage.to_string(), name: name.to_string() })
    }

    fn check_unwritten(&self, name: &str) -> Result<(), PipelineError> {
        if self.written.lock().unwrap().contains_key(name) {
            return Err(PipelineError::WrittenTwice { stage: self.stage.to_string(), name: name.to_string() });
        }
        Ok(())
    }

    fn record(&self, name: &str, stored: StoredOutput) -> Result<(), BoxError> {
        match self.written.lock().unwrap().entry(name.to_string()) {
            std::collections::btree_map::Entry::Occupied(_) => {
                Err(PipelineError::WrittenTwice { stage: self.stage.to_string(), name: name.to_string() }.into())
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(stored);
                Ok(())
            }
        }
    }
}

/// Writes one table; nothing is visible in the store until `finish`.
pub struct TableWriter<'a> {
    ctx: &'a StageContext<'a>,
    name: String,
    path: String,
    schema: SchemaRef,
    file: SerializedFileWriter<ObjectWriter<'a>>,
    factory: ArrowRowGroupWriterFactory,
    /// One thread per column of the open row group: columns are encoded and compressed in
    /// parallel, and while the stage builds its next batch. Each column sees the same
    /// sequence of arrays whatever the timing, so the same batches give the same bytes. A
    /// table smaller than one chunk is encoded without them ([`TableWriter::encode_here`]).
    encoders: Vec<ColumnEncoder>,
    /// Rows written but not yet encoded, fewer than `ENCODE_ROWS`.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    group_rows: usize,
    row_groups: usize,
    rows: u64,
}

struct ColumnEncoder {
    input: std::sync::mpsc::SyncSender<ArrowLeafColumn>,
    done: std::thread::JoinHandle<parquet::errors::Result<ArrowColumnChunk>>,
}

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 1024 * 1024;
/// Rows handed to the column encoders at a time, however the stage batches them: page
/// boundaries, and so the bytes, depend on the rows alone (tables merged from shards are
/// bit for bit the unsharded ones).
const ENCODE_ROWS: usize = 8 * 1024;

impl TableWriter<'_> {
    /// Encodes the rows in chunks of `ENCODE_ROWS`: the rows held back from the last batch
    /// are completed from the head of this one (the only rows copied), then whole chunks are
    /// encoded from slices of it, and what is left is held back.
    ///
    /// A string column may come as a dictionary of strings (`Dictionary(_, Utf8)`): it is
    /// written as the strings it stands for, byte for byte as the plain column would be, so
    /// a stage that repeats a string on many rows (a series' key on each of its points)
    /// need not copy it onto each.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), BoxError> {
        self.rows += batch.num_rows() as u64;
        let mut rest = batch.clone();
        if self.pending_rows > 0 {
            let fill = (ENCODE_ROWS - self.pending_rows).min(rest.num_rows());
            self.pending.push(rest.slice(0, fill));
            self.pending_rows += fill;
            rest = rest.slice(fill, rest.num_rows() - fill);
            if self.pending_rows < ENCODE_ROWS {
                return Ok(());
            }
            let chunk = self.take_pending()?;
            self.encode(&chunk)?;
        }
        while rest.num_rows() >= ENCODE_ROWS {
            self.encode(&rest.slice(0, ENCODE_ROWS))?;
            rest = rest.slice(ENCODE_ROWS, rest.num_rows() - ENCODE_ROWS);
        }
        if rest.num_rows() > 0 {
            self.pending_rows = rest.num_rows();
            self.pending.push(rest);
        }
        Ok(())
    }

    /// The rows held back, as one batch; none are held any more.
    fn take_pending(&mut self) -> Result<RecordBatch, BoxError> {
        self.pending_rows = 0;
        let pending = std::mem::take(&mut self.pending);
        Ok(match <[RecordBatch; 1]>::try_from(pending) {
            Ok([one]) => one,
            // The batches' own schema: their string columns may be dictionaries.
            Err(many) => arrow::compute::concat_batches(&many[0].schema(), &many)?,
        })
    }

    fn encode(&mut self, batch: &RecordBatch) -> Result<(), BoxError> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.encoders.is_empty() {
                self.encoders = self
                    .factory
                    .create_column_writers(self.row_groups)?
                    .into_iter()
                    .map(|mut writer| {
                        let (input, columns) = std::sync::mpsc::sync_channel::<ArrowLeafColumn>(4);
                        let done = std::thread::spawn(move || {
                            for column in columns {
                                writer.write(&column)?;
                            }
                            writer.close()
                        });
                        ColumnEncoder { input, done }
                    })
                    .collect();
            }
            let take = (ROW_GROUP_ROWS - self.group_rows).min(batch.num_rows() - offset);
            let part = batch.slice(offset, take);
            let mut encoders = self.encoders.iter();
            for (array, field) in part.columns().iter().zip(self.schema.fields()) {
                for leaf in compute_leaves(field, array)? {
                    let encoder = encoders.next().expect("one encoder per leaf column");
                    // A closed channel means the encoder failed: its error comes from `join`.
                    if encoder.input.send(leaf).is_err() {
                        return self.close_row_group();
                    }
                }
            }
            self.group_rows += take;
            offset += take;
            if self.group_rows == ROW_GROUP_ROWS {
                self.close_row_group()?;
            }
        }
        Ok(())
    }

    /// The last rows, fewer than `ENCODE_ROWS`, when no row group is open (a small table
    /// whole): one row group encoded on this thread, column after column, since starting a
    /// thread per column costs more than encoding them. The encoders see the same arrays as
    /// on their threads, so the bytes are the same.
    fn encode_here(&mut self, batch: &RecordBatch) -> Result<(), BoxError> {
        let mut writers = self.factory.create_column_writers(self.row_groups)?.into_iter();
        let mut row_group = self.file.next_row_group()?;
        for (array, field) in batch.columns().iter().zip(self.schema.fields()) {
            for leaf in compute_leaves(field, array)? {
                let mut writer = writers.next().expect("one encoder per leaf column");
                writer.write(&leaf)?;
                writer.close()?.append_to_row_group(&mut row_group)?;
            }
        }
        row_group.close()?;
        self.row_groups += 1;
        Ok(())
    }

    fn close_row_group(&mut self) -> Result<(), BoxError> {
        if self.encoders.is_empty() {
            return Ok(());
        }
        let mut row_group = self.file.next_row_group()?;
        for encoder in std::mem::take(&mut self.encoders) {
            drop(encoder.input);
            let chunk = encoder.done.join().expect("column encoders do not panic")?;
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        self.group_rows = 0;
        self.row_groups += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), BoxError> {
        if self.pending_rows > 0 {
            let rest = self.take_pending()?;
            match self.encoders.is_empty() {
                true => self.encode_here(&rest)?,
                false => self.encode(&rest)?,
            }
        }
        self.close_row_group()?;
        let (digest, bytes) = self.file.into_inner()?.finish()?;
        let stored = StoredOutput { path: self.path, kind: OutputKind::Table, digest, bytes, rows: Some(self.rows) };
        self.ctx.record(&self.name, stored)
    }
}

#[cfg(test)]
mod tests;
