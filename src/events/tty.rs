//! The TTY renderer (`--progress tty`, the default on a terminal): one live line per step
//! drawn with indicatif: a spinner while it runs, then `CACHED`, `DONE 1.2s` or `ERROR`, with
//! the last line of RUN output shown beside a running step and miss reasons kept visible.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{short_id, BuildEvent, Renderer};

pub struct TtyRenderer {
    bars: MultiProgress,
    steps: BTreeMap<usize, (ProgressBar, String)>,
    running: ProgressStyle,
    finished: ProgressStyle,
}

impl Default for TtyRenderer {
    fn default() -> Self {
        Self::new(ProgressDrawTarget::stderr())
    }
}

impl TtyRenderer {
    /// Draws to `target` (stderr on a terminal; hidden in tests).
    pub fn new(target: ProgressDrawTarget) -> Self {
        let running = ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let finished =
            ProgressStyle::with_template("  {prefix:.bold} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner());
        TtyRenderer { bars: MultiProgress::with_draw_target(target), steps: BTreeMap::new(), running, finished }
    }

    fn finish(&mut self, step: usize, status: String) {
        if let Some((bar, instruction)) = self.steps.get(&step) {
            bar.set_style(self.finished.clone());
            bar.finish_with_message(format!("{instruction}  {status}"));
        }
    }
}

impl Renderer for TtyRenderer {
    fn render(&mut self, event: &BuildEvent) -> io::Result<()> {
        match event {
            BuildEvent::StepStarted { step, total, instruction, cache_key, .. } if cache_key.is_empty() => {
                // An ARG before the first FROM: nothing runs, nothing follows.
                let bar = self.bars.add(ProgressBar::new_spinner());
                bar.set_style(self.finished.clone());
                bar.set_prefix(format!("[{step}/{total}]"));
                bar.finish_with_message(instruction.clone());
            }
            BuildEvent::StepStarted { step, total, instruction, .. } => {
                let bar = self.bars.add(ProgressBar::new_spinner());
                bar.set_style(self.running.clone());
                bar.set_prefix(format!("[{step}/{total}]"));
                bar.set_message(instruction.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                self.steps.insert(*step, (bar, instruction.clone()));
            }
            BuildEvent::CacheMiss { step, message, .. } => {
                if let Some((bar, instruction)) = self.steps.get(step) {
                    bar.set_message(format!("{instruction}  (cache miss: {message})"));
                }
            }
            BuildEvent::Output { step, line, .. } => {
                if let Some((bar, instruction)) = self.steps.get(step) {
                    let tail: String = line.chars().take(60).collect();
                    bar.set_message(format!("{instruction}  | {tail}"));
                }
            }
            BuildEvent::StepDone { step, cached, duration_ms, image_id, .. } => {
                let status = if *cached {
                    "CACHED".to_string()
                } else {
                    format!("DONE {:.1}s {}", *duration_ms as f64 / 1000.0, short_id(image_id))
                };
                self.finish(*step, status);
            }
            BuildEvent::BuildFailed { step: Some(step), .. } => self.finish(*step, "ERROR".to_string()),
            BuildEvent::Warning { message }
            | BuildEvent::Pull { message, .. }
            | BuildEvent::CacheTransfer { message, .. } => self.bars.println(message)?,
            BuildEvent::Isolation { .. } => {
                if let Some(line) = event.unusual_isolation_line() {
                    self.bars.println(line)?
                }
            }
            BuildEvent::BuildDone { image_id, tags, duration_ms } => {
                // Every bar is finished by now: plain lines go below them.
                use std::io::Write;
                let mut err = io::stderr().lock();
                writeln!(err, "Built {} in {:.1}s", short_id(image_id), *duration_ms as f64 / 1000.0)?;
                for tag in tags {
                    writeln!(err, "Tagged {tag}")?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_steps_through_their_lifecycle() {
        let mut r = TtyRenderer::new(ProgressDrawTarget::hidden());
        r.render(&BuildEvent::StepStarted {
            step: 1,
            total: 2,
            stage: 0,
            instruction: "RUN make".into(),
            cache_key: "k".into(),
        })
        .expect("render");
        r.render(&BuildEvent::StepDone {
            step: 1,
            image_id: "sha256:abcdef0123456789".into(),
            layer_size: None,
            duration_ms: 1500,
            cached: false,
        })
        .expect("render");
        let (bar, _) = r.steps.get(&1).expect("step 1");
        assert!(bar.is_finished());
        assert_eq!(bar.message(), "RUN make  DONE 1.5s abcdef012345");
    }
}
