//! The original AppLearner dump format: one JSON object per metric file (`container_cpu`,
//! `container_mem` or `node_mem` in the file name), keyed `"<container>, <namespace>,
//! <node>, <pod>"`, each value a list of `{"start", "stop", "data"}` segments at 1-minute
//! spacing, times in UTC as `YYYY-MM-DD HH:MM:SS`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use chrono::NaiveDateTime;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::IngestError;
use crate::answer::json_error;
use crate::series::{Parsed, RawSeries, Sink};

const STEP_MS: i64 = 60_000;

/// Metric names of the legacy files, from their file names.
pub const METRICS: [&str; 3] = ["container_cpu", "container_mem", "node_mem"];

#[derive(Deserialize)]
struct Segment {
    start: String,
    stop: String,
    data: Vec<Option<f64>>,
}

fn parse_time(source: &str, key: &str, text: &str) -> Result<i64, IngestError> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").map(|t| t.and_utc().timestamp_millis()).map_err(|e| {
        IngestError::Sample {
            origin: source.to_string(),
            labels: key.to_string(),
            message: format!("time `{text}` is not `YYYY-MM-DD HH:MM:SS` ({e})"),
        }
    })
}

/// Parses one legacy file held in memory.
pub fn parse(source: &str, bytes: &[u8]) -> Result<Parsed, IngestError> {
    let mut series = Vec::new();
    let warnings = parse_stream(source, bytes, &mut |s| {
        series.push(s);
        Ok(())
    })?;
    Ok(Parsed { series, warnings })
}

/// Parses one legacy file from `input`, handing each key's series to `sink` as soon as its
/// segments are read; returns the warnings. Segments whose `stop` is not `start + (len - 1)`
/// minutes are reported as warnings; their samples are placed from `start`, as the original
/// did.
pub fn parse_stream(source: &str, input: impl Read, sink: Sink<'_>) -> Result<Vec<String>, IngestError> {
    let file_name = source.rsplit('/').next().unwrap_or(source);
    let metric = METRICS
        .iter()
        .find(|m| file_name.contains(*m))
        .ok_or_else(|| IngestError::LegacyName { origin: source.to_string() })?;
    let mut state = State { source, metric, sink, warnings: Vec::new(), failed: None };
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, input));
    let outcome = (&mut de).deserialize_map(&mut state).and_then(|()| de.end());
    match (outcome, state.failed) {
        (_, Some(e)) => Err(e),
        (Err(e), None) => Err(json_error(source, e)),
        (Ok(()), None) => Ok(state.warnings),
    }
}

struct State<'a, 'b> {
    source: &'a str,
    metric: &'a str,
    sink: Sink<'b>,
    warnings: Vec<String>,
    /// The sink's or a key's own error, which replaces the generic one serde reports.
    failed: Option<IngestError>,
}

impl<'de> Visitor<'de> for &mut State<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of `\"<container>, <namespace>, <node>, <pod>\": [segments]`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            let segments: Vec<Segment> = map.next_value()?;
            let series = self.series(&key, &segments).and_then(|s| (self.sink)(s));
            if let Err(e) = series {
                let message = e.to_string();
                self.failed = Some(e);
                return Err(de::Error::custom(message));
            }
        }
        Ok(())
    }
}

impl State<'_, '_> {
    fn series(&mut self, key: &str, segments: &[Segment]) -> Result<RawSeries, IngestError> {
        let source = self.source;
        let parts: Vec<&str> = key.split(", ").collect();
        let [container, namespace, node, pod] = parts[..] else {
            return Err(IngestError::Sample {
                origin: source.to_string(),
                labels: key.to_string(),
                message: "a key is `<container>, <namespace>, <node>, <pod>`".into(),
            });
        };
        let labels: BTreeMap<String, String> =
            [("container", container), ("namespace", namespace), ("node", node), ("pod", pod)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let mut points = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            let start = parse_time(source, key, &seg.start)?;
            let stop = parse_time(source, key, &seg.stop)?;
            let expected = start + (seg.data.len() as i64 - 1) * STEP_MS;
            if stop != expected {
                self.warnings.push(format!(
                    "{source}: `{key}` segment {i} starts {} with {} values, so it should stop {}, but says {}",
                    seg.start,
                    seg.data.len(),
                    chrono::DateTime::from_timestamp_millis(expected)
                        .map_or(String::new(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
                    seg.stop
                ));
            }
            points
                .extend(seg.data.iter().enumerate().map(|(j, v)| (start + j as i64 * STEP_MS, v.unwrap_or(f64::NAN))));
        }
        Ok(RawSeries { metric: self.metric.to_string(), labels, points })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_become_minute_samples_and_bad_stops_are_reported() {
        let text = r#"{"web, shop, n1, web-7d4b9c-abcde": [
            {"start": "2022-08-23 12:00:00", "stop": "2022-08-23 12:02:00", "data": [1.0, 2.0, null]},
            {"start": "2022-08-23 13:00:00", "stop": "2022-08-23 13:05:00", "data": [4.0]}]}"#;
        let p = parse("dumps/container_cpu.json", text.as_bytes()).unwrap();
        let s = &p.series[0];
        assert_eq!(s.metric, "container_cpu");
        assert_eq!(s.labels["pod"], "web-7d4b9c-abcde");
        assert_eq!(s.labels["container"], "web");
        let t0 = 1661256000000;
        assert_eq!(&s.points[..2], &[(t0, 1.0), (t0 + 60_000, 2.0)]);
        assert!(s.points[2].1.is_nan());
        assert_eq!(s.points[3], (t0 + 3_600_000, 4.0));
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("segment 1 starts 2022-08-23 13:00:00 with 1 values, so it should stop 2022-08-23 13:00:00, but says 2022-08-23 13:05:00"), "{}", p.warnings[0]);
    }

    #[test]
    fn file_names_and_keys_are_checked() {
        let err = parse("x/cpu.json", b"{}").unwrap_err();
        assert!(err.to_string().contains("container_cpu"), "{err}");
        let err = parse("x/container_mem.json", br#"{"a, b": []}"#).unwrap_err();
        assert!(err.to_string().contains("<container>, <namespace>, <node>, <pod>"), "{err}");
    }
}
