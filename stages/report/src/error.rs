//! What can go wrong when the report reads what the stages before it wrote.

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "the {stage} stage's record has no summary the report can read ({source}): it was written by another version of AppLearner; run that stage again (--force={stage})"
    )]
    Summary { stage: &'static str, source: serde_json::Error },
}
