//! `portflow sim …`: create a simulated tenant, read its audit log and outages.

use super::args::SimCommand;
use super::error::CliError;
use super::print::print_json;
use crate::app::App;
use crate::client::{tenant_holder, unreachable};
use crate::report::exit;

/// Run one `portflow sim …` command.
pub fn sim(app: &App, cmd: SimCommand) -> Result<u8, CliError> {
    match cmd {
        SimCommand::Init {
            name,
            seed,
            users,
            profile,
            export,
        } => {
            let (name, dir) =
                crate::app::sim::init(app, name, seed, users, &profile, export.as_deref())?;
            if app.json {
                print_json(
                    &serde_json::json!({"tenant": name, "dir": dir, "users": users, "seed": seed}),
                );
            } else {
                println!(
                    "simulated tenant {name:?} in {} ({users} users, seed {seed})",
                    dir.display()
                );
                if let Some(p) = export {
                    println!("subjects written to {}", p.display());
                }
                println!("use it from a run file with: backend: {{kind: sim, tenant: {name}}}");
            }
            Ok(exit::OK)
        }
        SimCommand::Log { tenant, user } => {
            print!("{}", read_text(app, "log", &tenant, user.as_deref())?);
            Ok(exit::OK)
        }
        SimCommand::Outages { tenant } => {
            print!("{}", read_text(app, "outages", &tenant, None)?);
            Ok(exit::OK)
        }
    }
}

/// `sim log` / `sim outages` output. A daemon whose runs hold the tenant answers
/// for it; otherwise the tenant is opened here.
fn read_text(app: &App, what: &str, tenant: &str, user: Option<&str>) -> Result<String, CliError> {
    if let Some(d) = tenant_holder(app) {
        match d.sim_text(what, tenant, user, app.json) {
            Err(e) if unreachable(&e) => {}
            other => return Ok(other?),
        }
    }
    Ok(crate::app::sim::sim_text(
        app, None, what, tenant, user, app.json,
    )?)
}
