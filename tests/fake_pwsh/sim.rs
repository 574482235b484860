//! The call to sim serve's Teams PowerShell endpoint
//! (`POST /portflow-sim/v1/execute`), with the session's Teams token.

use std::time::Duration;

use portflow::backend::sim::graph::powershell::EXECUTE_PATH;
use portflow::backend::{BackendError, Operation};
use serde_json::{json, Value};

/// What sim serve answered.
pub enum Outcome {
    /// The tenant's answer.
    Ok(Value),
    /// The tenant's error.
    Failed(BackendError),
    /// 401: the token was refused.
    Unauthorized,
    /// sim serve could not be reached or answered nonsense.
    Broken(String),
}

/// A client of one sim serve.
pub struct Sim {
    http: reqwest::Client,
    url: String,
}

impl Sim {
    /// The client of sim serve at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Result<Sim, String> {
        portflow::backend::graph::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            // Loopback: an HTTP_PROXY of the environment must not apply.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Sim {
            http,
            url: format!("{}{EXECUTE_PATH}", base.trim_end_matches('/')),
        })
    }

    /// Run `op` with `token`; `key` and `attempt` as a real backend would
    /// record them (the simulator ignores both).
    pub async fn execute(
        &self,
        token: &str,
        op: &Operation,
        key: Option<String>,
        attempt: u32,
    ) -> Outcome {
        let body = json!({"op": op, "key": key, "attempt": attempt});
        let resp = match self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Outcome::Broken(format!("sim serve at {} failed: {e}", self.url)),
        };
        let status = resp.status().as_u16();
        if status == 401 {
            return Outcome::Unauthorized;
        }
        let text = resp.text().await.unwrap_or_default();
        if status != 200 {
            return Outcome::Broken(format!("sim serve answered {status}: {text}"));
        }
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return Outcome::Broken(format!("sim serve answered unreadable JSON: {e}")),
        };
        match v.get("ok") {
            Some(Value::Bool(true)) => Outcome::Ok(v.get("result").cloned().unwrap_or(Value::Null)),
            Some(Value::Bool(false)) => {
                match serde_json::from_value(v.get("error").cloned().unwrap_or(Value::Null)) {
                    Ok(e) => Outcome::Failed(e),
                    Err(e) => {
                        Outcome::Broken(format!("sim serve answered an unreadable error: {e}"))
                    }
                }
            }
            _ => Outcome::Broken(format!("sim serve answered {text}")),
        }
    }
}
