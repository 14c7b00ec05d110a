//! Tables written while a stage's work still produces them: the work hands batches to a
//! sink per table, and a thread per table writes them.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::StageContext;
use crate::stage::BoxError;

/// Where a stage hands the rows of one of its tables: [`stream_tables`] writes them.
pub type Sink = std::sync::mpsc::SyncSender<RecordBatch>;

/// Hands `batch` to its table's writer.
pub fn send(sink: &Sink, batch: RecordBatch) -> Result<(), BoxError> {
    sink.send(batch).map_err(|_| BoxError::from("the table writer stopped"))
}

/// Runs `work` with a sink per table of `tables`; each table is written as the batches
/// come, by a thread of its own a few batches behind (a writer puts row groups into the
/// store, which blocks on the store's runtime: work that runs there, such as a query, must
/// not also write). A writer's own error comes first: a failed write stops the work, not the
/// reverse.
pub fn stream_tables<T>(
    ctx: &StageContext,
    tables: &[(&str, SchemaRef)],
    work: impl FnOnce(Vec<Sink>) -> Result<T, BoxError>,
) -> Result<T, BoxError> {
    std::thread::scope(|threads| {
        let (mut sinks, mut writing) = (Vec::new(), Vec::new());
        for (name, schema) in tables {
            let mut writer = ctx.table_writer(name, schema.clone())?;
            let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(4);
            sinks.push(tx);
            writing.push(threads.spawn(move || -> Result<(), BoxError> {
                for batch in rx {
                    writer.write(&batch)?;
                }
                writer.finish()
            }));
        }
        // The sinks move into the work: when it is done they close and the writers finish.
        let result = work(sinks);
        for w in writing {
            w.join().expect("a table writer panicked")?;
        }
        result
    })
}
