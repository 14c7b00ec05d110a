//! `applearner predict`: forecasts of every series in a features table from a trained model.

use std::process::ExitCode;

use anyhow::Context;
use applearner_pipeline::context::read_parquet;
use applearner_train::card::Saved;

use super::boxed;

pub fn predict(
    model: &std::path::Path,
    input: &std::path::Path,
    horizon: Option<usize>,
    output: Option<&std::path::Path>,
    device: &str,
) -> anyhow::Result<ExitCode> {
    let saved = Saved::read(model)?;
    let device = device.parse::<applearner_train::device::DeviceName>()?.resolve()?;
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
        Some(path) => Some(applearner_train::card::read_scalers(&read(&path)?, &saved.card.blueprint.targets)?),
        None => None,
    };
    let forecast = applearner_train::predict::predict(
        model,
        &saved,
        features.into_iter().map(Ok::<_, applearner_pipeline::BoxError>),
        scalers,
        horizon,
        device,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    let extension = output.and_then(|o| o.extension()).and_then(|e| e.to_str()).unwrap_or("csv");
    let bytes = match extension {
        "parquet" => applearner_pipeline::encode::to_parquet(&forecast).map_err(boxed)?,
        "json" => applearner_pipeline::encode::to_json(&forecast).map_err(boxed)?,
        "csv" => applearner_pipeline::encode::to_csv(&forecast).map_err(boxed)?,
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
    Ok(ExitCode::SUCCESS)
}
