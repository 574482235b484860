//! Live progress on a terminal: instances per step and phase, done/failed, ETA.
//! Quiet when stderr is not a terminal (piped, CI) or with --json.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::{SharedClock, Stopwatch, Timestamp};
use crate::engine::budget::OutageBudget;
use crate::engine::executor::{Place, Progress};
use crate::engine::instance::PHASE_NAMES;
use crate::report::table::{human_duration, Table};
use crate::spec::model::Workflow;

/// A running progress display.
pub struct Display {
    task: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Display {
    /// Start redrawing every 250 ms on stderr, if it is a terminal and `json` is off.
    pub fn start(
        json: bool,
        wf: Arc<Workflow>,
        progress: Arc<Progress>,
        clock: SharedClock,
        budget: Option<Arc<OutageBudget>>,
    ) -> Display {
        if json || !std::io::stderr().is_terminal() {
            return Display { task: None };
        }
        let (tx, mut rx) = oneshot::channel();
        let handle = tokio::spawn(async move {
            let watch = Stopwatch::start();
            let v0 = clock.now();
            let mut drawn = 0usize;
            let mut tick = crate::clock::real_ticker(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    _ = tick.tick() => {}
                }
                let now = clock.now();
                let mut text = frame(&wf, &progress, watch.elapsed(), now.since(v0), now);
                if let Some(b) = &budget {
                    text.push_str(&budget_line(b));
                }
                let mut err = std::io::stderr().lock();
                if drawn > 0 {
                    let _ = write!(err, "\x1b[{drawn}A\x1b[J");
                }
                let _ = write!(err, "{text}");
                let _ = err.flush();
                drawn = text.lines().count();
            }
            if drawn > 0 {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\x1b[{drawn}A\x1b[J");
                let _ = err.flush();
            }
        });
        Display {
            task: Some((tx, handle)),
        }
    }

    /// Stop and erase the display.
    pub async fn stop(self) {
        if let Some((tx, handle)) = self.task {
            let _ = tx.send(());
            let _ = handle.await;
        }
    }
}

fn frame(
    wf: &Workflow,
    progress: &Progress,
    real: Duration,
    virt: Duration,
    now: Timestamp,
) -> String {
    let counts = progress.counts();
    let total: usize = counts.values().sum();
    let mut done = 0;
    let mut failed = 0;
    // Ready instances are about to act; the other phases say what they wait for.
    let phases = &PHASE_NAMES[1..];
    let mut t = Table::new(std::iter::once("step").chain(phases.iter().copied()));
    for (i, step) in wf.steps.iter().enumerate() {
        let cells: Vec<String> = phases
            .iter()
            .map(|p| {
                counts
                    .get(&Place::Step(i, p))
                    .map_or(String::new(), |n| n.to_string())
            })
            .collect();
        if cells.iter().any(|c| !c.is_empty()) {
            t.row(std::iter::once(step.id.clone()).chain(cells));
        }
    }
    for (p, n) in &counts {
        match p {
            Place::Terminal("succeeded") => done += n,
            Place::Terminal(_) => failed += n,
            _ => {}
        }
    }
    let finished = done + failed;
    let eta = if finished < total {
        // Real seconds per engine second, as seen so far.
        let ratio = if virt.is_zero() {
            1.0
        } else {
            real.as_secs_f64() / virt.as_secs_f64()
        };
        let est = progress.estimate(wf.steps.len(), now);
        est.suffix(|i| wf.steps.get(i).map(|s| s.id.as_str()), ratio)
    } else {
        String::new()
    };
    let mut out = format!(
        "{} real / {} virtual · {done} succeeded, {failed} failed or stopped, {} in progress of {total}{eta}\n",
        human_duration(real),
        human_duration(virt),
        total - finished
    );
    if !t.is_empty() {
        out.push_str(&t.render());
    }
    out
}

/// `out of service now: 18 of 20 · 30 held` (and the breaker, when open).
fn budget_line(b: &OutageBudget) -> String {
    let max = b.max().map_or(String::new(), |m| format!(" of {m}"));
    let held = match b.held() {
        0 => String::new(),
        n => format!(" · {n} held"),
    };
    let paused = if b.paused() {
        " · PAUSED by the circuit breaker (stop_after_failures)"
    } else {
        ""
    };
    format!("out of service now: {}{max}{held}{paused}\n", b.holding())
}
