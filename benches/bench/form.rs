//! Target 4: the survey form under 64 concurrent wrk connections.
//!
//! Before the daemon starts, invitations are created through the offline
//! pipeline (`canvass invite`'s path) and marked sent; their links are derived
//! from the stored nonces with the HMAC key, as reminders do. Then `canvass
//! run` serves:
//!
//! - GET of one valid link's form, for `--secs` seconds;
//! - POST of a complete, valid answer, each request to the next unused link
//!   (a wrk Lua script walks the list; the two wrk threads take alternate
//!   links), for `--secs` seconds. `submit_response` commits and flushes the
//!   store before the thank-you page goes out.
//!
//! Afterwards the store must hold at least as many answers as wrk counted
//! 2xx replies, and no reply may be other than 2xx (a reused link would be
//! 409).

use std::path::Path;
use std::time::Duration;

use canvass::address::HmacKey;
use canvass::pipeline::Pipeline;
use canvass::store::Store;
use canvass::token::Token;
use chrono::Utc;

use crate::common;
use crate::util::{self, ConfigSpec, DaemonProc, Figure, Inbound, Opts, Outbound};

const CONNECTIONS: usize = 64;
const THREADS: usize = 2;

pub async fn run(opts: &Opts, figures: &mut Vec<Figure>) {
    eprintln!(
        "== 4. form ({CONNECTIONS} connections, {} s per run)",
        opts.secs
    );
    let dir = opts.dir.join("form");
    let _ = std::fs::remove_dir_all(&dir);
    let port = util::free_port();
    let config = util::write_config(
        &dir,
        &ConfigSpec {
            inbound: Inbound::Maildir {
                path: dir.join("inbox"),
            },
            outbound: Outbound::File {
                path: dir.join("sent"),
            },
            web_port: port,
            sending: "max_invitees_per_message = 1000".into(),
        },
    );
    // Enough links for 6,000 answers a second.
    let links = 6_000 * opts.secs as usize + 1;
    let t = std::time::Instant::now();
    let tokens = create_invitations(&config, links);
    eprintln!(
        "  {} invitations created and marked sent in {:.1} s",
        tokens.len(),
        t.elapsed().as_secs_f64()
    );
    let get_path = format!("/s/{}", tokens[0]);
    let token_file = dir.join("tokens.txt");
    std::fs::write(&token_file, tokens[1..].join("\n") + "\n").expect("token list");
    let body = String::from_utf8(common::form_body(&common::complete_answer())).expect("utf8");

    let mut daemon = DaemonProc::spawn(&dir, "canvass");
    daemon.wait_ready(Duration::from_secs(30)).await;
    let base = format!("http://127.0.0.1:{port}");
    let (code, _) = common::http_get(&format!("127.0.0.1:{port}"), &get_path);
    assert_eq!(code, 200, "the form answers GET");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_rss, _) = daemon.rss_kib();

    let stats_lua = dir.join("get.lua");
    std::fs::write(&stats_lua, DONE_LUA).expect("lua");
    let get = wrk(
        &dir,
        &stats_lua,
        &format!("{base}{get_path}"),
        opts.secs,
        "get",
    );
    eprintln!("  GET: {}", get.describe());

    let post_lua = dir.join("post.lua");
    std::fs::write(&post_lua, post_script(&token_file, &body)).expect("lua");
    let cpu_before = daemon.cpu_seconds();
    let post = wrk(&dir, &post_lua, &format!("{base}/s/"), opts.secs, "post");
    let post_cpu = daemon.cpu_seconds() - cpu_before;
    eprintln!("  POST: {}", post.describe());
    let (_, hwm) = daemon.rss_kib();
    daemon.stop();

    let store = Store::open(&dir.join("store")).expect("open the store");
    let stored = store.response_count() as u64;
    drop(store);

    util::report(
        figures,
        Figure::at_least(
            "4a",
            "GET of the form, 64 connections",
            get.rate(),
            "req/s",
            5_000.0,
        ),
    );
    util::report(
        figures,
        Figure::at_most("4b", "GET p99", get.p99_ms(), "ms", 50.0, "", true),
    );
    util::report(
        figures,
        Figure::at_least(
            "4c",
            "durable answer POSTs, 64 connections",
            post.rate(),
            "req/s",
            1_000.0,
        ),
    );
    util::report(
        figures,
        Figure::at_most("4d", "POST p99", post.p99_ms(), "ms", 25.0, "", true),
    );
    let ok = post.requests - post.non2xx;
    util::report(
        figures,
        Figure::check(
            "4e",
            "every acknowledged answer stored; no error replies",
            get.non2xx == 0
                && get.errors == 0
                && post.non2xx == 0
                && post.errors == 0
                && stored >= ok
                && stored <= ok + CONNECTIONS as u64,
            format!(
                "POST: {ok} acknowledged, {stored} stored; non-2xx GET {} POST {}; socket errors GET {} POST {}",
                get.non2xx, post.non2xx, get.errors, post.errors
            ),
        ),
    );
    util::report(
        figures,
        Figure::info(
            "4f",
            "form detail",
            format!(
                "GET p50 {:.2} ms, POST p50 {:.2} ms; daemon CPU per POST {:.0} µs; RSS idle {:.0} MiB, peak {:.0} MiB; {} links prepared",
                get.p50_us as f64 / 1000.0,
                post.p50_us as f64 / 1000.0,
                post_cpu * 1e6 / post.requests.max(1) as f64,
                idle_rss as f64 / 1024.0,
                hwm as f64 / 1024.0,
                tokens.len()
            ),
        ),
    );
}

/// Creates `n` invitations with the offline pipeline, marks them sent, and
/// returns their links' tokens.
fn create_invitations(config: &Path, n: usize) -> Vec<String> {
    let cfg = util::load_config(config);
    let key = HmacKey::load(&cfg.hmac_key_file).expect("key");
    let pipeline = Pipeline::open_offline(cfg).expect("open the store");
    let region = pipeline.config().region_names()[0].to_string();
    let far = Utc::now() + chrono::Duration::days(3650);
    let mut next = 0;
    while next < n {
        let chunk: Vec<String> = (next..(next + 1000).min(n))
            .map(|i| format!("svar{i}@kommune.test"))
            .collect();
        next += chunk.len();
        pipeline
            .invite_manual(&chunk, &region)
            .unwrap_or_else(|e| panic!("invite: {e}"));
        let (due, _) = pipeline.store.outbox_due(far, usize::MAX).expect("outbox");
        for item in due {
            pipeline
                .store
                .mark_sent(&item, Utc::now())
                .expect("mark sent");
        }
    }
    pipeline.store.flush_blocking().expect("flush");
    pipeline
        .store
        .invitations()
        .map(|i| i.expect("invitation"))
        .filter_map(|i| {
            i.token_nonce.map(|nonce| {
                let link = Token::derive(&key, &nonce).for_invitation(i.id);
                link.as_str().to_string()
            })
        })
        .collect()
}

/// wrk's summary, printed by [`DONE_LUA`].
#[derive(Debug, Default)]
struct Wrk {
    requests: u64,
    duration_us: u64,
    non2xx: u64,
    errors: u64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
}

impl Wrk {
    fn rate(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }
    fn p99_ms(&self) -> f64 {
        self.p99_us as f64 / 1000.0
    }
    fn describe(&self) -> String {
        format!(
            "{:.0} req/s ({} in {:.1} s), p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, non-2xx {}, errors {}",
            self.rate(),
            self.requests,
            self.duration_us as f64 / 1e6,
            self.p50_us as f64 / 1000.0,
            self.p99_us as f64 / 1000.0,
            self.max_us as f64 / 1000.0,
            self.non2xx,
            self.errors
        )
    }
}

/// Prints one parseable line at the end of a wrk run.
const DONE_LUA: &str = r#"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d non2xx=%d errors=%d p50=%d p99=%d max=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50.0), latency:percentile(99.0), latency.max))
end
"#;

fn post_script(tokens: &Path, body: &str) -> String {
    format!(
        r#"
-- Each request answers with the next unused link; thread k of {THREADS} takes
-- links k, k+{THREADS}, ...; a thread that runs out stops.
local body = "{body}"
local headers = {{ ["Content-Type"] = "application/x-www-form-urlencoded" }}
local tokens = {{}}
local nthreads = {THREADS}
local created = 0
id = 0

function setup(thread)
  thread:set("id", created)
  created = created + 1
end

function init(args)
  for line in io.lines("{tokens}") do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  next_index = id + 1
end

function request()
  local i = next_index
  if i > #tokens then
    wrk.thread:stop()
    i = #tokens
  end
  next_index = next_index + nthreads
  return wrk.format("POST", "/s/" .. tokens[i], headers, body)
end
{DONE_LUA}"#,
        tokens = tokens.display(),
    )
}

fn wrk(dir: &Path, script: &Path, url: &str, secs: u64, name: &str) -> Wrk {
    let args: Vec<String> = vec![
        format!("-t{THREADS}"),
        format!("-c{CONNECTIONS}"),
        format!("-d{secs}s"),
        "--timeout".into(),
        "5s".into(),
        "-s".into(),
        script.display().to_string(),
        url.into(),
    ];
    let (_, out, err) = util::run_timed("wrk", &args, Duration::from_secs(secs + 60));
    let _ = std::fs::write(dir.join(format!("wrk-{name}.out")), format!("{out}\n{err}"));
    let line = out
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .unwrap_or_else(|| panic!("wrk printed no summary:\n{out}\n{err}"));
    let mut w = Wrk::default();
    for field in line.split_whitespace().skip(1) {
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        let v: u64 = v.parse().unwrap_or(0);
        match k {
            "requests" => w.requests = v,
            "duration_us" => w.duration_us = v,
            "non2xx" => w.non2xx = v,
            "errors" => w.errors = v,
            "p50" => w.p50_us = v,
            "p99" => w.p99_us = v,
            "max" => w.max_us = v,
            _ => {}
        }
    }
    w
}
