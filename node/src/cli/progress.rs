//! The demo's progress: a bar with the step just done on a terminal (indicatif), plain
//! lines otherwise, so a log or a pipe gets no control codes.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Steps of a known count, each reported with a line.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// `steps` to come; a bar only when standard output is a terminal.
    pub fn new(steps: u64) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(steps);
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    /// The step `line` names has started: the bar's message, or nothing yet.
    pub fn start(&self, line: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(line.to_string());
        }
    }

    /// The step `line` names is done: a line above the bar, or a plain line.
    pub fn done(&self, line: &str) {
        match &self.bar {
            Some(bar) => {
                bar.println(format!("  {line}"));
                bar.inc(1);
            }
            None => println!("  {line}"),
        }
    }

    /// All steps are done: the bar goes away, its lines stay.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
