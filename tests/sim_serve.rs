//! `portflow sim serve`: the served tenant answers a token request and Graph,
//! holds its store while serving, and stops cleanly on SIGTERM.

// The integration tests drive real processes on real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{portflow, repo, run, stderr};

const TENANT: &str = "2f1c0000-0000-4000-8000-000000000001";
const CLIENT: &str = "9a3e0000-0000-4000-8000-000000000002";

fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::copy(
        repo().join("tests/fixtures/graph/test-app-cert.pem"),
        dir.join("app-cert.pem"),
    )
    .expect("copy cert");
    let path = dir.join("serve.yaml");
    std::fs::write(
        &path,
        format!(
            "tenant_id: {TENANT}\nsim: {{seed: 7, users: 5}}\ntime_scale: 60\napp:\n  \
             client_id: {CLIENT}\n  certificate: app-cert.pem\n  \
             client_secret: {{env: SIM_SERVE_TEST_SECRET}}\n  \
             missing_permissions: [TeamsPolicyUserAssign.ReadWrite.All]\n"
        ),
    )
    .expect("write config");
    path
}

/// Start the server; its child and (graph base, token URL) from its line.
fn start(state: &std::path::Path, config: &std::path::Path) -> (Child, String, String) {
    let mut child = portflow(state)
        .args([
            "sim",
            "serve",
            "--name",
            "served",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(config)
        .env("SIM_SERVE_TEST_SECRET", "the-app-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read line");
    let rest = line
        .strip_prefix("serving simulated tenant served as Microsoft Graph at ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    let (base, rest) = rest
        .split_once(" (token endpoint ")
        .expect("token endpoint");
    let token_url = rest
        .trim_end()
        .strip_suffix(')')
        .expect("closing parenthesis");
    assert_eq!(token_url, format!("{base}/{TENANT}/oauth2/v2.0/token"));
    (child, base.to_string(), token_url.to_string())
}

/// Kills the server if a test fails before stopping it.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn stop(mut child: Child) {
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let t0 = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn serves_tokens_and_graph_until_sigterm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let config = write_config(tmp.path());
    let (child, base, token_url) = start(&state, &config);
    let mut guard = Guard(Some(child));
    portflow::backend::graph::install_crypto_provider();
    let http = reqwest::Client::new();
    let scope = format!("{base}/.default");
    let form = |secret: &str| {
        vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", CLIENT.to_string()),
            ("scope", scope.clone()),
            ("client_secret", secret.to_string()),
        ]
    };
    let refused = http
        .post(&token_url)
        .form(&form("wrong"))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status().as_u16(), 401);
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["error_codes"], serde_json::json!([7000215]));
    let granted = http
        .post(&token_url)
        .form(&form("the-app-secret"))
        .send()
        .await
        .expect("post");
    assert_eq!(granted.status().as_u16(), 200);
    let grant: serde_json::Value = granted.json().await.expect("json");
    let token = grant["access_token"].as_str().expect("token").to_string();
    let user = http
        .get(format!("{base}/v1.0/users/user0001@contoso.com"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(user.status().as_u16(), 200);

    // The tenant is held while serving.
    let second = run(portflow(&state).args(["sim", "log", "served"]));
    assert!(!second.status.success(), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("in use by another process"),
        "{}",
        stderr(&second)
    );

    stop(guard.0.take().expect("child"));
    // Closed cleanly: it opens again.
    let log = run(portflow(&state).args(["sim", "log", "served"]));
    assert!(log.status.success(), "{}", stderr(&log));
}

#[test]
fn refuses_a_network_address_and_a_missing_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let config = write_config(tmp.path());
    let o = run(portflow(&state)
        .args([
            "sim",
            "serve",
            "--name",
            "x",
            "--listen",
            "0.0.0.0:0",
            "--config",
        ])
        .arg(&config));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("loopback"), "{}", stderr(&o));
    let o = run(portflow(&state).args(["sim", "serve", "--name", "x"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("client_id:"), "{}", stderr(&o));
    assert!(!state.join("sim/x").exists());
}
