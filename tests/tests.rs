//! AppLearner's integration tests: one binary, a module per topic.

mod cli;
mod cluster;
mod covariates;
mod engine;
mod evaluate;
mod export;
mod faults;
mod golden;
mod ingest;
mod prepare;
mod prometheus;
mod refresh;
mod storage;
mod support;
mod train;
