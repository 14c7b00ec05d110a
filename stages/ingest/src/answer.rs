//! Prometheus HTTP API answers: `/api/v1/query_range` (`matrix`) and `/api/v1/query`
//! (`vector`, `matrix`), with the `{"status","data"}` envelope or as the bare result array
//! that client libraries save.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::IngestError;
use crate::series::{Parsed, RawSeries};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    status: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<Data<'a>>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    result_type: Cow<'a, str>,
    #[serde(borrow)]
    result: Vec<SeriesJson<'a>>,
}

#[derive(Deserialize)]
struct SeriesJson<'a> {
    metric: BTreeMap<String, String>,
    // Values are strings without escapes: borrowing them avoids an allocation per sample.
    #[serde(default, borrow)]
    values: Vec<(f64, Cow<'a, str>)>,
    #[serde(default, borrow)]
    value: Option<(f64, Cow<'a, str>)>,
}

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
    let message = e.to_string();
    let message = message.split(" at line ").next().unwrap_or_default().to_string();
    IngestError::Json { origin: source.to_string(), line: e.line(), column: e.column(), message }
}

/// Parses one answer. `source` names the file or URL in errors; `fallback_metric` names
/// series without `__name__` (results of `rate(…)` or `sum(…)`).
pub fn parse(source: &str, bytes: &[u8], fallback_metric: Option<&str>) -> Result<Parsed, IngestError> {
    let mut parsed = Parsed::default();
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let result = match first {
        Some(b'[') => serde_json::from_slice::<Vec<SeriesJson>>(bytes).map_err(|e| json_error(source, e))?,
        Some(b'{') => {
            let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| json_error(source, e))?;
            if envelope.status != "success" {
                return Err(IngestError::Prometheus {
                    origin: source.to_string(),
                    error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
                    error: envelope.error.unwrap_or_default(),
                });
            }
            parsed.warnings.extend(envelope.warnings.into_iter().map(|w| format!("{source}: Prometheus warns: {w}")));
            let data = envelope.data.ok_or_else(|| IngestError::Json {
                origin: source.to_string(),
                line: 1,
                column: 1,
                message: "a successful answer without `data`".into(),
            })?;
            if data.result_type != "matrix" && data.result_type != "vector" {
                return Err(IngestError::ResultType {
                    origin: source.to_string(),
                    result_type: data.result_type.into(),
                });
            }
            data.result
        }
        _ => {
            let start = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).replace('\n', " ");
            return Err(IngestError::NotJson { origin: source.to_string(), start });
        }
    };
    for s in result {
        let mut labels = s.metric;
        let metric = match (labels.remove("__name__"), fallback_metric) {
            (Some(m), _) => m,
            (None, Some(m)) => m.to_string(),
            (None, None) => {
                return Err(IngestError::Sample {
                    origin: source.to_string(),
                    labels: format!("{labels:?}"),
                    message: "has no `__name__`; set `metric:` to name such series".into(),
                });
            }
        };
        let mut points = Vec::with_capacity(s.values.len() + 1);
        for (t, v) in s.values.iter().chain(s.value.iter()) {
            let value = parse_value(v).ok_or_else(|| IngestError::Sample {
                origin: source.to_string(),
                labels: format!("{labels:?}"),
                message: format!("value `{v}` at {t} is not a number"),
            })?;
            points.push(((t * 1000.0).round() as i64, value));
        }
        parsed.series.push(RawSeries { metric, labels, points });
    }
    Ok(parsed)
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
        assert!(err.to_string().contains("answer.json: line 1"), "{err}");
        let err = parse_text(r#"[{"metric":{"__name__":"m"},"values":[[1,"x"]]}]"#).unwrap_err();
        assert!(err.to_string().contains("value `x` at 1 is not a number"), "{err}");
    }
}
