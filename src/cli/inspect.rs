//! `status`, `show`, `outages`, `report`: read-only views, here or through the daemon.

use std::path::Path;

use super::error::CliError;
use crate::app::outages::Format;
use crate::app::App;
use crate::client::connect;
use crate::report::exit;
use crate::report::run_report::Format as ReportFormat;

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

/// `portflow report RUN [--format F] [--out FILE]`.
pub async fn report(
    app: &App,
    run: &str,
    format: Option<ReportFormat>,
    out: Option<&Path>,
) -> Result<u8, CliError> {
    let format =
        crate::app::report::choose_format(app.json, format, out)?.unwrap_or(ReportFormat::Json);
    let conn = connect(app)?;
    let run = conn.run_id(run).await?;
    let zone = app.zone.to_string();
    let zone = app.zone_chosen.then_some(zone.as_str());
    let text = conn.service().report(&run, format, zone).await?;
    emit(
        &text,
        out,
        &format!("the {} report of run {run}", format.name()),
    )?;
    Ok(exit::OK)
}

/// Print `text`, or write it whole to `out` and say so on stderr.
pub(super) fn emit(text: &str, out: Option<&Path>, what: &str) -> Result<(), CliError> {
    match out {
        Some(path) => {
            crate::app::report::write_atomically(path, text)?;
            eprintln!("wrote {what} to {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
