//! `portflow schedule add|list|show|pause|resume|rm`, here or through the
//! daemon; both answer the same JSON view, printed the same way.

use std::path::Path;

use super::args::ScheduleCommand;
use super::error::CliError;
use super::print::print_json;
use crate::app::schedules::{render_list, render_show, ScheduleOp};
use crate::app::App;
use crate::client::connect;
use crate::report::exit;

/// Run one `portflow schedule …` command.
pub async fn command(app: &App, cmd: ScheduleCommand) -> Result<u8, CliError> {
    let conn = connect(app)?;
    let (op, shown) = op(app, cmd)?;
    let v = conn.service().schedule(op).await?;
    if app.json {
        print_json(&v);
        return Ok(exit::OK);
    }
    let name = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("-").to_string();
    match shown {
        Shown::List => print!("{}", render_list(&v)),
        Shown::Show => print!("{}", render_show(&v)),
        Shown::Changed(what) => println!("schedule {} {what}", name(&v, "name")),
        Shown::Removed => println!("schedule {} removed; its runs stay", name(&v, "removed")),
    }
    Ok(exit::OK)
}

/// How the answer is shown.
enum Shown {
    List,
    Show,
    Changed(&'static str),
    Removed,
}

fn op(app: &App, cmd: ScheduleCommand) -> Result<(ScheduleOp, Shown), CliError> {
    Ok(match cmd {
        ScheduleCommand::Add { file, replace } => (
            ScheduleOp::Add {
                specs: load_file(app, &file)?,
                replace,
            },
            Shown::List,
        ),
        ScheduleCommand::List => (ScheduleOp::List, Shown::List),
        ScheduleCommand::Show { name } => (ScheduleOp::Show(name), Shown::Show),
        ScheduleCommand::Pause { name } => (ScheduleOp::Pause(name), Shown::Changed("paused")),
        ScheduleCommand::Resume { name } => (ScheduleOp::Resume(name), Shown::Changed("resumed")),
        ScheduleCommand::Rm { name } => (ScheduleOp::Remove(name), Shown::Removed),
    })
}

fn load_file(app: &App, file: &Path) -> Result<Vec<crate::schedule::ScheduleSpec>, CliError> {
    Ok(crate::spec::load_schedules(file, &app.search_dirs())?)
}
