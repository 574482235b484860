//! PowerShell backend: the Teams PowerShell module and the Skype for Business
//! Server shell, reached through a fixed host script (`host.ps1`, shipped in
//! this binary and never generated).
//!
//! - [`protocol`]: the JSON line protocol and its framing.
//! - [`ops`]: the host's operation table (cmdlet, allowed parameters,
//!   projected fields), equal to the script's own.
//!
//! Subject data only ever travels as JSON values that the script binds by
//! splatting a hashtable: a UPN such as `x'; Remove-CsOnlineUser -Identity y; '`
//! is a string parameter, never code.

pub mod ops;
pub mod protocol;

use sha2::{Digest, Sha256};

/// The host script, byte for byte as shipped.
pub const HOST_SCRIPT: &str = include_str!("host.ps1");

/// SHA-256 of [`HOST_SCRIPT`] (lower-case hex), which the host reports in
/// `hello` so a stale copy on a remote box is refused.
pub fn script_sha256() -> String {
    let digest = Sha256::digest(HOST_SCRIPT.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
