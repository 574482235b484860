//! Talking to a running daemon: when `portflow serve` holds the state directory,
//! commands send their request to its local API instead of failing on the lock.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use super::serve::DAEMON_FILE;
use super::{App, CliError};

/// Where the daemon listens and its token, from `<state>/daemon.json`.
fn daemon(app: &App) -> Option<(String, String)> {
    let text = std::fs::read_to_string(app.state.join(DAEMON_FILE)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some((
        v["address"].as_str()?.to_string(),
        v["token"].as_str()?.to_string(),
    ))
}

/// One request to the daemon; returns the HTTP status and the JSON body.
pub fn request(
    app: &App,
    method: &str,
    path: &str,
    body: &Value,
) -> Result<(u16, Value), CliError> {
    let (addr, token) = daemon(app).ok_or_else(|| CliError::runtime("no daemon"))?;
    let unreachable = |e: std::io::Error| {
        CliError::runtime(format!("the daemon at {addr} does not answer: {e}")).hint(format!(
            "if no `portflow serve` runs, remove the stale {}",
            app.state.join(DAEMON_FILE).display()
        ))
    };
    let mut s = TcpStream::connect(&addr).map_err(unreachable)?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(300)));
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(unreachable)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(unreachable)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok((status, json))
}

/// After the store would not open: if a daemon holds it, run `command` there and
/// return the text it would have printed; otherwise report the original error.
pub fn via_daemon(
    app: &App,
    err: CliError,
    command: &str,
    query: &str,
) -> Result<String, CliError> {
    if err.code != super::exit::LOCKED || daemon(app).is_none() {
        return Err(err);
    }
    let (status, v) = request(
        app,
        "GET",
        &format!("/api/cli/{command}?{query}"),
        &Value::Null,
    )?;
    match (status, v["output"].as_str()) {
        (200, Some(out)) => Ok(out.to_string()),
        _ => Err(daemon_error(status, &v)),
    }
}

/// A daemon answer that is not a success, as a CLI error with the same exit code
/// the command would have had locally.
pub fn daemon_error(status: u16, v: &Value) -> CliError {
    let message = v["error"]
        .as_str()
        .unwrap_or("the daemon refused the request")
        .to_string();
    let err = match status {
        400 | 404 => CliError::input(message),
        401 => CliError::runtime(message)
            .hint("the token in daemon.json does not match the running daemon"),
        _ => CliError::runtime(message),
    };
    match v["hint"].as_str() {
        Some(h) => err.hint(h),
        None => err,
    }
}

/// Percent-encode a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether `<state>/daemon.json` names a daemon (it may have died since).
pub fn has_daemon(app: &App) -> bool {
    daemon(app).is_some()
}
