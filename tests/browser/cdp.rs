//! Headless Chromium driven over the DevTools protocol through
//! `--remote-debugging-pipe`: Chromium reads JSON messages ending in '\0' on
//! fd 3 and writes its answers and events the same way on fd 4, so no
//! websocket is needed. Enough to open a page, read its DOM and click.
//! Include it beside `chromium.rs` (its flags are shared).
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running Chromium and one page attached in flat mode.
pub struct Browser {
    child: Child,
    to: File,
    from: Receiver<Value>,
    next_id: u64,
    session: String,
    log: std::path::PathBuf,
    /// `Page.javascriptDialogOpening` events answered so far: (type, message).
    pub dialogs: Vec<(String, String)>,
    /// What a `prompt()` is answered with.
    pub prompt_text: String,
}

/// A pipe with both ends close-on-exec: (read end, write end).
fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

impl Browser {
    /// Start headless Chromium with its own profile and open a blank page.
    pub fn start(browser: &Path, profile: &Path) -> Browser {
        let (cmd_read, cmd_write) = pipe();
        let (out_read, out_write) = pipe();
        let mut command = Command::new(browser);
        command
            .args(crate::chromium::HEADLESS)
            .args(["--remote-debugging-pipe", "--window-size=1280,900"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(profile.with_extension("log")).expect("chromium log"));
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and
        // exec. The ends are first copied above 9, so neither is 3 or 4 itself
        // (dup2 onto the same number would keep close-on-exec) nor overwritten
        // by the other's dup2; dup2 clears close-on-exec on 3 and 4.
        unsafe {
            command.pre_exec(move || {
                let high_read = libc::fcntl(cmd_read, libc::F_DUPFD, 10);
                let high_write = libc::fcntl(out_write, libc::F_DUPFD, 10);
                if high_read < 0
                    || high_write < 0
                    || libc::dup2(high_read, 3) < 0
                    || libc::dup2(high_write, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(high_read);
                libc::close(high_write);
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        // SAFETY: we own these descriptors; the child holds its own copies.
        let (to, from) = unsafe {
            libc::close(cmd_read);
            libc::close(out_write);
            (File::from_raw_fd(cmd_write), File::from_raw_fd(out_read))
        };
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from);
            loop {
                let mut buf = Vec::new();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if buf.last() == Some(&0) {
                            buf.pop();
                        }
                        let Ok(v) = serde_json::from_slice::<Value>(&buf) else {
                            continue;
                        };
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to,
            from: rx,
            next_id: 0,
            session: String::new(),
            log: profile.with_extension("log"),
            dialogs: Vec::new(),
            prompt_text: String::new(),
        };
        let target = b.call_on(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().expect("targetId").to_string();
        let attached = b.call_on(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let mut msg = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        if let Err(e) = self.to.write_all(&bytes) {
            panic!("write {method} to chromium: {e}\n{}", self.log());
        }
        self.next_id
    }

    /// Answer a dialog the page opened: accept it (a prompt with [`Self::prompt_text`]).
    fn on_event(&mut self, msg: &Value) {
        if msg["method"] == "Page.javascriptDialogOpening" {
            let p = &msg["params"];
            let kind = p["type"].as_str().unwrap_or_default().to_string();
            self.dialogs.push((
                kind.clone(),
                p["message"].as_str().unwrap_or_default().into(),
            ));
            let mut params = json!({"accept": true});
            if kind == "prompt" {
                params["promptText"] = json!(self.prompt_text);
            }
            let session = msg["sessionId"].as_str().map(String::from);
            self.send(session.as_deref(), "Page.handleJavaScriptDialog", params);
        }
    }

    /// Send a command and wait for its answer or error (30 s), handling events meanwhile.
    fn try_call_on(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        let id = self.send(session, method, params);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = match self.from.recv_timeout(left) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("chromium did not answer {method} in 30 s\n{}", self.log())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("chromium went away during {method}\n{}", self.log())
                }
            };
            if msg["id"] == id {
                return match msg.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(msg["result"].clone()),
                };
            }
            self.on_event(&msg);
        }
    }

    /// Send a command and wait for its answer, which must not be an error.
    fn call_on(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        match self.try_call_on(session, method, params) {
            Ok(v) => v,
            Err(e) => panic!("{method}: {e}"),
        }
    }

    /// What Chromium wrote to stderr so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A command on the page's session.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call_on(Some(&session), method, params)
    }

    /// Go to `url` (its load is not awaited: poll with [`Self::wait_for`]).
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// The value of a JavaScript expression in the page (promises awaited),
    /// or the exception it threw (or the protocol error, e.g. mid-navigation).
    pub fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        let session = self.session.clone();
        let r = self.try_call_on(
            Some(&session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        )?;
        match r.get("exceptionDetails") {
            Some(e) => Err(e.clone()),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    /// The value of a JavaScript expression in the page; it must not throw.
    pub fn eval(&mut self, expression: &str) -> Value {
        match self.try_eval(expression) {
            Ok(v) => v,
            Err(e) => panic!("{expression} threw: {e}"),
        }
    }

    /// Evaluate `expression` every 100 ms until it is truthy (at most `secs`);
    /// throwing counts as not yet (the page may still be loading).
    pub fn wait_for(&mut self, secs: u64, expression: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.try_eval(expression);
            let truthy = v.as_ref().is_ok_and(|v| {
                !matches!(v, Value::Null | Value::Bool(false)) && *v != json!(0) && *v != json!("")
            });
            if let (true, Ok(v)) = (truthy, &v) {
                return v.clone();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "still not true after {secs} s: {expression} (last: {v:?})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the page's full height.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64_decode as decode;
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        decode(r["data"].as_str().expect("screenshot data"))
    }

    /// Click the element `selector` finds (it must exist).
    pub fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).expect("json");
        let found = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return false; e.click(); return true; }})()"
        ));
        assert_eq!(found, json!(true), "nothing matches {selector}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (the protocol's encoding of binary data).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
