//! What the scenarios share: options, figures and their table, the machine's
//! description, canvass configs, the daemon as a child process (RSS from
//! /proc), external tools with bounded run times, and percentiles.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;

pub const SURVEY: &str = "undersoegelse@siri.test";
/// A consultant of region Sjælland (tests/it/common REGIONS).
pub const CONSULTANT: &str = "anne.hansen@siri.test";
/// Invitations go to `kontakt+N@kommune.test`: distinct contacts for canvass,
/// one mailbox for Dovecot (its LMTP strips the `+detail`), so Postfix
/// delivers every invitation and nothing bounces back into the survey mailbox.
pub const CONTACT_USER: &str = "kontakt@kommune.test";

pub fn contact(i: usize) -> String {
    format!("kontakt+{i}@kommune.test")
}

/// Options from the command line.
#[derive(Debug, Clone)]
pub struct Opts {
    pub quick: bool,
    /// Trigger messages for target 1.
    pub messages: usize,
    /// Triggers for target 2.
    pub triggers: usize,
    /// Seconds per wrk run (target 4).
    pub secs: u64,
    /// Store sizes (invitations) for target 5.
    pub scale: Vec<usize>,
    /// Keep built scale stores between runs (target/bench/scale-N).
    pub reuse: bool,
    /// Working directory (stores, logs, results).
    pub dir: PathBuf,
    /// SMTP pool size canvass uses, and smtp-source's session count.
    pub sessions: usize,
}

impl Opts {
    pub fn defaults(quick: bool) -> Opts {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        if quick {
            Opts {
                quick,
                messages: 1_000,
                triggers: 20,
                secs: 3,
                scale: vec![10_000],
                reuse: true,
                dir,
                sessions: 8,
            }
        } else {
            Opts {
                quick,
                messages: 10_000,
                triggers: 200,
                secs: 10,
                scale: vec![10_000, 100_000, 1_000_000],
                reuse: true,
                dir,
                sessions: 8,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------

/// One measured figure against its limit.
#[derive(Debug, Clone)]
pub struct Figure {
    pub id: String,
    pub what: String,
    /// The measured value, formatted with its unit.
    pub measured: String,
    /// The limit, formatted, with what it was derived from.
    pub limit: String,
    /// measured / limit (or measured / reference for relative targets).
    pub ratio: f64,
    /// The target as written in the issue.
    pub target: String,
    pub pass: bool,
    /// For information only (no target).
    pub info: bool,
}

impl Figure {
    /// A rate that must reach `min_ratio` × a reference measured in the same run.
    pub fn relative(
        id: &str,
        what: &str,
        measured: f64,
        unit: &str,
        reference_label: &str,
        reference: f64,
        min_ratio: f64,
    ) -> Figure {
        let ratio = if reference > 0.0 {
            measured / reference
        } else {
            0.0
        };
        Figure {
            id: id.into(),
            what: what.into(),
            measured: format!("{} {unit}", num(measured)),
            limit: format!("{reference_label}: {} {unit}", num(reference)),
            ratio,
            target: format!("≥ {min_ratio:.2} × reference"),
            pass: ratio >= min_ratio,
            info: false,
        }
    }

    /// A value that must be at least `limit`.
    pub fn at_least(id: &str, what: &str, measured: f64, unit: &str, limit: f64) -> Figure {
        Figure {
            id: id.into(),
            what: what.into(),
            measured: format!("{} {unit}", num(measured)),
            limit: format!("{} {unit}", num(limit)),
            ratio: measured / limit,
            target: format!("≥ {} {unit}", num(limit)),
            pass: measured >= limit,
            info: false,
        }
    }

    /// A value that must stay at or below `limit` (`strict`: below).
    pub fn at_most(
        id: &str,
        what: &str,
        measured: f64,
        unit: &str,
        limit: f64,
        limit_label: &str,
        strict: bool,
    ) -> Figure {
        let pass = if strict {
            measured < limit
        } else {
            measured <= limit
        };
        Figure {
            id: id.into(),
            what: what.into(),
            measured: format!("{} {unit}", num(measured)),
            limit: if limit_label.is_empty() {
                format!("{} {unit}", num(limit))
            } else {
                format!("{} {unit} ({limit_label})", num(limit))
            },
            ratio: measured / limit,
            target: format!("{} {} {unit}", if strict { "<" } else { "≤" }, num(limit)),
            pass,
            info: false,
        }
    }

    /// A figure shown for orientation, without a target.
    pub fn info(id: &str, what: &str, measured: String) -> Figure {
        Figure {
            id: id.into(),
            what: what.into(),
            measured,
            limit: "–".into(),
            ratio: f64::NAN,
            target: "info".into(),
            pass: true,
            info: true,
        }
    }

    /// A check that must hold (correctness beside a figure).
    pub fn check(id: &str, what: &str, ok: bool, detail: String) -> Figure {
        Figure {
            id: id.into(),
            what: what.into(),
            measured: detail,
            limit: "–".into(),
            ratio: f64::NAN,
            target: "must hold".into(),
            pass: ok,
            info: false,
        }
    }
}

/// A number with sensible precision.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a >= 1000.0 {
        format!("{:.0}", v)
    } else if a >= 100.0 {
        format!("{:.1}", v)
    } else if a >= 1.0 {
        format!("{:.2}", v)
    } else {
        format!("{:.3}", v)
    }
}

pub fn table(figures: &[Figure]) -> String {
    let mut s = String::new();
    s.push_str("| # | figure | measured | limit / reference | ratio | target | result |\n");
    s.push_str("|---|---|---|---|---|---|---|\n");
    for f in figures {
        let ratio = if f.ratio.is_finite() {
            format!("{:.2}", f.ratio)
        } else {
            "–".into()
        };
        let result = if f.info {
            "info"
        } else if f.pass {
            "pass"
        } else {
            "**MISS**"
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            f.id, f.what, f.measured, f.limit, ratio, f.target, result
        );
    }
    s
}

/// Prints a figure as soon as it is known (the table comes at the end).
/// The 1-minute load average (other work on this machine skews a run).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

pub fn report(figures: &mut Vec<Figure>, f: Figure) {
    let state = if f.info {
        "info"
    } else if f.pass {
        "pass"
    } else {
        "MISS"
    };
    eprintln!(
        "  [{state}] {} {}: {} (limit {}; {})",
        f.id, f.what, f.measured, f.limit, f.target
    );
    figures.push(f);
}

// ---------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------

pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "?".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let postfix = tool_output("postconf", &["-dh", "mail_version"]);
    let dovecot = tool_output("dovecot", &["--version"]);
    let wrk = tool_output("wrk", &["-v"])
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    format!(
        "nproc {nproc}; CPU {model}; memory {:.1} GiB; Linux {kernel}; Postfix {}; Dovecot {}; {}",
        mem_kb as f64 / 1024.0 / 1024.0,
        postfix.trim(),
        dovecot.split_whitespace().next().unwrap_or("?"),
        if wrk.is_empty() {
            "wrk missing".to_string()
        } else {
            wrk.trim().to_string()
        },
    )
}

fn tool_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// canvass configs
// ---------------------------------------------------------------------------

pub enum Inbound {
    Imap { port: u16 },
    Maildir { path: PathBuf },
}

pub enum Outbound {
    Smtp { port: u16, pool: usize },
    File { path: PathBuf },
}

pub struct ConfigSpec {
    pub inbound: Inbound,
    pub outbound: Outbound,
    pub web_port: u16,
    /// Extra lines for [sending].
    pub sending: String,
}

/// Writes `dir/canvass.toml` (store `dir/store`, key `dir/hmac.key`, control
/// socket `dir/canvass.sock`); returns its path.
/// A config for in-process measurements: Maildir in, .eml files out, under `dir`.
pub fn offline_config(dir: &Path) -> canvass::config::Config {
    let path = write_config(
        dir,
        &ConfigSpec {
            inbound: Inbound::Maildir {
                path: dir.join("inbox"),
            },
            outbound: Outbound::File {
                path: dir.join("sent"),
            },
            web_port: 8080,
            sending: String::new(),
        },
    );
    load_config(&path)
}

pub fn write_config(dir: &Path, spec: &ConfigSpec) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create bench dir");
    std::fs::write(dir.join("imap-password"), crate::harness::PASSWORD).expect("password");
    let key = dir.join("hmac.key");
    if !key.exists() {
        canvass::address::generate_key_file(&key).expect("hmac key");
    }
    let (start, end) = common::open_window();
    let inbound = match &spec.inbound {
        Inbound::Imap { port } => format!(
            "[inbound.imap]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"{SURVEY}\"\npassword_file = \"imap-password\"\nmove_to = \"Behandlet\"\n"
        ),
        Inbound::Maildir { path } => {
            for sub in ["new", "cur", "tmp"] {
                std::fs::create_dir_all(path.join(sub)).expect("maildir");
            }
            format!(
                "[inbound.maildir]\npath = \"{}\"\npoll_interval_ms = 200\n",
                path.display()
            )
        }
    };
    let outbound = match &spec.outbound {
        Outbound::Smtp { port, pool } => format!(
            "[outbound.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\npool_size = {pool}\ntimeout_seconds = 30\n"
        ),
        Outbound::File { path } => format!("[outbound.file]\npath = \"{}\"\n", path.display()),
    };
    let text = format!(
        r#"# Written by the canvass benchmark (benches/bench).
[survey]
address = "{SURVEY}"
base_url = "http://127.0.0.1:{web}"
definition = "{survey}"

[window]
start = {start}
end = {end}

[sending]
min_retry_seconds = 1
max_invitees_per_consultant_per_day = 4000000000
{sending}

[trust]
internal_domains = ["siri.test"]

[secrets]
hmac_key_file = "hmac.key"

[store]
path = "store"
control_socket = "canvass.sock"

{inbound}
{outbound}
[web]
bind = "127.0.0.1:{web}"
{regions}"#,
        web = spec.web_port,
        survey = common::survey_path().display(),
        sending = spec.sending,
        regions = common::REGIONS,
    );
    let path = dir.join("canvass.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

pub fn load_config(path: &Path) -> canvass::config::Config {
    canvass::config::Config::load(path).unwrap_or_else(|e| panic!("bench config: {e}"))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------
// The daemon as a child process
// ---------------------------------------------------------------------------

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

pub fn canvass_bin() -> &'static str {
    env!("CARGO_BIN_EXE_canvass")
}

/// `canvass run` as a child process, logging JSON lines to `log`.
pub struct DaemonProc {
    child: Option<Child>,
    /// `CANVASS_BENCH_ATTACH` (diagnostics): a command attached to the
    /// daemon, e.g. `perf record -g -p {pid} -o {dir}/perf.data`; stopped
    /// with SIGINT before the daemon.
    attached: Option<Child>,
    pub log: PathBuf,
    pub socket: PathBuf,
    pub spawned: Instant,
}

impl DaemonProc {
    pub fn spawn(dir: &Path, name: &str) -> DaemonProc {
        let config = dir.join("canvass.toml");
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("daemon log");
        let spawned = Instant::now();
        let child = Command::new(canvass_bin())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--log-format")
            .arg("json")
            .env_remove("CANVASS_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start canvass run");
        let attached = std::env::var("CANVASS_BENCH_ATTACH").ok().map(|cmd| {
            let cmd = cmd
                .replace("{pid}", &child.id().to_string())
                .replace("{dir}", &dir.display().to_string())
                .replace("{name}", name);
            let mut words = cmd.split_whitespace();
            let program = words.next().expect("CANVASS_BENCH_ATTACH names a program");
            let child = Command::new(program)
                .args(words)
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("CANVASS_BENCH_ATTACH {cmd:?}: {e}"));
            std::thread::sleep(Duration::from_millis(300));
            child
        });
        DaemonProc {
            child: Some(child),
            attached,
            log,
            socket: dir.join("canvass.sock"),
            spawned,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// VmRSS and VmHWM (peak) in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// User + system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> f64 {
        proc_cpu_seconds(self.pid())
    }

    /// Panics with the log tail if the daemon died.
    pub fn assert_alive(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("canvass exited ({status}):\n{}", tail(&self.log, 30));
            }
        }
    }

    /// The daemon's `status --json` over its control socket.
    pub async fn status(&self) -> Option<serde_json::Value> {
        match canvass::control::request(&self.socket, &canvass::control::Request::Status).await {
            Ok(Some(a)) if a.ok => Some(a.json),
            _ => None,
        }
    }

    /// Waits until the control socket answers (bounded).
    pub async fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            self.assert_alive();
            if self.status().await.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "canvass did not answer on its control socket within {limit:?}:\n{}",
                tail(&self.log, 30)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the log holds a line containing `needle` (bounded).
    pub async fn wait_log(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            self.assert_alive();
            if std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .contains(needle)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "canvass did not log {needle:?} within {limit:?}:\n{}",
                tail(&self.log, 30)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits (bounded) for the drain; SIGKILL after 40 s.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Some(mut a) = self.attached.take() {
            // SAFETY: signals our own child.
            unsafe {
                kill(a.id() as i32, SIGINT);
            }
            let _ = a.wait();
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        // SAFETY: signals our own child.
        unsafe {
            kill(pid, SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe {
                    kill(pid, SIGKILL);
                }
                let _ = child.wait();
                eprintln!("  note: canvass did not stop within 40 s; killed");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// utime + stime of a process, in seconds.
/// CPU seconds the whole machine has spent busy since boot (all cores; from
/// /proc/stat: user, nice, system, irq, softirq, steal).
pub fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal
    (field(0) + field(1) + field(2) + field(5) + field(6) + field(7)) / 100.0
}

pub fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state(0) ppid(1) ... utime(11) stime(12).
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Reads a JSON log and returns the lines whose message is `message`.
pub fn log_events(path: &Path, message: &str) -> Vec<serde_json::Value> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .filter(|v| v.get("message").and_then(|m| m.as_str()) == Some(message))
        .collect()
}

pub fn json_u64(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// External programs, bounded
// ---------------------------------------------------------------------------

/// Runs a program to completion (killed after `limit`); returns (wall time,
/// stdout, stderr). Panics when it cannot be started or fails.
pub fn run_timed(program: &str, args: &[String], limit: Duration) -> (Duration, String, String) {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {} ran longer than {limit:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = start.elapsed();
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    assert!(
        status.success(),
        "{program} {} failed ({status}):\n{out}\n{err}",
        args.join(" ")
    );
    (took, out, err)
}

/// A long-running helper (smtp-sink) killed on drop.
pub struct Background {
    child: Child,
}

impl Background {
    pub fn spawn(program: &str, args: &[String], log: &Path) -> Background {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        Background { child }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something listens on 127.0.0.1:`port` (bounded).
pub fn wait_listening(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

/// The p-th percentile (nearest rank) of unsorted samples.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Size of a directory tree in bytes (allocated blocks, as `du`).
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            total += disk_usage(&e.path());
        } else {
            total += m.blocks() * 512;
        }
    }
    total
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

/// Reads a JSON log as it grows.
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl LogTail {
    pub fn new(path: &Path) -> LogTail {
        LogTail {
            path: path.to_path_buf(),
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// The events logged since the last call.
    pub fn events(&mut self) -> Vec<serde_json::Value> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let Ok(n) = f.read_to_end(&mut buf) else {
            return Vec::new();
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        let mut out = Vec::new();
        while let Some(pos) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            if let Ok(v) = serde_json::from_slice(&line) {
                out.push(v);
            }
        }
        out
    }
}
