//! PowerShell backend: the Teams PowerShell module and the Skype for Business
//! Server shell, reached through a fixed host script (`host.ps1`, shipped in
//! this binary and never generated).
//!
//! - [`protocol`]: the JSON line protocol and its framing.
//! - [`ops`]: the host's operation table (cmdlet, allowed parameters,
//!   projected fields), equal to the script's own.
//! - [`runner`]: how a host starts (`local` pwsh, or `ssh` to a Windows box).
//! - [`process`]: one host process, one request at a time, with a deadline.
//! - [`session`]: a pool of hosts per part, sign-in and reconnection.
//! - [`errors`]: error records → the engine's error classes.
//! - [`tenant`]: [`tenant::PowerShellTenant`], the `Tenant` contract.
//!
//! Subject data only ever travels as JSON values that the script binds by
//! splatting a hashtable: a UPN such as `x'; Remove-CsOnlineUser -Identity y; '`
//! is a string parameter, never code.

pub mod errors;
pub mod ops;
pub mod process;
pub mod protocol;
pub mod runner;
pub mod session;
pub mod tenant;

use sha2::{Digest, Sha256};

/// The host script, byte for byte as shipped.
pub const HOST_SCRIPT: &str = include_str!("host.ps1");

/// SHA-256 of [`HOST_SCRIPT`] (lower-case hex), which the host reports in
/// `hello` so a stale copy on a remote box is refused.
pub fn script_sha256() -> String {
    let digest = Sha256::digest(HOST_SCRIPT.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
