//! Issue 14: the daemon under hostile clients, each attack replayed against
//! the real thing.
//!
//! - behind a real nginx (Debian's `nginx-light`, a plain process on
//!   loopback): an attacker guessing links, a respondent behind the same
//!   proxy, an IPv6 attacker rotating addresses;
//! - slow headers, slow bodies, idle keep-alives and silent connections
//!   while `/healthz`, an answer and mail intake (Maildir) go on;
//! - `/metrics` only on its own listener.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use canvass::daemon::Daemon;
use common::*;
use common::{start_in_process as start, stop_in_process as stop};

/// A config for the Maildir path with `web` added to its [web] table.
fn config(dir: &Path, web: &str) -> PathBuf {
    let (s, e) = open_window();
    let path = file_config(dir, (&s, &e), "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "metrics_bind = \"127.0.0.1:0\"\n",
        &format!("metrics_bind = \"127.0.0.1:0\"\n{web}\n"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Invites `to` by the command-line path and returns its link, read from
/// the .eml the outbox wrote.
fn invite(d: &Daemon, dir: &Path, to: &str) -> String {
    d.pipeline
        .invite_manual(&[to.to_string()], "Sjælland")
        .unwrap();
    sent_link(dir, to)
}

fn sent_link(dir: &Path, to: &str) -> String {
    wait_for(
        &format!("the invitation to {to}"),
        Duration::from_secs(20),
        || {
            files_in(&dir.join("sent")).into_iter().find_map(|f| {
                let raw = std::fs::read(&f).ok()?;
                String::from_utf8_lossy(&raw)
                    .contains(&format!("To: {to}"))
                    .then(|| link_in(&raw))
                    .flatten()
            })
        },
    )
}

/// A request from a chosen loopback source address (127.0.0.0/8 is all
/// loopback on Linux), so that clients and the proxy are told apart.
async fn request_from(
    source: &str,
    to: SocketAddr,
    method: &str,
    path: &str,
    extra: &str,
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = if to.is_ipv4() {
        tokio::net::TcpSocket::new_v4().unwrap()
    } else {
        tokio::net::TcpSocket::new_v6().unwrap()
    };
    let source: std::net::IpAddr = source.parse().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut s = socket.connect(to).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: survey.test\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx from Debian's `nginx-light`, a plain foreground process with its
/// own prefix in a temp folder, proxying to the daemon from 127.0.0.2 with
/// `X-Forwarded-For: $proxy_add_x_forwarded_for` (what the README shows).
struct Nginx {
    child: Child,
    addr: SocketAddr,
    addr6: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx(upstream: SocketAddr) -> Nginx {
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nginx is not installed: run scripts/install-test-deps");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let has_v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let port6 = if has_v6 {
        std::net::TcpListener::bind("[::1]:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        0
    };
    let d = dir.path().display();
    let listen6 = if has_v6 {
        format!("listen [::1]:{port6};")
    } else {
        String::new()
    };
    let conf = format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        {listen6}
        location / {{
            proxy_pass http://{upstream};
            proxy_bind 127.0.0.2;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"#
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut n = Nginx {
        child,
        addr,
        addr6: has_v6.then(|| format!("[::1]:{port6}").parse().unwrap()),
        _dir: dir,
    };
    wait_for("nginx to listen", Duration::from_secs(10), || {
        if let Ok(Some(status)) = n.child.try_wait() {
            let log = std::fs::read_to_string(n._dir.path().join("error.log")).unwrap_or_default();
            panic!("nginx exited with {status}: {log}");
        }
        TcpStream::connect(addr).ok()
    });
    n
}

/// Issue 14, item 1. Before: 20 guessed links through the proxy locked out
/// every respondent behind it (GET and POST), and rotating IPv6 addresses
/// escaped the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_guessing_locks_out_nobody_but_the_guesser() {
    let dir = tempfile::tempdir().unwrap();
    // 127.0.0.2 is nginx's side towards the daemon; 127.0.0.9 stands for a
    // CDN edge in front of nginx that forwards IPv6 clients' addresses.
    let path = config(
        dir.path(),
        r#"trusted_proxies = ["127.0.0.2", "127.0.0.9"]"#,
    );
    let (d, shutdown) = start(&path).await;
    let proxy = nginx(d.web_addr);
    let at = proxy.addr;
    let link = invite(&d, dir.path(), "kontakt@kommune.test");
    let second = invite(&d, dir.path(), "anden@kommune.test");
    let max = canvass::web::MAX_MISSES as usize;

    // The attacker walks tokens from 127.0.0.66, through nginx.
    let mut attacker = Vec::new();
    for i in 0..max + 5 {
        attacker.push(
            request_from("127.0.0.66", at, "GET", &format!("/s/{i:0>22}"), "", b"")
                .await
                .0,
        );
    }
    assert!(attacker[..max].iter().all(|s| *s == 404), "{attacker:?}");
    assert!(attacker[max..].iter().all(|s| *s == 429), "{attacker:?}");
    // A respondent behind the same proxy: GET, a mistyped link, POST.
    let get = request_from("127.0.0.77", at, "GET", &link, "", b"")
        .await
        .0;
    let typo = request_from("127.0.0.77", at, "GET", "/s/typo", "", b"")
        .await
        .0;
    let post = request_from(
        "127.0.0.77",
        at,
        "POST",
        &link,
        "Content-Type: application/x-www-form-urlencoded\r\n",
        &form_body(&complete_answer()),
    )
    .await
    .0;
    assert_eq!((get, typo, post), (200, 404, 200));
    // Even the attacker's own connection gets a valid link answered.
    let valid = request_from("127.0.0.66", at, "GET", &second, "", b"")
        .await
        .0;
    assert_eq!(valid, 200, "a valid link was rate-limited");
    // Writing X-Forwarded-For oneself does not pick a fresh bucket.
    let spoofed = request_from(
        "127.0.0.66",
        at,
        "GET",
        "/s/spoofed",
        "X-Forwarded-For: 198.51.100.1\r\n",
        b"",
    )
    .await
    .0;
    assert_eq!(spoofed, 429, "a forged X-Forwarded-For escaped the limit");

    // IPv6 rotating inside one /64 (the edge at 127.0.0.9 forwards the
    // address; nginx appends the edge's): one bucket for the whole /64.
    let mut rotating = Vec::new();
    for i in 0..max + 5 {
        let xff = format!(
            "X-Forwarded-For: 2001:db8:14:1:{:x}::{:x}\r\n",
            (i * 7919) & 0xffff,
            i + 1
        );
        rotating.push(
            request_from("127.0.0.9", at, "GET", &format!("/s/{i:0>22}"), &xff, b"")
                .await
                .0,
        );
    }
    assert!(rotating[..max].iter().all(|s| *s == 404), "{rotating:?}");
    assert!(rotating[max..].iter().all(|s| *s == 429), "{rotating:?}");
    let xff = "X-Forwarded-For: 2001:db8:14:2::1\r\n";
    let other64 = request_from("127.0.0.9", at, "GET", "/s/typo", xff, b"")
        .await
        .0;
    assert_eq!(other64, 404, "another /64 has its own count");

    // A real IPv6 client through nginx on [::1] (when the host has IPv6).
    if let Some(at6) = proxy.addr6 {
        let link = invite(&d, dir.path(), "ipv6@kommune.test");
        assert_eq!(request_from("::1", at6, "GET", &link, "", b"").await.0, 200);
    }

    // Rotating across many /64s: once everybody together passed the global
    // ceiling, unknown links get 429, and valid ones still 200.
    let third = invite(&d, dir.path(), "tredje@kommune.test");
    let mut last = 0;
    for i in 0..canvass::web::MAX_MISSES_GLOBAL as usize {
        let xff = format!(
            "X-Forwarded-For: 2001:db8:{:x}:{:x}::1\r\n",
            i / 60000 + 100,
            i % 60000
        );
        last = request_from("127.0.0.9", at, "GET", "/s/guess", &xff, b"")
            .await
            .0;
        if last == 429 {
            break;
        }
    }
    assert_eq!(last, 429, "the global ceiling never hit");
    assert_eq!(
        request_from("127.0.0.77", at, "GET", &third, "", b"")
            .await
            .0,
        200
    );
    drop(proxy);
    stop(d, shutdown).await;
}

/// What one hostile connection does, and how long the server kept it.
#[derive(Clone, Copy, Debug)]
enum Slow {
    /// Headers one byte at a time, never finished.
    Headers,
    /// A complete head, then the body one byte at a time.
    Body,
    /// One request, then an idle keep-alive.
    Idle,
    /// Connects and says nothing.
    Silent,
}

/// Runs `kind` against `addr` until the server closes; returns how long it
/// stayed open (None: still open at `give_up`).
fn hold(addr: SocketAddr, kind: Slow, give_up: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let head: &[u8] = match kind {
        Slow::Headers => b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        Slow::Body => b"POST /s/AAAAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\n",
        Slow::Idle => b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        Slow::Silent => b"",
    };
    if s.write_all(head).is_err() {
        return Some(start.elapsed());
    }
    let mut buf = [0u8; 4096];
    while start.elapsed() < give_up {
        let trickle: &[u8] = match kind {
            Slow::Headers => b"X",
            Slow::Body => b"a",
            _ => b"",
        };
        if !trickle.is_empty() && s.write_all(trickle).is_err() {
            return Some(start.elapsed());
        }
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// Issue 14, item 2. Before: slow headers, a slow body, an idle keep-alive
/// and a silent connection stayed open past 100 s, and with the descriptors
/// used up `/healthz` timed out and the Maildir source failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_are_closed_and_the_survey_and_mail_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "header_timeout_seconds = 3\nbody_timeout_seconds = 3\nmax_connections = 24",
    );
    let (d, shutdown) = start(&path).await;
    let web = d.web_addr;
    let link = invite(&d, dir.path(), "kontakt@kommune.test");

    // 20 hostile connections, five of each kind, below the cap of 24.
    let kinds = [Slow::Headers, Slow::Body, Slow::Idle, Slow::Silent];
    let held: Vec<_> = (0..20)
        .map(|i| {
            let kind = kinds[i % 4];
            std::thread::spawn(move || (kind, hold(web, kind, Duration::from_secs(20))))
        })
        .collect();
    // Let them all connect and start trickling.
    let a = web.to_string();
    wait_for(
        "the slow connections to be accepted",
        Duration::from_secs(5),
        || (std::net::TcpStream::connect(&a).is_ok()).then_some(()),
    );

    // Meanwhile: health, a real answer, and mail intake.
    let a = web.to_string();
    let started = Instant::now();
    let health = blocking(move || http_get(&a, "/healthz").0).await;
    assert_eq!(health, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "/healthz waited {:?}",
        started.elapsed()
    );
    let a = web.to_string();
    let l = link.clone();
    let (answer, _, _) = blocking(move || {
        http(
            &a,
            "POST",
            &l,
            "application/x-www-form-urlencoded",
            &form_body(&complete_answer()),
        )
    })
    .await;
    assert_eq!(answer, 200);
    deliver(
        &dir.path().join("inbox"),
        "1.eml",
        &cc_trigger(
            "slow-1",
            "anne.hansen@siri.test",
            &["ny.kontakt@kommune.test"],
        ),
    );
    let inbox_dir = dir.path().to_path_buf();
    blocking(move || sent_link(&inbox_dir, "ny.kontakt@kommune.test")).await;

    // Every slow connection is closed by the server, well before 20 s,
    // though the slow ones kept sending.
    for h in held {
        let (kind, open) = h.join().unwrap();
        let open = open.unwrap_or_else(|| panic!("{kind:?} connection still open after 20 s"));
        assert!(
            open < Duration::from_secs(8),
            "{kind:?} stayed open {open:?}"
        );
    }

    // Past the cap: 40 silent connections; the extra ones wait in the
    // backlog, holding none of the daemon's descriptors. Mail intake goes on
    // meanwhile, and /healthz is answered once the deadline freed slots.
    let silent: Vec<_> = (0..40)
        .map(|_| std::thread::spawn(move || hold(web, Slow::Silent, Duration::from_secs(20))))
        .collect();
    deliver(
        &dir.path().join("inbox"),
        "2.eml",
        &cc_trigger("slow-2", "anne.hansen@siri.test", &["tredje@kommune.test"]),
    );
    let inbox_dir = dir.path().to_path_buf();
    blocking(move || sent_link(&inbox_dir, "tredje@kommune.test")).await;
    let a = web.to_string();
    assert_eq!(blocking(move || http_get(&a, "/healthz").0).await, 200);
    for h in silent {
        assert!(
            h.join().unwrap().is_some(),
            "a silent connection was never closed"
        );
    }
    stop(d, shutdown).await;
}

/// Issue 14, item 8. Before: `/metrics` was served on the form's port and
/// `canvass_answers_total` dated each answer; manual invitations were not
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_off_the_public_port_and_do_not_date_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let (d, shutdown) = start(&path).await;
    let link = invite(&d, dir.path(), "kontakt@kommune.test");
    let web = d.web_addr.to_string();
    let metrics = d.metrics_addr.expect("metrics listener").to_string();
    let (public, answer, private) = blocking(move || {
        let public = http_get(&web, "/metrics").0;
        let answer = http(
            &web,
            "POST",
            &link,
            "application/x-www-form-urlencoded",
            &form_body(&complete_answer()),
        )
        .0;
        (public, answer, http_get(&metrics, "/metrics"))
    })
    .await;
    assert_eq!(public, 404, "/metrics is served on the form's listener");
    assert_eq!(answer, 200);
    assert_eq!(private.0, 200);
    assert!(
        private.1.contains("canvass_invitations_total 1\n"),
        "{}",
        private.1
    );
    assert!(!private.1.contains("answers"), "{}", private.1);
    stop(d, shutdown).await;
}

/// Issue 14, item 9: a mail with more than 256 KiB of headers lost the CCs
/// past that point, and a 50 MB phone contact was answered "no addresses
/// found" instead of "too large". Here the limit is 1 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_mails_are_read_whole_or_called_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "poll_interval_ms = 50",
        "poll_interval_ms = 50\nmax_message_bytes = 1048576",
    );
    std::fs::write(&path, text).unwrap();
    let (d, shutdown) = start(&path).await;
    let inbox = dir.path().join("inbox");

    // 300 KiB of headers, then the CC that matters, then a 2 MiB body.
    let mut raw = String::from("Message-ID: <huge-head@siri.test>\r\nFrom: Anne <anne.hansen@siri.test>\r\nTo: undersoegelse@siri.test\r\n");
    for i in 0..3000 {
        raw.push_str(&format!("X-Filler-{i}: {}\r\n", "x".repeat(96)));
    }
    raw.push_str("Cc: sidst.i.hovedet@kommune.test\r\nSubject: Opfølgning\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    raw.push_str(&"hej\r\n".repeat(400_000));
    deliver(&inbox, "head.eml", raw.as_bytes());
    let root = dir.path().to_path_buf();
    blocking(move || sent_link(&root, "sidst.i.hovedet@kommune.test")).await;

    // A phone contact (to the survey address alone) with a 2 MiB body.
    let mut raw = String::from("Message-ID: <huge-phone@siri.test>\r\nFrom: Anne <anne.hansen@siri.test>\r\nTo: undersoegelse@siri.test\r\nSubject: Telefonkontakt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nkontakt@kommune.test\r\n");
    raw.push_str(&"bla bla\r\n".repeat(250_000));
    deliver(&inbox, "phone.eml", raw.as_bytes());
    let sent = dir.path().join("sent");
    let reply = blocking(move || {
        wait_for(
            "the confirmation to the consultant",
            Duration::from_secs(20),
            || {
                files_in(&sent).into_iter().find_map(|f| {
                    let raw = std::fs::read(&f).ok()?;
                    let text = String::from_utf8_lossy(&raw).into_owned();
                    (text.contains("To: anne.hansen@siri.test") && text.contains("Telefonkontakt"))
                        .then_some(text)
                })
            },
        )
    })
    .await;
    let body = reply.replace("=\r\n", "");
    assert!(body.contains("for stor"), "{body}");
    assert!(!body.contains("ikke fundet nogen mailadresser"), "{body}");
    stop(d, shutdown).await;
}

/// Issue 14, item 9: `idn@bølle.dk` and `idn@xn--blle-gra.dk` are one
/// mailbox, and both were invited; `user@localhost` and `user@127.0.0.1`
/// were invited. Now one invitation, and the consultant is told which lines
/// were no addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invitation_however_the_domain_is_spelled_and_none_to_local_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let (d, shutdown) = start(&path).await;
    let inbox = dir.path().join("inbox");
    deliver(
        &inbox,
        "cc.eml",
        &cc_trigger(
            "idn-1",
            "anne.hansen@siri.test",
            &[
                "idn@bølle.dk",
                "idn@xn--blle-gra.dk",
                "user@localhost",
                "user@127.0.0.1",
            ],
        ),
    );
    let phone = "Message-ID: <idn-2@siri.test>\r\nFrom: Anne <anne.hansen@siri.test>\r\nTo: undersoegelse@siri.test\r\nSubject: Telefonkontakt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nIDN@BØLLE.DK\r\nuser@localhost\r\nuser@127.0.0.1\r\nuser@[127.0.0.1]\r\nuser@intranet\r\n";
    deliver(&inbox, "phone.eml", phone.as_bytes());
    let sent = dir.path().join("sent");
    let reply = blocking(move || {
        wait_for("the confirmation", Duration::from_secs(20), || {
            files_in(&sent).into_iter().find_map(|f| {
                let text = String::from_utf8_lossy(&std::fs::read(f).ok()?).into_owned();
                text.contains("Telefonkontakt").then_some(text)
            })
        })
    })
    .await;
    let body = mail_parser::MessageParser::default()
        .parse(reply.as_bytes())
        .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
        .unwrap_or_default();
    assert!(body.contains("Allerede inviteret"), "{body}");
    for line in [
        "user@localhost",
        "user@127.0.0.1",
        "user@[127.0.0.1]",
        "user@intranet",
    ] {
        assert!(
            body.contains(&format!("  - {line}")),
            "{line} not named: {body}"
        );
    }
    let st = canvass::control::current_status(&d.pipeline).unwrap();
    assert_eq!(st.total.invited, 1, "one mailbox, one invitation");
    let invitations: Vec<String> = files_in(&dir.path().join("sent"))
        .into_iter()
        .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned())
        .filter(|t| t.contains("Message-ID: <canvass.") && link_in(t.as_bytes()).is_some())
        .collect();
    assert_eq!(invitations.len(), 1, "{invitations:?}");
    assert!(
        invitations[0].contains("idn@xn--blle-gra.dk"),
        "{}",
        invitations[0]
    );
    stop(d, shutdown).await;
}

/// `canvass ARGS` under umask 022, as an operator's shell would run it.
fn umask_022(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("umask 022; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_canvass"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn,canvass=info")
        .env_remove("CANVASS_CONFIG")
        .env_remove("NOTIFY_SOCKET");
    c
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every folder and file under `root` with its mode.
fn modes(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = vec![(root.to_path_buf(), mode(root))];
    if root.is_dir() {
        for e in std::fs::read_dir(root).unwrap().flatten() {
            out.extend(modes(&e.path()));
        }
    }
    out
}

fn assert_private(root: &Path) {
    for (p, m) in modes(root) {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(m, want, "{} is {m:o}", p.display());
    }
}

fn run_daemon(config: &Path, log: &Path) -> Child {
    umask_022(config, &["run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start canvass run")
}

fn stop_daemon(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = wait_for("canvass to exit", Duration::from_secs(30), || {
        child.try_wait().ok().flatten()
    });
    assert!(status.success());
}

/// Issue 14, item 5. Before: run by hand with umask 022 the store was
/// 0755/0644, and so were the sent .eml files; another user copied it.
#[test]
fn the_store_sent_mail_and_exports_are_private_under_umask_022() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let log = dir.path().join("daemon.log");
    let child = run_daemon(&path, &log);
    deliver(
        &dir.path().join("inbox"),
        "1.eml",
        &cc_trigger(
            "private-1",
            "anne.hansen@siri.test",
            &["kontakt@kommune.test"],
        ),
    );
    sent_link(dir.path(), "kontakt@kommune.test");
    // Exports and reports hold answers: private also when they replace an
    // old file someone left readable.
    let (export, xlsx, report) = (
        dir.path().join("answers.csv"),
        dir.path().join("answers.xlsx"),
        dir.path().join("report.html"),
    );
    for f in [&export, &xlsx, &report] {
        std::fs::write(f, "old").unwrap();
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    let backup = dir.path().join("store.backup");
    for args in [
        vec!["export", "--out", export.to_str().unwrap()],
        vec![
            "export",
            "--format",
            "xlsx",
            "--out",
            xlsx.to_str().unwrap(),
        ],
        vec!["report", "--html", report.to_str().unwrap()],
        vec!["backup", backup.to_str().unwrap()],
    ] {
        let out = umask_022(&path, &args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    stop_daemon(child);
    assert_private(&dir.path().join("store"));
    assert_private(&dir.path().join("sent"));
    for f in [&export, &xlsx, &report, &backup] {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }

    // A store left readable by others (an older canvass, a careless copy)
    // is made private at start, with a warning.
    let status = Command::new("chmod")
        .args(["-R", "go+rX"])
        .arg(dir.path().join("store"))
        .arg(dir.path().join("sent"))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(mode(&dir.path().join("store")), 0o755);
    let child = run_daemon(&path, &log);
    wait_for("the repair warning", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.contains("the store was readable by other users")
            && text.contains("the outbound .eml folder was readable by other users"))
        .then_some(())
    });
    stop_daemon(child);
    assert_private(&dir.path().join("store"));
    assert_private(&dir.path().join("sent"));
}

/// `[web] metrics_bind = "unix:…"`: /metrics on a Unix socket (mode 0600),
/// no TCP port at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_live_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let socket = dir.path().join("metrics.sock");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "metrics_bind = \"127.0.0.1:0\"",
        &format!("metrics_bind = \"unix:{}\"", socket.display()),
    );
    std::fs::write(&path, text).unwrap();
    let (d, shutdown) = start(&path).await;
    assert_eq!(d.metrics_addr, None);
    let s = socket.clone();
    let answer = blocking(move || {
        let mut c = wait_for("the metrics socket", Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&s).ok()
        });
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("canvass_invitations_total"), "{answer}");
    assert_eq!(mode(&socket) & 0o077, 0, "the socket is private");
    stop(d, shutdown).await;
}
