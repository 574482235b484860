//! `approve`, `signal`, `cancel`, `retry`: the same request here or through
//! the daemon, and one report of what it changed.

use serde_json::Value;

use super::error::CliError;
use super::print::print_json;
use crate::api::OperateBody;
use crate::app::operate::past;
use crate::app::{App, Error};
use crate::client::connect;
use crate::report::exit;

/// The end of the line when the run's live driver takes the input: the same
/// through `portflow serve` and through a foreground run.
const DRIVEN_NOTE: &str = " (taken by the run's live driver; no resume needed)";

/// Send `verb` and print what it changed. Stored only, `extra` ends the lines
/// and `nothing` the error when nothing applied; taken by a live driver (the
/// daemon's or a foreground run's), a note says so and no resume is needed.
async fn send(
    app: &App,
    run: &str,
    verb: &str,
    body: OperateBody,
    extra: &str,
    nothing: &str,
) -> Result<u8, CliError> {
    let conn = connect(app)?;
    let run = &conn.run_id(run).await?;
    let service = conn.service();
    let subject = body.subject.clone();
    let a = match service.operate(run, verb, &body).await {
        Ok(a) => a,
        Err(e @ Error::NothingApplies { .. }) => {
            let mut err = CliError::from(e);
            err.message.push_str(nothing);
            err.message.push_str(extra);
            return Err(err);
        }
        Err(e) => return Err(e.into()),
    };
    let extra = if a.driven { DRIVEN_NOTE } else { extra };
    let verb = past(verb);
    if app.json {
        print_json(&serde_json::json!({
            "run": run, "subject": subject, "action": verb,
            "changed": a.changed, "unchanged": a.unchanged,
        }));
    } else {
        println!(
            "{verb}: {} instance(s) of run {run} changed, {} not applicable{extra}",
            a.changed, a.unchanged
        );
        if !a.driven {
            // Nothing drives the run until someone resumes it.
            println!("continue with: portflow resume {run}");
        }
    }
    Ok(exit::OK)
}

/// `portflow approve`.
pub async fn approve(
    app: &App,
    run: &str,
    subject: Option<&str>,
    step: Option<&str>,
    by: &str,
) -> Result<u8, CliError> {
    let body = OperateBody {
        subject: subject.map(str::to_string),
        step: step.map(str::to_string),
        by: Some(by.to_string()),
        ..OperateBody::default()
    };
    send(app, run, "approve", body, "", "").await
}

/// `portflow signal`.
pub async fn signal(
    app: &App,
    run: &str,
    subject: Option<&str>,
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
    let body = OperateBody {
        subject: subject.map(str::to_string),
        name: Some(name.to_string()),
        data,
        by: Some(by.to_string()),
        ..OperateBody::default()
    };
    let nothing = format!(" (none waits for signal {name:?})");
    send(app, run, "signal", body, "", &nothing).await
}

/// `portflow cancel`.
pub async fn cancel(
    app: &App,
    run: &str,
    subject: Option<&str>,
    rollback: bool,
    reason: &str,
) -> Result<u8, CliError> {
    let body = OperateBody {
        subject: subject.map(str::to_string),
        rollback,
        reason: Some(reason.to_string()),
        ..OperateBody::default()
    };
    let extra = if rollback {
        "; rollbacks run on resume"
    } else {
        ""
    };
    send(app, run, "cancel", body, extra, "").await
}

/// `portflow retry`.
pub async fn retry(
    app: &App,
    run: &str,
    subject: Option<&str>,
    from_step: Option<&str>,
    by: &str,
) -> Result<u8, CliError> {
    let body = OperateBody {
        subject: subject.map(str::to_string),
        from_step: from_step.map(str::to_string),
        by: Some(by.to_string()),
        ..OperateBody::default()
    };
    send(app, run, "retry", body, "", "").await
}
