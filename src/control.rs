//! The daemon's control socket: a Unix socket next to the store through which
//! `canvass status` and `canvass invite` reach a running daemon (sled lets one
//! process open the store). One JSON request per connection, one JSON answer.
//! Without a running daemon the commands open the store themselves.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::pipeline::Pipeline;
use crate::shutdown::Shutdown;
use crate::status;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Invite {
        addresses: Vec<String>,
        region: String,
    },
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
pub fn handle(pipeline: &Pipeline, req: Request) -> Answer {
    match req {
        Request::Status => match current_status(pipeline) {
            Ok(s) => Answer {
                ok: true,
                text: status::render_text(&s),
                json: serde_json::to_value(&s).unwrap_or_default(),
            },
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
    }
}

pub fn current_status(pipeline: &Pipeline) -> Result<status::Status, crate::store::StoreError> {
    let cfg = pipeline.config();
    let counters = pipeline.store.counters()?;
    Ok(status::compute(
        &cfg.region_names(),
        &counters,
        pipeline.store.outbox_len() as u64,
    ))
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
        Ok(req) => tokio::task::spawn_blocking(move || handle(&pipeline, req))
            .await
            .unwrap_or_else(|e| Answer::error(format!("internal error: {e}"))),
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
