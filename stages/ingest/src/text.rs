//! Text formats with timestamps: `promtool tsdb dump` output (`{__name__="m", a="b"} 1.5
//! 1661140279000`), the Prometheus text exposition (`m{a="b"} 1.5 1661140279000`, times in
//! milliseconds) and OpenMetrics (ending in `# EOF`, times in seconds).

use std::collections::{BTreeMap, HashMap};

use crate::IngestError;
use crate::answer::parse_value;
use crate::series::{Parsed, RawSeries};

pub fn parse(source: &str, bytes: &[u8]) -> Result<Parsed, IngestError> {
    let text = std::str::from_utf8(bytes).map_err(|e| IngestError::Text {
        origin: source.to_string(),
        line: bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1,
        message: "the file is not UTF-8".into(),
    })?;
    let openmetrics = text.trim_end().ends_with("# EOF");
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut series: Vec<RawSeries> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |message: String| IngestError::Text { origin: source.to_string(), line: n + 1, message };
        let (key, rest) = split_series(line).map_err(fail)?;
        let mut fields = rest.split_ascii_whitespace();
        let value = fields.next().ok_or_else(|| fail("a sample has no value".into()))?;
        let value = parse_value(value).ok_or_else(|| fail(format!("value `{value}` is not a number")))?;
        let t = fields.next().ok_or_else(|| {
            fail("a sample has no timestamp; samples without one (a live scrape) cannot be placed in time".into())
        })?;
        let ms = if openmetrics {
            t.parse::<f64>().ok().filter(|s| s.is_finite()).map(|s| (s * 1000.0).round() as i64)
        } else {
            t.parse::<i64>().ok()
        }
        .ok_or_else(|| {
            let unit = if openmetrics { "seconds (OpenMetrics)" } else { "integer milliseconds" };
            fail(format!("timestamp `{t}` is not {unit}"))
        })?;
        let i = match index.get(key) {
            Some(i) => *i,
            None => {
                let (metric, labels) = parse_series(key).map_err(fail)?;
                series.push(RawSeries { metric, labels, points: Vec::new() });
                index.insert(key, series.len() - 1);
                series.len() - 1
            }
        };
        series[i].points.push((ms, value));
    }
    Ok(Parsed { series, warnings: Vec::new() })
}

/// Splits `name{labels} rest` (or `{labels} rest`) into the series text and the rest.
fn split_series(line: &str) -> Result<(&str, &str), String> {
    match line.find(['{', ' ']) {
        Some(i) if line.as_bytes()[i] == b'{' => {
            let end = closing_brace(&line[i..]).ok_or("a label set is not closed with `}`")?;
            Ok((&line[..i + end + 1], &line[i + end + 1..]))
        }
        Some(i) => Ok((&line[..i], &line[i..])),
        None => Err("a sample line is `name{labels} value timestamp`".into()),
    }
}

/// The index of the `}` that closes the label set starting at `text[0] == '{'`, skipping
/// quoted values.
fn closing_brace(text: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_series(key: &str) -> Result<(String, BTreeMap<String, String>), String> {
    let (name, block) = match key.find('{') {
        Some(i) => (&key[..i], &key[i + 1..key.len() - 1]),
        None => (key, ""),
    };
    let mut labels = BTreeMap::new();
    let mut rest = block.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| format!("label `{rest}` has no `=`"))?;
        let label = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let quoted = after.strip_prefix('"').ok_or_else(|| format!("the value of label `{label}` is not quoted"))?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("the value of label `{label}` ends in `\\`")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(format!("the value of label `{label}` is not closed")),
            }
        };
        labels.insert(label.to_string(), value);
        rest = quoted[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    let metric = match labels.remove("__name__") {
        Some(n) if name.is_empty() => n,
        _ if !name.is_empty() => name.to_string(),
        _ => return Err("the series has neither a name nor `__name__`".into()),
    };
    Ok((metric, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promtool_dump_lines() {
        let text = "{__name__=\"mem\", container=\"cart\", pod=\"cart-1\"} 3.5033088e+07 1661140279000\n\
                    {__name__=\"mem\", container=\"cart\", pod=\"cart-1\"} NaN 1661140339000\n";
        let p = parse("dump.txt", text.as_bytes()).unwrap();
        assert_eq!(p.series.len(), 1);
        let s = &p.series[0];
        assert_eq!(s.metric, "mem");
        assert_eq!(s.labels["pod"], "cart-1");
        assert_eq!(s.points[0], (1661140279000, 35033088.0));
        assert!(s.points[1].1.is_nan());
    }

    #[test]
    fn openmetrics_times_are_seconds_and_odd_label_values_survive() {
        let text = "# HELP cpu usage\n# TYPE cpu gauge\ncpu{pod=\"a,b}c\",path=\"C:\\\\x \\\"q\\\"\\n\"} +Inf 1661140279.5\n# EOF\n";
        let p = parse("om.txt", text.as_bytes()).unwrap();
        let s = &p.series[0];
        assert_eq!(s.labels["pod"], "a,b}c");
        assert_eq!(s.labels["path"], "C:\\x \"q\"\n");
        assert_eq!(s.points, vec![(1661140279500, f64::INFINITY)]);
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("x.txt", b"# ok\nm{a=\"1\"} 1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.txt:2: a sample has no timestamp; samples without one (a live scrape) cannot be placed in time"
        );
        let err = parse("x.txt", b"m{a=\"1} 1 2\n").unwrap_err();
        assert!(err.to_string().starts_with("x.txt:1: "), "{err}");
        let err = parse("x.txt", b"m{a=1} 1 2\n").unwrap_err();
        assert!(err.to_string().contains("not quoted"), "{err}");
    }
}
