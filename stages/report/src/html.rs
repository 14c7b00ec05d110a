//! The page and its Markdown twin, written in order. The page is built with maud, which
//! escapes every text it is handed; only the charts' SVG goes in as markup.

use std::fmt::Write;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::*;

pub(crate) fn md_table(md: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(md, "| {} |", headers.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(headers.len()));
    for r in rows {
        let _ = writeln!(md, "| {} |", r.join(" | "));
    }
    md.push('\n');
}

/// The page, built in order.
#[derive(Default)]
pub(crate) struct Html {
    body: Vec<Markup>,
    nav: Vec<(String, String)>,
}

impl Html {
    pub(crate) fn head(&mut self, title: &str, run: &str, model: &str) {
        self.body.push(html! {
            h1 { (title) }
            p.meta { "Run " code { (run) } " · model: " (model) }
        });
    }

    pub(crate) fn section(&mut self, id: &str, title: &str, text: &str) {
        self.nav.push((id.into(), title.into()));
        self.body.push(html! { section id=(id) { h2 { (title) } p { (text) } } });
    }

    pub(crate) fn paragraph(&mut self, text: &str) {
        self.body.push(html! { p { (text) } });
    }

    pub(crate) fn h3(&mut self, title: &str) {
        self.body.push(html! { h3 { (title) } });
    }

    /// A table; without headers, a list of name–value rows.
    pub(crate) fn table(&mut self, headers: &[&str], rows: &[Vec<String>]) {
        self.body.push(html! {
            table {
                @if !headers.is_empty() {
                    thead { tr { @for h in headers { th { (h) } } } }
                }
                tbody { @for r in rows { tr { @for c in r { td { (c) } } } } }
            }
        });
    }

    pub(crate) fn chart(&mut self, id: &str, chart: &Chart, caption: &str) -> Result<(), BoxError> {
        // The SVG is plotters' own markup; the texts in it were escaped by plotters.
        let svg = PreEscaped(chart.svg((900, 360))?);
        self.body.push(html! {
            figure.chart id={ "chart-" (id) } { (svg) figcaption { (caption) } }
        });
        Ok(())
    }

    pub(crate) fn finish(self) -> String {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width";
                    title { "AppLearner report" }
                    style { (PreEscaped(CSS)) }
                }
                body {
                    nav {
                        @for (i, (id, title)) in self.nav.iter().enumerate() {
                            @if i > 0 { " · " }
                            a href={ "#" (id) } { (title) }
                        }
                    }
                    @for part in &self.body { (part) }
                    footer { "Made by AppLearner " (env!("CARGO_PKG_VERSION")) ". Self-contained: no scripts, nothing fetched." }
                }
            }
        }
        .into_string()
            + "\n"
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\
nav{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd}\
h2{margin-top:2em;border-bottom:2px solid #1f77b4}.meta{color:#555}\
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right}\
th{background:#f4f6f8}td:first-child,th:first-child{text-align:left}\
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}\
footer{margin-top:3em;color:#888;font-size:.8em}";
