//! The engine: the pure instance state machine, and the executor that feeds it
//! timers and backend results, commits its transitions and performs its effects.

pub mod budget;
pub mod eta;
pub mod executor;
pub mod figures;
pub mod instance;
pub mod limiter;
pub mod machine;
pub mod run;
pub mod space;

#[cfg(test)]
mod machine_tests;

#[cfg(test)]
mod executor_tests;
