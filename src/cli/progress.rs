//! Progress of `--install` steps: one line per step with elapsed time (a spinner on a terminal).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use stackwise::project::install::{Progress, Step, StepResult};

use super::style;

pub struct Bars {
    current: Option<ProgressBar>,
    tty: bool,
}

impl Bars {
    pub fn new() -> Self {
        Bars {
            current: None,
            tty: std::io::stderr().is_terminal(),
        }
    }
}

impl Progress for Bars {
    fn start(&mut self, step: &Step) {
        if self.tty {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(step.display());
            bar.enable_steady_tick(Duration::from_millis(120));
            self.current = Some(bar);
        } else {
            eprintln!("installing: {}", step.display());
        }
    }

    fn finish(&mut self, result: &StepResult) {
        let line = if result.ok {
            format!(
                "{} {} ({:.1}s, wrote {})",
                style::ok("done"),
                result.step.display(),
                result.seconds,
                result.step.lockfile
            )
        } else {
            format!(
                "{} {} ({:.1}s)",
                style::error("failed"),
                result.step.display(),
                result.seconds
            )
        };
        match self.current.take() {
            Some(bar) => bar.finish_with_message(line.clone()),
            None => eprintln!("{line}"),
        }
        if self.tty {
            // finish_with_message keeps the spinner's template; print the final line plainly.
            eprintln!();
        }
    }
}
