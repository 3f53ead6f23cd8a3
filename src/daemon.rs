//! Wires the stages together and runs them until shutdown:
//! the ingest loop (IMAP or Maildir), the outbox loop, the web server and the
//! control socket, each a task with a handle. [`run`] is what tests drive;
//! [`run_with_signals`] adds SIGTERM/SIGINT (shutdown) and SIGHUP (reload).
//!
//! Shutdown is bounded: loops stop taking work, finish the unit in hand, the
//! store is flushed, and tasks still busy after [`DRAIN_TIMEOUT`] are abandoned
//! (what they had not committed is redone at the next start).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::address::HmacKey;
use crate::config::{Config, Inbound};
use crate::ingest::{self, imap::ImapSource, maildir::MaildirSource};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::pipeline::Pipeline;
use crate::service;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// How long shutdown waits for loops to finish their unit of work.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// A started daemon: its pipeline (for tests and reloads) and its tasks.
pub struct Daemon {
    pub pipeline: Arc<Pipeline>,
    pub web_addr: std::net::SocketAddr,
    /// Where `/metrics` is served (`[web] metrics_bind`), if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    tasks: JoinSet<()>,
    shutdown: Shutdown,
    /// systemd: READY=1, STATUS= and the watchdog (src/service.rs).
    supervisor: service::Supervisor,
}

/// Opens the store, builds the transport and starts every loop. `listener` is
/// the web server's socket (tests bind 127.0.0.1:0).
pub async fn start(
    cfg: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<Daemon> {
    if cfg.generate_hmac_key_if_missing && !cfg.hmac_key_file.exists() {
        if let Some(dir) = cfg.hmac_key_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::address::generate_key_file(&cfg.hmac_key_file)
            .with_context(|| format!("cannot create {}", cfg.hmac_key_file.display()))?;
        tracing::warn!(path = %cfg.hmac_key_file.display(), "created a new HMAC key (secrets.generate_hmac_key_if_missing); keep it: without it nobody can be de-duplicated");
    }
    service::status("opening the store"); // systemd STATUS= (src/service.rs)
    let key = HmacKey::load(&cfg.hmac_key_file)?;
    if let Some(parent) = cfg.store_path.parent() {
        std::fs::create_dir_all(parent).with_context(|| {
            format!(
                "cannot create the folder of store.path {}",
                parent.display()
            )
        })?;
    }
    let store = Store::open(&cfg.store_path)?;
    if let crate::config::Outbound::File(dir) = &cfg.outbound {
        crate::private::repair_and_warn(dir, "the outbound .eml folder")
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    let transport: Arc<dyn crate::transport::Transport> =
        crate::transport::from_config(&cfg.outbound)?.into();
    service::status("checking outbound mail"); // systemd STATUS= (src/service.rs)
    if let Err(e) = transport.check().await {
        tracing::warn!(transport = %transport.describe(), error = %e, "outbound mail is not reachable now; invitations wait in the outbox");
    }
    let metrics = Arc::new(Metrics::default());
    let cfg = Arc::new(cfg);
    let pipeline = Arc::new(Pipeline::new(
        store.clone(),
        key,
        cfg.clone(),
        metrics.clone(),
    ));
    let web_addr = listener.local_addr()?;
    let mut tasks = JoinSet::new();
    // systemd (src/service.rs): `health` tells the watchdog whether the loops
    // are alive; `mailbox` reports the source's first connection for READY=1.
    let health = service::Health::new();
    let mailbox = service::MailboxProbe::new();

    // Reads `[sending]` from the pipeline's config each round (reloadable);
    // the transport and its pool are built once (`restart_only`).
    let outbox = Outbox::new(pipeline.clone(), transport);
    tasks.spawn(health.track("outbox", outbox.run(shutdown.clone())));

    match &cfg.inbound {
        Inbound::Imap(i) => tasks.spawn(health.track(
            "ingest",
            ingest::run(
                mailbox.wrap(ImapSource::new(i)),
                pipeline.clone(),
                shutdown.clone(),
            ),
        )),
        Inbound::Maildir(m) => tasks.spawn(health.track(
            "ingest",
            ingest::run(
                mailbox.wrap(MaildirSource::new(m)),
                pipeline.clone(),
                shutdown.clone(),
            ),
        )),
    };

    let web_pipeline = pipeline.clone();
    let web_shutdown = shutdown.clone();
    tasks.spawn(health.track("web", async move {
        if let Err(e) = crate::web::run(listener, web_pipeline, web_shutdown).await {
            tracing::error!(error = %e, "web server stopped");
        }
    }));

    // /metrics on its own listener, never the form's. Not worth stopping the
    // survey for: a port in use is logged and the daemon goes on without it.
    let mut metrics_addr = None;
    if let Some(path) = cfg
        .web
        .metrics_bind
        .as_deref()
        .and_then(|b| b.strip_prefix("unix:"))
    {
        match bind_unix(std::path::Path::new(path)) {
            Ok(l) => {
                let (p, stop) = (pipeline.clone(), shutdown.clone());
                tasks.spawn(async move {
                    if let Err(e) = crate::web::run_metrics(l, p, stop).await {
                        tracing::error!(error = %e, "metrics listener stopped");
                    }
                });
            }
            Err(e) => {
                tracing::error!(socket = %path, error = %e, "cannot listen on web.metrics_bind; /metrics is not served")
            }
        }
    } else if let Some(bind) = cfg.web.metrics_bind.clone() {
        match TcpListener::bind(&bind).await {
            Ok(l) => {
                metrics_addr = l.local_addr().ok();
                let (p, stop) = (pipeline.clone(), shutdown.clone());
                tasks.spawn(async move {
                    if let Err(e) = crate::web::run_metrics(l, p, stop).await {
                        tracing::error!(error = %e, "metrics listener stopped");
                    }
                });
            }
            Err(e) => {
                tracing::error!(bind = %bind, error = %e, "cannot listen on web.metrics_bind; /metrics is not served")
            }
        }
    }

    let scheduler = crate::scheduler::Scheduler {
        pipeline: pipeline.clone(),
    };
    tasks.spawn(health.track("scheduler", scheduler.run(shutdown.clone())));

    let socket: PathBuf = cfg.control_socket.clone();
    let ctl_pipeline = pipeline.clone();
    let ctl_shutdown = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = crate::control::serve(&socket, ctl_pipeline, ctl_shutdown).await {
            tracing::error!(error = %e, socket = %socket.display(), "control socket unavailable; `canvass status` cannot reach the daemon");
        }
    });

    tracing::info!(
        web = %web_addr,
        store = %cfg.store_path.display(),
        window_start = %cfg.window.start,
        window_end = %cfg.window.end,
        "canvass started"
    );
    // systemd: READY=1 once the mailbox connected, then STATUS= and WATCHDOG=1.
    let supervisor =
        service::Supervisor::spawn(pipeline.clone(), health, mailbox, shutdown.clone());
    Ok(Daemon {
        pipeline,
        web_addr,
        metrics_addr,
        tasks,
        shutdown,
        supervisor,
    })
}

/// A Unix socket for `/metrics`, 0600 (a stale socket file is replaced).
fn bind_unix(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

impl Daemon {
    /// Waits for shutdown, then drains: bounded by [`DRAIN_TIMEOUT`].
    pub async fn wait(self) -> anyhow::Result<()> {
        self.shutdown.wait().await;
        // systemd: STOPPING=1, and no more keep-alives (src/service.rs).
        service::stopping();
        self.drain().await
    }

    /// Stops the loops (the shutdown has fired) and flushes the store.
    async fn drain(mut self) -> anyhow::Result<()> {
        self.supervisor.stop().await;
        tracing::info!("shutting down: finishing the work in hand");
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("some work did not finish in time; it is redone at the next start");
            self.tasks.abort_all();
        }
        self.pipeline
            .store
            .flush()
            .await
            .context("flushing the store")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Runs until `shutdown` fires.
pub async fn run(cfg: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    start(cfg, listener, shutdown).await?.wait().await
}

/// Runs as a service: SIGTERM/SIGINT stop, SIGHUP reloads the config file.
///
/// When the store stops taking writes (disk full: sled then refuses every
/// write until it is opened again), the loops are stopped, the web server
/// answers 503 to everything, and the store is opened again with backoff;
/// once it opens, the loops start again. Nothing acknowledged is lost: an
/// answer is thanked and a message marked processed only after a flush.
pub async fn run_with_signals(cfg: Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let listener = TcpListener::bind(&cfg.web_bind)
        .await
        .with_context(|| format!("cannot listen on web.bind {}", cfg.web_bind))?;
    // Kept across restarts of the loops: connections wait in the backlog.
    let listener = listener.into_std()?;
    let path = cfg.path.clone();
    let shutdown = Shutdown::new();
    // Handlers before `start`: READY=1 may go out from there, and a SIGHUP
    // (`systemctl reload`) right after it must not hit the default action.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let current: Arc<std::sync::Mutex<Option<Arc<Pipeline>>>> = Arc::default();
    let reload_pending = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let signals = {
        let (shutdown, current, pending) =
            (shutdown.clone(), current.clone(), reload_pending.clone());
        async move {
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM"); break; }
                    _ = int.recv() => { tracing::info!("SIGINT"); break; }
                    _ = hup.recv() => {
                        let p = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        match p {
                            Some(p) => reload(&path, &p),
                            None => {
                                tracing::warn!("SIGHUP while the loops are not running: the configuration is read again when they start");
                                pending.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                    }
                    _ = shutdown.wait() => break,
                }
            }
            shutdown.trigger();
        }
    };
    let run = async {
        let mut cfg = cfg;
        let mut first = true;
        loop {
            let generation = Shutdown::new();
            let web = TcpListener::from_std(listener.try_clone()?)?;
            let daemon = match start(cfg.clone(), web, generation.clone()).await {
                Ok(d) => d,
                Err(e) if first => return Err(e),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot start again after the store outage; retrying");
                    if !wait_for_store(&cfg, &listener, &shutdown).await? {
                        return Ok(());
                    }
                    continue;
                }
            };
            first = false;
            *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(daemon.pipeline.clone());
            if reload_pending.swap(false, std::sync::atomic::Ordering::SeqCst) {
                reload(&cfg.path, &daemon.pipeline);
            }
            let store = daemon.pipeline.store.clone();
            let failed = tokio::select! {
                _ = shutdown.wait() => None,
                e = store_failure(&store) => Some(e),
            };
            drop(store);
            *current.lock().unwrap_or_else(|e| e.into_inner()) = None;
            cfg = (*daemon.pipeline.config()).clone();
            let Some(error) = failed else {
                generation.trigger();
                return daemon.wait().await;
            };
            tracing::error!(error = %error, store = %cfg.store_path.display(), "the store cannot write: canvass stops taking work (mail stays unprocessed, the survey form answers 503) until it can; nothing acknowledged is lost");
            service::status("store unavailable: not taking work");
            generation.trigger();
            if let Err(e) = daemon.drain().await {
                tracing::debug!(error = %format!("{e:#}"), "draining after the store failed");
            }
            if !wait_for_store(&cfg, &listener, &shutdown).await? {
                return Ok(());
            }
            tracing::info!("the store is writable again: taking work again");
        }
    };
    let run = async {
        let result = run.await;
        shutdown.trigger(); // ends the signal loop too
        result
    };
    let (_, result) = tokio::join!(signals, run);
    result
}

/// How often a running daemon checks that its store still takes writes.
const STORE_CHECK: Duration = Duration::from_millis(500);

/// Returns the store's error once it no longer takes writes. sled keeps the
/// first I/O error (ENOSPC) and fails every later write and flush with it.
async fn store_failure(store: &Store) -> crate::store::StoreError {
    loop {
        tokio::time::sleep(STORE_CHECK).await;
        if let Err(e) = store.flush().await {
            return e;
        }
    }
}

/// While the store is unavailable: the web server answers 503 and systemd's
/// watchdog is kept alive, while the store is opened again with backoff
/// (logged once). `Ok(false)`: shutdown came first.
async fn wait_for_store(
    cfg: &Config,
    listener: &std::net::TcpListener,
    shutdown: &Shutdown,
) -> anyhow::Result<bool> {
    let stop_web = Shutdown::new();
    let web = tokio::spawn(crate::web::run_unavailable(
        TcpListener::from_std(listener.try_clone()?)?,
        std::sync::Arc::new(cfg.clone()),
        stop_web.clone(),
    ));
    let mut outage = crate::backoff::Outage::new("store");
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let notifier = service::Notifier::from_env();
    let keepalive = service::keepalive_period().unwrap_or(Duration::from_secs(10));
    let back = loop {
        let _ = notifier.notify("WATCHDOG=1\nSTATUS=store unavailable: not taking work; retrying");
        let opened = Store::open(&cfg.store_path).and_then(|s| {
            s.flush_blocking()?;
            Ok(s)
        });
        match opened {
            Ok(store) => {
                drop(store);
                outage.ok();
                break true;
            }
            Err(e) => outage.failed(&e),
        }
        let mut wait = backoff.next_delay();
        // Keep-alives go on meanwhile.
        while !wait.is_zero() {
            let step = wait.min(keepalive);
            if shutdown.sleep(step).await {
                break;
            }
            wait -= step;
            let _ = notifier.notify("WATCHDOG=1");
        }
        if shutdown.is_triggered() {
            break false;
        }
    };
    stop_web.trigger();
    let _ = web.await;
    Ok(back)
}

/// The keys whose change between `old` and `new` takes effect only after a
/// restart: what [`start`] builds once from the config: the store, the
/// listeners, the control socket, the HMAC key, the mail source and the
/// transport (with its connection pool and token cache). Everything else is
/// read from the config in force when it is used: the ingest loop's rules
/// per message, the outbox's `[sending]` per round and per retry, the
/// scheduler's jobs per tick, the web layer's texts, proxies and body
/// deadline per request.
pub fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    // The source and transport settings have no `PartialEq`; their `Debug`
    // shows every field (secrets are files, named by path).
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut keys = Vec::new();
    if old.store_path != new.store_path {
        keys.push("store.path");
    }
    if old.control_socket != new.control_socket {
        keys.push("store.control_socket");
    }
    if old.hmac_key_file != new.hmac_key_file {
        keys.push("secrets.hmac_key_file");
    }
    if old.web_bind != new.web_bind {
        keys.push("web.bind");
    }
    if old.web.metrics_bind != new.web.metrics_bind {
        keys.push("web.metrics_bind");
    }
    if old.web.header_timeout != new.web.header_timeout {
        keys.push("web.header_timeout_seconds");
    }
    if old.web.max_connections != new.web.max_connections {
        keys.push("web.max_connections");
    }
    if differs(&old.inbound, &new.inbound) {
        keys.push("[inbound]");
    }
    if differs(&old.outbound, &new.outbound) {
        keys.push("[outbound]");
    }
    if old.mailbox != new.mailbox {
        keys.push("[mailbox]");
    }
    keys
}

/// Reloads the config; a bad file is logged and the old config stays. Keys
/// that need a restart ([`restart_only`]) are named in a warning; the rest
/// applies from the next message, round, tick or request on.
pub fn reload(path: &std::path::Path, pipeline: &Pipeline) {
    service::reloading(); // systemd: RELOADING=1 … READY=1 (src/service.rs)
    match Config::load(path) {
        Ok(new) => {
            let old = pipeline.config();
            let restart = restart_only(&old, &new);
            if !restart.is_empty() {
                tracing::warn!(
                    keys = %restart.join(", "),
                    "these settings take effect only after a restart (systemctl restart canvass)"
                );
            }
            pipeline.set_config(Arc::new(new));
            tracing::info!(config = %path.display(), "configuration reloaded");
            service::reloaded(true);
        }
        Err(e) => {
            tracing::error!(config = %path.display(), errors = %e.to_string().replace('\n', "; "), "new configuration rejected; the old one stays in force");
            service::reloaded(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/classify/config.toml");
        Config::load(&path).expect("fixture config")
    }

    #[test]
    fn reload_names_every_key_that_needs_a_restart() {
        let old = cfg();
        let mut new = cfg();
        new.store_path = "/elsewhere/store".into();
        new.control_socket = "/elsewhere/canvass.sock".into();
        new.hmac_key_file = "/elsewhere/hmac.key".into();
        new.web_bind = "127.0.0.1:1".into();
        new.web.metrics_bind = Some("127.0.0.1:2".into());
        new.web.header_timeout += Duration::from_secs(1);
        new.web.max_connections += 1;
        if let Inbound::Maildir(m) = &mut new.inbound {
            m.path = "/elsewhere/Maildir".into();
        }
        new.outbound = crate::config::Outbound::File("/elsewhere/outbox".into());
        new.mailbox.tenant_id = Some("siri.dk".into());
        assert_eq!(
            restart_only(&old, &new),
            [
                "store.path",
                "store.control_socket",
                "secrets.hmac_key_file",
                "web.bind",
                "web.metrics_bind",
                "web.header_timeout_seconds",
                "web.max_connections",
                "[inbound]",
                "[outbound]",
                "[mailbox]",
            ]
        );
    }

    #[test]
    fn sending_hours_retries_limits_and_per_request_web_settings_need_no_restart() {
        let old = cfg();
        let mut new = cfg();
        new.sending.hours = None;
        new.sending.min_retry_seconds += 60;
        new.sending.max_retry_minutes += 60;
        new.sending.limits.messages_per_minute = Some(5);
        new.sending.delay_minutes += 1;
        new.web.body_timeout += Duration::from_secs(1);
        new.web.trusted_proxies.clear();
        new.window.end = new.window.end.succ_opt().expect("a later day");
        assert_eq!(restart_only(&old, &new), Vec::<&str>::new());
    }
}
