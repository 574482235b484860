//! One host process: spawn it, send a request, read lines until the framed
//! reply with the request's id. Anything else on stdout is noise; a reply
//! with another id, an unreadable frame, end of stream or the deadline is a
//! [`Fault`], after which the process is killed and never reused.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::protocol::{parse_line, Line, Reply, Request, MAX_LINE};
use super::runner::HostCommand;
use crate::clock::wait_real;

/// Lines of the host's stderr kept for error messages.
const STDERR_TAIL: usize = 6;

/// Why a request got no usable reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The process could not be started.
    #[error("could not be started: {0}")]
    Spawn(String),
    /// It exited or closed its output.
    #[error("exited mid-request{0}")]
    Died(String),
    /// No reply before the deadline.
    #[error("gave no reply within {0}")]
    Deadline(String),
    /// It answered out of step (another id, an unreadable frame).
    #[error("answered out of step ({0})")]
    Desync(String),
}

/// A running host.
pub struct HostProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    pid: Option<u32>,
    label: String,
    seq: u64,
}

impl std::fmt::Debug for HostProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostProcess")
            .field("pid", &self.pid)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl HostProcess {
    /// Start `cmd`.
    pub fn spawn(cmd: &HostCommand) -> Result<HostProcess, Fault> {
        let mut child = cmd
            .command()
            .spawn()
            .map_err(|e| Fault::Spawn(format!("`{}`: {e}", cmd.program.display())))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Fault::Spawn("no stdio pipes".into()));
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let pid = child.id();
        let label = cmd.label.clone();
        // Drain stderr so the host never blocks on a full pipe; keep the tail.
        let keep = tail.clone();
        let who = label.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line: String = line.chars().take(500).collect();
                tracing::debug!(host = %who, pid, line = %line, "PowerShell host stderr");
                let mut t = keep.lock().unwrap_or_else(|p| p.into_inner());
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        Ok(HostProcess {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr: tail,
            pid,
            label,
            seq: 0,
        })
    }

    /// The OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// A fresh request id: `<pid>-<n>`.
    pub fn next_id(&mut self) -> String {
        self.seq += 1;
        format!("{}-{}", self.pid.unwrap_or(0), self.seq)
    }

    /// Send `req` and wait up to `timeout` (real time: a hung process hangs
    /// on the wall clock, whatever a rehearsal's clock does).
    pub async fn request(&mut self, req: &Request, timeout: Duration) -> Result<Reply, Fault> {
        let shown = humantime::format_duration(timeout).to_string();
        tokio::select! {
            r = self.exchange(req) => r,
            () = wait_real(timeout) => Err(Fault::Deadline(shown)),
        }
    }

    async fn exchange(&mut self, req: &Request) -> Result<Reply, Fault> {
        let line = req.to_line();
        if let Err(e) = self.stdin.write_all(line.as_bytes()).await {
            return Err(self.died(&format!("writing the request: {e}")).await);
        }
        if let Err(e) = self.stdin.flush().await {
            return Err(self.died(&format!("writing the request: {e}")).await);
        }
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match read_line_capped(&mut self.stdout, &mut buf).await {
                Ok(0) => return Err(self.died("").await),
                Ok(_) => {}
                Err(e) => return Err(Fault::Desync(e)),
            }
            let text = String::from_utf8_lossy(&buf);
            match parse_line(&text) {
                Line::Noise => {
                    let shown: String = text.trim_end().chars().take(300).collect();
                    if !shown.is_empty() {
                        tracing::debug!(host = %self.label, pid = self.pid, line = %shown,
                            "PowerShell host output (not a reply)");
                    }
                }
                Line::Garbled(why) => return Err(Fault::Desync(why)),
                Line::Reply(r) if r.id == req.id() => return Ok(r),
                Line::Reply(r) => {
                    return Err(Fault::Desync(format!(
                        "reply to request {:?} while waiting for {:?}",
                        r.id,
                        req.id()
                    )))
                }
            }
        }
    }

    /// The exit (status and stderr tail) after the stream ended.
    async fn died(&mut self, during: &str) -> Fault {
        let status = tokio::select! {
            s = self.child.wait() => s.ok().map(|s| s.to_string()),
            () = wait_real(Duration::from_secs(2)) => None,
        };
        let tail: Vec<String> = {
            let t = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
            t.iter().cloned().collect()
        };
        let mut why = String::new();
        if !during.is_empty() {
            why.push_str(&format!(" ({during})"));
        }
        if let Some(s) = status {
            why.push_str(&format!(": {s}"));
        }
        if !tail.is_empty() {
            why.push_str(&format!("; stderr: {}", tail.join(" | ")));
        }
        Fault::Died(why)
    }

    /// The last stderr lines (for startup failures).
    pub fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().cloned().collect::<Vec<_>>().join(" | ")
    }

    /// Stop it now.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::select! {
            s = self.child.wait() => s.map(|_| ()),
            () = wait_real(Duration::from_secs(5)) => Ok(()),
        };
    }
}

/// Read one line (up to and including `\n`) of at most [`MAX_LINE`] bytes.
async fn read_line_capped(
    r: &mut BufReader<ChildStdout>,
    out: &mut Vec<u8>,
) -> Result<usize, String> {
    loop {
        let available = r.fill_buf().await.map_err(|e| format!("reading: {e}"))?;
        if available.is_empty() {
            return Ok(out.len());
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        out.extend_from_slice(&available[..take]);
        r.consume(take);
        if out.len() > MAX_LINE {
            return Err(format!("a line longer than {MAX_LINE} bytes"));
        }
        if done {
            return Ok(out.len());
        }
    }
}
