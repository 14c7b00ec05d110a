//! The artifact store: every byte a stage reads or writes goes through here, so one config
//! runs on a laptop (`./runs`) and on object storage (`s3://bucket/prefix`) alike.
//!
//! Each object is written with a single atomic put (object_store stages local files under a
//! temporary name and renames them; S3, GCS and Azure make a PUT visible only when complete),
//! so no reader ever sees half an object.

use crate::PipelineError;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderBuilder, ArrowReaderMetadata, ArrowReaderOptions};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use tokio::runtime::Runtime;

/// Whether a write failed for want of space (ENOSPC). object_store wraps the I/O error in
/// ways that hide it from `source()`, so its text is checked too.
fn disk_full(e: &object_store::Error) -> bool {
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        let io = err.downcast_ref::<std::io::Error>();
        if io.is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull) {
            return true;
        }
        next = err.source();
    }
    e.to_string().contains("No space left on device")
}

/// Parquet objects up to this size are read in one piece; larger ones a row group at a time
/// ([`Store::parquet_batches`]): 64 MiB held at most.
pub const WHOLE_BYTES: u64 = 64 << 20;

/// Where run artifacts live. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    url: String,
    inner: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// The folder of a local store, whose paths are checked for symbolic links.
    local_root: Option<std::path::PathBuf>,
    runtime: Arc<Runtime>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

impl Store {
    /// Opens a store by URL: a folder (`./runs`, `/data/runs`, `file:///data/runs`, created if
    /// missing), `s3://bucket/prefix`, `gs://…`, `az://…` (credentials from the usual
    /// environment variables, never from the config) or `memory://`.
    pub fn open(url: &str) -> Result<Store, PipelineError> {
        let bad = |message: String| PipelineError::Url { url: url.to_string(), message };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("applearner-io")
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start the I/O runtime: {e}")))?;
        let mut local_root = None;
        let (inner, prefix): (Arc<dyn ObjectStore>, String) = match url.split_once("://") {
            None | Some(("file", _)) => {
                let dir = url.strip_prefix("file://").unwrap_or(url);
                std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create the folder: {e}")))?;
                // The root itself may be a link (./runs → /data/runs): only what is below it is checked.
                local_root = Some(std::fs::canonicalize(dir).map_err(|e| bad(e.to_string()))?);
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| bad(e.to_string()))?;
                (Arc::new(fs), String::new())
            }
            Some((scheme, rest)) => {
                let prefix = rest.split_once('/').map_or("", |(_, p)| p).trim_matches('/').to_string();
                let store: Arc<dyn ObjectStore> = match scheme {
                    "memory" => Arc::new(object_store::memory::InMemory::new()),
                    "s3" | "s3a" => Arc::new(
                        object_store::aws::AmazonS3Builder::from_env()
                            .with_url(url)
                            .build()
                            .map_err(|e| bad(e.to_string()))?,
                    ),
                    "gs" => Arc::new(
                        object_store::gcp::GoogleCloudStorageBuilder::from_env()
                            .with_url(url)
                            .build()
                            .map_err(|e| bad(e.to_string()))?,
                    ),
                    "az" | "azure" | "abfs" | "abfss" => Arc::new(
                        object_store::azure::MicrosoftAzureBuilder::from_env()
                            .with_url(url)
                            .build()
                            .map_err(|e| bad(e.to_string()))?,
                    ),
                    other => {
                        return Err(bad(format!(
                            "unsupported scheme `{other}`; use a folder, file://, s3://, gs://, az:// or memory://"
                        )));
                    }
                };
                (store, prefix)
            }
        };
        let prefix = ObjectPath::from(prefix);
        Ok(Store { url: url.to_string(), inner, prefix, local_root, runtime: Arc::new(runtime) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object_store behind this store and the full path of `path` in it, for readers such
    /// as DataFusion that talk to object_store directly.
    pub fn object_store(&self) -> (Arc<dyn ObjectStore>, ObjectPath) {
        (self.inner.clone(), self.prefix.clone())
    }

    /// Runs a future on the store's I/O runtime (from synchronous stage code).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Runs one whole-object operation. On a local disk it runs here, outside the runtime:
    /// object_store then reads and writes the file on this thread rather than handing the
    /// call to the runtime's blocking pool and waiting for it, a round trip between threads
    /// that was most of the time of a small object's get or put.
    fn call<F: std::future::Future>(&self, future: F) -> F::Output {
        match self.local_root {
            Some(_) => futures::executor::block_on(future),
            None => self.block_on(future),
        }
    }

    /// The batches of the Parquet object `path` of `size` bytes: every column (with the
    /// file's schema, metadata included, on each) or only `columns` (a column it lacks is
    /// simply absent), decoded one at a time as they are taken. An object above
    /// [`WHOLE_BYTES`] is fetched by ranged reads a row group at a time, so memory holds one
    /// row group's columns whatever its size; a smaller one in one read, which costs less.
    pub fn parquet_batches(
        &self,
        path: &str,
        size: u64,
        columns: Option<&[&str]>,
        dictionaries: &[&str],
    ) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, PipelineError>> + '_>, PipelineError> {
        if size > WHOLE_BYTES {
            return self.ranged_batches(path, size, columns, dictionaries);
        }
        Ok(Box::new(crate::context::parquet_batches(path, self.get(path)?, columns, dictionaries)?))
    }

    fn ranged_batches(
        &self,
        path: &str,
        size: u64,
        columns: Option<&[&str]>,
        dictionaries: &[&str],
    ) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, PipelineError>> + '_>, PipelineError> {
        // parquet 59 deprecates its object_store reader in favour of one's own `AsyncFileReader`;
        // it still does exactly this (ranged gets through the store), so it is kept until the
        // pinned parquet drops it.
        #[allow(deprecated)]
        use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
        #[allow(deprecated)]
        let reader = ParquetObjectReader::new(self.inner.clone(), self.full(path)?).with_file_size(size);
        let opened = self.block_on(async {
            let mut builder = ParquetRecordBatchStreamBuilder::new(reader.clone()).await?;
            if let Some(metadata) = with_dictionaries(builder.metadata(), builder.schema(), dictionaries)? {
                builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata);
            }
            let schema = restore_schema(builder.schema().clone(), columns);
            project(builder, columns).build().map(|stream| (stream, schema))
        });
        let (mut stream, schema) = opened.map_err(|e| bad_table(path, &e))?;
        let path = path.to_string();
        Ok(Box::new(std::iter::from_fn(move || {
            let next = self.block_on(futures::StreamExt::next(&mut stream))?;
            Some(next.and_then(|b| Ok(schema(b)?)).map_err(|e| bad_table(&path, &e)))
        })))
    }

    /// The object path of `path` below the store's prefix. `ObjectPath` drops `..` and leading
    /// slashes; on a local disk, a path through a symbolic link (planted by whoever else can
    /// write the folder) is refused, as it could lead outside the store.
    fn full(&self, path: &str) -> Result<ObjectPath, PipelineError> {
        let full: ObjectPath = self.prefix.parts().chain(ObjectPath::from(path).parts()).collect();
        if let Some(root) = &self.local_root {
            let mut at = root.clone();
            for part in full.parts() {
                at.push(part.as_ref());
                match std::fs::symlink_metadata(&at) {
                    Ok(m) if m.file_type().is_symlink() => {
                        let link = at.display().to_string();
                        return Err(PipelineError::Symlink { store: self.url.clone(), path: path.into(), link });
                    }
                    Ok(_) => {}
                    // Not there (yet): nothing below it can be a link.
                    Err(_) => break,
                }
            }
        }
        Ok(full)
    }

    fn io(&self, path: &str, source: object_store::Error) -> PipelineError {
        match source {
            object_store::Error::NotFound { .. } => PipelineError::NotFound { path: path.to_string() },
            source => PipelineError::Io { store: self.url.clone(), path: path.to_string(), source },
        }
    }

    /// A failed write: "not found" there means the bucket is missing.
    fn write_error(&self, path: &str, source: object_store::Error) -> PipelineError {
        match source {
            object_store::Error::NotFound { .. } => {
                PipelineError::NoBucket { store: self.url.clone(), path: path.into() }
            }
            source if disk_full(&source) => PipelineError::Full { store: self.url.clone(), path: path.into(), source },
            source => self.io(path, source),
        }
    }

    /// Writes `bytes` as one atomic put.
    pub fn put(&self, path: &str, bytes: Bytes) -> Result<(), PipelineError> {
        let full = self.full(path)?;
        self.call(self.inner.put(&full, PutPayload::from(bytes))).map_err(|e| self.write_error(path, e))?;
        Ok(())
    }

    /// Writes `bytes` only if nothing is at `path` yet (a conditional put: `If-None-Match: *`
    /// on S3, a no-clobber link on a local disk), so of two writers exactly one wins.
    /// `Ok(false)` when something already was there.
    pub fn put_new(&self, path: &str, bytes: Bytes) -> Result<bool, PipelineError> {
        let full = self.full(path)?;
        match self.call(self.inner.put_opts(&full, PutPayload::from(bytes.clone()), PutMode::Create.into())) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => {
                // A store without conditional puts (or AWS_CONDITIONAL_PUT=disabled): check,
                // then put. Two writers at the very same moment can then both win.
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        store = self.url,
                        "the store has no conditional puts: concurrent runs are not guarded"
                    )
                });
                if self.exists(path)? {
                    return Ok(false);
                }
                self.put(path, bytes)?;
                Ok(true)
            }
            Err(e) => Err(self.write_error(path, e)),
        }
    }

    pub fn get(&self, path: &str) -> Result<Bytes, PipelineError> {
        let full = self.full(path)?;
        self.call(async { self.inner.get(&full).await?.bytes().await }).map_err(|e| self.io(path, e))
    }

    /// `None` when the object does not exist.
    pub fn get_opt(&self, path: &str) -> Result<Option<Bytes>, PipelineError> {
        match self.get(path) {
            Ok(b) => Ok(Some(b)),
            Err(PipelineError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn exists(&self, path: &str) -> Result<bool, PipelineError> {
        match self.call(self.inner.head(&self.full(path)?)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.io(path, e)),
        }
    }

    /// Deletes an object; deleting one that is not there is not an error.
    pub fn delete(&self, path: &str) -> Result<(), PipelineError> {
        match self.call(self.inner.delete(&self.full(path)?)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.io(path, e)),
        }
    }

    /// A streaming writer for `path`: the object appears, whole, only when `finish` returns
    /// (a multipart upload completed, or a staged local file renamed); dropped unfinished, it
    /// leaves nothing under `path`.
    pub fn writer(&self, path: &str) -> Result<ObjectWriter<'_>, PipelineError> {
        let upload =
            object_store::buffered::BufWriter::with_capacity(self.inner.clone(), self.full(path)?, UPLOAD_PART);
        Ok(ObjectWriter {
            store: self,
            path: path.to_string(),
            upload: Some(upload),
            buffer: Vec::with_capacity(WRITE_BUFFER),
            hasher: blake3::Hasher::new(),
            bytes: 0,
        })
    }

    /// Copies an object (a hard link on a local disk, a server-side copy on object storage).
    pub fn copy(&self, from: &str, to: &str) -> Result<(), PipelineError> {
        self.call(self.inner.copy(&self.full(from)?, &self.full(to)?)).map_err(|e| self.io(from, e))
    }

    /// The folders directly below `dir` (`""` for the root), sorted.
    pub fn list_dirs(&self, dir: &str) -> Result<Vec<String>, PipelineError> {
        let full = self.full(dir)?;
        let skip = self.prefix.parts().count();
        let listing = self.call(self.inner.list_with_delimiter(Some(&full))).map_err(|e| self.io(dir, e))?;
        let mut dirs: Vec<String> = listing
            .common_prefixes
            .into_iter()
            .map(|p| p.parts().skip(skip).map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/"))
            .collect();
        dirs.sort();
        Ok(dirs)
    }

    /// Paths (relative to the store) of every object below `dir`, sorted.
    pub fn list(&self, dir: &str) -> Result<Vec<String>, PipelineError> {
        let full = self.full(dir)?;
        let skip = self.prefix.parts().count();
        let metas: Vec<_> =
            self.call(self.inner.list(Some(&full)).try_collect::<Vec<_>>()).map_err(|e| self.io(dir, e))?;
        let mut paths: Vec<String> = metas
            .into_iter()
            .map(|m| m.location.parts().skip(skip).map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/"))
            .collect();
        paths.sort();
        Ok(paths)
    }
}

/// Size of the parts of a multipart upload (object stores want at least 5 MiB).
const UPLOAD_PART: usize = 10 * 1024 * 1024;
/// Bytes gathered before they are handed to the upload, to keep runtime hops rare.
const WRITE_BUFFER: usize = 1024 * 1024;

/// See [`Store::writer`]. Hashes what it writes, for the digest.
pub struct ObjectWriter<'a> {
    store: &'a Store,
    path: String,
    upload: Option<object_store::buffered::BufWriter>,
    buffer: Vec<u8>,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl ObjectWriter<'_> {
    fn send(&mut self) -> Result<(), PipelineError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(WRITE_BUFFER)));
        let upload = self.upload.as_mut().expect("the upload is open until finish");
        self.store.block_on(upload.put(chunk)).map_err(|e| self.store.write_error(&self.path, e))
    }

    /// Completes the object; returns its digest and size.
    pub fn finish(mut self) -> Result<(String, u64), PipelineError> {
        use tokio::io::AsyncWriteExt;
        self.send()?;
        let mut upload = self.upload.take().expect("the upload is open until finish");
        self.store.block_on(upload.shutdown()).map_err(|e| {
            self.store.write_error(&self.path, object_store::Error::Generic { store: "upload", source: Box::new(e) })
        })?;
        Ok((self.hasher.finalize().to_hex().to_string(), self.bytes))
    }
}

impl std::io::Write for ObjectWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= WRITE_BUFFER {
            self.send().map_err(std::io::Error::other)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWriter<'_> {
    fn drop(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            // Unfinished: discard the parts uploaded so far.
            let _ = self.store.block_on(upload.abort());
        }
    }
}

/// The digest recorded for every artifact: blake3 of its bytes, hex.
pub fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

pub(crate) fn bad_table(path: &str, e: &dyn std::fmt::Display) -> PipelineError {
    PipelineError::BadTable { path: path.to_string(), message: e.to_string() }
}

/// The reader's metadata with the string columns `names` read as dictionaries of strings
/// (as Parquet stores them by default: a row's string is not copied onto it), or None when
/// no column is named.
pub(crate) fn with_dictionaries(
    metadata: &Arc<ParquetMetaData>,
    schema: &SchemaRef,
    names: &[&str],
) -> Result<Option<ArrowReaderMetadata>, ParquetError> {
    if names.is_empty() {
        return Ok(None);
    }
    let schema = crate::columns::as_dictionaries(schema, names);
    ArrowReaderMetadata::try_new(metadata.clone(), ArrowReaderOptions::new().with_schema(schema)).map(Some)
}

/// A reader of only `columns`, or of every column.
pub(crate) fn project<T>(builder: ArrowReaderBuilder<T>, columns: Option<&[&str]>) -> ArrowReaderBuilder<T> {
    match columns {
        Some(columns) => {
            let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
            builder.with_projection(mask)
        }
        None => builder,
    }
}

/// The readers' batches drop the schema's metadata (the windows table keeps its lookback
/// there): the file's `schema` goes back on batches of every column.
pub(crate) fn restore_schema(
    schema: SchemaRef,
    columns: Option<&[&str]>,
) -> impl Fn(RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> + use<> {
    let whole = columns.is_none();
    move |b| if whole { b.with_schema(schema.clone()) } else { Ok(b) }
}

#[cfg(test)]
mod tests;
