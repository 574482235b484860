//! portflow: a durable orchestrator for Microsoft Teams Phone migrations.
//!
//! Pipeline: `spec` (parse → validate) → `engine` (pure state machine + executor)
//! → `store` (sled, group commit) and `backend` (the tenant: simulator, Graph, PowerShell).

pub mod api;
pub mod app;
pub mod backend;
// Benchmarks measure real elapsed time.
#[allow(clippy::disallowed_methods)]
pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod daemon;
pub mod engine;
pub mod metrics;
pub mod report;
pub mod schedule;
pub mod shell;
pub mod spec;
pub mod store;
