//! Human output: aligned tables and number formatting; a run's outcome and exit code.

pub mod outcome;
pub mod table;
