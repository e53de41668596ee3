//! A progress bar on a terminal, nothing otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use lifeboat_backup::progress::Progress;

/// Draws `progress` until dropped.
pub struct Bar {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Bar {
    /// Starts drawing when stderr is a terminal and `quiet` is off.
    pub fn start(progress: &Arc<Progress>, what: &str, quiet: bool) -> Self {
        Self::draw(progress, what, quiet, false, None)
    }

    /// Like [`Bar::start`], counting items (Kubernetes objects) instead of bytes.
    pub fn start_items(progress: &Arc<Progress>, what: &str, quiet: bool) -> Self {
        Self::draw(progress, what, quiet, true, None)
    }

    fn draw(
        progress: &Arc<Progress>,
        what: &str,
        quiet: bool,
        items: bool,
        multi: Option<&MultiProgress>,
    ) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self {
                task: None,
                bar: None,
            };
        }
        let bar = match multi {
            Some(m) => m.add(ProgressBar::new(0)),
            None => ProgressBar::new(0),
        };
        let template = if items {
            "{msg} [{bar:30}] {pos}/{len} objects {per_sec} eta {eta}"
        } else {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        let p = progress.clone();
        let b = bar.clone();
        let task = tokio::spawn(async move {
            loop {
                let (done, total) = if items { p.items() } else { p.bytes() };
                b.set_length(total.max(done));
                b.set_position(done);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self {
            task: Some(task),
            bar: Some(bar),
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Several bars, one line each, drawn together (the volumes of a backup).
pub struct Lines {
    multi: MultiProgress,
    quiet: bool,
    bars: std::sync::Mutex<Vec<Bar>>,
}

impl Lines {
    /// No lines yet; nothing is drawn when `quiet` or stderr is not a terminal.
    pub fn new(quiet: bool) -> Self {
        Self {
            multi: MultiProgress::new(),
            quiet,
            bars: std::sync::Mutex::default(),
        }
    }

    /// Adds a line counting bytes for `what` and returns its counters.
    pub fn add(&self, what: &str) -> Arc<Progress> {
        self.add_line(what, false)
    }

    /// Adds a line counting items (Kubernetes objects) for `what`.
    pub fn add_items(&self, what: &str) -> Arc<Progress> {
        self.add_line(what, true)
    }

    fn add_line(&self, what: &str, items: bool) -> Arc<Progress> {
        let progress = Arc::new(Progress::default());
        let bar = Bar::draw(&progress, what, self.quiet, items, Some(&self.multi));
        self.bars.lock().unwrap_or_else(|p| p.into_inner()).push(bar);
        progress
    }
}
