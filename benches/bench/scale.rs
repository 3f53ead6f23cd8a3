//! Target 5: scale. For each size N (10k, 100k, 1M) a store is built the
//! way the daemon builds it: N/20 consultant triggers of 20 new contacts each
//! go through `Pipeline::process_all` (parse, classify, plan, render, commit;
//! 25 triggers per transaction, as the ingest loop commits), the outbox is
//! drained as it fills with `mark_sent_all` in groups of 8, each flushed, as
//! the outbox loop does (every invitation ends up sent), then N/2 answers go through `Store::submit_response` (64 at a
//! time, each flushed). A built store is kept under DIR/scale-N and reused
//! by later runs (unless `--fresh`).
//!
//! Then, per size:
//! - the store's size on disk;
//! - `canvass status` and `canvass digest --print` as an operator runs them:
//!   against the running daemon (control socket) and with no daemon (the
//!   command opens the store itself); wall time of the whole command;
//! - every manager's digest rendered for sending (text, HTML and chart),
//!   in process;
//! - the daemon (`canvass run`, Maildir in, .eml files out): idle RSS 3 s
//!   after start-up, and peak RSS (VmHWM) after start-up, the commands
//!   above, a trigger processed and sent, 100 form GETs and 100 answers.
//!
//! The targets are judged at the largest size, but idle RSS at 100k (issue
//! 16: < 30 MB there, < 100 MB peak at 1M); every size is listed with how
//! each cost grows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canvass::address::HmacKey;
use canvass::pipeline::{Pipeline, ToProcess};
use canvass::store::StoredResponse;
use canvass::token::Token;
use chrono::Utc;
use futures::StreamExt;

use crate::common;
use crate::util::{self, ConfigSpec, DaemonProc, Figure, Inbound, Opts, Outbound};

const PER_MESSAGE: usize = 20;
const CONSULTANTS: [&str; 5] = [
    "mette.larsen@siri.test",
    "anne.hansen@siri.test",
    "soeren.aagaard@siri.test",
    "bo.jensen@siri.test",
    "karen.moeller@siri.test",
];

#[derive(Debug, Clone, Default)]
struct Costs {
    n: usize,
    answers: usize,
    build_s: f64,
    disk: u64,
    startup_ms: f64,
    status_daemon_ms: f64,
    digest_daemon_ms: f64,
    status_offline_ms: f64,
    digest_offline_ms: f64,
    render_all_ms: f64,
    /// `canvass backup` file (the live data) and the store `canvass
    /// restore` writes from it.
    backup: u64,
    compacted: u64,
    idle_rss_kib: u64,
    peak_rss_kib: u64,
    after_rss_kib: u64,
}

pub async fn run(opts: &Opts, figures: &mut Vec<Figure>) {
    eprintln!("== 5. scale ({:?} invitations)", opts.scale);
    let mut all = Vec::new();
    for &n in &opts.scale {
        let c = measure(opts, n).await;
        eprintln!("  {n}: {c:?}");
        all.push(c);
    }
    let Some(last) = all.last().cloned() else {
        return;
    };
    let at = label(last.n);
    let s = |v: f64| v / 1000.0;
    util::report(
        figures,
        Figure::at_most(
            &format!("5a@{at}"),
            "`canvass status`, daemon running",
            s(last.status_daemon_ms),
            "s",
            1.0,
            "",
            true,
        ),
    );
    util::report(
        figures,
        Figure::at_most(
            &format!("5b@{at}"),
            "`canvass digest --print`, daemon running",
            s(last.digest_daemon_ms),
            "s",
            1.0,
            "",
            true,
        ),
    );
    util::report(
        figures,
        Figure::at_most(
            &format!("5c@{at}"),
            "`canvass status`, no daemon (opens the store)",
            s(last.status_offline_ms),
            "s",
            1.0,
            "",
            true,
        ),
    );
    util::report(
        figures,
        Figure::at_most(
            &format!("5d@{at}"),
            "`canvass digest --print`, no daemon (opens the store)",
            s(last.digest_offline_ms),
            "s",
            1.0,
            "",
            true,
        ),
    );
    util::report(
        figures,
        Figure::at_most(
            &format!("5e@{at}"),
            "every manager's digest rendered for sending (text, HTML, chart)",
            s(last.render_all_ms),
            "s",
            1.0,
            "",
            true,
        ),
    );
    util::report(
        figures,
        Figure::at_most(
            &format!("5f@{at}"),
            "store on disk",
            last.disk as f64 / 1e9,
            "GB",
            1.0,
            "",
            true,
        ),
    );
    // Issue 16's RSS targets are in MB (10^6 bytes): peak < 100 MB at the
    // largest size, idle < 30 MB at 100k.
    let mb = |kib: u64| kib as f64 * 1024.0 / 1e6;
    util::report(
        figures,
        Figure::at_most(
            &format!("5g@{at}"),
            "daemon peak RSS",
            mb(last.peak_rss_kib),
            "MB",
            100.0,
            "",
            true,
        ),
    );
    for c in &all {
        let id = format!("5h@{}", label(c.n));
        let what = "daemon idle RSS";
        util::report(
            figures,
            if c.n == 100_000 {
                Figure::at_most(&id, what, mb(c.idle_rss_kib), "MB", 30.0, "", true)
            } else {
                Figure::info(&id, what, format!("{:.1} MB", mb(c.idle_rss_kib)))
            },
        );
    }
    let growth = growth_table(&all);
    eprintln!("{growth}");
    let _ = std::fs::write(opts.dir.join("scale-growth.md"), growth);
}

pub fn label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn growth_table(all: &[Costs]) -> String {
    let mut s = String::from(
        "| invitations / answers | build | store on disk | backup file | store restored from it | daemon start-up | status (daemon) | digest (daemon) | status (no daemon) | digest (no daemon) | render all digests | idle RSS | peak RSS |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in all {
        s.push_str(&format!(
            "| {} / {} | {:.0} s | {:.0} MiB | {:.0} MiB | {:.0} MiB | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} ms | {:.1} MiB | {:.1} MiB |\n",
            label(c.n),
            label(c.answers),
            c.build_s,
            util::mib(c.disk),
            util::mib(c.backup),
            util::mib(c.compacted),
            c.startup_ms,
            c.status_daemon_ms,
            c.digest_daemon_ms,
            c.status_offline_ms,
            c.digest_offline_ms,
            c.render_all_ms,
            c.idle_rss_kib as f64 / 1024.0,
            c.peak_rss_kib as f64 / 1024.0,
        ));
    }
    s
}

async fn measure(opts: &Opts, n: usize) -> Costs {
    let dir = opts.dir.join(format!("scale-{n}"));
    let marker = dir.join("built");
    let web_port = util::free_port();
    let spec = ConfigSpec {
        inbound: Inbound::Maildir {
            path: dir.join("inbox"),
        },
        outbound: Outbound::File {
            path: dir.join("sent"),
        },
        web_port,
        sending: String::new(),
    };
    let mut costs = Costs {
        n,
        answers: n / 2,
        ..Default::default()
    };
    if !(opts.reuse && marker.exists()) {
        let _ = std::fs::remove_dir_all(&dir);
        let config = util::write_config(&dir, &spec);
        let t = Instant::now();
        build(&config, n).await;
        costs.build_s = t.elapsed().as_secs_f64();
        std::fs::write(&marker, format!("{:.1}\n", costs.build_s)).expect("marker");
    } else {
        costs.build_s = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(f64::NAN);
        eprintln!("  reusing the store built before in {}", dir.display());
    }
    let config = util::write_config(&dir, &spec);
    let _ = std::fs::remove_dir_all(dir.join("sent"));
    costs.disk = util::disk_usage(&dir.join("store"));

    // Without a daemon: each command opens the store.
    costs.status_offline_ms = median_ms(3, || cli(&config, &["status"]));
    costs.digest_offline_ms = median_ms(3, || cli(&config, &["digest", "--print"]));
    costs.render_all_ms = render_all(&config);
    (costs.backup, costs.compacted) = compaction(&dir, &spec);

    // The daemon.
    let mut daemon = DaemonProc::spawn(&dir, "canvass");
    daemon.wait_ready(Duration::from_secs(300)).await;
    costs.startup_ms = daemon.spawned.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_secs(3)).await;
    costs.idle_rss_kib = daemon.rss_kib().0;
    costs.status_daemon_ms = median_ms(5, || cli(&config, &["status"]));
    costs.digest_daemon_ms = median_ms(5, || cli(&config, &["digest", "--print"]));
    exercise(&mut daemon, &dir, web_port).await;
    let (after, peak) = daemon.rss_kib();
    costs.after_rss_kib = after;
    costs.peak_rss_kib = peak;
    daemon.stop();
    costs.disk = costs.disk.max(util::disk_usage(&dir.join("store")));
    costs
}

/// `canvass backup` of the store, then `canvass restore` of that file into a
/// fresh store beside it: (backup bytes, restored store bytes). sled keeps
/// garbage in its log until it cleans segments; a store written anew holds
/// only the live data.
fn compaction(dir: &Path, spec: &ConfigSpec) -> (u64, u64) {
    let copy = dir.join("compacted");
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).expect("dir");
    std::fs::copy(dir.join("hmac.key"), copy.join("hmac.key")).expect("key");
    let copy_spec = ConfigSpec {
        inbound: Inbound::Maildir {
            path: copy.join("inbox"),
        },
        outbound: Outbound::File {
            path: copy.join("sent"),
        },
        web_port: spec.web_port,
        sending: spec.sending.clone(),
    };
    let copy_config = util::write_config(&copy, &copy_spec);
    let file = dir.join("backup.bin");
    let _ = std::fs::remove_file(&file);
    let config = dir.join("canvass.toml");
    cli(&config, &["backup", &file.display().to_string()]);
    cli(&copy_config, &["restore", &file.display().to_string()]);
    let backup = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let compacted = util::disk_usage(&copy.join("store"));
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir_all(&copy);
    (backup, compacted)
}

/// One CLI run; its wall time.
fn cli(config: &Path, args: &[&str]) -> Duration {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.push("--config".into());
    all.push(config.display().to_string());
    // Bounded; a restore of the 1M store takes minutes.
    let (took, _, _) = util::run_timed(util::canvass_bin(), &all, Duration::from_secs(1800));
    took
}

fn median_ms(runs: usize, mut f: impl FnMut() -> Duration) -> f64 {
    let v: Vec<f64> = (0..runs).map(|_| f().as_secs_f64() * 1000.0).collect();
    util::percentile(&v, 50.0)
}

/// Renders every manager's digest (text, HTML, chart) as the scheduler does
/// before queueing it; milliseconds, store opening excluded.
fn render_all(config: &Path) -> f64 {
    let cfg = util::load_config(config);
    let pipeline = Arc::new(Pipeline::open_offline(cfg).expect("open the store"));
    let scheduler = canvass::scheduler::Scheduler { pipeline };
    let v: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let r = scheduler
                .render_digests(Utc::now(), false)
                .expect("render digests");
            assert!(!r.is_empty(), "managers are configured");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    util::percentile(&v, 50.0)
}

/// Work for the daemon besides idling: one trigger through the Maildir and
/// the outbox, 100 form GETs and 100 answers.
async fn exercise(daemon: &mut DaemonProc, dir: &Path, port: u16) {
    let before = daemon.status().await.expect("status");
    let sent0 = util::json_u64(&before, &["total", "sent"]);
    // New to every run: a reused store has seen the earlier ones.
    let run = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let raw = common::cc_trigger(
        &format!("scale-extra-{run}"),
        CONSULTANTS[0],
        &[&format!("Ny Kontakt <ny.kontakt.{run}@kommune.test>")],
    );
    common::deliver(&dir.join("inbox"), &format!("scale-extra-{run}.eml"), &raw);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = daemon.status().await.expect("status");
        if util::json_u64(&s, &["total", "sent"]) > sent0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the extra trigger was not sent within 60 s:\n{}",
            util::tail(&daemon.log, 20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Links of unanswered invitations (odd ids were left unanswered).
    let tokens = unanswered_tokens(dir, 100);
    let addr = format!("127.0.0.1:{port}");
    let body = common::form_body(&common::complete_answer());
    let addr2 = addr.clone();
    tokio::task::spawn_blocking(move || {
        for t in &tokens {
            let (code, _) = common::http_get(&addr2, &format!("/s/{t}"));
            assert_eq!(code, 200, "GET of an unanswered link");
        }
        for t in &tokens {
            let (code, _, _) = common::http(
                &addr2,
                "POST",
                &format!("/s/{t}"),
                "application/x-www-form-urlencoded",
                &body,
            );
            assert_eq!(code, 200, "POST of an answer");
        }
    })
    .await
    .expect("form requests");
}

/// Tokens of `count` unanswered invitations, from the list written at build.
fn unanswered_tokens(dir: &Path, count: usize) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("unanswered.txt")).unwrap_or_default();
    let used = dir.join("unanswered.used");
    let skip: usize = std::fs::read_to_string(&used)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let out: Vec<String> = text
        .lines()
        .skip(skip)
        .take(count)
        .map(String::from)
        .collect();
    assert_eq!(out.len(), count, "unused links left in {}", dir.display());
    let _ = std::fs::write(&used, (skip + count).to_string());
    out
}

/// Builds the store: N invitations through the ingest pipeline, all sent,
/// N/2 answered. Also writes links of unanswered invitations for later runs.
async fn build(config: &Path, n: usize) {
    let cfg = util::load_config(config);
    let key = HmacKey::load(&cfg.hmac_key_file).expect("key");
    let region_survey = cfg.survey.clone();
    let pipeline = Pipeline::open_offline(cfg).expect("open the store");
    let store = pipeline.store.clone();
    let far = Utc::now() + chrono::Duration::days(3650);
    let messages = n.div_ceil(PER_MESSAGE);
    let t = Instant::now();
    // As the daemon does it: the ingest loop commits COMMIT_CHUNK fetched
    // messages per transaction; the outbox marks a group of `pool_size`
    // accepted messages per transaction, then flushes.
    const COMMIT_CHUNK: usize = 25;
    const POOL: usize = 8;
    let mut m = 0;
    while m < messages {
        let chunk: Vec<Vec<u8>> = (m..(m + COMMIT_CHUNK).min(messages))
            .map(|m| {
                let contacts: Vec<String> = (m * PER_MESSAGE..((m + 1) * PER_MESSAGE).min(n))
                    .map(|i| format!("Kontakt {i} <k{i}@kommune.test>"))
                    .collect();
                let refs: Vec<&str> = contacts.iter().map(String::as_str).collect();
                common::cc_trigger(
                    &format!("scale-{m}"),
                    CONSULTANTS[m % CONSULTANTS.len()],
                    &refs,
                )
            })
            .collect();
        let all: Vec<ToProcess<'_>> = chunk
            .iter()
            .map(|raw| ToProcess {
                raw,
                received: Utc::now(),
                mark: None,
                headers_only: false,
            })
            .collect();
        pipeline.process_all(&all).expect("process triggers");
        m += chunk.len();
        let (due, _) = store.outbox_due(far, usize::MAX).expect("outbox");
        for group in due.chunks(POOL) {
            store.mark_sent_all(group, Utc::now()).expect("mark sent");
            store.flush().await.expect("flush");
        }
        if m % 5_000 < COMMIT_CHUNK {
            eprintln!(
                "    {} invitations in {:.0} s",
                m * PER_MESSAGE,
                t.elapsed().as_secs_f64()
            );
        }
    }
    assert_eq!(store.invitation_count(), n, "every contact invited");
    let ingest_s = t.elapsed().as_secs_f64();

    // Answers for every second invitation.
    let t = Instant::now();
    let answers = canvass::form::validate(&region_survey, &owned(&common::complete_answer()))
        .expect("a complete answer validates");
    let today = Utc::now().with_timezone(&canvass::window::TZ).date_naive();
    let response = StoredResponse {
        survey_id: region_survey.id.clone(),
        survey_version: region_survey.version,
        region: None,
        day: today,
        answers,
    };
    let mut answer_hashes = Vec::with_capacity(n / 2);
    let mut unanswered = Vec::new();
    for (i, inv) in store.invitations().enumerate() {
        let inv = inv.expect("invitation");
        if i % 2 == 0 {
            answer_hashes.push(canvass::token::LinkKey {
                hash: inv.token_hash,
                invitation: Some(inv.id),
            });
        } else if unanswered.len() < 2_000 {
            if let Some(nonce) = inv.token_nonce {
                let link = Token::derive(&key, &nonce).for_invitation(inv.id);
                unanswered.push(link.as_str().to_string());
            }
        }
    }
    let dir: PathBuf = config.parent().expect("dir").to_path_buf();
    std::fs::write(dir.join("unanswered.txt"), unanswered.join("\n") + "\n").expect("links");
    let _ = std::fs::remove_file(dir.join("unanswered.used"));
    let total = answer_hashes.len();
    let stored = futures::stream::iter(answer_hashes)
        .map(|h| {
            let store = store.clone();
            let response = response.clone();
            async move { store.submit_response(h, response, true).await }
        })
        .buffer_unordered(64)
        .fold(0usize, |acc, r| async move {
            let r = r.expect("submit an answer");
            assert_eq!(r, canvass::store::SubmitOutcome::Stored);
            if (acc + 1) % 100_000 == 0 {
                eprintln!("    {} answers", acc + 1);
            }
            acc + 1
        })
        .await;
    assert_eq!(stored, total);
    store.flush().await.expect("flush");
    eprintln!(
        "    built: {n} invitations in {ingest_s:.0} s, {total} answers in {:.0} s",
        t.elapsed().as_secs_f64()
    );
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
