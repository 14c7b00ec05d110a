//! `clean.resample`: from the ingested long table to clean series on a grid. [`resample`]
//! (a pass over each range of series in [`pass`]) puts every series on a fixed grid, splits
//! it at long gaps, fills short ones, drops what cannot be learned from and groups pods into
//! workloads; [`allocation`] lines up their requests and limits, [`kube`] their owners,
//! replicas and HPAs.
//!
//! The stage reads and writes Parquet through the store; the allocation rows' queries read
//! it through the store's own object store, so a pipeline on S3 never copies its tables to
//! disk (the spill files, under a memory bound, are local and temporary).

pub mod allocation;
mod error;
pub mod identity;
pub mod kube;
mod pass;
pub mod resample;

#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use applearner_pipeline::arrow::array::RecordBatch;
use applearner_pipeline::arrow::datatypes::SchemaRef;
use applearner_pipeline::{BoxError, Registry, StageContext};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;

pub use error::CleanError;

pub fn register(registry: &mut Registry) {
    registry.register::<resample::ResampleParams>();
}

/// The URL under which the run's store is known to DataFusion.
const STORE_URL: &str = "applearner://store/";

/// A DataFusion session that reads the run's store and plans with plain `Utf8` strings, so
/// our tables keep the same Arrow types whichever engine wrote them.
///
/// Queries run on a partition per core; those that add floats up use [`sql_in_order`].
pub fn session(ctx: Option<&StageContext>) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
        .set_bool("datafusion.execution.parquet.schema_force_view_types", false)
        .set_bool("datafusion.optimizer.prefer_existing_sort", true);
    let session = SessionContext::new_with_config(config);
    if let Some(ctx) = ctx {
        let (store, _) = ctx.store().object_store();
        let url = ObjectStoreUrl::parse(STORE_URL).expect("the store URL is valid");
        session.register_object_store(url.as_ref(), store);
    }
    session
}

/// Plans a query on one partition. Where several partitions compute partial sums, they are
/// merged in whatever order threads finish, and the last bits of a float would differ from
/// run to run; the same config and data must give the same bytes. Queries that only
/// count, compare or order (and windows over one sorted series) run in parallel.
pub async fn sql_in_order(session: &SessionContext, sql: &str) -> Result<DataFrame, BoxError> {
    let mut state = session.state();
    state.config_mut().options_mut().execution.target_partitions = 1;
    let plan = state.create_logical_plan(sql).await?;
    Ok(DataFrame::new(state, plan))
}

/// Registers the table behind the stage's input `slot` under that name.
pub async fn register_input(session: &SessionContext, ctx: &StageContext<'_>, slot: &str) -> Result<(), BoxError> {
    let input = ctx.input(slot)?;
    let (_, prefix) = ctx.store().object_store();
    let path = if prefix.as_ref().is_empty() { input.path.clone() } else { format!("{prefix}/{}", input.path) };
    session.register_parquet(slot, format!("{STORE_URL}{path}"), ParquetReadOptions::default()).await?;
    Ok(())
}

/// Runs a query to completion.
pub async fn collect(df: DataFrame) -> Result<Vec<RecordBatch>, BoxError> {
    let mut stream = df.execute_stream().await?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
    }
    Ok(batches)
}

/// Registers batches as an in-memory table (an intermediate result read several times),
/// declaring the order they are in so that later windows and sorts need not sort again.
/// The batches' own schema wins over the plan's: execution may know a column is never null.
pub fn register_batches(
    session: &SessionContext,
    name: &str,
    batches: Vec<RecordBatch>,
    schema: SchemaRef,
    sorted_by: &[&str],
) -> Result<(), BoxError> {
    let schema = batches.first().map_or(schema, |b| b.schema());
    let order = sorted_by.iter().map(|c| datafusion::prelude::col(*c).sort(true, false)).collect::<Vec<_>>();
    let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])?.with_sort_order(vec![order]);
    session.deregister_table(name)?;
    session.register_table(name, Arc::new(table))?;
    Ok(())
}

/// Quotes a string as an SQL literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
