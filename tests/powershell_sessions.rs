//! The PowerShell session pool on its own, against the test host
//! (`portflow-fake-pwsh`) without a tenant: how many hosts it starts, what it
//! refuses at start-up, and what it does with a host that dies, hangs or is
//! abandoned mid-request.

#![allow(clippy::disallowed_methods)] // drives real processes on real time

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portflow::backend::powershell::ops::{host_op, Part};
use portflow::backend::powershell::runner::HostCommand;
use portflow::backend::powershell::session::{Session, SessionAuth, SessionConfig};
use portflow::backend::ErrorKind;
use portflow::clock::SystemClock;
use serde_json::{json, Map, Value};

const FAKE: &str = env!("CARGO_BIN_EXE_portflow-fake-pwsh");

/// An `onprem` pool of `size` test hosts with `env`, signing in as the SSH
/// account (no tokens: the test host then refuses calls as unauthorised,
/// which is enough to exercise the pool).
fn pool(program: &str, size: usize, timeout: Duration, env: &[(&str, &str)]) -> Session {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Session::new(
        SessionConfig {
            part: Part::Onprem,
            command: HostCommand::local(Path::new(program), Path::new("/unused/host.ps1"), &env),
            size,
            timeout,
            connect_timeout: Duration::from_secs(10),
            auth: SessionAuth::Windows { tokens: None },
        },
        Arc::new(SystemClock),
    )
}

fn get_cs_user() -> Map<String, Value> {
    let mut a = Map::new();
    a.insert("Identity".into(), json!("a@contoso.com"));
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_never_starts_more_hosts_than_its_size() {
    let s = Arc::new(pool(
        FAKE,
        2,
        Duration::from_secs(10),
        &[("PORTFLOW_FAKE_PWSH_SLOW_MS", "150")],
    ));
    let hello = s.probe().await.expect("a host starts");
    assert_eq!(hello.ps_version, "7.4.6");
    assert_eq!(
        hello.modules.get("SkypeForBusiness"),
        Some(&Some("7.0.0".to_string()))
    );
    let op = host_op("get_cs_user").expect("op");
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.call(op, get_cs_user(), true).await })
        })
        .collect();
    for c in calls {
        let answer = c.await.expect("joined");
        // No tokens: refused, after one sign-in again.
        assert_eq!(answer.map_err(|e| e.kind), Err(ErrorKind::Auth));
    }
    assert_eq!(
        s.processes_started(),
        2,
        "one request at a time per host, two hosts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_script_or_a_missing_module_is_refused_with_the_fix() {
    let stale = pool(
        FAKE,
        1,
        Duration::from_secs(5),
        &[("PORTFLOW_FAKE_PWSH_STALE", "1")],
    );
    let e = stale.probe().await.expect_err("refused");
    assert_eq!(e.kind, ErrorKind::Fatal);
    assert!(
        e.message.contains("is not this portflow's")
            && e.message.contains("portflow powershell script"),
        "{e}"
    );
    let bare = pool(
        FAKE,
        1,
        Duration::from_secs(5),
        &[("PORTFLOW_FAKE_PWSH_MODULES", "MicrosoftTeams")],
    );
    let e = bare.probe().await.expect_err("refused");
    assert!(
        e.message
            .contains("the SkypeForBusiness module is not installed"),
        "{e}"
    );
    let missing = pool("/nonexistent/pwsh", 1, Duration::from_secs(5), &[]);
    let e = missing.probe().await.expect_err("refused");
    assert_eq!(e.kind, ErrorKind::Fatal);
    assert!(
        e.message
            .contains("could not be started: `/nonexistent/pwsh`"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_dies_or_hangs_is_replaced_and_the_outcome_is_unknown() {
    let op = host_op("set_cs_user").expect("op");
    let mut args = get_cs_user();
    args.insert("LineURI".into(), Value::Null);
    // Every call crashes its host: an action is not sent again.
    let crashing = pool(
        FAKE,
        1,
        Duration::from_secs(5),
        &[("PORTFLOW_FAKE_PWSH_FAULTS", "crash=1,seed=3")],
    );
    let e = crashing
        .call(op, args.clone(), false)
        .await
        .expect_err("no answer");
    assert!(e.outcome_unknown && e.kind == ErrorKind::Transient, "{e:?}");
    assert!(
        e.message.contains("whether the cmdlet ran is unknown"),
        "{e}"
    );
    assert_eq!(crashing.processes_started(), 1);
    // A read is sent once more, on a fresh host.
    let read = host_op("get_cs_user").expect("op");
    let _ = crashing
        .call(read, get_cs_user(), true)
        .await
        .expect_err("crashes again");
    assert_eq!(crashing.processes_started(), 3);
    // A hang past the deadline: killed, replaced on the next call.
    let hanging = pool(
        FAKE,
        1,
        Duration::from_millis(400),
        &[("PORTFLOW_FAKE_PWSH_FAULTS", "hang=1,seed=3")],
    );
    let e = hanging.call(op, args, false).await.expect_err("no answer");
    assert!(
        e.outcome_unknown && e.message.contains("gave no reply within 400ms"),
        "{e}"
    );
    assert_eq!(hanging.processes_started(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_abandoned_mid_flight_restarts_its_host() {
    let s = pool(
        FAKE,
        1,
        Duration::from_secs(10),
        &[("PORTFLOW_FAKE_PWSH_SLOW_MS", "800")],
    );
    let op = host_op("get_cs_user").expect("op");
    // The caller gives up (as the engine does at its call deadline).
    let gave_up =
        tokio::time::timeout(Duration::from_millis(200), s.call(op, get_cs_user(), true)).await;
    assert!(gave_up.is_err(), "still running when abandoned");
    assert_eq!(s.processes_started(), 1);
    // Its late reply must not answer the next request: a fresh host does.
    let answer = s.call(op, get_cs_user(), true).await;
    assert_eq!(answer.map_err(|e| e.kind), Err(ErrorKind::Auth));
    assert_eq!(s.processes_started(), 2);
}
