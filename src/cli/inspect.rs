//! `status`, `show`, `outages`: read-only views, here or through the daemon.

use super::error::CliError;
use crate::app::outages::Format;
use crate::app::App;
use crate::client::connect;
use crate::report::exit;

/// `portflow status [RUN]`.
pub async fn status(app: &App, run: Option<&str>) -> Result<u8, CliError> {
    let conn = connect(app)?;
    let run = match run {
        Some(r) => Some(conn.run_id(r).await?),
        None => None,
    };
    print!(
        "{}",
        conn.service()
            .status(run.as_deref(), app.json, app.zone)
            .await?
    );
    Ok(exit::OK)
}

/// `portflow show RUN SUBJECT`.
pub async fn show(app: &App, run: &str, subject: &str) -> Result<u8, CliError> {
    let conn = connect(app)?;
    let run = conn.run_id(run).await?;
    print!(
        "{}",
        conn.service()
            .show(&run, subject, app.json, app.zone)
            .await?
    );
    Ok(exit::OK)
}

/// `portflow outages RUN [--csv]`.
pub async fn outages(app: &App, run: &str, csv: bool) -> Result<u8, CliError> {
    let format = Format::from_flags(app.json, csv)?;
    let conn = connect(app)?;
    let run = conn.run_id(run).await?;
    print!("{}", conn.service().outages(&run, format, app.zone).await?);
    Ok(exit::OK)
}
