//! AppLearner's integration tests: one binary, a module per topic.

mod cli;
mod engine;
mod ingest;
mod prometheus;
mod support;
