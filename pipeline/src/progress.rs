//! Progress of a long stage: a bar on a terminal, log lines everywhere else.
//!
//! In a pod or CI nobody sees a bar, and a stage that prints nothing for ten minutes looks
//! hung; so without a terminal progress is logged every 10 % of the work or every few
//! seconds, whichever comes first, and notes (a training epoch's losses) are log lines.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

/// The longest a stage stays silent while it makes progress, without a terminal.
const QUIET_FOR: Duration = Duration::from_secs(5);

pub struct Progress {
    bar: ProgressBar,
    stage: String,
    what: String,
    /// Without a terminal: when the last line was logged, and at what tenth of the work.
    logged: Mutex<(Instant, u64)>,
}

impl Progress {
    pub(crate) fn new(bar: ProgressBar, stage: &str, what: &str) -> Self {
        let logged = Mutex::new((Instant::now(), 0));
        Progress { bar, stage: stage.to_string(), what: what.to_string(), logged }
    }

    /// `n` more units done.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if !self.bar.is_hidden() {
            return;
        }
        let (done, len) = (self.bar.position(), self.bar.length().unwrap_or(0).max(1));
        let tenth = done * 10 / len;
        let mut logged = self.logged.lock().expect("progress lock");
        if tenth > logged.1 || logged.0.elapsed() >= QUIET_FOR {
            *logged = (Instant::now(), tenth);
            tracing::info!(stage = %self.stage, "{}: {done}/{len} ({}%)", self.what, done * 100 / len);
        }
    }

    /// A short status beside the bar (the last loss); not logged.
    pub fn set_message(&self, message: String) {
        self.bar.set_message(message);
    }

    /// A line worth keeping: above the bar on a terminal, a log line otherwise.
    pub fn note(&self, line: &str) {
        if self.bar.is_hidden() {
            tracing::info!(stage = %self.stage, "{line}");
        } else {
            self.bar.println(format!("{:>12} {line}", self.stage));
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
