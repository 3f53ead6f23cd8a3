//! Target 1: invitation throughput. N trigger messages wait in the survey
//! mailbox (IMAP APPEND into a real Dovecot), each naming one new contact;
//! `canvass run` is started and timed until the store counts all N
//! invitations accepted by the SMTP server:
//!
//! - into the real Postfix of tests/it/harness, against smtp-source sending N
//!   messages of the invitation's size into that same Postfix;
//! - into smtp-sink, against smtp-source's 8-session rate into it.
//!
//! smtp-source runs with `-d` (connections kept, as canvass' pool does) and as
//! many sessions as canvass' SMTP pool. The time runs from spawning the
//! daemon (start-up, IMAP login and reading the backlog included) to the
//! status poll (every 20 ms) that shows N sent. Afterwards the store must
//! hold exactly the N contacts, each invited once, and the server must have
//! received N distinct invitations and no more.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use canvass::store::Store;

use crate::harness::MailStack;
use crate::util::{
    self, Background, ConfigSpec, DaemonProc, Figure, Inbound, LogTail, Opts, Outbound,
};
use crate::util::{contact, CONSULTANT, CONTACT_USER, SURVEY};

pub async fn run(opts: &Opts, figures: &mut Vec<Figure>) {
    eprintln!("== 1. invitation throughput ({} triggers)", opts.messages);
    let n = opts.messages;
    let dir = opts.dir.join("throughput");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");

    let mail = MailStack::start();
    mail.add_users(&[SURVEY, CONSULTANT, CONTACT_USER]);
    let size = invitation_size(&dir);
    let pieces = pieces(&dir, 2_000);
    eprintln!("  {pieces}");
    // smtp-source adds ~170 bytes of headers to its -l payload; calibrated
    // against Postfix's own size= below.
    let payload = size.saturating_sub(170);
    eprintln!("  an invitation is {size} bytes; smtp-source payload {payload} bytes");

    // ---- smtp-sink ----------------------------------------------------
    let sink_port = util::free_port();
    let sink_log = dir.join("smtp-sink.out");
    let sink = Background::spawn(
        "/usr/sbin/smtp-sink",
        &[
            "-u".into(),
            "nobody".into(),
            "-c".into(),
            format!("127.0.0.1:{sink_port}"),
            "1024".into(),
        ],
        &sink_log,
    );
    util::wait_listening(sink_port, Duration::from_secs(5));
    let load_src = util::loadavg();
    let src8 = smtp_source(sink_port, opts.sessions, n, payload);
    let src1 = smtp_source(sink_port, 1, n, payload);
    eprintln!(
        "  smtp-source → smtp-sink: {:.0} msg/s with {} sessions, {:.0} msg/s with 1 (load average {load_src} → {})",
        src8,
        opts.sessions,
        src1,
        util::loadavg()
    );
    let before = sink_messages(&sink_log);
    let append_rate = fill_mailbox(&mail, 0..n).await;
    eprintln!("  IMAP APPEND of {n} triggers: {append_rate:.0} msg/s");
    let sink_run = run_canvass(
        &dir.join("sink"),
        Inbound::Imap {
            port: mail.imap_port(),
        },
        Outbound::Smtp {
            port: sink_port,
            pool: opts.sessions,
        },
        0..n,
    )
    .await;
    std::thread::sleep(Duration::from_millis(300));
    let received = sink_messages(&sink_log) - before;
    drop(sink);
    util::report(
        figures,
        Figure::relative(
            "1b",
            &format!("{n} invitations into smtp-sink"),
            sink_run.rate,
            "msg/s",
            &format!("smtp-source {} sessions", opts.sessions),
            src8,
            0.5,
        ),
    );
    util::report(
        figures,
        Figure::check(
            "1b'",
            "smtp-sink: every contact invited once, none skipped",
            sink_run.problems.is_empty() && received == n as u64,
            format!(
                "store: {}; smtp-sink received {received} messages{}",
                sink_run.summary,
                sink_run.problems_text()
            ),
        ),
    );

    let left = inbox_count(&mail).await;
    if left > 0 {
        eprintln!("  note: {left} triggers still in the survey INBOX after the smtp-sink run");
    }

    // ---- Postfix ------------------------------------------------------
    let load_pf = util::loadavg();
    let busy_pf = util::machine_busy_seconds();
    let pf_src = smtp_source(mail.smtp_port(), opts.sessions, n, payload);
    // While smtp-source ran: Postfix accepting (and already delivering to
    // Dovecot) and smtp-source itself.
    let busy_pf = util::machine_busy_seconds() - busy_pf;
    let pf_src_cpu = format!(
        "machine CPU while smtp-source ran {busy_pf:.1} s ({:.0} µs per message)",
        busy_pf * 1e6 / n as f64
    );
    eprintln!(
        "  smtp-source → Postfix: {pf_src:.0} msg/s accepted with {} sessions ({pf_src_cpu}; load average {load_pf} → {})",
        opts.sessions,
        util::loadavg()
    );
    let drained = wait_postfix_idle(&mail, Duration::from_secs(600));
    eprintln!("  Postfix delivered the smtp-source mail to Dovecot ({drained:.1} s after)");
    let pf_log = mail.root().join("postfix/postfix.log");
    let sizes_before = std::fs::read_to_string(&pf_log).unwrap_or_default();
    let source_size = postfix_sizes(&sizes_before, "<bench-source@siri.test>")
        .first()
        .copied()
        .unwrap_or(0);
    let append_rate2 = fill_mailbox(&mail, n..2 * n).await;
    let pf_run = run_canvass(
        &dir.join("postfix"),
        Inbound::Imap {
            port: mail.imap_port(),
        },
        Outbound::Smtp {
            port: mail.smtp_port(),
            pool: opts.sessions,
        },
        n..2 * n,
    )
    .await;
    std::thread::sleep(Duration::from_millis(500));
    let log = std::fs::read_to_string(&pf_log).unwrap_or_default();
    let ids = canvass_message_ids(&log[sizes_before.len().min(log.len())..]);
    let distinct: HashSet<&String> = ids.iter().collect();
    let invitation_size_pf = postfix_sizes(&log, &format!("<{SURVEY}>"))
        .first()
        .copied()
        .unwrap_or(0);
    util::report(
        figures,
        Figure::relative(
            "1a",
            &format!("{n} invitations into Postfix"),
            pf_run.rate,
            "msg/s",
            &format!("smtp-source {} sessions", opts.sessions),
            pf_src,
            0.6,
        ),
    );
    util::report(
        figures,
        Figure::check(
            "1a'",
            "Postfix: every contact invited once, none skipped",
            pf_run.problems.is_empty() && ids.len() == n && distinct.len() == n,
            format!(
                "store: {}; Postfix received {} invitations, {} distinct{}",
                pf_run.summary,
                ids.len(),
                distinct.len(),
                pf_run.problems_text()
            ),
        ),
    );
    util::report(
        figures,
        Figure::info("1d", "where the daemon's time goes", pieces),
    );
    util::report(
        figures,
        Figure::info(
            "1c",
            "context",
            format!(
                "message size in Postfix: invitation {invitation_size_pf} B, smtp-source {source_size} B; \
                 smtp-source → smtp-sink 1 session {src1:.0} msg/s; IMAP APPEND {append_rate:.0} then {append_rate2:.0} msg/s; \
                 smtp-source → Postfix: {pf_src_cpu}; canvass → sink: {}; canvass → Postfix: {}",
                sink_run.detail, pf_run.detail
            ),
        ),
    );
}

/// The daemon's per-invitation work measured in process, one piece at a
/// time, on a store in `dir` (no IMAP, no SMTP): where its CPU goes.
pub fn pieces(dir: &Path, n: usize) -> String {
    use canvass::pipeline::Pipeline;
    use chrono::Utc;
    let cfg_dir = dir.join("pieces");
    let _ = std::fs::remove_dir_all(&cfg_dir);
    let cfg = util::offline_config(&cfg_dir);
    let raws: Vec<Vec<u8>> = (0..n).map(|i| trigger(5_000_000 + i)).collect();
    let now = Utc::now();
    let us = |t: Instant| t.elapsed().as_secs_f64() * 1e6 / n as f64;

    let t = Instant::now();
    for raw in &raws {
        let msg = mail_parser::MessageParser::default()
            .parse(raw)
            .expect("parse");
        std::hint::black_box(canvass::classify::classify(&msg, now, &cfg));
    }
    let classify = us(t);
    let to = canvass::address::parse(&contact(1)).expect("address");
    let t = Instant::now();
    for _ in 0..n {
        let token = canvass::token::Token::generate();
        std::hint::black_box(canvass::compose::invitation(&cfg, &to, &token, now).expect("render"));
    }
    let render = us(t);
    let pipeline = Pipeline::open_offline(cfg).expect("store");
    let t = Instant::now();
    for raw in &raws {
        pipeline.process(raw, now, None, false).expect("process");
    }
    let process = us(t);
    let more: Vec<Vec<u8>> = (0..n).map(|i| trigger(6_000_000 + i)).collect();
    let t = Instant::now();
    for chunk in more.chunks(25) {
        let all: Vec<canvass::pipeline::ToProcess<'_>> = chunk
            .iter()
            .map(|raw| canvass::pipeline::ToProcess {
                raw,
                received: now,
                mark: None,
                headers_only: false,
            })
            .collect();
        pipeline.process_all(&all).expect("process_all");
    }
    let process_all = us(t);
    let t = Instant::now();
    pipeline.store.flush_blocking().expect("flush");
    let flush_ms = t.elapsed().as_secs_f64() * 1e3;
    let far = now + chrono::Duration::days(1);
    let t = Instant::now();
    let (due, _) = pipeline.store.outbox_due(far, 2 * n).expect("due");
    let due_us = us(t);
    let t = Instant::now();
    for item in &due {
        pipeline.store.mark_sent(item, now).expect("mark");
    }
    let mark = t.elapsed().as_secs_f64() * 1e6 / due.len().max(1) as f64;
    let (due, _) = pipeline.store.outbox_due(far, 2 * n).expect("due");
    assert!(due.is_empty());
    let t = Instant::now();
    for _ in 0..200 {
        pipeline.store.flush_blocking().expect("flush");
    }
    let empty_flush = t.elapsed().as_secs_f64() * 1e6 / 200.0;
    format!(
        "in process, per trigger of one contact: parse + classify {classify:.0} µs; rendering the invitation \
         {render:.0} µs; Pipeline::process (classify, plan, render, commit) {process:.0} µs, the same 25 to a transaction \
         (Pipeline::process_all, as the ingest loop does) {process_all:.0} µs; outbox_due {due_us:.0} µs; \
         mark_sent one by one {mark:.0} µs; flushing {n} commits {flush_ms:.1} ms; an empty flush {empty_flush:.0} µs"
    )
}

/// The size of one rendered invitation, as canvass sends it.
fn invitation_size(dir: &Path) -> usize {
    let cfg_dir = dir.join("size");
    let cfg = util::offline_config(&cfg_dir);
    let to = canvass::address::parse(&contact(99_999)).expect("address");
    let msg = canvass::compose::invitation(
        &cfg,
        &to,
        &canvass::token::Token::generate(),
        chrono::Utc::now(),
    )
    .expect("render an invitation");
    msg.raw.len()
}

/// smtp-source: `count` messages of `payload` bytes over `sessions`
/// connections kept open (-d); messages per second, timed around the program.
pub fn smtp_source(port: u16, sessions: usize, count: usize, payload: usize) -> f64 {
    let args: Vec<String> = [
        "-d".to_string(),
        "-s".into(),
        sessions.to_string(),
        "-m".into(),
        count.to_string(),
        "-l".into(),
        payload.to_string(),
        "-f".into(),
        "bench-source@siri.test".into(),
        "-t".into(),
        contact(0),
        "-M".into(),
        "bench.canvass.test".into(),
        format!("127.0.0.1:{port}"),
    ]
    .into();
    let (took, _, _) = util::run_timed("/usr/sbin/smtp-source", &args, Duration::from_secs(600));
    count as f64 / took.as_secs_f64()
}

/// The last `mesg=` counter smtp-sink -c printed.
fn sink_messages(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.rsplit(['\r', '\n'])
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("mesg="))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Waits until Postfix's queue is empty (bounded); seconds waited.
fn wait_postfix_idle(mail: &MailStack, limit: Duration) -> f64 {
    let start = Instant::now();
    let queue = mail.root().join("postfix/queue");
    let mut next_flush = Instant::now() + Duration::from_secs(2);
    loop {
        let queued: usize = ["maildrop", "incoming", "active", "deferred"]
            .iter()
            .map(|d| count_files(&queue.join(d)))
            .sum();
        if queued == 0 {
            return start.elapsed().as_secs_f64();
        }
        if start.elapsed() > limit {
            eprintln!("  note: Postfix still has {queued} queued messages after {limit:?}");
            return start.elapsed().as_secs_f64();
        }
        if Instant::now() > next_flush {
            mail.flush_queue();
            next_flush = Instant::now() + Duration::from_secs(2);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// `size=` of the messages Postfix's qmgr logged from `sender`.
fn postfix_sizes(log: &str, sender: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("qmgr") && l.contains(&format!("from={sender}")))
        .filter_map(|l| {
            l.split("size=")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .and_then(|s| s.parse().ok())
        })
        .collect()
}

/// Message-IDs of canvass' invitations as Postfix's cleanup logged them.
fn canvass_message_ids(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("cleanup") && l.contains("message-id=<canvass."))
        .filter_map(|l| l.split("message-id=").nth(1).map(|s| s.trim().to_string()))
        .collect()
}

/// Messages in the survey INBOX.
async fn inbox_count(mail: &MailStack) -> u32 {
    let mut s = mail.imap_login(SURVEY).await;
    let n = s.examine("INBOX").await.map(|m| m.exists).unwrap_or(0);
    let _ = s.logout().await;
    n
}

/// A trigger: consultant → contact `i`, CC the survey address.
pub fn trigger(i: usize) -> Vec<u8> {
    crate::common::cc_trigger(
        &format!("bench-trigger-{i}"),
        CONSULTANT,
        &[&format!("Kontakt {i} <{}>", contact(i))],
    )
}

/// APPENDs the triggers for `range` into the survey INBOX over 4 sessions;
/// messages per second.
pub async fn fill_mailbox(mail: &MailStack, range: std::ops::Range<usize>) -> f64 {
    const SESSIONS: usize = 4;
    let start = Instant::now();
    let count = range.len();
    let mut jobs = Vec::new();
    for s in 0..SESSIONS {
        let ids: Vec<usize> = range.clone().filter(|i| i % SESSIONS == s).collect();
        jobs.push(async move {
            let mut session = mail.imap_login(SURVEY).await;
            for i in ids {
                session
                    .append("INBOX", None, None, trigger(i))
                    .await
                    .unwrap_or_else(|e| panic!("APPEND trigger {i}: {e}"));
            }
            let _ = session.logout().await;
        });
    }
    futures::future::join_all(jobs).await;
    count as f64 / start.elapsed().as_secs_f64()
}

pub struct Run {
    pub rate: f64,
    pub summary: String,
    pub detail: String,
    pub problems: Vec<String>,
}

impl Run {
    fn problems_text(&self) -> String {
        if self.problems.is_empty() {
            String::new()
        } else {
            format!("; PROBLEMS: {}", self.problems.join("; "))
        }
    }
}

/// Starts canvass on the waiting triggers and times it until every one's
/// invitation was accepted; then checks the store.
async fn run_canvass(
    dir: &Path,
    inbound: Inbound,
    outbound: Outbound,
    contacts: std::ops::Range<usize>,
) -> Run {
    let n = contacts.len();
    let _ = std::fs::remove_dir_all(dir);
    util::write_config(
        dir,
        &ConfigSpec {
            inbound,
            outbound,
            web_port: util::free_port(),
            sending: String::new(),
        },
    );
    let load_start = util::loadavg();
    let busy_start = util::machine_busy_seconds();
    let mut daemon = DaemonProc::spawn(dir, "canvass");
    let t0 = daemon.spawned;
    // Progress from the daemon's own log ("trigger" per message read, "sent"
    // per invitation accepted and durably marked): asking its control socket
    // every few ms would cost it CPU.
    let mut log = LogTail::new(&daemon.log);
    let limit = Duration::from_secs(120 + n as u64 / 20);
    let (mut triggers, mut sent, mut failed) = (0usize, 0usize, 0usize);
    let mut ingested_at = None;
    let mut last_sent_at = None;
    let mut last_progress = (0usize, Instant::now());
    let done_at = loop {
        daemon.assert_alive();
        for e in log.events() {
            match e.get("message").and_then(|m| m.as_str()) {
                Some("trigger") => triggers += 1,
                Some("sent") => {
                    sent += 1;
                    last_sent_at = e
                        .get("timestamp")
                        .and_then(|t| t.as_str())
                        .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
                }
                Some("refused for good by the server") => failed += 1,
                _ => {}
            }
        }
        if ingested_at.is_none() && triggers >= n {
            ingested_at = Some(t0.elapsed());
        }
        if sent + failed >= n {
            // The time the last one was logged, not when we looked.
            let spawned_wall =
                chrono::Utc::now() - chrono::Duration::from_std(t0.elapsed()).unwrap_or_default();
            break last_sent_at
                .and_then(|t| (t - spawned_wall).to_std().ok())
                .unwrap_or_else(|| t0.elapsed());
        }
        if sent + triggers > last_progress.0 {
            last_progress = (sent + triggers, Instant::now());
        }
        if t0.elapsed() > limit || last_progress.1.elapsed() > Duration::from_secs(60) {
            eprintln!(
                "  note: canvass stalled or ran out of time; log tail:\n{}",
                util::tail(&daemon.log, 10)
            );
            break t0.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let status = daemon.status().await;
    let sent_counter = status
        .as_ref()
        .map(|s| util::json_u64(s, &["total", "sent"]))
        .unwrap_or(0);
    let failed = status
        .as_ref()
        .map(|s| util::json_u64(s, &["total", "failed"]))
        .unwrap_or(failed as u64);
    let sent = sent_counter;
    let cpu = daemon.cpu_seconds();
    let busy = util::machine_busy_seconds() - busy_start;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let available = cores * t0.elapsed().as_secs_f64();
    let load = format!("load average {load_start} → {}", util::loadavg());
    let (_, hwm) = daemon.rss_kib();
    let started = first_log_time(&daemon.log, "mailbox connected")
        .zip(first_log_time(&daemon.log, "canvass started"));
    let log = daemon.log.clone();
    daemon.stop();
    let rate = n as f64 / done_at.as_secs_f64();
    let mut problems = Vec::new();
    if sent != n as u64 {
        problems.push(format!("{sent} sent, {failed} failed of {n}"));
    }
    // The store: exactly the N contacts, each once.
    let store = Store::open(&dir.join("store")).expect("open the store after the run");
    let mut seen = HashSet::new();
    let mut twice = 0;
    for inv in store.invitations() {
        let inv = inv.expect("invitation");
        let addr = inv.address.map(|a| a.to_string()).unwrap_or_default();
        if !seen.insert(addr) {
            twice += 1;
        }
    }
    let expected: HashSet<String> = contacts.clone().map(contact).collect();
    let skipped = expected.difference(&seen).count();
    let strangers = seen.difference(&expected).count();
    if twice > 0 || skipped > 0 || strangers > 0 {
        problems.push(format!(
            "{twice} invited twice, {skipped} skipped, {strangers} unexpected"
        ));
    }
    let errors = util::log_events(
        &log,
        "cannot store the outcome of a message; it stays unprocessed and will be retried",
    )
    .len();
    if errors > 0 {
        problems.push(format!("{errors} store errors logged"));
    }
    let summary = format!(
        "{} invitations for {} distinct contacts, {sent} sent, {failed} failed",
        seen.len() + twice,
        seen.len()
    );
    let startup = started
        .map(|(connected, started)| (connected - started).num_milliseconds())
        .map(|ms| format!("; mailbox connected {ms} ms after start-up"))
        .unwrap_or_default();
    let detail = format!(
        "{:.2} s ({rate:.0} msg/s), all triggers read after {:.2} s, daemon CPU {cpu:.2} s \
         ({:.0} µs per invitation), machine CPU {busy:.1} s of {:.1} available (the rest: {:.0} µs \
         per invitation for the mail servers and the harness), peak RSS {:.0} MiB{startup}; {load}",
        done_at.as_secs_f64(),
        ingested_at.unwrap_or(done_at).as_secs_f64(),
        cpu * 1e6 / n as f64,
        available,
        (busy - cpu).max(0.0) * 1e6 / n as f64,
        hwm as f64 / 1024.0,
    );
    eprintln!("  canvass: {detail}");
    Run {
        rate,
        summary,
        detail,
        problems,
    }
}

/// The time stamp of the first log line with this message.
pub fn first_log_time(log: &Path, message: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    util::log_events(log, message)
        .first()
        .and_then(|v| {
            v.get("timestamp")
                .and_then(|t| t.as_str())
                .map(String::from)
        })
        .and_then(|t| t.parse().ok())
}
