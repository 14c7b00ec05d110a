//! Typed parameter values, parsed once when the config is read: a bad one is an error at
//! its file:line:column with the fix, and stages get numbers, not strings to re-parse.
//! Each serializes back to the text the config gave, so resolved parameters (and with them
//! cache keys and lock files) read as the user wrote them.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::stage::{parse_duration, parse_quantity};

/// A positive duration: `30s`, `5m`, `1h`, `1h30m`, `7d`, `1w`, `250ms` (a bare number is seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duration {
    text: String,
    ms: i64,
}

impl Duration {
    pub fn ms(&self) -> i64 {
        self.ms
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match parse_duration(text) {
            Some(ms) => Ok(Duration { text: text.to_string(), ms }),
            None => Err(format!(
                "`{text}` is not a duration; use a positive number with ms, s, m, h, d or w, such as 30s, 5m, 1h or 1h30m"
            )),
        }
    }
}

/// A Kubernetes quantity: `250m`, `2` (cores), `64Mi`, `1G` (bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    text: String,
    value: f64,
}

impl Quantity {
    /// Cores for CPU, bytes for memory.
    pub fn value(&self) -> f64 {
        self.value
    }
}

impl std::str::FromStr for Quantity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match parse_quantity(text) {
            Some(value) => Ok(Quantity { text: text.to_string(), value }),
            None => Err(format!(
                "`{text}` is not a Kubernetes quantity; use cores such as 250m or 2, bytes such as 64Mi or 1G"
            )),
        }
    }
}

/// What a plan sizes from: the model's point forecast or one of its quantiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantileSource {
    Point,
    /// A percentile, 1–99: `p90`.
    Percentile(u32),
}

impl QuantileSource {
    /// The column of the forecasts table it reads.
    pub fn column(self) -> String {
        match self {
            QuantileSource::Point => "forecast".to_string(),
            QuantileSource::Percentile(p) => format!("p{p}"),
        }
    }
}

impl std::str::FromStr for QuantileSource {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "point" => Ok(QuantileSource::Point),
            _ => text
                .strip_prefix('p')
                .and_then(|n| n.parse().ok())
                .filter(|n| (1..100).contains(n))
                .map(QuantileSource::Percentile)
                .ok_or_else(|| {
                    format!("`{text}` is neither `point` nor a quantile; use point or p50…p99, such as p90")
                }),
        }
    }
}

impl fmt::Display for QuantileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantileSource::Point => f.write_str("point"),
            QuantileSource::Percentile(p) => write!(f, "p{p}"),
        }
    }
}

impl Serialize for QuantileSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for QuantileSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for QuantileSource {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "QuantileSource".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "description": "`point` or a forecast quantile such as p90", "pattern": "^(point|p[1-9][0-9]?)$" })
    }
}

/// A share of time a user accepts above a line: `1%`, `0.01%`; above 0 and below 100 %.
#[derive(Debug, Clone, PartialEq)]
pub struct Risk {
    text: String,
    fraction: f64,
}

impl Risk {
    /// As a fraction: `1%` is 0.01.
    pub fn fraction(&self) -> f64 {
        self.fraction
    }
}

impl std::str::FromStr for Risk {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let percent = text.trim().strip_suffix('%').and_then(|p| p.trim().parse::<f64>().ok());
        match percent {
            Some(p) if p > 0.0 && p < 100.0 => Ok(Risk { text: text.to_string(), fraction: p / 100.0 }),
            Some(_) => Err(format!(
                "`{text}`: a risk must be above 0 and below 100 % (0 asks for infinite headroom); e.g. 1% or 0.01%"
            )),
            None => Err(format!(
                "`{text}` is not a risk; write the share of time accepted above the line, such as 1% or 0.01%"
            )),
        }
    }
}

/// Serde, schema and display for a value kept with its text.
macro_rules! text_value {
    ($type:ty, $name:literal, $description:literal) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.text)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $type {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "description": $description })
            }
        }
    };
}

text_value!(Duration, "Duration", "a duration such as 30s, 5m, 1h or 7d");
text_value!(Quantity, "Quantity", "a Kubernetes quantity such as 250m, 2, 64Mi or 1G");
text_value!(Risk, "Risk", "a share of time above a line, such as 1% or 0.01%");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_keep_their_text_and_refuse_nonsense_clearly() {
        let d: Duration = "1.5h".parse().unwrap();
        assert_eq!((d.ms(), d.to_string()), (5_400_000, "1.5h".to_string()));
        assert_eq!(serde_json::to_value(&d).unwrap(), "1.5h");
        assert!("0s".parse::<Duration>().unwrap_err().contains("such as 30s"));
        let q: Quantity = "64Mi".parse().unwrap();
        assert_eq!(q.value(), 64.0 * 1024.0 * 1024.0);
        assert!("lots".parse::<Quantity>().unwrap_err().contains("Kubernetes quantity"));
        assert_eq!("p90".parse::<QuantileSource>().unwrap().column(), "p90");
        assert_eq!("point".parse::<QuantileSource>().unwrap().column(), "forecast");
        let r: Risk = "0.01%".parse().unwrap();
        assert_eq!((r.fraction(), r.to_string()), (0.0001, "0.01%".to_string()));
        assert!("0%".parse::<Risk>().unwrap_err().contains("above 0 and below 100"));
        assert!("100%".parse::<Risk>().unwrap_err().contains("above 0 and below 100"));
        assert!("0.01".parse::<Risk>().unwrap_err().contains("such as 1%"));
        for bad in ["p0", "p100", "median", "P90"] {
            assert!(bad.parse::<QuantileSource>().is_err(), "{bad}");
        }
    }
}
