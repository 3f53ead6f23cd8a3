//! canvass runs a survey by email.
//!
//! A consultant CCs the survey address; canvass reads that mailbox, invites
//! each contact exactly once with a personal single-use link, and stores the
//! anonymous answers. The data flow, one module per stage:
//!
//! ```text
//! ingest (IMAP IDLE / Maildir) ─► classify (pure) ─► apply (plan, pure) ─► store (sled) ─► outbox ─► transport (SMTP / .eml files)
//! ```
//!
//! Module map:
//!
//! - [`answer`]: an answer as plain data (question code → value).
//! - [`config`]: the TOML file, validated with every error named by its key.
//! - [`survey`]: the questionnaire definition (config/survey.da.toml).
//! - [`address`]: address normalisation and the HMAC the store de-duplicates on.
//! - [`token`]: personal tokens (128 random bits; only the hash is stored).
//! - [`message_id`]: the shape of canvass' Message-IDs (each carries its invitation's id).
//! - [`window`]: collection window and sending hours (pure time rules).
//! - [`classify`]: what a message asks for: trigger, phone contact, refusal, ignore; sender trust (`classify::authres`: Authentication-Results per RFC 8601 §5, the Microsoft 365 and Google readings).
//! - [`loops`]: no confirmation loops with autoresponders (pure rules).
//! - [`redact`]: every shape of a personal link removed from forwarded replies (pure).
//! - [`bounce`]: reading bounces (RFC 3464, Exchange, Gmail, qmail, plain text) into a report (pure).
//! - [`apply`]: turns a decision into a plan for the store (token nonces and Message-IDs from the caller's RNG, invitations queued without their body — the outbox renders them — counters, caps; `plan` is pure) and renders the reply the transaction queues (`reply`).
//! - [`compose`]: the Danish invitation and the confirmation reply, as RFC 5322 bytes.
//! - [`store`]: the only module that knows sled; multi-tree changes are transactions.
//! - [`ingest`]: mail sources (IMAP, Maildir) behind one trait, and the ingest loop.
//! - [`outbox`]: the single loop that drains the durable outbox, with backoff.
//! - [`transport`]: where mail goes (SMTP, .eml files) behind one trait.
//! - [`analysis`]: what canvass reports, computed from the counters and the answers (pure) and rendered: `status`, `digest` (and its `chart`), `report`, `export`, `export_xlsx`, and the one `percent` rule.
//! - [`escape`]: the one HTML escape (report, form) and the report template's formatter.
//! - [`explain`]: `canvass explain`: the decision for raw messages, without side effects.
//! - [`form`]: the survey form: render and validate (pure), in Danish or English.
//! - [`texts`]: every text as a template; the agency's overrides, validated.
//! - [`preview`]: `canvass preview` with sample data.
//! - [`web_pages`]: the privacy page, one-click opt-out (RFC 8058), the send-test page.
//! - [`web`]: the respondent-facing HTTP server (links, health).
//! - [`client_ip`]: the client's address behind trusted proxies, and the rate-limit buckets (IPv4, IPv6 /64).
//! - [`private`]: files canvass writes are private (umask, modes), and a store readable by others repaired.
//! - [`control`]: the control socket `canvass status`/`invite` use while the daemon runs.
//! - [`pipeline`]: what the loops share, and the unit of ingest work.
//! - [`backoff`]: reconnect backoff and once-per-outage logging.
//! - [`logging`]: tracing set-up (text, JSON or the systemd journal).
//! - [`metrics`]: counters for `/metrics`.
//! - [`daemon`]: wires the loops together: `run(config, shutdown)`.
//! - [`service`]: running under systemd: sd_notify (READY, STATUS, watchdog, reload, stop).
//! - [`schedule`]: cron slots in Copenhagen time, missed-run safe (pure).
//! - [`retention`]: when invitees' addresses are erased and what erasing keeps (pure); `purge`/`forget` text.
//! - [`scheduler`]: the loop running the digest, the final digest, reminders, the retention purge and the mailbox sweep.
//! - [`shutdown`]: the shutdown signal every loop listens to.
//! - [`tls`]: the TLS client set-up IMAP and SMTP share.
//! - [`oauth`]: OAuth 2.0 tokens for IMAP and SMTP (Microsoft 365, Google, generic), SASL XOAUTH2/OAUTHBEARER.
//! - [`pacing`]: the provider's sending limits (per minute, per day) and throttling replies (pure).
//! - [`checkmail`]: `canvass check-mail`: token, IMAP, folders, SMTP AUTH and MAIL FROM, one line per check.

pub mod address;
pub mod analysis;
pub mod answer;
pub mod apply;
pub mod backoff;
pub mod bounce;
pub mod checkmail;
pub mod classify;
pub mod client_ip;
pub mod compose;
pub mod config;
pub mod control;
pub mod daemon;
pub mod escape;
pub mod explain;
pub mod form;
pub mod ingest;
pub mod logging;
pub mod loops;
pub mod message_id;
pub mod metrics;
pub mod oauth;
pub mod outbox;
pub mod pacing;
pub mod pipeline;
pub mod preview;
pub mod private;
pub mod redact;
pub mod retention;
pub mod schedule;
pub mod scheduler;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod survey;
pub mod texts;
pub mod tls;
pub mod token;
pub mod transport;
pub mod web;
pub mod web_pages;
pub mod window;

#[cfg(test)]
mod test_support;
