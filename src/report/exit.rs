//! Exit codes of the `portflow` binary (documented in docs/operations.md).

/// Success.
pub const OK: u8 = 0;
/// Runtime error: backend, storage.
pub const RUNTIME: u8 = 1;
/// Bad input or usage.
pub const INPUT: u8 = 2;
/// The run ended with failed or needs-attention instances.
pub const FAILED: u8 = 3;
/// The state directory is locked by another process.
pub const LOCKED: u8 = 4;
/// A store in the state directory is damaged (will not open, lost writes,
/// a record fails its checksum) or a simulated tenant's state is gone.
pub const DAMAGED: u8 = 5;
/// Stopped by Ctrl-C / SIGTERM; resumable.
pub const INTERRUPTED: u8 = 130;
