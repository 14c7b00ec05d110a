//! The command line: what `applearner` accepts, and its exit codes.

use applearner_pipeline::config::DEFAULT_STORE;
use clap::{Parser, Subcommand, ValueEnum};

/// Learn how Kubernetes workloads use CPU and memory, forecast it, and plan resources ahead.
#[derive(Parser)]
#[command(name = "applearner", version, about)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a pipeline (or part of it).
    Run {
        config: String,
        #[command(flatten)]
        sets: Sets,
        /// Reuse this run (its committed stages count as done), or name a new one.
        #[arg(long)]
        run_id: Option<String>,
        /// Run exactly this stage, reading its inputs from the same run.
        #[arg(long, conflicts_with_all = ["until", "from"])]
        stage: Option<String>,
        /// Run this stage and everything it depends on.
        #[arg(long, conflicts_with = "from")]
        until: Option<String>,
        /// Run this stage and everything that depends on it.
        #[arg(long)]
        from: Option<String>,
        /// Rerun even when cached: all stages, or `--force=STAGE` (repeatable).
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "*", value_name = "STAGE")]
        force: Vec<String>,
        /// Most stages running at once (default: the number of CPUs).
        #[arg(short, long)]
        jobs: Option<usize>,
        /// Run only shard I of N of the `--stage` (its config says `shards: N`); running the
        /// stage without it then merges the shards.
        #[arg(long, requires = "stage", value_name = "I/N", value_parser = parse_shard)]
        shard: Option<(u32, u32)>,
    },
    /// Check a config and report every problem in it.
    Validate {
        config: String,
        #[command(flatten)]
        sets: Sets,
    },
    /// Draw a pipeline's DAG.
    Dag {
        config: String,
        #[arg(long, value_enum, default_value = "text")]
        format: DagFormat,
        #[command(flatten)]
        sets: Sets,
    },
    /// Write the pipeline as an Argo Workflow (one pod per stage) or a Kubernetes Job, YAML
    /// on stdout. The store must be object storage (`--set store=s3://bucket/prefix`).
    Export {
        #[arg(value_enum)]
        to: ExportTo,
        config: String,
        #[command(flatten)]
        sets: Sets,
        /// The AppLearner image the pods run.
        #[arg(long, default_value = concat!("ghcr.io/applearner/applearner:", env!("CARGO_PKG_VERSION")))]
        image: String,
        /// The ConfigMap holding the config file (`kubectl create configmap NAME --from-file=CONFIG`);
        /// default `<pipeline>-config`.
        #[arg(long)]
        config_map: Option<String>,
        /// A Secret whose keys become the pods' environment: the store's credentials
        /// (AWS_ACCESS_KEY_ID, …) and any `${VAR}` the config reads.
        #[arg(long)]
        secret: Option<String>,
        #[arg(long)]
        namespace: Option<String>,
        /// Retries of a failed pod.
        #[arg(long, default_value_t = 2)]
        retries: u32,
        /// Argo: a WorkflowTemplate instead of a Workflow.
        #[arg(long, conflicts_with = "schedule")]
        template: bool,
        /// Run on a cron schedule (`0 3 * * *`): a CronWorkflow or a CronJob.
        #[arg(long)]
        schedule: Option<String>,
        /// Instead of one run: what keeps plans current on a cluster. A ServiceAccount with
        /// its RBAC, a training schedule publishing the model to this location (object
        /// storage), and an hourly plan refresh from it that ends by applying the plan.
        #[arg(long, value_name = "MODEL_URL", conflicts_with_all = ["schedule", "template"])]
        schedules: Option<String>,
        /// With --schedules: when training runs.
        #[arg(long, default_value = "0 3 * * 0", requires = "schedules")]
        train_schedule: String,
        /// With --schedules: when plans are refreshed.
        #[arg(long, default_value = "0 * * * *", requires = "schedules")]
        plan_schedule: String,
        /// With --schedules: apply each refresh's patches (server-side apply). Without it
        /// the last step is a server-side dry run.
        #[arg(long, requires = "schedules")]
        apply: bool,
    },
    /// List stage kinds and their parameters.
    Stages {
        /// Only this kind.
        kind: Option<String>,
    },
    /// Print the schema and first rows of a table in the store.
    Show {
        /// Path in the store, e.g. <run-id>/ingest/samples.parquet.
        path: String,
        #[arg(long, default_value = DEFAULT_STORE)]
        store: String,
        #[arg(long, default_value_t = 10)]
        rows: usize,
    },
    /// List the runs in a store.
    Runs {
        #[arg(long, default_value = DEFAULT_STORE)]
        store: String,
    },
    /// A run's plan: per workload the current requests and limits → the planned ones, the
    /// change in reserved cores and GiB and its monthly cost, and the flags (OOM-killed,
    /// throttled, allocated below the plan), largest change first.
    Plan {
        run_id: String,
        #[arg(long, default_value = DEFAULT_STORE)]
        store: String,
        /// `table` for a person; `json`, `csv` or `yaml` (every column) for machines.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        format: PlanFormat,
        /// Only the first N workloads of the table.
        #[arg(long)]
        top: Option<usize>,
        /// Write to this file instead of stdout.
        #[arg(long)]
        to: Option<String>,
    },
    /// Check every artifact a run's manifest lists against its recorded digest.
    Verify {
        run_id: String,
        #[arg(long, default_value = DEFAULT_STORE)]
        store: String,
    },
    /// Forecast the next steps of every series in a features table with a trained model.
    Predict {
        /// A model folder: `trained_models/<name>`, or a train stage's folder in a local store.
        #[arg(long)]
        model: std::path::PathBuf,
        /// A features table (`features.parquet`), or the folder of the features.build stage
        /// that wrote it (its `scalers.parquet` then scales each series as in training).
        #[arg(long)]
        input: std::path::PathBuf,
        /// Steps to forecast, at most the model's horizon (default: all of it).
        #[arg(long)]
        horizon: Option<usize>,
        /// Output file; `.parquet`, `.csv` or `.json` picks the format. Default: CSV on stdout.
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
        /// cpu, cuda, cuda:N or auto.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(clap::Args)]
pub struct Sets {
    /// Override a setting: `seed=7`, `STAGE.PARAM=VALUE` (VALUE is YAML: 3, true, [a, b]).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportTo {
    /// An Argo Workflow: a DAG task per stage.
    Argo,
    /// A Kubernetes Job (CronJob with --schedule) running the whole pipeline in one pod.
    K8s,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PlanFormat {
    Table,
    Json,
    Csv,
    Yaml,
    /// The run's patches.yaml: what `kubectl apply --server-side -f -` applies.
    Patches,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DagFormat {
    Text,
    Mermaid,
    Dot,
}

/// Exit codes: 0 success, 1 a stage or the store failed, 2 the config or command line is
/// wrong, 130 interrupted.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    text.split_once('/')
        .and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)))
        .filter(|&(i, n)| i < n)
        .ok_or_else(|| format!("`{text}` is not I/N with 0 <= I < N, e.g. 0/4"))
}
