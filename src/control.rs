//! The daemon's control socket: a Unix socket next to the store through which
//! `canvass status` and `canvass invite` reach a running daemon (sled lets one
//! process open the store). One JSON request per connection, one JSON answer.
//! Without a running daemon the commands open the store themselves.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::analysis::status;
use crate::pipeline::Pipeline;
use crate::retention::MailboxSweep;
use crate::shutdown::Shutdown;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Invite {
        addresses: Vec<String>,
        region: String,
    },
    /// The agency's analysis; `html` asks for the HTML page instead of text.
    Report {
        html: bool,
    },
    Export {
        format: String,
        bom: bool,
        delimiter: Option<char>,
    },
    /// The digest: printed, or queued for the managers.
    Digest {
        send: bool,
    },
    /// Retention: erase invitees' plain addresses once `[retention]` says so
    /// (`now`: at once); `dry_run` only counts. See src/retention.rs.
    Purge {
        dry_run: bool,
        #[serde(default)]
        now: bool,
    },
    /// Erase what is held about one person (GDPR art. 17); their HMAC stays.
    Forget {
        address: String,
    },
    /// Withdraw invitations that should never have been made.
    Withdraw {
        addresses: Vec<String>,
        reason: String,
    },
    /// A consistent snapshot of the store, taken in the process that holds
    /// it; the file's bytes come back base64-encoded in `json.backup`.
    Backup,
}

/// An answer: human text and the same as JSON.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    pub text: String,
    pub json: serde_json::Value,
}

impl Answer {
    fn error(message: String) -> Answer {
        Answer {
            ok: false,
            json: serde_json::json!({ "error": message }),
            text: message,
        }
    }
}

/// Answers a request against the pipeline (in the daemon, or in the CLI when
/// no daemon runs).
pub fn handle(pipeline: &Arc<Pipeline>, req: Request) -> Answer {
    match req {
        Request::Status => match current_status(pipeline) {
            Ok(s) => {
                let mut text = status::render_text(&s);
                let mut json = serde_json::to_value(&s).unwrap_or_default();
                // OAuth 2.0: whether the daemon can log in (token, last error).
                if let Some((line, login)) = crate::oauth::cache::login_status() {
                    text.push_str(&line);
                    json["login"] = login;
                }
                Answer {
                    ok: true,
                    text,
                    json,
                }
            }
            Err(e) => Answer::error(format!("cannot read the store: {e}")),
        },
        Request::Invite { addresses, region } => {
            match pipeline.invite_manual(&addresses, &region) {
                Ok(r) => Answer {
                    ok: true,
                    text: render_invite(&r),
                    json: serde_json::to_value(&r).unwrap_or_default(),
                },
                Err(e) => Answer::error(e.to_string()),
            }
        }
        Request::Report { html } => match report(pipeline) {
            Ok(r) => Answer {
                ok: true,
                text: if html {
                    crate::analysis::report::render_html(&r)
                } else {
                    crate::analysis::report::render_text(&r)
                },
                json: serde_json::to_value(&r).unwrap_or_default(),
            },
            Err(e) => Answer::error(format!("cannot read the store: {e}")),
        },
        Request::Export {
            format,
            bom,
            delimiter,
        } if format.eq_ignore_ascii_case("xlsx") => {
            let _ = (bom, delimiter);
            let cfg = pipeline.config();
            let (rs, report) = match (responses(pipeline), report(pipeline)) {
                (Ok(rs), Ok(r)) => (rs, r),
                (Err(e), _) | (_, Err(e)) => {
                    return Answer::error(format!("cannot read the store: {e}"))
                }
            };
            match crate::analysis::export_xlsx::to_xlsx(
                &cfg.survey,
                &rs,
                report.response_rate.shown(),
                &report.small_group_note,
            ) {
                Ok(bytes) => {
                    use base64::Engine;
                    Answer {
                        ok: true,
                        text: format!("{} answers", rs.len()),
                        json: serde_json::json!({
                            "answers": rs.len(),
                            "xlsx": base64::engine::general_purpose::STANDARD.encode(bytes),
                        }),
                    }
                }
                Err(e) => Answer::error(format!("cannot write the workbook: {e}")),
            }
        }
        Request::Export {
            format,
            bom,
            delimiter,
        } => {
            let format: crate::analysis::export::Format = match format.parse() {
                Ok(f) => f,
                Err(_) => {
                    return Answer::error(format!(
                        "unknown export format {format:?}: use csv, json or xlsx"
                    ))
                }
            };
            let cfg = pipeline.config();
            match responses(pipeline) {
                Ok(rs) => {
                    let text = match (format, delimiter) {
                        (crate::analysis::export::Format::Csv, Some(d)) => {
                            crate::analysis::export::to_csv_with_delimiter(&cfg.survey, &rs, bom, d)
                        }
                        _ => crate::analysis::export::export(format, &cfg.survey, &rs, bom),
                    };
                    Answer {
                        ok: true,
                        text,
                        json: serde_json::json!({ "answers": rs.len() }),
                    }
                }
                Err(e) => Answer::error(format!("cannot read the store: {e}")),
            }
        }
        Request::Digest { send } => {
            let scheduler = crate::scheduler::Scheduler {
                pipeline: pipeline.clone(),
            };
            let now = chrono::Utc::now();
            if send {
                match scheduler.queue_digests(now, false) {
                    Ok(n) => Answer {
                        ok: true,
                        text: format!("digest queued for {n} manager(s)\n"),
                        json: serde_json::json!({ "queued": n }),
                    },
                    Err(e) => Answer::error(e.to_string()),
                }
            } else {
                match scheduler.preview(now) {
                    Ok(text) => Answer {
                        ok: true,
                        json: serde_json::json!({ "text": text }),
                        text,
                    },
                    Err(e) => Answer::error(e.to_string()),
                }
            }
        }
        Request::Purge { dry_run, now } => purge(pipeline, dry_run, now),
        Request::Forget { address } => forget(pipeline, &address),
        Request::Withdraw { addresses, reason } => withdraw(pipeline, &addresses, &reason),
        Request::Backup => backup(pipeline),
    }
}

/// Answers a request: the store's part on a blocking thread ([`handle`]),
/// then, for `purge` and `forget` with an IMAP mailbox, the sweep of its sent
/// and processed folders (src/ingest/imap/purge.rs), whose result is added
/// to the answer (`json.mailbox`). A sweep that fails makes the answer an
/// error that says to run the command again: the store's part is idempotent.
pub async fn respond(pipeline: Arc<Pipeline>, req: Request) -> Answer {
    let sweep = mailbox_sweep(&pipeline, &req);
    let p = pipeline.clone();
    let mut answer = tokio::task::spawn_blocking(move || handle(&p, req))
        .await
        .unwrap_or_else(|e| Answer::error(format!("internal error: {e}")));
    let (Some((imap, sweep, dry_run)), true) = (sweep, answer.ok) else {
        return answer;
    };
    match crate::ingest::imap::sweep_mailbox(&imap, Some(&pipeline.store), &sweep, dry_run).await {
        Ok(r) => {
            answer.text.push_str(&r.render());
            answer.json["mailbox"] = serde_json::to_value(&r).unwrap_or_default();
        }
        Err(e) => {
            let msg = format!(
                "mailbox: cannot sweep the sent and processed folders: {e}; the store's part \
                 is done, run the command again when the server is reachable"
            );
            tracing::warn!(error = %e, "the mailbox sweep failed");
            answer.ok = false;
            answer.text.push_str(&msg);
            answer.text.push('\n');
            answer.json["mailbox"] = serde_json::json!({ "error": msg });
        }
    }
    answer
}

/// The mailbox sweep a request asks for, with its IMAP settings and whether
/// it only counts; `None` without an IMAP mailbox or for other requests.
fn mailbox_sweep(
    pipeline: &Pipeline,
    req: &Request,
) -> Option<(crate::config::ImapConfig, MailboxSweep, bool)> {
    let cfg = pipeline.config();
    let crate::config::Inbound::Imap(imap) = &cfg.inbound else {
        return None;
    };
    match req {
        Request::Purge { dry_run, now } => {
            let at = chrono::Utc::now();
            let days = cfg.retention.erase_addresses_after_days;
            let erase_at = crate::retention::erase_at(&cfg.window, days);
            let apply = !dry_run && (*now || at >= erase_at);
            let before = if *now {
                at
            } else {
                crate::retention::mailbox_cutoff(&cfg.window, days, at).unwrap_or(erase_at)
            };
            Some((imap.clone(), MailboxSweep::Retention { before }, !apply))
        }
        Request::Forget { address } => {
            let address = crate::address::parse(address).ok()?;
            Some((
                imap.clone(),
                MailboxSweep::Person {
                    address: address.to_string(),
                },
                false,
            ))
        }
        _ => None,
    }
}

/// `canvass purge`: the retention rule applied now (or only counted).
fn purge(pipeline: &Pipeline, dry_run: bool, now: bool) -> Answer {
    let cfg = pipeline.config();
    let days = cfg.retention.erase_addresses_after_days;
    let at = chrono::Utc::now();
    let erase_at = crate::retention::erase_at(&cfg.window, days);
    let apply = !dry_run && (now || at >= erase_at);
    let result = pipeline.store.purge_addresses(!apply).and_then(|r| {
        if apply {
            pipeline.store.flush_blocking()?;
        }
        Ok(r)
    });
    match result {
        Ok(r) => {
            if apply {
                tracing::info!(
                    erased = r.erased,
                    dropped_invitations = r.dropped_invitations,
                    dropped_reminders = r.dropped_reminders,
                    "retention: invitees' addresses erased on demand"
                );
            }
            let mut json = serde_json::to_value(&r).unwrap_or_default();
            json["erase_at"] = serde_json::json!(erase_at);
            json["after_days"] = serde_json::json!(days);
            json["due"] = serde_json::json!(at >= erase_at);
            Answer {
                ok: true,
                text: crate::retention::render_purge(&r, days, erase_at, at),
                json,
            }
        }
        Err(e) => Answer::error(format!("cannot purge: {e}")),
    }
}

/// `canvass forget ADDRESS`.
fn forget(pipeline: &Pipeline, address: &str) -> Answer {
    let addr = match crate::address::parse(address) {
        Ok(a) => a,
        Err(e) => return Answer::error(format!("{address:?} is not an address: {e}")),
    };
    let key = pipeline.key.key_of(&addr);
    let result = pipeline.store.forget(&key, &addr).and_then(|r| {
        pipeline.store.flush_blocking()?;
        Ok(r)
    });
    match result {
        Ok(r) => {
            // The log names the invitation, never the address.
            tracing::info!(
                invitation = r.invitation.as_ref().map(|i| i.id),
                dropped = r.dropped.len(),
                "a person was forgotten on request"
            );
            Answer {
                ok: true,
                text: crate::retention::render_forget(&r),
                json: serde_json::to_value(&r).unwrap_or_default(),
            }
        }
        Err(e) => Answer::error(format!("cannot forget {addr}: {e}")),
    }
}

/// `canvass withdraw ADDRESS... --reason TEXT`.
fn withdraw(pipeline: &Pipeline, addresses: &[String], reason: &str) -> Answer {
    use crate::store::WithdrawOutcome;
    use std::fmt::Write;
    if reason.trim().is_empty() {
        return Answer::error("--reason must say why the invitations are withdrawn".into());
    }
    let mut parsed = Vec::new();
    for a in addresses {
        match crate::address::parse(a) {
            Ok(addr) => parsed.push(addr),
            Err(e) => {
                return Answer::error(format!(
                    "{a:?} is not an address: {e}; nothing was withdrawn"
                ))
            }
        }
    }
    let now = chrono::Utc::now();
    let mut text = String::new();
    let mut rows = Vec::new();
    for addr in &parsed {
        let key = pipeline.key.key_of(addr);
        let outcome = match pipeline.store.withdraw(&key, addr, reason, now) {
            Ok(o) => o,
            Err(e) => {
                return Answer::error(format!("cannot withdraw the invitation to {addr}: {e}"))
            }
        };
        let _ = match &outcome {
            WithdrawOutcome::NotInvited => {
                writeln!(text, "not invited      {addr} (nothing to withdraw)")
            }
            WithdrawOutcome::AlreadyWithdrawn { id, region } => writeln!(
                text,
                "already withdrawn {addr} (invitation {id}, region {region})"
            ),
            WithdrawOutcome::Withdrawn(w) => {
                // The log names the invitation, never the address.
                tracing::info!(invitation = w.id, region = %w.region, dropped = w.dropped.len(), "an invitation was withdrawn");
                let mut line = format!(
                    "withdrawn        {addr} (invitation {}, region {}): out of every count, link disabled",
                    w.id, w.region
                );
                if !w.dropped.is_empty() {
                    let _ = write!(line, ", {} queued mail dropped", w.dropped.len());
                }
                if w.was_answered {
                    line.push_str(
                        "; they had answered: the anonymous answer stays among the answers",
                    );
                }
                writeln!(text, "{line}")
            }
        };
        rows.push(serde_json::json!({ "address": addr.to_string(), "result": outcome }));
    }
    if let Err(e) = pipeline.store.flush_blocking() {
        return Answer::error(format!("cannot flush the store: {e}"));
    }
    Answer {
        ok: true,
        text,
        json: serde_json::json!({ "withdrawn": rows }),
    }
}

/// `canvass backup`: the snapshot's bytes, base64 in the JSON.
fn backup(pipeline: &Pipeline) -> Answer {
    use base64::Engine;
    match pipeline.store.backup() {
        Ok((bytes, info)) => {
            let mut json = serde_json::to_value(&info).unwrap_or_default();
            json["backup"] =
                serde_json::json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
            Answer {
                ok: true,
                text: info.render(),
                json,
            }
        }
        Err(e) => Answer::error(format!("cannot take a backup: {e}")),
    }
}

fn responses(
    pipeline: &Pipeline,
) -> Result<Vec<crate::store::StoredResponse>, crate::store::StoreError> {
    pipeline.store.responses().collect()
}

/// The agency's report from the stored answers and the counters.
pub fn report(
    pipeline: &Pipeline,
) -> Result<crate::analysis::report::Report, crate::store::StoreError> {
    let cfg = pipeline.config();
    let status = current_status(pipeline)?;
    let rates: Vec<(String, u64, u64)> = status
        .regions
        .iter()
        .map(|r| (r.region.clone(), r.invited, r.answered))
        .collect();
    let mut report = crate::analysis::report::compute(&cfg.survey, &responses(pipeline)?, &rates);
    if status.total.withdrawn > 0 {
        report.notes.push(format!(
            "{} invitation(er) er trukket tilbage, fordi de blev sendt ved en fejl; de indgår ikke i svarprocenten.",
            status.total.withdrawn
        ));
    }
    Ok(report)
}

pub fn current_status(pipeline: &Pipeline) -> Result<status::Status, crate::store::StoreError> {
    let cfg = pipeline.config();
    let counters = pipeline.store.counters()?;
    let mut s = status::compute(
        &cfg.region_names(),
        &counters,
        pipeline.store.outbox_len() as u64,
    );
    let today = chrono::Utc::now()
        .with_timezone(&crate::window::TZ)
        .date_naive();
    s.trust_warning = status::trust_warning(&counters, today, &trust_setting(&cfg));
    Ok(s)
}

/// The trust setting as an operator finds it in the config file.
pub fn trust_setting(cfg: &crate::config::Config) -> String {
    use crate::oauth::Provider;
    let authserv = cfg
        .trust
        .authserv_id
        .as_ref()
        .map(|id| format!("[trust] authserv_id = {id:?}"));
    let provider = match cfg.mailbox.provider {
        Provider::Microsoft365 => Some(match &cfg.mailbox.tenant_id {
            Some(t) => format!("[mailbox] provider = \"microsoft365\", tenant_id = {t:?}"),
            None => "[mailbox] provider = \"microsoft365\" without tenant_id".to_string(),
        }),
        Provider::Google => Some("[mailbox] provider = \"google\"".to_string()),
        Provider::Generic => None,
    };
    match (provider, authserv) {
        (Some(p), Some(a)) => format!("{p}; {a}"),
        (Some(p), None) => p,
        (None, Some(a)) => a,
        (None, None) => "no trust setting: [trust] authserv_id is not set".to_string(),
    }
}

fn render_invite(r: &crate::pipeline::ManualInvite) -> String {
    use crate::store::InviteOutcome;
    use std::fmt::Write;
    let mut s = String::new();
    for o in &r.outcomes {
        let _ = match o {
            InviteOutcome::Invited(a) => writeln!(s, "invited          {a} (region {})", r.region),
            InviteOutcome::AlreadyInvited(a) => {
                writeln!(s, "already invited  {a} (not invited again)")
            }
            InviteOutcome::OverDailyCap(a) => writeln!(s, "over daily cap   {a}"),
        };
    }
    for sk in &r.skipped {
        let _ = writeln!(s, "skipped          {} ({:?})", sk.address, sk.why);
    }
    for l in &r.invalid {
        let _ = writeln!(s, "not an address   {:?}: {}", l.line, l.error);
    }
    if s.is_empty() {
        s.push_str("nothing to do\n");
    }
    s
}

/// Serves the socket until shutdown.
pub async fn serve(
    path: &Path,
    pipeline: Arc<Pipeline>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let p = pipeline.clone();
                tasks.spawn(async move {
                    if let Err(e) = answer(stream, p).await {
                        tracing::debug!(error = %e, "control connection");
                    }
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.wait() => break,
        }
    }
    while tasks.join_next().await.is_some() {}
    let _ = std::fs::remove_file(path);
    Ok(())
}

async fn answer(stream: UnixStream, pipeline: Arc<Pipeline>) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r.take(1 << 20)).read_line(&mut line).await?;
    let answer = match serde_json::from_str::<Request>(&line) {
        Ok(req) => respond(pipeline, req).await,
        Err(e) => Answer::error(format!("bad request: {e}")),
    };
    let mut out = serde_json::to_vec(&answer).unwrap_or_default();
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

/// Sends a request to a running daemon. `Ok(None)`: no daemon listens.
pub async fn request(path: &Path, req: &Request) -> std::io::Result<Option<Answer>> {
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let (r, mut w) = stream.into_split();
    let mut body = serde_json::to_vec(req)?;
    body.push(b'\n');
    w.write_all(&body).await?;
    let mut line = String::new();
    BufReader::new(r).read_line(&mut line).await?;
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
