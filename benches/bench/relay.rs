//! The bare relay (issue 16, item 1): the floor for target 1, measured in
//! the same run as canvass. It does exactly the mail work of an invitation
//! run and nothing else, with the libraries canvass uses:
//!
//! - IMAP with async-imap: SELECT the survey INBOX, then batches of 100
//!   (canvass' ingest batch): `UID SEARCH ALL` (each batch is moved out, so
//!   the INBOX holds only what waits), `UID FETCH … BODY.PEEK[]`, the
//!   recipient read with mail-parser, `UID STORE +FLAGS.SILENT (\Seen)` and
//!   `UID MOVE` to the same folder canvass moves to;
//! - SMTP with canvass' own connections (`canvass::transport`, lettre
//!   speaking the protocol over canvass' `TCP_NODELAY` pool) with the same
//!   `pool_size` as canvass, one message of an invitation's size per trigger,
//!   as many in flight as connections (the outbox's `buffer_unordered`).
//!
//! It keeps no store, no dedup and makes nothing durable: a trigger is
//! marked on the server once its message is queued in memory, not sent.
//!
//! It runs as its own process (this program with `__bare-relay`), so its
//! time runs from spawning it, as canvass' does, and its CPU is read the same
//! way as the daemon's (`/proc/<pid>/stat`, utime + stime).

use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::util::{self, ConfigSpec, Inbound, Outbound, SURVEY};

/// The bare relay's ingest batch: canvass' `ingest::BATCH`.
const BATCH: usize = canvass::ingest::BATCH;
/// Where processed triggers go, as in the bench's canvass config.
const MOVE_TO: &str = "Behandlet";

pub struct BareRun {
    pub rate: f64,
    pub cpu_us: f64,
    pub detail: String,
    pub sent: usize,
}

/// Runs the bare relay on the `n` triggers waiting in the survey INBOX,
/// sending `message` (an invitation's bytes) for each into `smtp_port` over
/// `sessions` connections.
pub async fn run(
    dir: &Path,
    imap_port: u16,
    smtp_port: u16,
    sessions: usize,
    n: usize,
    message: &[u8],
) -> BareRun {
    let _ = std::fs::remove_dir_all(dir);
    util::write_config(
        dir,
        &ConfigSpec {
            inbound: Inbound::Imap { port: imap_port },
            outbound: Outbound::Smtp {
                port: smtp_port,
                pool: sessions,
            },
            web_port: util::free_port(),
            sending: String::new(),
        },
    );
    std::fs::write(dir.join("message.eml"), message).expect("write the relay's message");
    let load_start = util::loadavg();
    let dir = dir.to_path_buf();
    let (took, out) = tokio::task::spawn_blocking(move || {
        let exe = std::env::current_exe().expect("this program's path");
        let t0 = Instant::now();
        let mut child = std::process::Command::new(exe)
            .args([
                "__bare-relay".to_string(),
                dir.display().to_string(),
                imap_port.to_string(),
                n.to_string(),
                sessions.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the bare relay");
        let stdout = child.stdout.take().expect("stdout");
        // One line, printed when the last message was accepted.
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let took = t0.elapsed();
        let _ = child.wait();
        (took, line)
    })
    .await
    .expect("bare relay thread");
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("bare relay output {out:?}: {e}"));
    let get = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    let sent = get("sent") as usize;
    let cpu = get("cpu");
    let rate = n as f64 / took.as_secs_f64();
    let cpu_us = cpu * 1e6 / n as f64;
    let detail = format!(
        "{:.2} s ({rate:.0} msg/s), {sent} sent, {} failed, all triggers read after {:.2} s, CPU {cpu:.2} s \
         ({cpu_us:.0} µs per message), peak RSS {:.0} MiB; load average {load_start} → {}",
        took.as_secs_f64(),
        get("failed"),
        get("read"),
        get("hwm_kib") / 1024.0,
        util::loadavg()
    );
    eprintln!("  bare relay: {detail}");
    BareRun {
        rate,
        cpu_us,
        detail,
        sent,
    }
}

/// The child: `__bare-relay DIR IMAP_PORT N SESSIONS`. Prints one JSON line
/// when all `N` messages were accepted (or failed for good).
pub fn child(dir: &Path, imap_port: u16, n: usize, sessions: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let t0 = Instant::now();
    let cfg = util::load_config(&dir.join("canvass.toml"));
    let message = std::fs::read(dir.join("message.eml")).expect("the relay's message");
    let transport: Arc<dyn canvass::transport::Transport> =
        Arc::from(canvass::transport::from_config(&cfg.outbound).expect("SMTP transport"));
    let (sent, failed, read) = rt.block_on(relay(imap_port, n, sessions, transport, message, t0));
    let cpu = util::proc_cpu_seconds(std::process::id());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({"sent": sent, "failed": failed, "read": read, "cpu": cpu, "hwm_kib": hwm})
    );
}

async fn relay(
    imap_port: u16,
    n: usize,
    sessions: usize,
    transport: Arc<dyn canvass::transport::Transport>,
    message: Vec<u8>,
    t0: Instant,
) -> (usize, usize, f64) {
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(4 * BATCH);
    // The sender: as many messages in flight as connections.
    let sender = {
        let (sent, failed) = (sent.clone(), failed.clone());
        let message = Arc::new(message);
        tokio::spawn(async move {
            let concurrency = sessions.max(1);
            let recipients =
                futures::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|m| (m, rx)) });
            recipients
                .map(|to| {
                    let (transport, message) = (transport.clone(), message.clone());
                    async move { transport.send(SURVEY, &[to], &message).await }
                })
                .buffer_unordered(concurrency)
                .for_each(|r| {
                    match r {
                        Ok(()) => sent.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    async {}
                })
                .await;
        })
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", imap_port))
        .await
        .expect("connect to IMAP");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    let mut client = async_imap::Client::new(tcp);
    client
        .read_response()
        .await
        .expect("IMAP greeting")
        .expect("IMAP greeting");
    let mut session = client
        .login(SURVEY, crate::harness::PASSWORD)
        .await
        .map_err(|(e, _)| e)
        .expect("IMAP LOGIN");
    let _ = session.create(MOVE_TO).await;
    session.select("INBOX").await.expect("SELECT INBOX");
    let mut read = 0usize;
    let limit = Instant::now() + Duration::from_secs(120 + n as u64 / 20);
    while read < n && Instant::now() < limit {
        let mut uids: Vec<u32> = session
            .uid_search("ALL")
            .await
            .expect("UID SEARCH")
            .into_iter()
            .collect();
        if uids.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        uids.sort_unstable();
        uids.truncate(BATCH);
        let set = uids
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let fetched: Vec<_> = session
            .uid_fetch(&set, "(UID BODY.PEEK[])")
            .await
            .expect("UID FETCH")
            .collect()
            .await;
        for f in fetched {
            let f = f.expect("FETCH response");
            let Some(body) = f.body() else { continue };
            if let Some(to) = recipient(body) {
                tx.send(to).await.expect("the sender is running");
            }
            read += 1;
        }
        let _: Vec<_> = session
            .uid_store(&set, "+FLAGS.SILENT (\\Seen)")
            .await
            .expect("UID STORE")
            .collect()
            .await;
        session.uid_mv(&set, MOVE_TO).await.expect("UID MOVE");
    }
    let read_at = t0.elapsed().as_secs_f64();
    drop(tx);
    sender.await.expect("sender task");
    let _ = session.logout().await;
    (
        sent.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        read_at,
    )
}

/// The contact a trigger names: its first To/Cc address other than the
/// survey's.
fn recipient(raw: &[u8]) -> Option<String> {
    let msg = mail_parser::MessageParser::default().parse(raw)?;
    let found = [msg.to(), msg.cc()]
        .into_iter()
        .flatten()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address())
        .find(|a| !a.eq_ignore_ascii_case(SURVEY))
        .map(String::from);
    found
}
