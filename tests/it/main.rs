//! The integration tests: ONE test binary (as ripgrep's `tests/tests.rs`), so
//! the crate, `common` and the mail-server `harness` are compiled and linked
//! once. One module per area; run one area with
//! `cargo test --test it pipeline::` (or one test by its path).
//!
//! - `common`: config in a temp dir, the `canvass` binary, HTTP helpers.
//! - `harness`: real Dovecot + Postfix (and an OAuth 2.0 server) on loopback.
//! - the rest: one module per area, named as the file it lives in.
//!
//! Fixtures stay where they were: `tests/fixtures/`, `tests/oidc/` and
//! `tests/browser/` (npm modules), found from `CARGO_MANIFEST_DIR`. proptest
//! keeps the failing seeds of `classify_props` in
//! `tests/proptest-regressions/classify_props.txt` (beside this binary's
//! directory, as it does for a crate's `src/`).

mod common;
mod harness;

mod browser;
mod classify_fixtures;
mod classify_props;
mod cli;
mod demo;
mod digest;
mod faults;
mod harness_smoke;
mod hostile;
mod imap_source;
mod oauth;
mod pipeline;
mod privacy;
mod scheduler;
mod service;
mod web;
