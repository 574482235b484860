//! `portflow backup DEST`: a consistent copy of the state directory, taken
//! while the daemon runs (through its API) or with no daemon at all.

use std::path::Path;

use super::error::CliError;
use super::print::print_json;
use crate::app::App;
use crate::client::{absolute, connect};
use crate::report::exit;

/// The `backup` command.
pub async fn backup(app: &App, dest: &Path) -> Result<u8, CliError> {
    let dest = absolute(dest)?;
    let done = connect(app)?.service().backup(&dest).await?;
    if app.json {
        print_json(&serde_json::to_value(&done).unwrap_or_default());
        return Ok(exit::OK);
    }
    let skipped: Vec<String> = done
        .simulated_tenants
        .iter()
        .filter_map(|s| s.skipped.as_ref().map(|why| format!("{}: {why}", s.tenant)))
        .collect();
    println!(
        "backed up {} to {} at {}: {} engine keys, {} simulated tenant(s)",
        done.from.display(),
        dest.display(),
        done.taken_at,
        done.engine_keys,
        done.simulated_tenants.len() - skipped.len()
    );
    for s in &skipped {
        println!("not copied: {s}");
    }
    println!(
        "restore: stop portflow, move {} aside, copy {} in its place, start portflow",
        app.state.display(),
        dest.display()
    );
    Ok(exit::OK)
}
