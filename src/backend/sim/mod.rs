//! The simulated tenant (embedded default backend).

mod config;

pub use config::SimConfig;
