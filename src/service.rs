//! Running under systemd (`systemd/canvass.service`, `Type=notify`): the
//! sd_notify protocol and the task that speaks it for the daemon.
//!
//! The protocol is one Unix datagram of `KEY=value` lines to the socket named
//! by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). When
//! `$NOTIFY_SOCKET` is unset (a terminal, the tests' in-process daemons) every
//! function here does nothing.
//!
//! What canvass tells systemd, and when:
//!
//! - `READY=1` once the store is open, the web server listens, the outbound
//!   check has been attempted and the mailbox has connected, or after
//!   [`MAILBOX_READY_WAIT`] of failed tries (see [`Supervisor`] for why it
//!   does not wait for ever);
//! - `STATUS=` what it is doing: `ingesting; 3 waiting in outbox`;
//! - `WATCHDOG=1` every half `$WATCHDOG_USEC`, only while every loop the
//!   daemon tracks with [`Health`] (ingest, outbox, web server, …) is alive;
//! - `RELOADING=1` … `READY=1` around a SIGHUP reload;
//! - `STOPPING=1` when shutdown starts.

use std::future::Future;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ingest::{Incoming, MailSource, SourceError};
use crate::pipeline::Pipeline;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// How long READY=1 waits for the mailbox's first connection. Below the
/// unit's `TimeoutStartSec=` (90 s) minus the outbound check's time-out.
pub const MAILBOX_READY_WAIT: Duration = Duration::from_secs(30);

/// How often `STATUS=` is recomputed (it is sent only when it changes).
const STATUS_REFRESH: Duration = Duration::from_secs(1);

/// Set once READY=1 went out: reloads answer READY=1 only after it.
static READY_SENT: AtomicBool = AtomicBool::new(false);
/// The last reload was rejected (shown in STATUS= until one is applied).
static RELOAD_REJECTED: AtomicBool = AtomicBool::new(false);
/// The last STATUS= sent, repeated with the READY=1 that ends a reload.
static LAST_STATUS: Mutex<String> = Mutex::new(String::new());

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifier {
    /// `$NOTIFY_SOCKET`: a path, or `@name` (abstract). None: do nothing.
    socket: Option<String>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; does nothing when it is unset or empty.
    pub fn from_env() -> Notifier {
        Notifier::new(
            std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
        )
    }

    pub fn new(socket: Option<String>) -> Notifier {
        Notifier { socket }
    }

    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `state` (newline-separated `KEY=value` lines) as one datagram.
    /// Ok(false): nothing to send to.
    pub fn notify(&self, state: &str) -> io::Result<bool> {
        let Some(target) = &self.socket else {
            return Ok(false);
        };
        let sock = UnixDatagram::unbound()?;
        if let Some(name) = target.strip_prefix('@') {
            send_abstract(&sock, name, state.as_bytes())?;
        } else {
            sock.send_to(state.as_bytes(), target)?;
        }
        Ok(true)
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(sock: &UnixDatagram, name: &str, msg: &[u8]) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    sock.send_to_addr(msg, &addr).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &str, _: &[u8]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract NOTIFY_SOCKET needs Linux",
    ))
}

/// Sends to `$NOTIFY_SOCKET`; a failure is logged at debug level only (the
/// service manager going away must not disturb the daemon).
fn send(state: &str) -> bool {
    match Notifier::from_env().notify(state) {
        Ok(sent) => sent,
        Err(e) => {
            tracing::debug!(error = %e, "cannot notify the service manager");
            false
        }
    }
}

/// One line: STATUS= must not contain a newline.
fn status_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// `READY=1`, with the current status.
pub fn ready(status: &str) {
    let line = status_line(status);
    remember(&line);
    if send(&format!("READY=1\nSTATUS={line}")) {
        READY_SENT.store(true, Ordering::SeqCst);
    }
}

/// `STATUS=…`, free text for `systemctl status`.
pub fn status(text: &str) {
    let line = status_line(text);
    remember(&line);
    send(&format!("STATUS={line}"));
}

fn remember(line: &str) {
    match LAST_STATUS.lock() {
        Ok(mut s) => line.clone_into(&mut s),
        Err(p) => line.clone_into(&mut p.into_inner()),
    }
}

fn last_status() -> String {
    match LAST_STATUS.lock() {
        Ok(s) => s.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// `RELOADING=1`: a SIGHUP reload begins. Only after READY=1 (before it,
/// systemd is still waiting for the start and READY=1 comes later anyway).
pub fn reloading() {
    if READY_SENT.load(Ordering::SeqCst) {
        send("RELOADING=1\nSTATUS=reloading the configuration");
    }
}

/// `READY=1`: the reload is over; `applied` false means the file was
/// rejected and the old configuration stays (shown in STATUS=).
pub fn reloaded(applied: bool) {
    RELOAD_REJECTED.store(!applied, Ordering::SeqCst);
    if READY_SENT.load(Ordering::SeqCst) {
        let last = last_status();
        // The last status may carry the note of an earlier rejected reload
        // (the refresher remembers it): an applied reload takes it off.
        let line = if applied {
            without_reload_note(&last)
        } else {
            with_reload_note(&last)
        };
        send(&format!("READY=1\nSTATUS={line}"));
    }
}

/// Shown in STATUS= while the last reload was rejected.
const RELOAD_NOTE: &str = "last reload rejected, old configuration in force";

fn without_reload_note(line: &str) -> String {
    line.replace(&format!("; {RELOAD_NOTE}"), "")
        .replace(RELOAD_NOTE, "")
}

fn with_reload_note(line: &str) -> String {
    if line.contains(RELOAD_NOTE) {
        line.to_string()
    } else {
        format!("{line}; {RELOAD_NOTE}")
    }
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() {
    send("STOPPING=1\nSTATUS=stopping: finishing the work in hand");
}

/// The watchdog time-out systemd set (`$WATCHDOG_USEC`, meant for this
/// process when `$WATCHDOG_PID` is unset or ours). Keep-alives go out at half
/// of it (see [`keepalive_period`]).
pub fn watchdog_interval() -> Option<Duration> {
    parse_watchdog(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// How often WATCHDOG=1 is sent: half the watchdog time-out.
pub fn keepalive_period() -> Option<Duration> {
    watchdog_interval().map(|d| d / 2)
}

/// `$WATCHDOG_USEC` and `$WATCHDOG_PID` → the time-out, if it is ours.
pub fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Marks the daemon's long-running loops, so the watchdog can tell a dead one.
/// A loop's name and whether it still runs.
type Tracked = (&'static str, Arc<AtomicBool>);

#[derive(Debug, Clone, Default)]
pub struct Health {
    loops: Arc<Mutex<Vec<Tracked>>>,
}

/// Clears its flag when the loop's future ends, panics or is aborted.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    /// Wraps a loop: it counts as alive until its future finishes.
    pub fn track<F>(&self, name: &'static str, fut: F) -> impl Future<Output = F::Output> + Send
    where
        F: Future + Send,
    {
        let flag = Arc::new(AtomicBool::new(true));
        match self.loops.lock() {
            Ok(mut l) => l.push((name, flag.clone())),
            Err(p) => p.into_inner().push((name, flag.clone())),
        }
        let guard = AliveGuard(flag);
        async move {
            let _guard = guard;
            fut.await
        }
    }

    /// The loops that have stopped.
    pub fn dead(&self) -> Vec<&'static str> {
        let loops = match self.loops.lock() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        };
        loops
            .iter()
            .filter(|(_, alive)| !alive.load(Ordering::SeqCst))
            .map(|(name, _)| *name)
            .collect()
    }
}

/// The mailbox connection as the ingest loop last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mailbox {
    /// No attempt has finished yet.
    Connecting,
    Connected,
    /// The last attempt (or the connection) failed; the loop retries.
    Unreachable,
}

/// Watches a [`MailSource`]'s connection, without touching the ingest loop:
/// [`MailboxProbe::wrap`] the source before handing it to `ingest::run`.
#[derive(Debug, Clone)]
pub struct MailboxProbe {
    tx: Arc<watch::Sender<Mailbox>>,
}

impl Default for MailboxProbe {
    fn default() -> Self {
        MailboxProbe::new()
    }
}

impl MailboxProbe {
    pub fn new() -> MailboxProbe {
        MailboxProbe {
            tx: Arc::new(watch::Sender::new(Mailbox::Connecting)),
        }
    }

    pub fn wrap<S: MailSource>(&self, inner: S) -> Probed<S> {
        Probed {
            inner,
            probe: self.clone(),
        }
    }

    pub fn state(&self) -> Mailbox {
        *self.tx.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Mailbox> {
        self.tx.subscribe()
    }

    fn set(&self, m: Mailbox) {
        self.tx.send_if_modified(|cur| {
            let changed = *cur != m;
            *cur = m;
            changed
        });
    }

    fn saw<T>(&self, r: &Result<T, SourceError>) {
        if r.is_err() {
            self.set(Mailbox::Unreachable);
        }
    }
}

/// A [`MailSource`] that reports its connection state to a [`MailboxProbe`].
pub struct Probed<S> {
    inner: S,
    probe: MailboxProbe,
}

impl<S: MailSource> MailSource for Probed<S> {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn connect(&mut self) -> Result<(), SourceError> {
        let r = self.inner.connect().await;
        self.probe.set(if r.is_ok() {
            Mailbox::Connected
        } else {
            Mailbox::Unreachable
        });
        r
    }

    async fn fetch(
        &mut self,
        store: &Store,
        limit: usize,
        in_flight: &[Incoming],
    ) -> Result<Vec<Incoming>, SourceError> {
        let r = self.inner.fetch(store, limit, in_flight).await;
        self.probe.saw(&r);
        r
    }

    async fn mark_processed(&mut self, done: &[Incoming]) -> Result<(), SourceError> {
        let r = self.inner.mark_processed(done).await;
        self.probe.saw(&r);
        r
    }

    async fn quarantine(&mut self, unreadable: &[Incoming]) -> Result<(), SourceError> {
        let r = self.inner.quarantine(unreadable).await;
        self.probe.saw(&r);
        r
    }

    async fn wait_for_mail(&mut self, shutdown: &Shutdown) -> Result<(), SourceError> {
        let r = self.inner.wait_for_mail(shutdown).await;
        self.probe.saw(&r);
        r
    }
}

/// The status line: what ingest does, the outbox depth, what is wrong.
pub fn describe(mailbox: Mailbox, outbox: usize, dead: &[&str], reload_rejected: bool) -> String {
    let mut s = match mailbox {
        Mailbox::Connecting => "connecting to the mailbox".to_string(),
        Mailbox::Connected => "ingesting".to_string(),
        Mailbox::Unreachable => "mailbox unreachable, retrying (see the log)".to_string(),
    };
    s.push_str(&format!("; {outbox} waiting in outbox"));
    for d in dead {
        s.push_str(&format!("; {d} loop stopped unexpectedly"));
    }
    if reload_rejected {
        s = with_reload_note(&s);
    }
    s
}

/// The task that speaks for the daemon: READY=1, STATUS= and the watchdog.
///
/// READY=1 waits for the mailbox's first successful connection, but at most
/// [`MAILBOX_READY_WAIT`]: a mailbox that is down at boot then still gets the
/// daemon marked started (with `STATUS=mailbox unreachable, retrying`), because
/// the web form must keep taking answers and the outbox keep sending while the
/// ingest loop retries with backoff; failing the start would restart-loop the
/// whole service over one unreachable server. Everything else READY=1 means
/// (store open, web server listening, outbound check attempted) is already
/// true when the supervisor starts.
///
/// WATCHDOG=1 goes out every half `$WATCHDOG_USEC` from this task, which runs
/// on the daemon's runtime, and only while every [`Health`]-tracked loop is
/// alive: a dead loop stops the keep-alives (and sends `WATCHDOG=trigger`), so
/// systemd restarts the service.
pub struct Supervisor {
    handle: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts the task; it stops at shutdown, or at [`Supervisor::stop`].
    pub fn spawn(
        pipeline: Arc<Pipeline>,
        health: Health,
        mailbox: MailboxProbe,
        shutdown: Shutdown,
    ) -> Supervisor {
        let handle = tokio::spawn(supervise(
            pipeline,
            health,
            mailbox,
            shutdown,
            keepalive_period(),
        ));
        Supervisor {
            handle: Some(handle),
        }
    }

    /// Stops the task (no more keep-alives) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
            let _ = h.await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(h) = &self.handle {
            h.abort();
        }
    }
}

async fn supervise(
    pipeline: Arc<Pipeline>,
    health: Health,
    mailbox: MailboxProbe,
    shutdown: Shutdown,
    keepalive: Option<Duration>,
) {
    let tick = keepalive.map_or(STATUS_REFRESH, |k| {
        k.clamp(Duration::from_millis(10), STATUS_REFRESH)
    });
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changes = mailbox.subscribe();
    let started = Instant::now();
    let mut ready_sent = false;
    let mut last_sent = String::new();
    let mut refreshed: Option<Instant> = None;
    let mut last_keepalive: Option<Instant> = None;
    let mut reported_dead = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = changes.changed() => {}
            _ = shutdown.wait() => return,
        }
        if shutdown.is_triggered() {
            return;
        }
        let dead = health.dead();
        if let Some(k) = keepalive {
            if dead.is_empty() {
                // Changes of the mailbox state wake the loop too: keep-alives
                // still go out at most at their period.
                if last_keepalive.is_none_or(|t| t.elapsed() >= k) {
                    send("WATCHDOG=1");
                    last_keepalive = Some(Instant::now());
                }
            } else if !reported_dead {
                send("WATCHDOG=trigger");
            }
        }
        if !dead.is_empty() && !reported_dead {
            reported_dead = true;
            tracing::error!(loops = %dead.join(", "), "a loop of the daemon stopped unexpectedly; no more watchdog keep-alives, so systemd restarts canvass");
        }
        let state = mailbox.state();
        let due = refreshed.is_none_or(|t| t.elapsed() >= STATUS_REFRESH);
        if !due && ready_sent {
            continue;
        }
        refreshed = Some(Instant::now());
        let text = describe(
            state,
            pipeline.store.outbox_len(),
            &dead,
            RELOAD_REJECTED.load(Ordering::SeqCst),
        );
        if !ready_sent && (state == Mailbox::Connected || started.elapsed() >= MAILBOX_READY_WAIT) {
            if state != Mailbox::Connected {
                tracing::warn!(waited_s = MAILBOX_READY_WAIT.as_secs(), "the mailbox is still unreachable; reporting ready anyway (the web form and the outbox work), ingest keeps retrying");
            }
            ready(&text);
            ready_sent = true;
            last_sent = text;
            continue;
        }
        if text != last_sent {
            status(&text);
            last_sent = text;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_applied_reload_takes_the_rejection_note_off_the_status() {
        let noted = with_reload_note("ingesting; 3 waiting in outbox");
        assert_eq!(
            noted,
            "ingesting; 3 waiting in outbox; last reload rejected, old configuration in force"
        );
        assert_eq!(with_reload_note(&noted), noted, "noted once");
        assert_eq!(
            without_reload_note(&noted),
            "ingesting; 3 waiting in outbox"
        );
        assert_eq!(without_reload_note("ingesting"), "ingesting");
    }

    #[test]
    fn nothing_happens_without_a_socket() {
        assert!(!Notifier::new(None).is_enabled());
        assert!(!Notifier::new(None).notify("READY=1").unwrap());
    }

    #[test]
    fn sends_one_datagram_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(Some(path.display().to_string()));
        assert!(n.notify("READY=1\nSTATUS=ingesting").unwrap());
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=ingesting");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("canvass-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::new(Some(format!("@{name}")))
            .notify("WATCHDOG=1")
            .unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::new(Some(dir.path().join("gone").display().to_string()));
        assert!(n.notify("READY=1").is_err());
    }

    #[test]
    fn watchdog_env() {
        assert_eq!(
            parse_watchdog(Some("200000"), None, 7),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            parse_watchdog(Some("200000"), Some("7"), 7),
            Some(Duration::from_millis(200))
        );
        assert_eq!(parse_watchdog(Some("200000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(None, None, 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("soon"), None, 7), None);
    }

    #[test]
    fn status_text() {
        assert_eq!(
            describe(Mailbox::Connected, 3, &[], false),
            "ingesting; 3 waiting in outbox"
        );
        assert_eq!(
            describe(Mailbox::Unreachable, 0, &["outbox"], true),
            "mailbox unreachable, retrying (see the log); 0 waiting in outbox; outbox loop stopped unexpectedly; last reload rejected, old configuration in force"
        );
        assert_eq!(status_line("a\nb"), "a b");
    }

    #[tokio::test]
    async fn health_sees_a_finished_or_panicked_loop() {
        let h = Health::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let waiting = tokio::spawn(h.track("ingest", async move {
            let _ = rx.await;
        }));
        let panicking = tokio::spawn(h.track("outbox", async { panic!("boom") }));
        assert!(panicking.await.is_err());
        assert_eq!(h.dead(), vec!["outbox"]);
        tx.send(()).unwrap();
        waiting.await.unwrap();
        assert_eq!(h.dead(), vec!["ingest", "outbox"]);
    }
}
