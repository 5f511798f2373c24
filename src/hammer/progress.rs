//! The live progress bar: requests done, current rate and errors, redrawn a few times a second
//! from the runner's shared counters (the runner itself never touches the terminal).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::load::{Progress, Stop};

const REDRAW: Duration = Duration::from_millis(250);

/// A running progress bar; [`Bar::finish`] clears it.
pub(crate) struct Bar {
    done: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Bar {
    /// Starts drawing on stderr (indicatif draws nothing when stderr is not a terminal).
    pub(crate) fn start(progress: Arc<Progress>, stop: Stop) -> Self {
        let (bar, total_ms) = match stop {
            Stop::Requests(n) => (ProgressBar::new(n), None),
            Stop::Deadline(at) => {
                let ms = at.saturating_duration_since(Instant::now()).as_millis() as u64;
                (ProgressBar::new(ms), Some(ms))
            }
        };
        let template = match stop {
            Stop::Requests(_) => "{bar:30} {pos}/{len} {msg}",
            Stop::Deadline(_) => "{bar:30} {elapsed} {msg}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        let (done, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let (mut last_done, mut last_at) = (0u64, started);
            let mut tick = tokio::time::interval(REDRAW);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let now = Instant::now();
                let done = progress.done.load(Ordering::Relaxed);
                let errors = progress.errors.load(Ordering::Relaxed);
                let secs = now.duration_since(last_at).as_secs_f64().max(1e-3);
                let rate = (done - last_done) as f64 / secs;
                (last_done, last_at) = (done, now);
                match total_ms {
                    None => bar.set_position(done),
                    Some(total) => bar
                        .set_position((now.duration_since(started).as_millis() as u64).min(total)),
                }
                bar.set_message(format!("{done} done  {rate:.0} req/s  {errors} errors"));
            }
            bar.finish_and_clear();
        });
        Self { done, task }
    }

    /// Stops and clears the bar.
    pub(crate) async fn finish(self) {
        let _ = self.done.send(());
        let _ = self.task.await;
    }
}
