//! `portflow sim …`: create a simulated tenant, read its audit log and
//! outages, serve it as Microsoft Graph.

use super::args::SimCommand;
use super::error::CliError;
use super::print::print_json;
use crate::app::App;
use crate::client::{tenant_holder, unreachable};
use crate::report::exit;

/// Run one `portflow sim …` command.
pub async fn sim(app: &App, cmd: SimCommand) -> Result<u8, CliError> {
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
        SimCommand::Serve {
            name,
            listen,
            config,
        } => serve(app, &name, listen, config.as_deref()).await,
    }
}

#[cfg(feature = "graph")]
async fn serve(
    app: &App,
    name: &str,
    listen: std::net::SocketAddr,
    config: Option<&std::path::Path>,
) -> Result<u8, CliError> {
    let s = crate::app::sim_serve::start(app, name, listen, config).await?;
    // One line, flushed: scripts and tests read the URLs from it.
    let line = if app.json {
        serde_json::json!({"tenant": s.name, "graph": s.base_url, "token_endpoint": s.token_url})
            .to_string()
    } else {
        format!(
            "serving simulated tenant {} as Microsoft Graph at {} (token endpoint {})",
            s.name, s.base_url, s.token_url
        )
    };
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    drop(out);
    s.run().await?;
    Ok(exit::OK)
}

#[cfg(not(feature = "graph"))]
async fn serve(
    _: &App,
    _: &str,
    _: std::net::SocketAddr,
    _: Option<&std::path::Path>,
) -> Result<u8, CliError> {
    Err(crate::app::Error::input("sim serve needs portflow built with the `graph` feature").into())
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
