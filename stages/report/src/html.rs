//! The page and its Markdown twin, written in order. Every text handed to [`Html`] is
//! plain text, escaped here; only the charts' SVG goes in as markup.

use std::fmt::Write;

use super::*;

/// Text as HTML.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

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
    body: String,
    nav: Vec<(String, String)>,
}

impl Html {
    pub(crate) fn head(&mut self, title: &str, run: &str, model: &str) {
        let _ = write!(
            self.body,
            "<h1>{}</h1><p class=meta>Run <code>{}</code> · model: {}</p>",
            escape(title),
            escape(run),
            escape(model)
        );
    }

    pub(crate) fn section(&mut self, id: &str, title: &str, text: &str) {
        self.nav.push((id.into(), title.into()));
        let _ = write!(self.body, "<section id=\"{id}\"><h2>{}</h2><p>{}</p></section>", escape(title), escape(text));
    }

    pub(crate) fn paragraph(&mut self, text: &str) {
        let _ = write!(self.body, "<p>{}</p>", escape(text));
    }

    pub(crate) fn h3(&mut self, title: &str) {
        let _ = write!(self.body, "<h3>{}</h3>", escape(title));
    }

    /// A table; without headers, a list of name–value rows.
    pub(crate) fn table(&mut self, headers: &[&str], rows: &[Vec<String>]) {
        self.body.push_str("<table>");
        if !headers.is_empty() {
            self.body.push_str("<thead><tr>");
            for h in headers {
                let _ = write!(self.body, "<th>{}</th>", escape(h));
            }
            self.body.push_str("</tr></thead>");
        }
        self.body.push_str("<tbody>");
        for r in rows {
            self.body.push_str("<tr>");
            for c in r {
                let _ = write!(self.body, "<td>{}</td>", escape(c));
            }
            self.body.push_str("</tr>");
        }
        self.body.push_str("</tbody></table>");
    }

    pub(crate) fn chart(&mut self, id: &str, chart: &Chart, caption: &str) -> Result<(), BoxError> {
        let svg = chart.svg((900, 360))?;
        let _ = write!(
            self.body,
            "<figure class=chart id=\"chart-{}\">{svg}<figcaption>{}</figcaption></figure>",
            escape(id),
            escape(caption)
        );
        Ok(())
    }

    pub(crate) fn finish(self) -> String {
        let nav: String = self
            .nav
            .iter()
            .map(|(id, t)| format!("<a href=\"#{id}\">{}</a>", escape(t)))
            .collect::<Vec<_>>()
            .join(" · ");
        format!(
            "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\"><title>AppLearner report</title><style>{CSS}</style></head><body><nav>{nav}</nav>{}<footer>Made by AppLearner {}. Self-contained: no scripts, nothing fetched.</footer></body></html>\n",
            self.body,
            env!("CARGO_PKG_VERSION")
        )
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\
nav{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd}\
h2{margin-top:2em;border-bottom:2px solid #1f77b4}.meta{color:#555}\
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right}\
th{background:#f4f6f8}td:first-child,th:first-child{text-align:left}\
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}\
footer{margin-top:3em;color:#888;font-size:.8em}";
