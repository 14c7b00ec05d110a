//! Prometheus HTTP API answers: `/api/v1/query_range` (`matrix`) and `/api/v1/query`
//! (`vector`, `matrix`), with the `{"status","data"}` envelope or as the bare result array
//! that client libraries save.
//!
//! Answers are read as a stream: each series is handed on as soon as it is parsed, so a
//! file of any size needs memory for one series at a time (Prometheus caps a series of a
//! `query_range` answer at 11,000 points).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::IngestError;
use crate::series::{Parsed, RawSeries, Sink};

/// Prometheus writes values as strings: decimals, `NaN`, `+Inf`, `-Inf`.
pub fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

pub fn json_error(source: &str, e: serde_json::Error) -> IngestError {
    if e.is_io() {
        return IngestError::Io { origin: source.to_string(), error: e.into() };
    }
    let message = e.to_string();
    let message = message.split(" at line ").next().unwrap_or_default().to_string();
    IngestError::Json { origin: source.to_string(), line: e.line(), column: e.column(), message }
}

/// Parses one answer held in memory (a live server's reply).
pub fn parse(source: &str, bytes: &[u8], fallback_metric: Option<&str>) -> Result<Parsed, IngestError> {
    let mut series = Vec::new();
    let warnings = parse_stream(source, bytes, fallback_metric, &mut |s| {
        series.push(s);
        Ok(())
    })?;
    Ok(Parsed { series, warnings })
}

/// Parses one answer from `input`, handing each series to `sink`; returns Prometheus'
/// warnings. `source` names the file or URL in errors; `fallback_metric` names series
/// without `__name__` (results of `rate(…)` or `sum(…)`).
pub fn parse_stream(
    source: &str,
    mut input: impl Read,
    fallback_metric: Option<&str>,
    sink: Sink<'_>,
) -> Result<Vec<String>, IngestError> {
    // The first byte tells an envelope from a bare array from something else (an HTML page).
    let mut head = Vec::new();
    (&mut input).take(4096).read_to_end(&mut head).map_err(|error| IngestError::Io { origin: source.into(), error })?;
    let first = head.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first != Some(b'[') && first != Some(b'{') {
        let start = String::from_utf8_lossy(&head[..head.len().min(60)]).replace('\n', " ");
        return Err(IngestError::NotJson { origin: source.to_string(), start });
    }
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(
        1 << 16,
        std::io::Cursor::new(head).chain(input),
    ));
    // A sink's own error (a full disk, a cancelled run) cannot travel through serde: it
    // waits here and replaces the generic error serde reports.
    let mut state = State { source, fallback_metric, sink, failed: None };
    let outcome = match first {
        Some(b'[') => SeriesList(&mut state).deserialize(&mut de).map(|()| Outcome::default()),
        _ => EnvelopeSeed(&mut state).deserialize(&mut de),
    }
    .and_then(|o| de.end().map(|()| o));
    let outcome = match (outcome, state.failed) {
        (_, Some(e)) => return Err(e),
        (Err(e), None) => return Err(json_error(source, e)),
        (Ok(o), None) => o,
    };
    if first == Some(b'[') {
        return Ok(Vec::new());
    }
    if outcome.status.as_deref() != Some("success") {
        return Err(IngestError::Prometheus {
            origin: source.to_string(),
            error_type: outcome.error_type.unwrap_or_else(|| "unknown".into()),
            error: outcome.error.unwrap_or_default(),
        });
    }
    let bad =
        |message: &str| IngestError::Json { origin: source.to_string(), line: 1, column: 1, message: message.into() };
    match outcome.result_type.as_deref() {
        None => Err(bad("a successful answer without `data`")),
        Some("matrix" | "vector") => {
            Ok(outcome.warnings.into_iter().map(|w| format!("{source}: Prometheus warns: {w}")).collect())
        }
        Some(other) => Err(IngestError::ResultType { origin: source.to_string(), result_type: other.into() }),
    }
}

struct State<'a, 'b> {
    source: &'a str,
    fallback_metric: Option<&'a str>,
    sink: Sink<'b>,
    failed: Option<IngestError>,
}

impl State<'_, '_> {
    fn emit<E: de::Error>(&mut self, series: SeriesJson) -> Result<(), E> {
        let SeriesJson { metric: mut labels, mut points } = series;
        let metric = match (labels.remove("__name__"), self.fallback_metric) {
            (Some(m), _) => m,
            (None, Some(m)) => m.to_string(),
            (None, None) => {
                return Err(self.fail(IngestError::Sample {
                    origin: self.source.to_string(),
                    labels: format!("{labels:?}"),
                    message: "has no `__name__`; set `metric:` to name such series".into(),
                }));
            }
        };
        points.shrink_to_fit();
        (self.sink)(RawSeries { metric, labels, points }).map_err(|e| self.fail(e))
    }

    fn fail<E: de::Error>(&mut self, e: IngestError) -> E {
        let message = e.to_string();
        self.failed = Some(e);
        E::custom(message)
    }
}

/// What the envelope says besides its series.
#[derive(Default)]
struct Outcome {
    status: Option<String>,
    result_type: Option<String>,
    error_type: Option<String>,
    error: Option<String>,
    warnings: Vec<String>,
}

struct EnvelopeSeed<'s, 'a, 'b>(&'s mut State<'a, 'b>);

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_, '_, '_> {
    type Value = Outcome;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Outcome, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_, '_, '_> {
    type Value = Outcome;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Prometheus API answer")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outcome, A::Error> {
        let mut outcome = Outcome::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "status" => outcome.status = Some(map.next_value()?),
                "errorType" => outcome.error_type = map.next_value()?,
                "error" => outcome.error = map.next_value()?,
                "warnings" => outcome.warnings = map.next_value::<Option<_>>()?.unwrap_or_default(),
                "data" => outcome.result_type = map.next_value_seed(DataSeed(self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(outcome)
    }
}

/// `data`: its `resultType` and its `result`, each series handed on as it is read.
struct DataSeed<'s, 'a, 'b>(&'s mut State<'a, 'b>);

impl<'de> DeserializeSeed<'de> for DataSeed<'_, '_, '_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_, '_, '_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with `resultType` and `result`")
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut result_type: Option<String> = None;
        let mut has_result = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "resultType" => result_type = Some(map.next_value()?),
                // A scalar or string result is not a list of series; its type is named below.
                "result" if result_type.as_deref().is_some_and(|t| t != "matrix" && t != "vector") => {
                    map.next_value::<IgnoredAny>()?;
                }
                "result" => {
                    map.next_value_seed(SeriesList(self.0))?;
                    has_result = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (result_type, has_result) {
            (Some(t), true) => Ok(Some(t)),
            (Some(t), false) if t != "matrix" && t != "vector" => Ok(Some(t)),
            (None, _) => Err(de::Error::missing_field("resultType")),
            (Some(_), false) => Err(de::Error::missing_field("result")),
        }
    }
}

/// A list of series, each handed to the sink as soon as it is complete.
struct SeriesList<'s, 'a, 'b>(&'s mut State<'a, 'b>);

impl<'de> DeserializeSeed<'de> for SeriesList<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SeriesList<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of series")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(series) = seq.next_element::<SeriesJson>()? {
            self.0.emit(series)?;
        }
        Ok(())
    }
}

/// One series: `values` (a matrix) and/or `value` (a vector) gathered into `points`.
struct SeriesJson {
    metric: BTreeMap<String, String>,
    points: Vec<(i64, f64)>,
}

impl<'de> Deserialize<'de> for SeriesJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SeriesJson;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a series with `metric` and `values` or `value`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SeriesJson, A::Error> {
                let mut metric = None;
                let mut points = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "metric" => metric = Some(map.next_value()?),
                        "values" => points.extend(map.next_value::<Vec<Point>>()?.into_iter().map(|p| p.0)),
                        "value" => points.extend(map.next_value::<Option<Point>>()?.map(|p| p.0)),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let metric = metric.ok_or_else(|| de::Error::missing_field("metric"))?;
                Ok(SeriesJson { metric, points })
            }
        }
        d.deserialize_map(V)
    }
}

/// `[<unix seconds>, "<value>"]` as (Unix milliseconds, value). The value string is parsed
/// where it lies in the reader's buffer: no allocation per sample.
struct Point((i64, f64));

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Point;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sample `[<unix seconds>, \"<value>\"]`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Point, A::Error> {
                let t: f64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let value = seq.next_element_seed(ValueAt(t))?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                Ok(Point(((t * 1000.0).round() as i64, value)))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A sample's value string at time `.0`.
struct ValueAt(f64);

impl<'de> DeserializeSeed<'de> for ValueAt {
    type Value = f64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ValueAt {
    type Value = f64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value as a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        parse_value(v).ok_or_else(|| E::custom(format!("value `{v}` at {} is not a number", self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Parsed, IngestError> {
        parse("answer.json", text.as_bytes(), None)
    }

    #[test]
    fn enveloped_matrix_with_special_values_and_warnings() {
        let p = parse_text(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"m","pod":"p"},"values":[[2,"NaN"],[1,"+Inf"],[3,"-Inf"],[4.5,"1.5e3"]]}]},
            "warnings":["slow"]}"#,
        )
        .unwrap();
        let s = &p.series[0];
        assert_eq!(s.metric, "m");
        assert_eq!(s.labels, BTreeMap::from([("pod".to_string(), "p".to_string())]));
        assert!(s.points[0].1.is_nan());
        assert_eq!(&s.points[1..], &[(1000, f64::INFINITY), (3000, f64::NEG_INFINITY), (4500, 1500.0)]);
        assert_eq!(p.warnings, vec!["answer.json: Prometheus warns: slow"]);
    }

    #[test]
    fn bare_vectors_and_empty_results() {
        let p = parse_text(r#"[{"metric":{"__name__":"m"},"value":[1661256000.5,"2"]}]"#).unwrap();
        assert_eq!(p.series[0].points, vec![(1661256000500, 2.0)]);
        let p = parse_text(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#).unwrap();
        assert!(p.series.is_empty());
    }

    #[test]
    fn prometheus_errors_are_reported_with_their_type() {
        let err =
            parse_text(r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#).unwrap_err();
        assert_eq!(err.to_string(), "answer.json: Prometheus answered `bad_data`: parse error at char 3");
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err =
            parse_text("{\"status\":\"success\",\n\"data\": {\"resultType\": \"matrix\", \"result\": [}}").unwrap_err();
        assert!(err.to_string().starts_with("answer.json: line 2, column 45: expected value"), "{err}");
    }

    #[test]
    fn an_html_error_page_is_named_as_such() {
        let err = parse_text("<html><body>502 Bad Gateway</body></html>").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("is not a Prometheus API answer") && text.contains("<html><body>502"), "{text}");
    }

    #[test]
    fn wrong_result_types_and_values_are_refused() {
        let err = parse_text(r#"{"status":"success","data":{"resultType":"scalar","result":[]}}"#);
        assert!(err.is_err());
        let err = parse_text(r#"{"status":"success","data":{"resultType":"scalar","result":[1, "2"]}}"#).unwrap_err();
        assert!(err.to_string().contains("answer.json: unsupported resultType `scalar`"), "{err}");
        let err = parse_text(r#"{"status":"success","data":{"result":[1, "2"],"resultType":"scalar"}}"#).unwrap_err();
        assert!(err.to_string().contains("answer.json: line 1"), "{err}");
        let err = parse_text(r#"[{"metric":{"__name__":"m"},"values":[[1,"x"]]}]"#).unwrap_err();
        assert!(err.to_string().contains("value `x` at 1 is not a number"), "{err}");
    }
}
