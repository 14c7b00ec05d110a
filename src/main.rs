//! The `applearner` command line.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use applearner_pipeline::config::DEFAULT_STORE;
use applearner_pipeline::context::read_parquet;
use applearner_pipeline::dag::{self, Format};
use applearner_pipeline::export;
use applearner_pipeline::run::{self, RunStatus};
use applearner_pipeline::{Pipeline, Registry, RunError, RunOptions, Selection, Store};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// Learn how Kubernetes workloads use CPU and memory, forecast it, and plan resources ahead.
#[derive(Parser)]
#[command(name = "applearner", version, about)]
struct Cli {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
struct Sets {
    /// Override a setting: `seed=7`, `STAGE.PARAM=VALUE` (VALUE is YAML: 3, true, [a, b]).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportTo {
    /// An Argo Workflow: a DAG task per stage.
    Argo,
    /// A Kubernetes Job (CronJob with --schedule) running the whole pipeline in one pod.
    K8s,
}

#[derive(Clone, Copy, ValueEnum)]
enum DagFormat {
    Text,
    Mermaid,
    Dot,
}

/// Exit codes: 0 success, 1 a stage or the store failed, 2 the config or command line is
/// wrong, 130 interrupted.
const EXIT_FAILED: u8 = 1;
const EXIT_INVALID: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;

fn registry() -> Registry {
    let mut registry = Registry::new();
    applearner_ingest::register(&mut registry);
    applearner_prepare::register(&mut registry);
    applearner_train::register(&mut registry);
    applearner_evaluate::register(&mut registry);
    applearner_report::register(&mut registry);
    registry
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("APPLEARNER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Reads and validates a config; on problems prints them all and says so.
fn load(path: &str, sets: &Sets, registry: &Registry) -> anyhow::Result<Result<(Pipeline, String), ExitCode>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config `{path}`"))?;
    match Pipeline::from_yaml(path, &text, &sets.set, registry) {
        Ok(p) => Ok(Ok((p, text))),
        Err(problems) => {
            eprint!("{problems}");
            Ok(Err(ExitCode::from(EXIT_INVALID)))
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let registry = registry();
    match cli.command {
        Command::Validate { config, sets } => {
            let (p, _) = match load(&config, &sets, &registry)? {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            println!("{config}: ok, pipeline `{}` with {} stages", p.name, p.stages.len());
        }
        Command::Dag { config, format, sets } => {
            let (p, _) = match load(&config, &sets, &registry)? {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            let format = match format {
                DagFormat::Text => Format::Text,
                DagFormat::Mermaid => Format::Mermaid,
                DagFormat::Dot => Format::Dot,
            };
            print!("{}", dag::render(&p, format));
        }
        Command::Export { to, config, sets, image, config_map, secret, namespace, retries, template, schedule } => {
            let (p, _) = match load(&config, &sets, &registry)? {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            let target = export::Target {
                image,
                config_map: config_map.unwrap_or_else(|| format!("{}-config", p.name)),
                secret,
                namespace,
                retries,
            };
            let manifest = match to {
                ExportTo::Argo => {
                    let kind = match (template, schedule) {
                        (true, _) => export::ArgoKind::WorkflowTemplate,
                        (_, Some(s)) => export::ArgoKind::CronWorkflow(s),
                        _ => export::ArgoKind::Workflow,
                    };
                    export::argo(&p, &target, &kind)
                }
                ExportTo::K8s => export::kubernetes(&p, &target, schedule.as_deref()),
            };
            match manifest {
                Ok(m) => print!("{}", serde_saphyr::to_string(&m)?),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_INVALID));
                }
            }
        }
        Command::Run { config, sets, run_id, stage, until, from, force, jobs, shard } => {
            let (p, text) = match load(&config, &sets, &registry)? {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            let selection = match (stage, until, from) {
                (Some(s), _, _) => Selection::Stage(s),
                (_, Some(s), _) => Selection::Until(s),
                (_, _, Some(s)) => Selection::From(s),
                _ => Selection::All,
            };
            let options = RunOptions {
                run_id,
                jobs: jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                selection,
                force,
                progress: !cli.quiet && std::io::stderr().is_terminal(),
                shard,
            };
            let store = Store::open(&p.store).map_err(|e| anyhow::anyhow!(p.redactor.redact(&e.to_string())))?;
            let cancel = Arc::new(AtomicBool::new(false));
            let on_signal = cancel.clone();
            store.block_on(async {
                tokio::spawn(async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        eprintln!("interrupted: stopping after the running stages' current step");
                        on_signal.store(true, Ordering::Relaxed);
                    }
                });
            });
            return Ok(match run::run(&p, &text, &store, &options, &cancel) {
                Ok(report) => {
                    println!("run {} succeeded", report.run_id);
                    for r in &report.manifest.stages {
                        let how = match r.status {
                            run::Status::Ran => format!("ran in {:.1}s", r.duration_ms as f64 / 1000.0),
                            run::Status::Cached if r.produced_by == report.run_id => "up to date".to_string(),
                            run::Status::Cached => format!("cached (from run {})", r.produced_by),
                        };
                        println!("  {:<20} {how}", r.stage);
                    }
                    println!("manifest: {}/{}/manifest.json", p.redactor.redact(&p.store), report.run_id);
                    ExitCode::SUCCESS
                }
                Err(e @ (RunError::UnknownStage { .. } | RunError::BadRunId(_) | RunError::MissingInputs { .. })) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_INVALID)
                }
                Err(e) if e.is_cancellation() => ExitCode::from(EXIT_INTERRUPTED),
                Err(e) => {
                    // The message already carries its cause.
                    eprintln!("error: {}", p.redactor.redact(&e.to_string()));
                    ExitCode::from(EXIT_FAILED)
                }
            });
        }
        Command::Stages { kind } => {
            let kinds: Vec<_> = registry.kinds().filter(|k| kind.as_deref().is_none_or(|n| n == k.name)).collect();
            if kinds.is_empty() {
                let known: Vec<&str> = registry.names().collect();
                eprintln!("error: no stage kind `{}`; known kinds: {}", kind.unwrap_or_default(), known.join(", "));
                return Ok(ExitCode::from(EXIT_INVALID));
            }
            for k in kinds {
                print!("{}", describe_kind(k));
            }
        }
        Command::Show { path, store, rows } => {
            let store = Store::open(&store)?;
            let bytes = store.get(&path)?;
            let batches = read_parquet(&path, bytes)?;
            let total: usize = batches.iter().map(|b| b.num_rows()).sum();
            if let Some(first) = batches.first() {
                println!("{path}: {total} rows");
                for field in first.schema().fields() {
                    println!(
                        "  {}: {}{}",
                        field.name(),
                        field.data_type(),
                        if field.is_nullable() { " (nullable)" } else { "" }
                    );
                }
            }
            let mut head = Vec::new();
            let mut left = rows;
            for b in &batches {
                if left == 0 {
                    break;
                }
                let take = left.min(b.num_rows());
                head.push(b.slice(0, take));
                left -= take;
            }
            println!("{}", applearner_pipeline::arrow::util::pretty::pretty_format_batches(&head)?);
        }
        Command::Predict { model, input, horizon, output, device } => {
            predict(&model, &input, horizon, output.as_deref(), &device)?;
        }
        Command::Runs { store } => {
            let store = Store::open(&store)?;
            let runs = run::list_runs(&store)?;
            if runs.is_empty() {
                println!("no runs in {}", store.url());
            }
            for m in runs {
                let status = match m.status {
                    RunStatus::Succeeded => "succeeded",
                    RunStatus::Failed => "failed",
                    RunStatus::Cancelled => "cancelled",
                };
                let ran = m.stages.iter().filter(|s| s.status == run::Status::Ran).count();
                println!(
                    "{}  {:<10} {:<20} {} stages ({} ran, {} cached)  {}",
                    m.run_id,
                    status,
                    m.pipeline,
                    m.stages.len(),
                    ran,
                    m.stages.len() - ran,
                    m.started_at
                );
            }
        }
        Command::Verify { run_id, store } => {
            let store = Store::open(&store)?;
            let (checked, problems) = run::verify(&store, &run_id)?;
            for p in &problems {
                eprintln!("error: {p}");
            }
            if !problems.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
            println!("run {run_id}: {checked} artifacts match their manifest");
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "applearner", &mut std::io::stdout());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    text.split_once('/')
        .and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)))
        .filter(|&(i, n)| i < n)
        .ok_or_else(|| format!("`{text}` is not I/N with 0 <= I < N, e.g. 0/4"))
}

/// The user documentation of a stage kind, from its parameter struct's JSON schema (whose
/// descriptions are the doc comments of the struct and its fields).
fn describe_kind(kind: &applearner_pipeline::stage::StageKind) -> String {
    let mut out = format!("{}\n", kind.name);
    for line in kind.description().lines() {
        out.push_str(&format!("    {line}\n"));
    }
    out.push_str("  parameters:\n");
    let schema = kind.schema.as_value();
    describe_properties(schema, schema.get("$defs"), "    ", &mut out);
    out.push('\n');
    out
}

fn describe_properties(schema: &serde_json::Value, defs: Option<&serde_json::Value>, indent: &str, out: &mut String) {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else { return };
    for (name, prop) in props {
        let target = resolve(prop, defs);
        let default = match prop.get("default") {
            Some(serde_json::Value::Null) => String::new(),
            Some(d) => format!(" = {d}"),
            None if required.contains(&name.as_str()) => " (required)".to_string(),
            None => String::new(),
        };
        out.push_str(&format!("{indent}{name}: {}{default}\n", type_name(target, defs)));
        let description = prop.get("description").or_else(|| target.get("description")).and_then(|d| d.as_str());
        for line in description.unwrap_or_default().lines() {
            out.push_str(&format!("{indent}    {line}\n"));
        }
        describe_properties(target, defs, &format!("{indent}    "), out);
        describe_variants(target, defs, &format!("{indent}    "), out);
    }
}

/// The choices of a tagged enum (`{kind: lstm, …}`): each kind, what it is, its fields.
fn describe_variants(schema: &serde_json::Value, defs: Option<&serde_json::Value>, indent: &str, out: &mut String) {
    let Some(variants) = schema.get("oneOf").and_then(|v| v.as_array()) else { return };
    for variant in variants {
        let Some(kind) = variant.pointer("/properties/kind/const").and_then(|k| k.as_str()) else { continue };
        out.push_str(&format!("{indent}kind: {kind}\n"));
        for line in variant.get("description").and_then(|d| d.as_str()).unwrap_or_default().lines() {
            out.push_str(&format!("{indent}    {line}\n"));
        }
        let mut fields = variant.clone();
        if let Some(props) = fields.get_mut("properties").and_then(|p| p.as_object_mut()) {
            props.remove("kind");
        }
        describe_properties(&fields, defs, &format!("{indent}    "), out);
    }
}

/// Follows `$ref` and unwraps `Option` (`anyOf: [T, null]`) to the schema that says what a
/// value is.
fn resolve<'a>(prop: &'a serde_json::Value, defs: Option<&'a serde_json::Value>) -> &'a serde_json::Value {
    if let Some(r) = prop.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap_or(r);
        if let Some(def) = defs.and_then(|d| d.get(name)) {
            return resolve(def, defs);
        }
    }
    if let Some(any) = prop.get("anyOf").and_then(|a| a.as_array()) {
        let non_null: Vec<&serde_json::Value> =
            any.iter().filter(|v| v.get("type").is_none_or(|t| t != "null")).collect();
        if let [one] = non_null[..] {
            return resolve(one, defs);
        }
    }
    prop
}

fn type_name(prop: &serde_json::Value, defs: Option<&serde_json::Value>) -> String {
    let prop = resolve(prop, defs);
    if let Some(values) = prop.get("enum").and_then(|e| e.as_array()) {
        return values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" | ");
    }
    if let Some(variants) = prop.get("oneOf").and_then(|e| e.as_array()) {
        let names: Vec<String> = variants
            .iter()
            .filter_map(|v| {
                v.get("const")
                    .or_else(|| v.get("enum").and_then(|e| e.get(0)))
                    .or_else(|| v.pointer("/properties/kind/const"))
            })
            .map(|v| v.to_string())
            .collect();
        if !names.is_empty() {
            return names.join(" | ");
        }
    }
    match prop.get("type") {
        Some(serde_json::Value::String(t)) if t == "array" => {
            format!("list of {}", prop.get("items").map(|i| type_name(i, defs)).unwrap_or_else(|| "values".into()))
        }
        Some(serde_json::Value::String(t)) if t == "object" && prop.get("properties").is_some() => "mapping".into(),
        Some(serde_json::Value::String(t)) if t == "object" => match prop.get("additionalProperties") {
            Some(values) if values.is_object() => format!("map of {}", type_name(values, defs)),
            _ => "mapping".into(),
        },
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(serde_json::Value::Array(ts)) => {
            ts.iter().filter_map(|t| t.as_str()).filter(|t| *t != "null").collect::<Vec<_>>().join(" | ")
        }
        _ => "value".to_string(),
    }
}

fn predict(
    model: &std::path::Path,
    input: &std::path::Path,
    horizon: Option<usize>,
    output: Option<&std::path::Path>,
    device: &str,
) -> anyhow::Result<()> {
    use applearner_train::card::Saved;
    let saved = Saved::read(model)?;
    let device = applearner_train::device::resolve(device)?;
    let read = |path: &std::path::Path| -> anyhow::Result<Vec<applearner_pipeline::arrow::array::RecordBatch>> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(read_parquet(&path.display().to_string(), bytes.into())?)
    };
    let (features, scalers) = if input.is_dir() {
        let scalers = input.join("scalers.parquet");
        (read(&input.join("features.parquet"))?, scalers.exists().then_some(scalers))
    } else {
        (read(input)?, None)
    };
    let scalers = match scalers {
        Some(path) => {
            Some(applearner_train::card::read_scalers(&read(&path)?, &saved.card.blueprint.targets).map_err(boxed)?)
        }
        None => None,
    };
    let forecast = applearner_train::predict::predict(model, &saved, &features, scalers, horizon, device)
        .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    let extension = output.and_then(|o| o.extension()).and_then(|e| e.to_str()).unwrap_or("csv");
    let bytes = match extension {
        "parquet" => applearner_train::predict::to_parquet(&forecast).map_err(boxed)?,
        "json" => applearner_train::predict::to_json(&forecast).map_err(boxed)?,
        "csv" => applearner_train::predict::to_csv(&forecast).map_err(boxed)?,
        other => anyhow::bail!("--output: unknown format `.{other}`; use .parquet, .csv or .json"),
    };
    match output {
        Some(path) => {
            // Written whole under a temporary name, then renamed: never half a file.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut tmp, &bytes)?;
            tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(rows = forecast.num_rows(), path = %path.display(), "forecast written");
        }
        None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
    }
    Ok(())
}

/// Our stages' boxed errors, for anyhow.
fn boxed(e: applearner_pipeline::BoxError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}
