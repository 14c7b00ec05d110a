//! Text formats with timestamps: `promtool tsdb dump` output (`{__name__="m", a="b"} 1.5
//! 1661140279000`), the Prometheus text exposition (`m{a="b"} 1.5 1661140279000`, times in
//! milliseconds) and OpenMetrics (ending in `# EOF`, times in seconds), read line by line.

use std::collections::BTreeMap;
use std::io::BufRead;

use crate::IngestError;
use crate::answer::parse_value;
use crate::series::{Parsed, RawSeries, Sink};

/// Points per series handed on at a time: a series of any length streams.
const CHUNK: usize = 64 * 1024;

/// Parses a text file held in memory.
pub fn parse(source: &str, bytes: &[u8]) -> Result<Parsed, IngestError> {
    let mut series: Vec<RawSeries> = Vec::new();
    parse_stream(source, bytes, ends_with_eof(bytes), &mut |s| {
        match series.last_mut() {
            Some(last) if last.metric == s.metric && last.labels == s.labels => last.points.extend(s.points),
            _ => series.push(s),
        }
        Ok(())
    })?;
    Ok(Parsed { series, warnings: Vec::new() })
}

/// Whether `tail`, the end of a file, closes it as OpenMetrics (`# EOF`): then its times are
/// seconds, not milliseconds.
pub fn ends_with_eof(tail: &[u8]) -> bool {
    tail.trim_ascii_end().ends_with(b"# EOF")
}

/// Parses text from `input` line by line, handing each run of consecutive samples of one
/// series (at most [`CHUNK`]) to `sink`. `openmetrics` says the file ends with `# EOF`.
pub fn parse_stream(
    source: &str,
    mut input: impl BufRead,
    openmetrics: bool,
    sink: Sink<'_>,
) -> Result<Vec<String>, IngestError> {
    let mut line = Vec::new();
    let mut n = 0;
    // The series being read: its text as written (to spot the next line of the same one).
    let mut current: Option<(String, RawSeries)> = None;
    loop {
        line.clear();
        let read = input.read_until(b'\n', &mut line);
        if read.map_err(|error| IngestError::Io { origin: source.to_string(), error })? == 0 {
            break;
        }
        n += 1;
        let fail = |message: String| IngestError::Text { origin: source.to_string(), line: n, message };
        let text = std::str::from_utf8(&line).map_err(|_| fail("the line is not UTF-8".into()))?.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let (key, rest) = split_series(text).map_err(fail)?;
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
        match &mut current {
            Some((k, s)) if k == key => {
                if s.points.len() == CHUNK {
                    let full = std::mem::take(&mut s.points);
                    sink(RawSeries { metric: s.metric.clone(), labels: s.labels.clone(), points: full })?;
                }
                s.points.push((ms, value));
            }
            _ => {
                let (metric, labels) = parse_series(key).map_err(fail)?;
                let next = RawSeries { metric, labels, points: vec![(ms, value)] };
                if let Some((_, done)) = current.replace((key.to_string(), next)) {
                    sink(done)?;
                }
            }
        }
    }
    if let Some((_, done)) = current {
        sink(done)?;
    }
    Ok(Vec::new())
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
