//! Counters for the Prometheus text endpoint `/metrics`. Plain atomics: the
//! daemon's loops bump them, the metrics listener renders them.
//!
//! There is no answer counter on purpose: answers are kept only to the day,
//! and a counter polled every few seconds would date each one to the second.
//! `canvass status` gives the number of answers.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    messages_ingested: AtomicU64,
    invitations_created: AtomicU64,
    sent_invitation: AtomicU64,
    sent_other: AtomicU64,
    failed: AtomicU64,
    deferred: AtomicU64,
    outbox_depth: AtomicU64,
    imap_reconnects: AtomicU64,
    ingest_lag_ms: AtomicU64,
    loops: AtomicU64,
}

impl Metrics {
    pub fn ingested(&self, invitations: u64) {
        self.messages_ingested.fetch_add(1, Ordering::Relaxed);
        self.invitations_created
            .fetch_add(invitations, Ordering::Relaxed);
    }

    /// A message taken for a confirmation loop (src/loops.rs).
    pub fn looped(&self) {
        self.loops.fetch_add(1, Ordering::Relaxed);
    }

    /// Invitations created outside the mailbox (`canvass invite`).
    pub fn invited(&self, invitations: u64) {
        self.invitations_created
            .fetch_add(invitations, Ordering::Relaxed);
    }

    pub fn sent(&self, kind: &str, outcome: &str) {
        let c = match (kind, outcome) {
            ("invitation", "sent") => &self.sent_invitation,
            (_, "sent") => &self.sent_other,
            (_, "failed") => &self.failed,
            _ => &self.deferred,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_outbox_depth(&self, n: u64) {
        self.outbox_depth.store(n, Ordering::Relaxed);
    }

    pub fn imap_reconnected(&self) {
        self.imap_reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Time from the mailbox receiving a message to canvass committing it.
    pub fn set_ingest_lag_ms(&self, ms: u64) {
        self.ingest_lag_ms.store(ms, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(&str, u64)]| {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(s, "{name}{labels} {v}");
            }
        };
        metric(
            "canvass_messages_ingested_total",
            "counter",
            "Messages read from the survey mailbox.",
            &[("", g(&self.messages_ingested))],
        );
        metric(
            "canvass_invitations_total",
            "counter",
            "Invitations created.",
            &[("", g(&self.invitations_created))],
        );
        metric(
            "canvass_sends_total",
            "counter",
            "Send attempts by outcome.",
            &[
                (
                    "{kind=\"invitation\",outcome=\"sent\"}",
                    g(&self.sent_invitation),
                ),
                ("{kind=\"other\",outcome=\"sent\"}", g(&self.sent_other)),
                ("{outcome=\"failed\"}", g(&self.failed)),
                ("{outcome=\"deferred\"}", g(&self.deferred)),
            ],
        );
        metric(
            "canvass_loops_total",
            "counter",
            "Messages that answered canvass' own mail and got no confirmation (loops).",
            &[("", g(&self.loops))],
        );
        metric(
            "canvass_outbox_depth",
            "gauge",
            "Messages waiting in the outbox.",
            &[("", g(&self.outbox_depth))],
        );
        metric(
            "canvass_imap_reconnects_total",
            "counter",
            "IMAP reconnections after a lost connection.",
            &[("", g(&self.imap_reconnects))],
        );
        metric(
            "canvass_ingest_lag_seconds",
            "gauge",
            "Time from mailbox receipt to commit, last message.",
            &[],
        );
        let _ = writeln!(
            s,
            "canvass_ingest_lag_seconds {:.3}",
            g(&self.ingest_lag_ms) as f64 / 1000.0
        );
        s
    }
}
