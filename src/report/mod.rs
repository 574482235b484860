//! Human output: aligned tables and number formatting, escaping for one line,
//! HTML and spreadsheets; a run's outcome and the one exit-code rule; error
//! messages grouped by cause; the run and plan reports (JSON, CSV, HTML).

pub mod escape;
pub mod exit;
pub mod html;
pub mod normalise;
pub mod outcome;
pub mod plan_report;
pub mod run_report;
pub mod table;
pub mod zone;
