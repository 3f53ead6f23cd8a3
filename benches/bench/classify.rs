//! Target 3: parse + classify in process over tests/fixtures/classify/*.eml,
//! on one thread, against mail-parser's bare parse of the same messages.
//!
//! The two loops alternate in rounds (so a neighbour's build slows both
//! alike); each figure is the median round. "parse + classify" is exactly
//! what `Pipeline::process` does before planning: `MessageParser::default()
//! .parse(raw)` then `classify::classify(&msg, received, &cfg)`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use canvass::classify;
use canvass::config::Config;
use chrono::{DateTime, Utc};
use mail_parser::MessageParser;

use crate::util::{self, Figure, Opts};

struct Case {
    raw: Vec<u8>,
    received: DateTime<Utc>,
    authserv: bool,
}

fn load() -> (Vec<Case>, Config, Config) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classify");
    let cfg = util::load_config(&dir.join("config.toml"));
    let cfg_auth = util::load_config(&dir.join("config-authserv.toml"));
    let default_received: DateTime<Utc> = "2024-08-12T10:00:00Z".parse().expect("time");
    let mut cases = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    for p in paths {
        let received = std::fs::read_to_string(p.with_extension("received"))
            .ok()
            .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(default_received);
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        cases.push(Case {
            raw: std::fs::read(&p).expect("read fixture"),
            received,
            authserv: name.starts_with("authserv-"),
        });
    }
    (cases, cfg, cfg_auth)
}

fn parse_only(cases: &[Case]) -> usize {
    let mut n = 0;
    for c in cases {
        // Every fixture is parsed, readable or not (the quarantine's
        // fixtures are not mail at all): the count is of attempts.
        black_box(MessageParser::default().parse(black_box(&c.raw[..])));
        n += 1;
    }
    n
}

fn parse_and_classify(cases: &[Case], cfg: &Config, cfg_auth: &Config) -> usize {
    let mut n = 0;
    for c in cases {
        let cfg = if c.authserv { cfg_auth } else { cfg };
        let decision = match MessageParser::default().parse(black_box(&c.raw[..])) {
            Some(msg) => classify::classify(&msg, c.received, cfg),
            None => classify::Decision::Ignore {
                reason: classify::Ignored::Unparseable,
            },
        };
        n += usize::from(!black_box(decision).label().is_empty());
    }
    n
}

/// Runs `f` over the set repeatedly for about `span`; messages per second.
fn rate(span: Duration, per_pass: usize, mut f: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut messages = 0usize;
    while start.elapsed() < span {
        let n = f();
        assert_eq!(n, per_pass);
        messages += n;
    }
    messages as f64 / start.elapsed().as_secs_f64()
}

pub fn run(opts: &Opts, figures: &mut Vec<Figure>) {
    eprintln!("== 3. classification (parse + classify, one thread)");
    let (cases, cfg, cfg_auth) = load();
    let bytes: usize = cases.iter().map(|c| c.raw.len()).sum();
    let n = cases.len();
    eprintln!(
        "  {n} fixture messages, {} bytes in all (mean {} bytes)",
        bytes,
        bytes / n.max(1)
    );
    // Warm up (page faults, lazy statics such as regexes).
    for _ in 0..20 {
        parse_and_classify(&cases, &cfg, &cfg_auth);
        parse_only(&cases);
    }
    let rounds = if opts.quick { 5 } else { 15 };
    let span = Duration::from_millis(if opts.quick { 200 } else { 400 });
    let mut bare = Vec::new();
    let mut full = Vec::new();
    for _ in 0..rounds {
        bare.push(rate(span, n, || parse_only(&cases)));
        full.push(rate(span, n, || {
            parse_and_classify(&cases, &cfg, &cfg_auth)
        }));
    }
    let bare_rate = util::percentile(&bare, 50.0);
    let full_rate = util::percentile(&full, 50.0);
    let bare_us = 1e6 / bare_rate;
    let full_us = 1e6 / full_rate;
    util::report(
        figures,
        Figure::at_least(
            "3a",
            "parse + classify, one core",
            full_rate,
            "msg/s",
            20_000.0,
        ),
    );
    util::report(
        figures,
        Figure::at_most(
            "3b",
            "parse + classify time per message vs mail-parser's bare parse",
            full_us,
            "µs",
            3.0 * bare_us,
            &format!("3 × bare parse {} µs", util::num(bare_us)),
            false,
        ),
    );
    util::report(
        figures,
        Figure::info(
            "3c",
            "mail-parser bare parse, one core",
            format!(
                "{} msg/s ({} µs/msg; parse + classify {} µs/msg, ratio {:.2})",
                util::num(bare_rate),
                util::num(bare_us),
                util::num(full_us),
                full_us / bare_us
            ),
        ),
    );
}
