//! Human output: aligned tables and number formatting, escaping for one line;
//! a run's outcome and the exit codes; error messages grouped by cause.

pub mod escape;
pub mod exit;
pub mod normalise;
pub mod outcome;
pub mod table;
pub mod zone;
