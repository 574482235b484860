//! The test PowerShell host (`portflow-fake-pwsh`) by hand, through the
//! protocol types: against `portflow sim serve` (signing in with the test
//! certificate for Graph and Teams tokens), and alone for its faults.

// The integration tests drive real processes on real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portflow::backend::graph::auth::{Certificate, Credential, JwtAlg, TokenSource};
use portflow::backend::powershell::protocol::{
    parse_line, ConnectAuth, HostError, Line, Reply, Request, FRAME,
};
use portflow::backend::powershell::script_sha256;
use portflow::backend::sim::graph::token::TEAMS_SCOPE;
use portflow::clock::{Clock as _, SystemClock};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use common::{portflow, repo};

const TENANT: &str = "2f1c0000-0000-4000-8000-000000000001";
const CLIENT: &str = "9a3e0000-0000-4000-8000-000000000002";
const HOSTILE: &str = "x'; Remove-CsOnlineUser -Identity y; '$(whoami)`\u{2019}é😀\"@";
const TEAMS_NS: &str = "Microsoft.Teams.ConfigAPI.Cmdlets.Generated.Cmdlets";

/// A running `portflow sim serve`.
struct Server {
    child: Child,
    url: String,
    token_url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(time_scale: u32, profile: &str, faults: &str) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("serve.yaml");
    std::fs::write(
        &cfg,
        format!(
            "tenant_id: {TENANT}\n\
             sim:\n  seed: 7\n  users: 6\n  profile: {profile}\n  \
             latency: {{min: 0s, typical_max: 0s, tail_rate: 0}}\n\
             time_scale: {time_scale}\n\
             app:\n  client_id: {CLIENT}\n  certificate: {}\n\
             faults: {{{faults}}}\n",
            repo()
                .join("tests/fixtures/graph/test-app-cert.pem")
                .display()
        ),
    )
    .expect("write serve file");
    let mut child = portflow(&dir.path().join("state"))
        .args([
            "sim",
            "serve",
            "--name",
            "served",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sim serve");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = match lines.next() {
        Some(Ok(l)) => l,
        other => {
            let _ = child.kill();
            panic!("sim serve printed no address: {other:?}");
        }
    };
    // Keep reading so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let words: Vec<&str> = first.split_whitespace().collect();
    let url = words
        .iter()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    let token_url = format!("{url}/{TENANT}/oauth2/v2.0/token");
    Server {
        child,
        url,
        token_url,
        _dir: dir,
    }
}

impl Server {
    /// An access token for `scope`, signed in with the test certificate.
    async fn token(&self, scope: &str) -> String {
        let cert = Certificate::from_pem_file(
            &repo().join("tests/fixtures/graph/test-app.pem"),
            JwtAlg::Rs256,
        )
        .expect("test certificate");
        let source = TokenSource {
            client_id: CLIENT.into(),
            credential: Credential::Certificate(Arc::new(cert)),
            token_url: self.token_url.clone(),
            scope: scope.into(),
        };
        let form = source.form(SystemClock.now()).expect("form");
        let r = http()
            .post(&self.token_url)
            .form(form.fields())
            .send()
            .await
            .expect("token request");
        assert_eq!(r.status().as_u16(), 200, "token for {scope}");
        let grant: Value = r.json().await.expect("grant");
        grant["access_token"].as_str().expect("token").to_string()
    }

    /// `[graph, teams]`, as `Connect-MicrosoftTeams -AccessTokens` takes them.
    async fn tokens(&self) -> Vec<String> {
        vec![
            self.token(&format!("{}/.default", self.url)).await,
            self.token(TEAMS_SCOPE).await,
        ]
    }
}

fn http() -> reqwest::Client {
    portflow::backend::graph::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A running fake host and what it printed besides replies.
struct Host {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    noise: Vec<String>,
    next: u64,
}

fn host(env: &[(&str, String)]) -> Host {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_portflow-fake-pwsh"));
    // What portflow passes; the fake ignores it.
    cmd.args([
        "-NoLogo",
        "-NoProfile",
        "-NonInteractive",
        "-File",
        "host.ps1",
    ])
    .env_remove("PORTFLOW_FAKE_PWSH_SIM")
    .env_remove("PORTFLOW_FAKE_PWSH_FAULTS")
    .env_remove("PORTFLOW_FAKE_PWSH_LOG")
    .env_remove("PORTFLOW_FAKE_PWSH_SLOW_MS")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn the fake host");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    Host {
        child,
        stdin,
        stdout,
        noise: Vec::new(),
        next: 0,
    }
}

impl Host {
    fn id(&mut self) -> String {
        self.next += 1;
        self.next.to_string()
    }

    async fn send(&mut self, r: &Request) {
        self.stdin
            .write_all(r.to_line().as_bytes())
            .await
            .expect("write request");
        self.stdin.flush().await.expect("flush");
    }

    /// The next framed line (noise set aside), or `None` at end of stdout.
    async fn line(&mut self, within: Duration) -> Option<Line> {
        loop {
            let next = tokio::time::timeout(within, self.stdout.next_line())
                .await
                .expect("the fake host answered in time")
                .expect("read stdout")?;
            match parse_line(&next) {
                Line::Noise => {
                    assert!(!next.contains(FRAME), "{next:?}");
                    self.noise.push(next);
                }
                framed => return Some(framed),
            }
        }
    }

    async fn request(&mut self, r: Request) -> Reply {
        self.send(&r).await;
        match self.line(Duration::from_secs(20)).await {
            Some(Line::Reply(reply)) => {
                assert_eq!(reply.id, r.id(), "{reply:?}");
                reply
            }
            other => panic!("no reply to {r:?}: {other:?}"),
        }
    }

    async fn hello(&mut self) -> Reply {
        let id = self.id();
        self.request(Request::Hello { id }).await
    }

    async fn connect(&mut self, part: &str, auth: ConnectAuth) -> Reply {
        let id = self.id();
        let part = part.to_string();
        self.request(Request::Connect { id, part, auth }).await
    }

    fn call_request(&mut self, op: &str, args: Value) -> Request {
        let Value::Object(args) = args else {
            panic!("args are an object")
        };
        Request::Call {
            id: self.id(),
            op: op.into(),
            args,
        }
    }

    async fn call(&mut self, op: &str, args: Value) -> Reply {
        let r = self.call_request(op, args);
        self.request(r).await
    }

    async fn ok(&mut self, op: &str, args: Value) -> Value {
        let r = self.call(op, args.clone()).await;
        assert!(r.ok, "{op} {args}: {:?}", r.error);
        r.result
    }

    async fn err(&mut self, op: &str, args: Value) -> HostError {
        let r = self.call(op, args.clone()).await;
        assert!(!r.ok, "{op} {args} succeeded: {}", r.result);
        r.error.expect("an error record")
    }
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("log line is JSON"))
        .collect()
}

/// A user whose line is assigned online (not an on-premises line).
async fn online_line_user(h: &mut Host) -> (String, Value) {
    for i in 1..=6 {
        let upn = format!("user{i:04}@contoso.com");
        let u = h.ok("get_online_user", json!({"Identity": upn})).await;
        if u["LineURI"].is_string() && u["OnPremLineURI"].is_null() {
            return (upn, u);
        }
    }
    panic!("no seeded user has an online line");
}

async fn number_rows(h: &mut Host, number: &str) -> Vec<Value> {
    match h
        .ok("get_number_assignment", json!({"TelephoneNumber": number}))
        .await
    {
        Value::Array(rows) => rows,
        other => panic!("rows, not {other}"),
    }
}

/// Poll `get_number_assignment` until `done` holds for its rows.
async fn wait_rows(h: &mut Host, number: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let rows = number_rows(h, number).await;
        if done(&rows) {
            return rows;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_fake_host_speaks_the_protocol_on_the_served_tenant() {
    let server = serve(60, "direct_routing", "");
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("fake-pwsh.log");
    let mut h = host(&[
        ("PORTFLOW_FAKE_PWSH_SIM", server.url.clone()),
        ("PORTFLOW_FAKE_PWSH_LOG", log.display().to_string()),
        ("PORTFLOW_FAKE_PWSH_FAULTS", "noise=1,seed=3".into()),
    ]);
    let hello = h.hello().await;
    assert!(hello.ok, "{hello:?}");
    assert_eq!(hello.result["protocol"], 1);
    assert_eq!(hello.result["script_sha256"], script_sha256());
    assert_eq!(hello.result["modules"]["MicrosoftTeams"], "7.0.0");
    // pwsh's banner and the module's warning, before any reply, unframed.
    assert!(
        h.noise.iter().any(|l| l.starts_with("PowerShell 7")),
        "{:?}",
        h.noise
    );
    assert!(
        h.noise.iter().any(|l| l.starts_with("WARNING: ")),
        "{:?}",
        h.noise
    );

    // Calls before connecting are refused by the host itself.
    let e = h
        .err(
            "get_online_user",
            json!({"Identity": "user0001@contoso.com"}),
        )
        .await;
    assert_eq!(e.fqid, "NotConnected,PortflowHost", "{e:?}");

    let tokens = server.tokens().await;
    let c = h
        .connect(
            "teams",
            ConnectAuth::AccessTokens {
                tokens: tokens.clone(),
            },
        )
        .await;
    assert!(c.ok, "{c:?}");
    assert_eq!(
        c.result,
        json!({"connected": true, "module": "MicrosoftTeams", "module_version": "7.0.0"})
    );
    let one = h
        .connect(
            "teams",
            ConnectAuth::AccessTokens {
                tokens: vec![tokens[1].clone()],
            },
        )
        .await;
    assert!(!one.ok);
    let c = h
        .connect(
            "teams",
            ConnectAuth::AccessTokens {
                tokens: tokens.clone(),
            },
        )
        .await;
    assert!(c.ok, "{c:?}");
    let thumb = h
        .connect(
            "teams",
            ConnectAuth::CertificateThumbprint {
                thumbprint: "AB".into(),
                application_id: CLIENT.into(),
                tenant_id: TENANT.into(),
            },
        )
        .await;
    let e = thumb.error.expect("refused");
    assert!(
        e.message.contains("not supported by the test host"),
        "{e:?}"
    );
    let c = h
        .connect(
            "teams",
            ConnectAuth::AccessTokens {
                tokens: tokens.clone(),
            },
        )
        .await;
    assert!(c.ok, "{c:?}");

    // Unknown operations and parameters are refused before anything runs.
    let e = h
        .err("remove_cs_online_user", json!({"Identity": "a"}))
        .await;
    assert_eq!(e.fqid, "UnknownOperation,PortflowHost", "{e:?}");
    let e = h
        .err("get_online_user", json!({"Identity": "a", "Filter": "*"}))
        .await;
    assert_eq!(e.fqid, "ParameterNotAllowed,PortflowHost", "{e:?}");

    // A hostile UPN reaches the tenant byte for byte (its not-found names it)
    // and the log as received.
    let e = h.err("get_online_user", json!({"Identity": HOSTILE})).await;
    assert_eq!(
        e.fqid,
        format!("NotFound,{TEAMS_NS}.GetCsOnlineUser_Get"),
        "{e:?}"
    );
    assert_eq!(e.category, "ObjectNotFound");
    assert_eq!(
        e.exception_type,
        "Microsoft.Teams.ConfigAPI.Cmdlets.Generated.Runtime.RestException"
    );
    assert_eq!(
        e.message,
        format!("Management object not found for identity '{HOSTILE}'")
    );
    assert!(
        e.correlation_id.as_ref().is_some_and(|c| c.len() == 36),
        "{e:?}"
    );

    // Assign a number back after removing it; Graph sees the same tenant.
    let (upn, user) = online_line_user(&mut h).await;
    assert_eq!(user["UserPrincipalName"], upn.as_str());
    assert_eq!(user["SipAddress"], format!("sip:{upn}"));
    let plans = user["AssignedPlan"].as_array().expect("plans");
    assert!(plans.iter().any(|p| p == "MCOEV"), "{user}");
    assert!(!plans.iter().any(|p| p == "Teams"), "{user}");
    let number = user["LineURI"]
        .as_str()
        .and_then(|l| l.strip_prefix("tel:"))
        .expect("tel: URI")
        .to_string();
    let rows = number_rows(&mut h, &number).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = rows[0].clone();
    assert_eq!(row["AssignedPstnTargetId"], user["Identity"]);
    let number_type = row["NumberType"].as_str().expect("type").to_string();
    let args = json!({"Identity": upn, "PhoneNumber": number, "PhoneNumberType": number_type});
    assert_eq!(
        h.ok("remove_number_assignment", args.clone()).await,
        Value::Null
    );
    // A Direct Routing number leaves the tenant with its assignment.
    wait_rows(&mut h, &number, |rows| {
        rows.iter().all(|r| r["AssignedPstnTargetId"].is_null())
    })
    .await;
    assert_eq!(h.ok("set_number_assignment", args).await, Value::Null);
    let rows = wait_rows(&mut h, &number, |rows| {
        rows.len() == 1 && rows[0]["AssignedPstnTargetId"] == user["Identity"]
    })
    .await;
    assert_eq!(rows[0]["PortInOrderStatus"], Value::Null);
    assert_eq!(rows[0]["NumberType"], number_type.as_str());
    let filter = format!("telephoneNumber%20eq%20'{}'", number.replace('+', "%2B"));
    let graph = http()
        .get(format!(
            "{}/v1.0/admin/teams/telephoneNumberManagement/numberAssignments?$filter={filter}",
            server.url
        ))
        .bearer_auth(&tokens[0])
        .send()
        .await
        .expect("graph");
    assert_eq!(graph.status().as_u16(), 200);
    let graph: Value = graph.json().await.expect("json");
    assert_eq!(graph["value"][0]["assignmentTargetId"], user["Identity"]);
    // The Teams token is not a Graph token.
    let refused = http()
        .get(format!("{}/v1.0/users/{upn}", server.url))
        .bearer_auth(&tokens[1])
        .send()
        .await
        .expect("graph");
    assert_eq!(refused.status().as_u16(), 401);
    assert!(number_rows(&mut h, "+14259999999").await.is_empty());

    // The other cloud operations, projected as their cmdlets answer.
    let who = json!({"Identity": upn});
    let grant = json!({"Identity": upn, "PolicyName": "Contoso-OC"});
    assert_eq!(h.ok("grant_voice_routing_policy", grant).await, Value::Null);
    let u = h.ok("get_online_user", who.clone()).await;
    assert_eq!(u["OnlineVoiceRoutingPolicy"], "Contoso-OC", "{u}");
    let back = json!({"Identity": upn, "PolicyName": null});
    assert_eq!(h.ok("grant_voice_routing_policy", back).await, Value::Null);
    let u = h.ok("get_online_user", who.clone()).await;
    assert_eq!(u["OnlineVoiceRoutingPolicy"], Value::Null, "{u}");
    let vm = json!({"Identity": upn, "VoicemailEnabled": true});
    assert_eq!(h.ok("set_voicemail_settings", vm).await, Value::Null);
    let v = h.ok("get_voicemail_settings", who.clone()).await;
    assert_eq!(v, json!({"VoicemailEnabled": true}));
    let ev = json!({"Identity": upn, "EnterpriseVoiceEnabled": true});
    assert_eq!(h.ok("set_enterprise_voice", ev).await, Value::Null);
    let off = json!({"Identity": upn, "EnterpriseVoiceEnabled": false});
    let e = h.err("set_enterprise_voice", off).await;
    assert_eq!(e.fqid, "NotSupported,PortflowFakeHost", "{e:?}");
    let e = h
        .err("set_number_assignment", json!({"Identity": upn}))
        .await;
    assert_eq!(
        e.fqid,
        format!("MissingMandatoryParameter,{TEAMS_NS}.SetCsPhoneNumberAssignment_Set"),
        "{e:?}"
    );
    let dialin = h.ok("get_dialin_user", who.clone()).await;
    if !dialin.is_null() {
        assert_eq!(dialin["SipAddress"], format!("sip:{upn}"), "{dialin}");
        assert_eq!(dialin["TollFreeServiceNumber"], Value::Null);
    }
    let loc = h
        .ok("get_lis_location", json!({"LocationId": "loc-sea-01"}))
        .await;
    assert_eq!(loc["LocationId"], "loc-sea-01", "{loc}");
    assert_eq!(loc["Location"], loc["Description"]);
    assert_eq!(loc["CountryOrRegion"], "US");
    let none = h
        .ok("get_lis_location", json!({"LocationId": "nowhere"}))
        .await;
    assert_eq!(none, Value::Null);

    // On-premises: no tokens, no way to the tenant; with them, Get-CsUser's
    // not-found of an online user.
    let c = h
        .connect("onprem", ConnectAuth::Windows { tokens: vec![] })
        .await;
    assert!(c.ok, "{c:?}");
    assert_eq!(c.result["module"], "SkypeForBusiness");
    let e = h.err("get_cs_user", json!({"Identity": upn})).await;
    assert!(
        e.fqid.starts_with("Unauthorized,Microsoft.Rtc.Management."),
        "{e:?}"
    );
    let c = h
        .connect(
            "onprem",
            ConnectAuth::Windows {
                tokens: tokens.clone(),
            },
        )
        .await;
    assert!(c.ok, "{c:?}");
    let e = h.err("get_cs_user", json!({"Identity": upn})).await;
    assert_eq!(
        e.fqid,
        "Identity,Microsoft.Rtc.Management.AD.Cmdlets.GetOcsUserCmdlet"
    );
    assert_eq!(e.category, "ObjectNotFound");
    assert_eq!(
        e.message,
        format!("Management object not found for identity \"{upn}\".")
    );

    // Noise before every call's reply (noise=1), never framed.
    assert!(h.noise.len() > 10, "{:?}", h.noise);
    drop(h.stdin);
    let status = h.child.wait().await.expect("exit");
    assert!(status.success(), "{status}");

    // The log: every request with its args as received, never a token.
    let text = std::fs::read_to_string(&log).expect("log");
    for t in &tokens {
        assert!(!text.contains(t.as_str()), "a token in the log");
    }
    assert!(!text.contains("eyJ"), "{text}");
    let entries = log_lines(&log);
    assert_eq!(entries[0]["type"], "hello");
    let connect = entries
        .iter()
        .find(|e| e["type"] == "connect")
        .expect("connect");
    assert_eq!(connect["part"], "teams");
    assert_eq!(connect["auth_kind"], "access_tokens");
    assert_eq!(connect["tokens"], 2);
    assert!(connect["pid"].is_u64());
    let hostile = entries
        .iter()
        .find(|e| e["op"] == "get_online_user" && e["args"]["Identity"] == HOSTILE);
    assert!(hostile.is_some(), "{text}");
}

#[tokio::test]
async fn a_revoked_token_answers_unauthorized_until_reconnected() {
    // Tokens issued before start + 4 min (2 s real) are refused from then on.
    let server = serve(120, "direct_routing", "expire_tokens_after: 4m");
    let tokens = server.tokens().await;
    let mut h = host(&[("PORTFLOW_FAKE_PWSH_SIM", server.url.clone())]);
    assert!(h.hello().await.ok);
    let c = h
        .connect(
            "teams",
            ConnectAuth::AccessTokens {
                tokens: tokens.clone(),
            },
        )
        .await;
    assert!(c.ok, "{c:?}");
    let args = json!({"Identity": "user0001@contoso.com"});
    let t0 = Instant::now();
    let e = loop {
        let r = h.call("get_voicemail_settings", args.clone()).await;
        if let Some(e) = r.error {
            break e;
        }
        assert!(r.result["VoicemailEnabled"].is_boolean(), "{}", r.result);
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the token was never revoked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        e.fqid,
        format!("Unauthorized,{TEAMS_NS}.GetCsOnlineVoicemailUserSettings_Get"),
        "{e:?}"
    );
    assert_eq!(e.category, "AuthenticationError");
    assert_eq!(
        e.message,
        "Unauthorized: Access token has expired or is not yet valid."
    );
    let fresh = server.tokens().await;
    let c = h
        .connect("teams", ConnectAuth::AccessTokens { tokens: fresh })
        .await;
    assert!(c.ok, "{c:?}");
    let v = h.ok("get_voicemail_settings", args).await;
    assert!(v["VoicemailEnabled"].is_boolean(), "{v}");
}

/// A host with one fault at rate 1, signed in with dummy tokens (no sim).
async fn faulty(fault: &str) -> Host {
    let mut h = host(&[("PORTFLOW_FAKE_PWSH_FAULTS", format!("{fault}=1,noise=0"))]);
    assert!(h.hello().await.ok, "hello is never faulted");
    let tokens = vec!["graph".to_string(), "teams".to_string()];
    assert!(
        h.connect("teams", ConnectAuth::AccessTokens { tokens })
            .await
            .ok
    );
    h
}

#[tokio::test]
async fn faults_crash_hang_garble_and_answer_out_of_step() {
    let args = json!({"Identity": "user0001@contoso.com"});

    let mut h = faulty("crash").await;
    let r = h.call_request("get_online_user", args.clone());
    h.send(&r).await;
    assert!(h.line(Duration::from_secs(20)).await.is_none(), "no reply");
    assert_eq!(h.child.wait().await.expect("exit").code(), Some(1));

    let mut h = faulty("garble").await;
    let r = h.call_request("get_online_user", args.clone());
    h.send(&r).await;
    let line = h.line(Duration::from_secs(20)).await;
    assert!(matches!(line, Some(Line::Garbled(_))), "{line:?}");

    let mut h = faulty("wrong_id").await;
    let r = h.call_request("get_online_user", args.clone());
    h.send(&r).await;
    match h.line(Duration::from_secs(20)).await {
        Some(Line::Reply(reply)) => assert_ne!(reply.id, r.id()),
        other => panic!("{other:?}"),
    }

    let mut h = faulty("hang").await;
    let r = h.call_request("get_online_user", args.clone());
    h.send(&r).await;
    let quiet = tokio::time::timeout(Duration::from_millis(300), h.stdout.next_line()).await;
    assert!(quiet.is_err(), "a hung host answers nothing: {quiet:?}");
    // It leaves once its parent closes stdin.
    drop(h.stdin);
    let status = tokio::time::timeout(Duration::from_secs(20), h.child.wait())
        .await
        .expect("exits when stdin closes")
        .expect("exit");
    assert!(status.success(), "{status}");

    // Bad configuration is refused at start.
    let mut bad = host(&[("PORTFLOW_FAKE_PWSH_FAULTS", "crash=2".into())]);
    assert_eq!(bad.child.wait().await.expect("exit").code(), Some(2));
}

#[tokio::test]
async fn on_premises_operations_run_on_the_sfb_part() {
    let server = serve(60, "on_premises", "");
    let tokens = server.tokens().await;
    let mut h = host(&[("PORTFLOW_FAKE_PWSH_SIM", server.url.clone())]);
    assert!(h.hello().await.ok);
    let c = h.connect("onprem", ConnectAuth::Windows { tokens }).await;
    assert!(c.ok, "{c:?}");
    // Cloud operations need the teams part.
    let e = h
        .err(
            "get_online_user",
            json!({"Identity": "user0001@contoso.com"}),
        )
        .await;
    assert_eq!(e.fqid, "NotConnected,PortflowHost");
    let mut found = None;
    for i in 1..=6 {
        let upn = format!("user{i:04}@contoso.com");
        let r = h.call("get_cs_user", json!({"Identity": upn})).await;
        if r.ok {
            found = Some((upn, r.result));
            break;
        }
    }
    let Some((upn, cs)) = found else {
        panic!("no seeded user is on-premises")
    };
    assert_eq!(cs["UserPrincipalName"], upn.as_str());
    assert!(
        cs["SipAddress"]
            .as_str()
            .is_some_and(|s| s.starts_with("sip:")),
        "{cs}"
    );
    assert!(cs["HostingProvider"] == "SRV:" || cs["HostingProvider"] == "sipfed.online.lync.com");
    let line = cs["LineURI"].clone();
    let clear = json!({"Identity": upn, "LineURI": null});
    assert_eq!(h.ok("set_cs_user", clear).await, Value::Null);
    let cs = h.ok("get_cs_user", json!({"Identity": upn})).await;
    assert_eq!(cs["LineURI"], Value::Null, "{cs}");
    if line.is_string() {
        let enable = json!({"Identity": upn, "EnterpriseVoiceEnabled": true, "LineURI": line});
        assert_eq!(h.ok("set_cs_user", enable).await, Value::Null);
        let cs = h.ok("get_cs_user", json!({"Identity": upn})).await;
        assert_eq!(cs["LineURI"], line, "{cs}");
        assert_eq!(cs["EnterpriseVoiceEnabled"], true, "{cs}");
    }
    let odd = json!({"Identity": upn, "EnterpriseVoiceEnabled": false});
    let e = h.err("set_cs_user", odd).await;
    assert_eq!(e.fqid, "NotSupported,PortflowFakeHost", "{e:?}");
    let prompt = json!({"Identity": upn, "Target": "sipfed.online.lync.com"});
    let e = h.err("move_cs_user", prompt).await;
    assert_eq!(e.fqid, "NotSupported,PortflowFakeHost", "{e:?}");
    let mv = json!({"Identity": upn, "Target": "sipfed.online.lync.com", "Confirm": false, "Force": true});
    let r = h.call("move_cs_user", mv).await;
    match r.error {
        None => assert_eq!(r.result, Value::Null),
        // The simulator's refusals come as the SfB cmdlet's records.
        Some(e) => assert!(
            e.fqid
                .ends_with(",Microsoft.Rtc.Management.AD.Cmdlets.MoveOcsUserCmdlet")
                && e.correlation_id.is_none(),
            "{e:?}"
        ),
    }
}
