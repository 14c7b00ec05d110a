//! What can go wrong reading Prometheus data, each naming where.

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no file matches `{0}`; check the path (it is relative to the working directory)")]
    NoMatch(String),
    #[error("{origin}: {error}")]
    Io { origin: String, error: std::io::Error },
    #[error("{origin}: line {line}, column {column}: {message}")]
    Json { origin: String, line: usize, column: usize, message: String },
    #[error(
        "{origin}: is not a Prometheus API answer (it starts with `{start}`); save the JSON body of /api/v1/query_range"
    )]
    NotJson { origin: String, start: String },
    #[error("{origin}: Prometheus answered `{error_type}`: {error}")]
    Prometheus { origin: String, error_type: String, error: String },
    #[error("{origin}: unsupported resultType `{result_type}`; save a query_range (matrix) or query (vector) answer")]
    ResultType { origin: String, result_type: String },
    #[error("{origin}: series {labels}: {message}")]
    Sample { origin: String, labels: String, message: String },
    #[error("{origin}:{line}: {message}")]
    Text { origin: String, line: usize, message: String },
    #[error(
        "{origin}: a legacy dump is named after its metric; the file name must contain one of container_cpu, container_mem, node_mem"
    )]
    LegacyName { origin: String },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("the run was cancelled")]
    Cancelled,
}
