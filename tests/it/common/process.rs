//! `canvass run` as a child process (the real binary), its stderr captured
//! line by line: for the tests that must signal, kill or restart the daemon
//! (faults, privacy, service). Killed on drop if still running.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::wait_for;

/// How long a log line or an exit is waited for before the test fails.
const STEP: Duration = Duration::from_secs(30);

pub struct Daemon {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// Set once stderr closed: the process exited.
    ended: Arc<AtomicBool>,
}

impl Daemon {
    /// `canvass --config CONFIG --log-format FORMAT run` under `RUST_LOG`,
    /// without the service environment the test process may have inherited;
    /// the caller may add to it before [`Daemon::spawn`].
    pub fn command(config: &Path, log_format: &str, rust_log: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_canvass"));
        cmd.arg("--config")
            .arg(config)
            .args(["--log-format", log_format, "run"])
            .env("RUST_LOG", rust_log)
            .env_remove("CANVASS_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env_remove("CREDENTIALS_DIRECTORY");
        cmd
    }

    /// `canvass run` with a JSON log.
    pub fn start(config: &Path, rust_log: &str) -> Daemon {
        Daemon::spawn(Daemon::command(config, "json", rust_log))
    }

    /// Starts `cmd` (from [`Daemon::command`]) and collects its stderr.
    pub fn spawn(mut cmd: Command) -> Daemon {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start canvass run");
        let log = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(AtomicBool::new(false));
        let stderr = child.stderr.take().expect("stderr");
        let (sink, end) = (log.clone(), ended.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
            end.store(true, Ordering::SeqCst);
        });
        Daemon { child, log, ended }
    }

    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The log lines as JSON; a line that is not JSON (a panic message) as
    /// `{"message": line, "level": "RAW"}`.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line, "level": "RAW" }))
            })
            .collect()
    }

    /// Waits for a log line containing `needle` (after the `skip` first lines).
    pub fn wait_log(&self, needle: &str, skip: usize) -> String {
        wait_for(&format!("log line {needle:?}"), STEP, || {
            self.log
                .lock()
                .unwrap()
                .iter()
                .skip(skip)
                .find(|l| l.contains(needle))
                .cloned()
        })
    }

    /// Waits for a JSON log line for which `pred` holds; fails at once if
    /// the daemon exits first.
    pub fn wait_json(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + STEP;
        loop {
            // Read `ended` first: a line logged just before the exit is seen.
            let ended = self.ended.load(Ordering::SeqCst);
            if let Some(l) = self.json_lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            if ended {
                panic!(
                    "canvass exited while waiting for {what}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The web server's address, from the JSON "canvass started" line.
    pub fn web(&self) -> String {
        let l = self.wait_json("canvass started", |l| l["message"] == "canvass started");
        l["web"].as_str().expect("web address").to_string()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} failed");
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_for("canvass to exit", timeout, || {
            self.child.try_wait().ok().flatten()
        })
    }

    /// SIGTERM; the daemon must exit cleanly in time.
    pub fn stop(mut self) {
        self.signal("TERM");
        let status = self.wait_exit(STEP);
        assert!(status.success(), "exit {status:?}:\n{}", self.log_text());
    }

    /// SIGKILL: a power cut, as far as the store can tell.
    pub fn power_cut(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
