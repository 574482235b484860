//! Headless Chromium for browser tests: found at /usr/bin/chromium or
//! installed by tests/browser/install-chromium.sh; in CI a missing browser fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::repo;

/// Where the Debian package puts it.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// `/usr/bin/chromium`, installing it with the project's script when missing.
/// `None` (after a loud message) only outside CI; in CI a missing browser fails.
pub fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from(CHROMIUM);
    if !path.exists() {
        let script = repo().join("tests/browser/install-chromium.sh");
        eprintln!("{CHROMIUM} is missing; running {}", script.display());
        match Command::new("bash").arg(&script).output() {
            Ok(o) => eprintln!(
                "install-chromium.sh exited {:?}\n{}{}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("cannot run {}: {e}", script.display()),
        }
    }
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{CHROMIUM} is required in CI and tests/browser/install-chromium.sh could not install it"
    );
    eprintln!(
        "\n{bar}\n!!! SKIPPED: the status page browser test needs {CHROMIUM}.\n!!! Install it with tests/browser/install-chromium.sh (as root).\n{bar}\n",
        bar = "!".repeat(72)
    );
    None
}

/// The flags of every headless Chromium the tests start.
pub const HEADLESS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--hide-scrollbars",
];

/// Run headless Chromium with its own profile; stdout goes to `out`.
pub fn run_chromium(browser: &Path, profile: &Path, args: &[String], out: &Path) {
    let mut child = Command::new(browser)
        .args(HEADLESS)
        .arg("--virtual-time-budget=5000")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).expect("chromium output file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            assert!(status.success(), "chromium exited with {status}");
            return;
        }
        if t0.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in 40 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
