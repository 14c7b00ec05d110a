//! Progress of a long stage: a bar on a terminal, log lines everywhere else.
//!
//! In a pod or CI nobody sees a bar, and a stage that prints nothing for ten minutes looks
//! hung; so without a terminal progress is logged every 10 % of the work (at most one line a
//! second) or after a few seconds of silence, and notes (a training epoch's losses) are log
//! lines. A stage done within a second logs no progress at all: its lines would only bury
//! the ones that matter.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

/// The longest a stage stays silent while it makes progress, without a terminal.
const QUIET_FOR: Duration = Duration::from_secs(5);
/// The shortest gap between two progress lines.
const MIN_GAP: Duration = Duration::from_secs(1);

/// Whether a progress line is due, `since_last` after the last one (or the start), when a
/// further tenth of the work is done (`advanced`) or not.
fn due(since_last: Duration, advanced: bool) -> bool {
    since_last >= QUIET_FOR || (advanced && since_last >= MIN_GAP)
}

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
        if due(logged.0.elapsed(), tenth > logged.1) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_stage_logs_no_progress_and_a_slow_one_every_tenth_or_few_seconds() {
        let ms = Duration::from_millis;
        assert!(!due(ms(50), true), "a tenth done 50 ms in");
        assert!(!due(ms(900), true));
        assert!(due(ms(1000), true), "a tenth done a second after the last line");
        assert!(!due(ms(4000), false), "no tenth done, not yet silent for long");
        assert!(due(QUIET_FOR, false), "silent for long");
    }
}
