//! `approve`, `signal`, `cancel`, `retry`: an operator's inputs to stored
//! instances, applied through the same state machine as everything else.

use std::sync::Arc;

use serde_json::{json, Value};

use super::runs::{load_run, pinned_workflow};
use super::{exit, print_json, App, CliError};
use crate::clock::{SharedClock, SystemClock};
use crate::engine::instance::Instance;
use crate::engine::machine::{self, Ctx, Input, Persist};
use crate::spec::model::Workflow;
use crate::store::commit::Committer;
use crate::store::keys::InstanceKey;
use crate::store::sled_store::SledStore;
use crate::store::{records, Batch};

/// Which instances an operator command addresses.
pub struct Target<'a> {
    /// Run id.
    pub run: &'a str,
    /// One subject, or all.
    pub subject: Option<&'a str>,
}

/// Outcome counts of applying one input to many instances.
struct Applied {
    changed: usize,
    unchanged: usize,
}

async fn apply(
    app: &App,
    target: &Target<'_>,
    input: impl Fn(&Workflow, &Instance) -> Result<Option<Input>, CliError>,
) -> Result<(Applied, Workflow), CliError> {
    let store: Arc<SledStore> = Arc::new(app.open_store()?);
    let mut record = load_run(&*store, target.run)?;
    let workflow = pinned_workflow(&record)?;
    let instances: Vec<Instance> = match target.subject {
        Some(sub) => {
            let idx = records::find_subject(&*store, target.run, sub)?.ok_or_else(|| {
                CliError::input(format!("run {} has no subject {sub:?}", target.run))
                    .hint(format!("`portflow status {}` shows the run", target.run))
            })?;
            let key = InstanceKey {
                run: target.run.into(),
                idx,
            };
            records::get_instance(&*store, &key)?.into_iter().collect()
        }
        None => records::list_instances(&*store, target.run)?,
    };
    let clock: SharedClock = match record.clock {
        Some(c) => Arc::new(c),
        None => Arc::new(SystemClock),
    };
    let mut batch = Batch::default();
    let mut applied = Applied {
        changed: 0,
        unchanged: 0,
    };
    for inst in &instances {
        let Some(inp) = input(&workflow, inst)? else {
            applied.unchanged += 1;
            continue;
        };
        let t = machine::transition(Ctx::new(&workflow, &[], clock.now()), inst, inp);
        if t.persist == Persist::Nothing {
            applied.unchanged += 1;
        } else {
            records::put_transition(&mut batch, inst, &t);
            applied.changed += 1;
        }
    }
    if applied.changed > 0 && record.finished_at.is_some() {
        // The run has work again: `resume` (without a run id) must find it.
        record.finished_at = None;
        records::put_run(&mut batch, &record);
    }
    let committer = Committer::start(store.clone(), true);
    committer.commit(batch).await?;
    Ok((applied, workflow))
}

/// When the daemon holds the state directory, send the input through its API.
/// `None` when the error is not that (the caller reports it).
fn remote(
    app: &App,
    target: &Target<'_>,
    verb: &str,
    mut body: Value,
    err: &CliError,
) -> Option<Result<u8, CliError>> {
    if err.code != exit::LOCKED || !app.state.join(super::serve::DAEMON_FILE).exists() {
        return None;
    }
    if let Some(s) = target.subject {
        body["subject"] = Value::String(s.to_string());
    }
    let path = format!("/api/runs/{}/{verb}", super::client::enc(target.run));
    Some(
        super::client::request(app, "POST", &path, &body).and_then(|(status, v)| {
            if status != 200 {
                return Err(super::client::daemon_error(status, &v));
            }
            let a = Applied {
                changed: v["changed"].as_u64().unwrap_or(0) as usize,
                unchanged: v["unchanged"].as_u64().unwrap_or(0) as usize,
            };
            report(
                app,
                target,
                past(verb),
                &a,
                " (through the daemon, which drives the run)",
            )
        }),
    )
}

fn past(verb: &str) -> &'static str {
    match verb {
        "approve" => "approved",
        "signal" => "signalled",
        "cancel" => "cancelled",
        _ => "retried",
    }
}

fn report(
    app: &App,
    target: &Target<'_>,
    verb: &str,
    a: &Applied,
    extra: &str,
) -> Result<u8, CliError> {
    if a.changed == 0 {
        return Err(CliError::input(format!(
            "nothing {verb}: none of the {} addressed instance(s) of run {} is in a state where this applies{extra}",
            a.unchanged, target.run
        ))
        .hint(format!("`portflow status {}` and `portflow show {} <subject>` show where each instance is", target.run, target.run)));
    }
    if app.json {
        print_json(&serde_json::json!({
            "run": target.run, "subject": target.subject, "action": verb,
            "changed": a.changed, "unchanged": a.unchanged,
        }));
    } else {
        println!(
            "{verb}: {} instance(s) of run {} changed, {} not applicable{extra}",
            a.changed, target.run, a.unchanged
        );
        if !extra.contains("daemon") {
            // Without a daemon nothing drives the run until someone resumes it.
            println!("continue with: portflow resume {}", target.run);
        }
    }
    Ok(exit::OK)
}

fn step_index(
    wf: &Workflow,
    id: &str,
    want: &str,
    ok: impl Fn(&crate::spec::model::Step) -> bool,
) -> Result<usize, CliError> {
    match wf.steps.iter().position(|s| s.id == id) {
        Some(i) if ok(&wf.steps[i]) => Ok(i),
        Some(_) => Err(CliError::input(format!(
            "step {id:?} of {} is not {want}",
            wf.name
        ))),
        None => {
            let ids: Vec<&str> = wf.steps.iter().map(|s| s.id.as_str()).collect();
            Err(
                CliError::input(format!("workflow {} has no step {id:?}", wf.name))
                    .hint(format!("its steps: {}", ids.join(", "))),
            )
        }
    }
}

/// `portflow approve`.
pub async fn approve(
    app: &App,
    target: Target<'_>,
    step: Option<&str>,
    by: &str,
) -> Result<u8, CliError> {
    let applied = apply(app, &target, |wf, _| {
        if let Some(s) = step {
            step_index(wf, s, "an approval gate", |x| {
                x.gate.as_ref().is_some_and(|g| g.approval.is_some())
            })?;
        }
        Ok(Some(Input::Approve {
            step: step.map(str::to_string),
            by: by.to_string(),
        }))
    })
    .await;
    let (a, _) = match applied {
        Ok(x) => x,
        Err(e) => {
            return remote(app, &target, "approve", json!({"step": step, "by": by}), &e)
                .unwrap_or(Err(e));
        }
    };
    report(app, &target, "approved", &a, "")
}

/// `portflow signal`.
pub async fn signal(
    app: &App,
    target: Target<'_>,
    name: &str,
    data: Option<&str>,
    by: &str,
) -> Result<u8, CliError> {
    let data: Value = match data {
        None => Value::Null,
        Some(text) => serde_json::from_str(text).map_err(|e| {
            CliError::input(format!("--data is not JSON: {e}"))
                .hint(r#"e.g. --data '{"number_type": "OperatorConnect"}'"#)
        })?,
    };
    let applied = apply(app, &target, |_, _| {
        Ok(Some(Input::Signal {
            name: name.to_string(),
            data: data.clone(),
            by: by.to_string(),
        }))
    })
    .await;
    let (a, _) = match applied {
        Ok(x) => x,
        Err(e) => {
            return remote(
                app,
                &target,
                "signal",
                json!({"name": name, "data": data, "by": by}),
                &e,
            )
            .unwrap_or(Err(e));
        }
    };
    let extra = if a.changed == 0 {
        format!(" (none waits for signal {name:?})")
    } else {
        String::new()
    };
    report(app, &target, "signalled", &a, &extra)
}

/// `portflow cancel`.
pub async fn cancel(
    app: &App,
    target: Target<'_>,
    rollback: bool,
    reason: &str,
) -> Result<u8, CliError> {
    let applied = apply(app, &target, |_, inst| {
        Ok((!inst.is_terminal()).then(|| Input::Cancel {
            reason: reason.to_string(),
            rollback,
        }))
    })
    .await;
    let (a, _) = match applied {
        Ok(x) => x,
        Err(e) => {
            return remote(
                app,
                &target,
                "cancel",
                json!({"rollback": rollback, "reason": reason}),
                &e,
            )
            .unwrap_or(Err(e));
        }
    };
    let extra = if rollback {
        "; rollbacks run on resume"
    } else {
        ""
    };
    report(app, &target, "cancelled", &a, extra)
}

/// `portflow retry`.
pub async fn retry(
    app: &App,
    target: Target<'_>,
    from_step: Option<&str>,
    by: &str,
) -> Result<u8, CliError> {
    let applied = apply(app, &target, |wf, _| {
        let from = from_step
            .map(|s| step_index(wf, s, "a step", |_| true))
            .transpose()?;
        Ok(Some(Input::Retry {
            from_step: from,
            by: by.to_string(),
        }))
    })
    .await;
    let (a, _) = match applied {
        Ok(x) => x,
        Err(e) => {
            return remote(
                app,
                &target,
                "retry",
                json!({"from_step": from_step, "by": by}),
                &e,
            )
            .unwrap_or(Err(e));
        }
    };
    report(app, &target, "retried", &a, "")
}
