//! The daemon's scheduler: fires schedules at their cron times (catch-up and
//! overlap policies from [`crate::schedule`]) and launches runs and waves.

use std::time::Duration;

use super::drivers::{launch_run_file, Launched};
use super::state::Shared;
use crate::app::waves::run_unfinished;
use crate::app::Result;
use crate::clock::Timestamp;
use crate::schedule::{FireOutcome, Launch, ScheduleRecord};
use crate::store::{records, Batch};

/// Longest the scheduler sleeps before looking again (clock jumps, suspend).
const MAX_NAP: Duration = Duration::from_secs(60);

async fn save(d: &Shared, rec: &ScheduleRecord) -> Result<()> {
    let mut b = Batch::default();
    records::put_schedule(&mut b, rec)?;
    Ok(d.committer.commit(b).await?)
}

/// Launch what `rec` launches for `fire`, recording the run id durably first.
async fn launch(d: &Shared, rec: &mut ScheduleRecord, fire: Timestamp) -> Result<()> {
    let id = crate::app::runs::fresh_run_id(&*d.store)?;
    rec.pending.push(crate::schedule::PendingLaunch {
        fire,
        run: id.clone(),
    });
    save(d, rec).await?;
    let (file, wave) = match &rec.spec.launch {
        Launch::RunFile { path } => (path.clone(), None),
        Launch::NextWave { run_file, size } => (run_file.clone(), Some(*size)),
    };
    let label = Some(format!("schedule {} at {}", rec.spec.name, fire.rfc3339()));
    let now = d.clock.now();
    match launch_run_file(d, &file, wave, label, Some(id)).await {
        Ok(Launched::Run(run)) => {
            tracing::info!(schedule = %rec.spec.name, run = %run.id, subjects = run.subjects, "schedule fired");
            rec.launched(fire, now, &run.id, run.subjects);
        }
        Ok(Launched::NothingLeft) => {
            tracing::info!(schedule = %rec.spec.name, "schedule fired: no subject left to migrate");
            rec.not_launched(
                fire,
                now,
                FireOutcome::Skipped {
                    reason: "no subject left to migrate".into(),
                },
            );
        }
        Err(e) => {
            tracing::error!(schedule = %rec.spec.name, "schedule could not start a run: {e}");
            rec.not_launched(
                fire,
                now,
                FireOutcome::Failed {
                    error: e.to_string(),
                },
            );
        }
    }
    save(d, rec).await
}

/// After a crash between recording a launch and storing its run: keep launches
/// whose run exists, and redo the others from scratch.
async fn recover(d: &Shared) -> Result<()> {
    let _guard = d.schedules.lock().await;
    for mut rec in records::list_schedules(&*d.store)? {
        let pending = std::mem::take(&mut rec.pending);
        if pending.is_empty() {
            continue;
        }
        let now = d.clock.now();
        let mut redo = Vec::new();
        for p in pending {
            match records::get_run(&*d.store, &p.run)? {
                Some(run) => rec.launched(p.fire, now, &run.id, run.subjects),
                None => {
                    let b = records::delete_run_data(&*d.store, &p.run)?;
                    d.committer.commit(b).await?;
                    redo.push(p.fire);
                }
            }
        }
        save(d, &rec).await?;
        for fire in redo {
            tracing::warn!(schedule = %rec.spec.name, fire = %fire.rfc3339(), "redoing a launch a crash interrupted");
            launch(d, &mut rec, fire).await?;
        }
    }
    Ok(())
}

/// Fire what is due at `now`; returns when to look next.
async fn tick(d: &Shared, now: Timestamp) -> Result<Option<Timestamp>> {
    let _guard = d.schedules.lock().await;
    let mut next: Option<Timestamp> = None;
    for mut rec in records::list_schedules(&*d.store)? {
        let compiled = match rec.spec.validate() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(schedule = %rec.spec.name, "schedule no longer valid: {e}");
                continue;
            }
        };
        let before = rec.clone();
        let running = run_unfinished(&*d.store, rec.last_run())?;
        let fires = rec.tick(&compiled, now, running);
        if rec != before {
            save(d, &rec).await?;
        }
        for fire in fires {
            launch(d, &mut rec, fire).await?;
        }
        if let Some(t) = rec.next_wake(&compiled, now) {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    }
    Ok(next)
}

/// The scheduler loop; ends when the daemon stops.
pub(super) async fn run(d: Shared) -> Result<()> {
    recover(&d).await?;
    let mut stop = d.stop.clone();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let now = d.clock.now();
        let next = tick(&d, now).await?;
        let cap = now.plus(MAX_NAP.mul_f64(d.clock.scale().max(1.0)));
        let until = next.map_or(cap, |t| t.min(cap));
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            _ = d.wake.notified() => {}
            _ = d.clock.sleep_until(until) => {}
        }
    }
}
