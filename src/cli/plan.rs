//! `portflow plan FILE [--format csv|html]` and `portflow doctor FILE`. A plan is loaded here, as the user (warnings on our stderr, load
//! errors in full: the daemon's answer withholds what other files say), then
//! planned by the daemon when one holds the simulated tenants, else here.

use std::path::Path;

use super::error::CliError;
use super::print::print_warnings;
use crate::app::App;
use crate::client::{tenant_holder, unreachable};
use crate::report::run_report::Format as ReportFormat;
use crate::spec;

/// `portflow plan FILE [--format csv|html] [--out FILE]`.
pub async fn plan(
    app: &App,
    file: &Path,
    format: Option<ReportFormat>,
    out: Option<&Path>,
) -> Result<u8, CliError> {
    let format = crate::app::report::choose_format(app.json, format, out)?;
    let loaded = spec::load_run(file, &app.search_dirs())?;
    print_warnings(&loaded.warnings());
    let planned = match tenant_holder(app).map(|d| d.plan(file, app.json, format)) {
        Some(Err(e)) if unreachable(&e) => None,
        other => other,
    };
    let (text, code) = match planned {
        Some(p) => p?,
        None => crate::app::plan::plan_loaded(app, &loaded, format).await?,
    };
    super::inspect::emit(&text, out, &format!("the plan of {}", file.display()))?;
    Ok(code)
}

/// `portflow doctor FILE`: always here (it reads the backend, not the state
/// directory).
pub async fn doctor(app: &App, file: &Path) -> Result<u8, CliError> {
    let loaded = spec::load_run(file, &app.search_dirs())?;
    print_warnings(&loaded.warnings());
    let (text, code) = crate::app::doctor::doctor(app, &loaded).await?;
    print!("{text}");
    Ok(code)
}
