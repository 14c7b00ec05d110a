//! One module per command; [`execute`] dispatches.

mod config;
mod plan;
mod predict;
mod run;
mod store;

use std::process::ExitCode;

use anyhow::Context;
use applearner_pipeline::{Pipeline, Registry};
use clap::CommandFactory;

use crate::cli::{Cli, Command, EXIT_INVALID, Sets};

pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let registry = registry();
    match cli.command {
        Command::Validate { config, sets } => config::validate(&config, &sets, &registry),
        Command::Dag { config, format, sets } => config::dag(&config, format, &sets, &registry),
        Command::Export {
            to,
            config,
            sets,
            image,
            config_map,
            secret,
            namespace,
            retries,
            template,
            schedule,
            schedules,
            train_schedule,
            plan_schedule,
            apply,
        } => {
            let schedules = schedules.map(|model| applearner_pipeline::export::Schedules {
                model,
                train: train_schedule,
                plan: plan_schedule,
                apply,
            });
            let target =
                config::Target { image, config_map, secret, namespace, retries, template, schedule, schedules };
            config::export(to, &config, &sets, target, &registry)
        }
        Command::Run { config, sets, run_id, stage, until, from, force, jobs, shard } => {
            let what = run::What { run_id, stage, until, from, force, jobs, shard, quiet: cli.quiet };
            run::run(&config, &sets, what, &registry)
        }
        Command::Stages { kind } => stages(kind, &registry),
        Command::Show { path, store, rows } => store::show(&path, &store, rows),
        Command::Runs { store } => store::runs(&store),
        Command::Verify { run_id, store } => store::verify(&run_id, &store),
        Command::Plan { run_id, store, format, top, to } => plan::show(&run_id, &store, format, top, to.as_deref()),
        Command::Predict { model, input, horizon, output, device } => {
            predict::predict(&model, &input, horizon, output.as_deref(), &device)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "applearner", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    applearner_ingest::register(&mut registry);
    applearner_clean::register(&mut registry);
    applearner_features::register(&mut registry);
    applearner_train::register(&mut registry);
    applearner_evaluate::register(&mut registry);
    applearner_plan::register(&mut registry);
    applearner_report::register(&mut registry);
    registry
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

/// `applearner stages [KIND]`: every kind (or one) with its parameters.
fn stages(kind: Option<String>, registry: &Registry) -> anyhow::Result<ExitCode> {
    let kinds: Vec<_> = registry.kinds().filter(|k| kind.as_deref().is_none_or(|n| n == k.name)).collect();
    if kinds.is_empty() {
        let known: Vec<&str> = registry.names().collect();
        eprintln!("error: no stage kind `{}`; known kinds: {}", kind.unwrap_or_default(), known.join(", "));
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    for k in kinds {
        print!("{}", applearner_pipeline::docs::describe_kind(k));
    }
    Ok(ExitCode::SUCCESS)
}

/// Our stages' boxed errors, for anyhow.
fn boxed(e: applearner_pipeline::BoxError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}
