//! The canvass benchmark harness (BENCHMARKS.md). A plain program, not a test:
//! it never fails a build on a time, it stops by itself, bounds every loop and
//! sends traffic only to 127.0.0.1.
//!
//! ```text
//! cargo bench --bench bench -- all            # every target, full size
//! cargo bench --bench bench -- all --quick    # small sizes, a few minutes
//! cargo bench --bench bench -- throughput latency classify form scale floor writecost
//! ```
//!
//! Options: `--quick`, `--messages N` (target 1), `--triggers N` (target 2),
//! `--secs S` (wrk runs, target 4), `--scale 10000,100000,1000000` (target 5),
//! `--sessions N` (canvass' SMTP pool and smtp-source's sessions), `--fresh`
//! (rebuild the scale stores instead of reusing them), `--dir DIR`
//! (default target/bench).
//!
//! Each scenario starts what it measures against in the same run: a real
//! Dovecot and Postfix (tests/it/harness), smtp-source and smtp-sink from the
//! postfix package, wrk. The figures go to stderr as they come and, as a
//! Markdown table, to stdout and DIR/results.md.
//!
//! Under `cargo test --all-targets` this program is run without a scenario
//! and does nothing.

#[path = "../../tests/it/common/mod.rs"]
mod common;
#[path = "../../tests/it/harness/mod.rs"]
mod harness;

mod classify;
mod floor;
mod form;
mod latency;
mod relay;
mod scale;
mod throughput;
mod util;
mod writecost;

use std::time::Instant;

use util::{Figure, Opts};

const USAGE: &str = "usage: cargo bench --bench bench -- <all|throughput|latency|classify|form|scale|floor|writecost>... \
[--quick] [--messages N] [--triggers N] [--secs S] [--scale N,N,..] [--sessions N] [--fresh] [--dir DIR]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // This program as a child of the floor scenario.
    if let [cmd, path] = args.as_slice() {
        if cmd == "__sled-open" {
            floor::child_open(std::path::Path::new(path));
            return;
        }
    }
    // This program as the bare relay of the throughput scenario.
    if let [cmd, dir, port, n, sessions] = args.as_slice() {
        if cmd == "__bare-relay" {
            relay::child(
                std::path::Path::new(dir),
                port.parse().expect("__bare-relay port"),
                n.parse().expect("__bare-relay N"),
                sessions.parse().expect("__bare-relay sessions"),
            );
            return;
        }
    }
    let quick = args.iter().any(|a| a == "--quick");
    let mut opts = Opts::defaults(quick);
    let mut what: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> String {
            it.next()
                .unwrap_or_else(|| panic!("{name} needs a value\n{USAGE}"))
                .clone()
        };
        match a.as_str() {
            "--quick" | "--bench" => {}
            "--fresh" => opts.reuse = false,
            "--messages" => opts.messages = value(a).parse().expect("--messages N"),
            "--triggers" => opts.triggers = value(a).parse().expect("--triggers N"),
            "--secs" => opts.secs = value(a).parse().expect("--secs S"),
            "--sessions" => opts.sessions = value(a).parse().expect("--sessions N"),
            "--dir" => opts.dir = value(a).into(),
            "--scale" => {
                opts.scale = value(a)
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse().expect("--scale N,N"))
                    .collect()
            }
            "all" => what.extend(
                [
                    "classify",
                    "form",
                    "throughput",
                    "latency",
                    "scale",
                    "floor",
                    "writecost",
                ]
                .map(String::from),
            ),
            "throughput" | "latency" | "classify" | "form" | "scale" | "floor" | "writecost"
            | "pieces" => what.push(a.clone()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            // `cargo test --all-targets` runs this program with libtest's
            // options: nothing to do then.
            other if other.starts_with("--") => {}
            other => {
                eprintln!("unknown scenario {other:?}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    if what.is_empty() {
        eprintln!("canvass bench: no scenario given, nothing run ({USAGE})");
        return;
    }
    std::fs::create_dir_all(&opts.dir).expect("create the bench directory");
    let machine = util::machine();
    eprintln!("canvass bench on: {machine}");
    eprintln!("options: {opts:?}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let mut figures: Vec<Figure> = Vec::new();
    for w in &what {
        let t = Instant::now();
        let load_before = util::loadavg();
        match w.as_str() {
            "classify" => classify::run(&opts, &mut figures),
            "form" => rt.block_on(form::run(&opts, &mut figures)),
            "throughput" => rt.block_on(throughput::run(&opts, &mut figures)),
            "latency" => rt.block_on(latency::run(&opts, &mut figures)),
            "scale" => rt.block_on(scale::run(&opts, &mut figures)),
            "floor" => floor::run(&opts, &mut figures),
            "writecost" => writecost::run(&opts, &mut figures),
            // Diagnostics: target 1's in-process cost breakdown alone.
            "pieces" => {
                let p = throughput::pieces(&opts.dir, opts.messages);
                figures.push(Figure::info("1d", "where the daemon's time goes", p));
            }
            _ => unreachable!(),
        }
        let load = format!("{load_before} at the start, {} at the end", util::loadavg());
        eprintln!(
            "  ({w} took {:.0} s; load average {load})",
            t.elapsed().as_secs_f64()
        );
        figures.push(Figure::info(
            "–",
            &format!("{w}: machine load average (1 min)"),
            load,
        ));
        // What is measured so far survives a later scenario's failure.
        let partial = opts.dir.join("results.partial.md");
        std::fs::write(&partial, util::table(&figures)).expect("write partial results");
    }
    let table = util::table(&figures);
    let misses = figures.iter().filter(|f| !f.info && !f.pass).count();
    let text = format!(
        "Machine: {machine}\n\nRun: {} ({}), {:.0} s in all; {misses} miss(es).\n\n{table}",
        what.join(" "),
        if opts.quick { "quick" } else { "full size" },
        started.elapsed().as_secs_f64()
    );
    println!("\n{text}");
    let out = opts.dir.join("results.md");
    std::fs::write(&out, &text).expect("write results");
    eprintln!("written to {}", out.display());
}
