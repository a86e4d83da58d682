//! A one-line progress bar on stderr while a long simulation runs, so a person at a terminal
//! knows it is working; never drawn into a pipe or a log, and erased when the run ends so the
//! report that follows starts on a clean line.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How long a run goes before a bar is worth drawing: shorter runs would only flicker.
const QUIET_FOR: Duration = Duration::from_secs(1);
const WIDTH: usize = 30;

/// The bar of one run.
pub(crate) struct Progress {
    label: String,
    total: Duration,
    /// `None` when stderr is not a terminal: nothing is ever drawn.
    started: Option<Instant>,
    drawn: bool,
}

/// The wall clock, read only to decide whether a bar is worth drawing; the simulation itself
/// runs in virtual time and never sees it.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> Instant {
    Instant::now()
}

impl Progress {
    /// A bar for a run of `total` virtual time, labelled `label`; drawn only on a terminal.
    pub(crate) fn new(label: &str, total: Duration) -> Progress {
        Progress {
            label: label.to_string(),
            total,
            started: std::io::stderr().is_terminal().then(wall_clock),
            drawn: false,
        }
    }

    /// The run has reached `done` of virtual time.
    pub(crate) fn update(&mut self, done: Duration) {
        let Some(started) = self.started else {
            return;
        };
        if !self.drawn && started.elapsed() < QUIET_FOR {
            return;
        }
        let fraction = if self.total.is_zero() {
            1.0
        } else {
            (done.as_secs_f64() / self.total.as_secs_f64()).min(1.0)
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}", line(&self.label, fraction));
        let _ = err.flush();
        self.drawn = true;
    }

    /// The run is over: erase the bar if one was drawn.
    pub(crate) fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `label [#########.....]  31%`.
fn line(label: &str, fraction: f64) -> String {
    let filled = ((fraction * WIDTH as f64).round() as usize).min(WIDTH);
    format!(
        "{label} [{}{}] {:>3.0}%",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        fraction * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_run() {
        assert_eq!(
            line("g.toml", 0.0),
            format!("g.toml [{}]   0%", ".".repeat(30))
        );
        assert_eq!(
            line("g.toml", 0.5),
            format!("g.toml [{}{}]  50%", "#".repeat(15), ".".repeat(15))
        );
        assert_eq!(line("g", 1.0), format!("g [{}] 100%", "#".repeat(30)));
    }

    #[test]
    fn nothing_is_drawn_off_a_terminal() {
        let mut bar = Progress {
            label: "g".to_string(),
            total: Duration::from_secs(10),
            started: None,
            drawn: false,
        };
        bar.update(Duration::from_secs(5));
        assert!(!bar.drawn);
    }
}
