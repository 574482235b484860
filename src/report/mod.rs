//! Human output: aligned tables and number formatting.

pub mod table;
