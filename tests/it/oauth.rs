//! OAuth 2.0 login end to end (issue 11), against real parts only: the
//! harness's Dovecot validating RS256 tokens with its oauth2 passdb, Postfix
//! submission authenticating through Dovecot's SASL, and a real
//! authorization server (npm `oidc-provider`, tests/oidc/server.mjs) issuing
//! the tokens by the client-credentials grant, and by the JWT bearer grant
//! for a Google service account. The daemon runs as the real
//! binary; its log, `canvass status` and `canvass check-mail` are read as an
//! operator would.
//!
//! Microsoft's and Google's endpoints cannot be reached from here: the
//! `microsoft365` and `google` presets are pointed at the local server with
//! `auth.token_url` (the requests are Microsoft's and Google's shape;
//! src/oauth/request.rs unit-tests the field-by-field match with their
//! documentation).

use crate::common;
use crate::harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::oidc::{Client, OidcServer};
use harness::MailStack;

const SURVEY: &str = "undersoegelse@siri.test";
const ANNE: &str = "anne.hansen@siri.test"; // consultant, Sjælland
const CLIENT_ID: &str = "canvass-survey";
const SECRET: &str = "harness-client-secret-0123456789";

fn client() -> Client {
    Client {
        client_id: CLIENT_ID.into(),
        client_secret: SECRET.into(),
        public_key_file: None,
        mailbox: SURVEY.into(),
        service_account: false,
    }
}

fn stack() -> MailStack {
    let mail = MailStack::start();
    mail.add_users(&[SURVEY, ANNE]);
    mail
}

/// What differs between the configs of these tests.
struct Setup<'a> {
    mechanism: &'a str,
    /// `[mailbox]` lines.
    mailbox: &'a str,
    imap_mailbox: &'a str,
    smtp_port: u16,
    /// Extra lines in [outbound.smtp] and [auth].
    smtp: &'a str,
    auth: &'a str,
    /// The [auth] credential lines (default: the client secret).
    credential: Option<&'a str>,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            mechanism: "xoauth2",
            mailbox: "provider = \"generic\"",
            imap_mailbox: "INBOX",
            smtp_port: 0,
            smtp: "",
            auth: "",
            credential: None,
        }
    }
}

fn write_config(dir: &Path, mail: &MailStack, oidc: &OidcServer, s: &Setup) -> PathBuf {
    std::fs::write(dir.join("client-secret"), SECRET).unwrap();
    let smtp_port = if s.smtp_port == 0 {
        mail.submission_port()
    } else {
        s.smtp_port
    };
    let oauth = format!(
        r#"[mailbox]
{mailbox}

[auth]
method = "oauth2"
mechanism = "{mechanism}"
{credential}
token_url = "{token_url}"
{auth}
"#,
        mailbox = s.mailbox,
        mechanism = s.mechanism,
        token_url = oidc.token_url(),
        auth = s.auth,
        credential = s.credential.unwrap_or(concat!(
            "client_id = \"canvass-survey\"\n",
            "client_secret_file = \"client-secret\""
        )),
    );
    common::StackConfig {
        sending: "max_retry_minutes = 1",
        imap: &format!("mailbox = \"{}\"", s.imap_mailbox),
        smtp: s.smtp,
        oauth: Some(&oauth),
        ..common::StackConfig::new(mail.imap_port(), smtp_port)
    }
    .write(dir)
}

/// The daemon as a process; SIGTERM on drop.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(config: &Path, log: &Path) -> Running {
        let child = Command::new(env!("CARGO_BIN_EXE_canvass"))
            .args(["run", "--config"])
            .arg(config)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "canvass=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Running {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn trigger(id: &str, to: &[&str]) -> Vec<u8> {
    format!(
        "Message-ID: <{id}@siri.test>\r\nDate: Mon, 12 Aug 2024 10:00:00 +0200\r\nFrom: Konsulent <{ANNE}>\r\nTo: {}\r\nCc: {SURVEY}\r\nSubject: =?utf-8?q?Opf=C3=B8lgning?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHej, tak for snakken.\r\n",
        to.join(", ")
    )
    .into_bytes()
}

/// A consultant CCs the survey address (through Postfix's port 25, no AUTH).
fn cc(mail: &MailStack, id: &str, contacts: &[&str]) {
    let mut rcpt = contacts.to_vec();
    rcpt.push(SURVEY);
    mail.send(ANNE, &rcpt, &trigger(id, contacts));
}

/// Invitations from the survey address in `contact`'s inbox.
async fn invitations(mail: &MailStack, contact: &str) -> usize {
    mail.fetch_all(contact, "INBOX")
        .await
        .iter()
        .filter(|m| {
            String::from_utf8_lossy(m)
                .lines()
                .any(|l| l.starts_with("From:") && l.contains(SURVEY))
        })
        .count()
}

async fn wait_invited(mail: &MailStack, contact: &str, within: Duration, d: &Running) {
    let deadline = Instant::now() + within;
    while invitations(mail, contact).await == 0 {
        assert!(
            Instant::now() < deadline,
            "{contact} was not invited within {within:?}; daemon log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn canvass(config: &Path, args: &[&str]) -> (bool, String) {
    canvass_with_credentials(config, args, None)
}

/// `canvass`, with systemd's `$CREDENTIALS_DIRECTORY` set to `credentials`.
fn canvass_with_credentials(
    config: &Path,
    args: &[&str],
    credentials: Option<&Path>,
) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_canvass"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("CREDENTIALS_DIRECTORY");
    if let Some(dir) = credentials {
        cmd.env("CREDENTIALS_DIRECTORY", dir);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// No token, client secret or SASL response in the text.
fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the client secret");
    // JWTs start with base64url of '{"alg"' / '{"typ"' / '{"kid"'.
    assert!(!text.contains("eyJ"), "{what} shows a token:\n{text}");
    assert!(
        !text.contains("auth=Bearer"),
        "{what} shows a SASL response"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_and_oauthbearer_end_to_end_with_a_token_over_2_kb() {
    let mail = stack();
    // Entra's tokens run past 2 KB: so do these (padding claim).
    let oidc = OidcServer::start_for(&mail, &[client()], 600, 2300);
    mail.add_users(&["kontakt0@kommune.test", "kontakt1@kommune.test"]);
    for (i, mechanism) in ["xoauth2", "oauthbearer"].iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(
            dir.path(),
            &mail,
            &oidc,
            &Setup {
                mechanism,
                ..Setup::default()
            },
        );
        let d = Running::start(&config, &dir.path().join("daemon.log"));
        let contact = format!("kontakt{i}@kommune.test");
        cc(&mail, &format!("e2e-{mechanism}"), &[&contact]);
        // Read over IMAP with the token, sent through submission with it.
        wait_invited(&mail, &contact, Duration::from_secs(60), &d).await;
        let log = d.log();
        assert_no_secret("the daemon log", &log);
        assert!(log.contains("mailbox connected"), "{log}");
        drop(d);
        assert_eq!(invitations(&mail, &contact).await, 1);
    }
    // The tokens really were longer than 2 KB.
    let token = oidc_token(&oidc, "mail").await;
    assert!(token.len() > 2048, "token of {} bytes", token.len());
    // Dovecot validated them (not a password): its log names the mechanism.
    let dovecot = std::fs::read_to_string(mail.root().join("dovecot/dovecot.log")).unwrap();
    assert!(
        dovecot.contains("method=XOAUTH2") || dovecot.contains("XOAUTH2"),
        "{dovecot}"
    );
    assert!(dovecot.contains("OAUTHBEARER"), "{dovecot}");
}

/// A token straight from the server, for assertions on its size.
async fn oidc_token(oidc: &OidcServer, scope: &str) -> String {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), SECRET).unwrap();
    let cfg = canvass::oauth::OAuthConfig {
        provider: canvass::oauth::Provider::Generic,
        mechanism: canvass::oauth::Mechanism::Xoauth2,
        login: SURVEY.into(),
        token_url: oidc.token_url(),
        scope: scope.into(),
        credential: canvass::oauth::Credential::ClientSecret {
            client_id: CLIENT_ID.into(),
            secret_file: secret.path().to_path_buf(),
        },
    };
    let t = canvass::oauth::TokenSource::new(cfg)
        .unwrap()
        .token()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", oidc.log()));
    t.expose().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_mail_passes_then_names_the_fix_for_smtp_auth_off_and_a_wrong_folder() {
    let mail = stack();
    let oidc = OidcServer::start_for(&mail, &[client()], 600, 0);
    let dir = tempfile::tempdir().unwrap();

    // Everything right: one ok line per check, exit 0.
    let config = write_config(dir.path(), &mail, &oidc, &Setup::default());
    let (ok, out) = canvass(&config, &["check-mail"]);
    assert!(ok, "{out}");
    for line in [
        "ok   token ",
        "ok   imap login ",
        "ok   imap capabilities ",
        "ok   imap folder ",
        "ok   imap move_to ",
        "ok   imap quarantine ",
        "ok   imap sent folder ",
        "ok   smtp ",
        "all 8 checks passed",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    assert!(out.contains("valid until"), "{out}");
    assert!(out.contains("IDLE, MOVE, UIDPLUS"), "{out}");
    assert!(
        out.contains("MAIL FROM:<undersoegelse@siri.test> accepted"),
        "{out}"
    );
    assert_no_secret("check-mail", &out);
    // Nothing was sent: no mail for anyone.
    assert!(mail.fetch_all(SURVEY, "INBOX").await.is_empty());

    // SMTP AUTH off (Postfix's port 25 offers none), at Microsoft 365: the
    // Exchange fix. The preset is pointed at the harness.
    let ms = "provider = \"microsoft365\"\ntenant_id = \"contoso.onmicrosoft.com\"";
    let config = write_config(
        dir.path(),
        &mail,
        &oidc,
        &Setup {
            mailbox: ms,
            smtp_port: mail.smtp_port(),
            ..Setup::default()
        },
    );
    let (ok, out) = canvass(&config, &["check-mail"]);
    assert!(!ok, "{out}");
    assert!(out.contains("ok   token "), "{out}");
    assert!(out.contains("FAIL smtp "), "{out}");
    assert!(
        out.contains("fix: SMTP AUTH is disabled for this mailbox: `Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false`"),
        "{out}"
    );

    // A wrong folder: named, with the folders that exist.
    let config = write_config(
        dir.path(),
        &mail,
        &oidc,
        &Setup {
            imap_mailbox: "Undersøgelse",
            ..Setup::default()
        },
    );
    let (ok, out) = canvass(&config, &["check-mail"]);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL imap folder "), "{out}");
    assert!(out.contains("\"Undersøgelse\" does not exist"), "{out}");
    assert!(
        out.contains("fix: set inbound.imap.mailbox to an existing folder; the server has: INBOX"),
        "{out}"
    );
    assert!(out.contains("ok   smtp "), "{out}");

    // A token for another mailbox than the login: Dovecot refuses it; the
    // error challenge is answered and its words reported, for IMAP and SMTP.
    let config = write_config(
        dir.path(),
        &mail,
        &oidc,
        &Setup {
            auth: "login = \"anne.hansen@siri.test\"",
            ..Setup::default()
        },
    );
    let (ok, out) = canvass(&config, &["check-mail"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL imap login ")
            && out.contains("the server refused AUTHENTICATE XOAUTH2 for anne.hansen@siri.test"),
        "{out}"
    );
    assert!(
        out.contains("FAIL smtp ") && out.contains("refused AUTH XOAUTH2"),
        "{out}"
    );
    assert_no_secret("check-mail", &out);

    // The client secret is looked up in $CREDENTIALS_DIRECTORY first
    // (systemd's LoadCredential=): a wrong one beside the config is refused
    // by the authorization server, the right one there wins over it.
    let config = write_config(dir.path(), &mail, &oidc, &Setup::default());
    std::fs::write(dir.path().join("client-secret"), "not-the-secret").unwrap();
    let (ok, out) = canvass(&config, &["check-mail"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL token ") && out.contains("invalid_client"),
        "{out}"
    );
    assert!(!out.contains("not-the-secret"), "{out}");
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("client-secret"), SECRET).unwrap();
    let (ok, out) = canvass_with_credentials(&config, &["check-mail"], Some(credentials.path()));
    assert!(ok, "{out}");
    assert!(out.contains("all 8 checks passed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_is_reported_in_log_status_and_check_mail_and_the_daemon_keeps_running() {
    let mail = stack();
    // Short tokens, so the revoked client soon needs a new one.
    let oidc = OidcServer::start_for(&mail, &[client()], 12, 0);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &mail, &oidc, &Setup::default());
    let mut d = Running::start(&config, &dir.path().join("daemon.log"));
    let first = "kontakt.foer@kommune.test";
    mail.add_user(first);
    cc(&mail, "before-revoke", &[first]);
    wait_invited(&mail, first, Duration::from_secs(60), &d).await;

    oidc.revoke(CLIENT_ID);
    // Once the last token expired (its `exp`, 12 s after issue, checked by
    // Dovecot against the real clock), a new login needs a new token.
    oidc.wait_last_token_expired(Duration::from_secs(30));
    mail.restart_imap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, status) = canvass(&config, &["status"]);
        if status.contains("mail login: FAILING") {
            assert!(status.contains("invalid_client"), "{status}");
            assert!(
                status.contains("revoked"),
                "the hint says what may be wrong:\n{status}"
            );
            assert_no_secret("status", &status);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed the failure:\n{status}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, out) = canvass(&config, &["check-mail"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL token ") && out.contains("invalid_client"),
        "{out}"
    );
    let log = d.log();
    assert!(log.contains("invalid_client"), "{log}");
    // One line for the outage, not one per attempt.
    let warnings = log
        .lines()
        .filter(|l| l.contains("invalid_client") && !l.contains("DEBUG"))
        .count();
    assert!(warnings <= 2, "{warnings} lines:\n{log}");
    assert_no_secret("the daemon log", &log);
    assert!(d.alive(), "the daemon stopped:\n{log}");
    let (ok, _) = canvass(&config, &["status"]);
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_server_down_at_start_and_mid_run_loses_nothing() {
    let mail = stack();
    let oidc = OidcServer::start_for(&mail, &[client()], 15, 0);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &mail, &oidc, &Setup::default());
    let (a, b) = ("kontakt.a@kommune.test", "kontakt.b@kommune.test");
    mail.add_users(&[a, b]);

    // Down at start: the daemon runs, waits, and catches up.
    oidc.stop();
    let d = Running::start(&config, &dir.path().join("daemon.log"));
    cc(&mail, "while-down-at-start", &[a]);
    common::wait_for(
        "the daemon to report the outage",
        Duration::from_secs(30),
        || d.log().contains("token endpoint").then_some(()),
    );
    oidc.start();
    wait_invited(&mail, a, Duration::from_secs(90), &d).await;

    // Down mid-run, with the token expired (its `exp`, 15 s after issue,
    // which Dovecot checks against the real clock): a new session cannot log
    // in until the server is back; then nothing is lost.
    oidc.stop();
    oidc.wait_last_token_expired(Duration::from_secs(30));
    mail.restart_imap();
    cc(&mail, "while-down-mid-run", &[b]);
    // The daemon reports the second outage (one line), and invites nobody
    // meanwhile.
    common::wait_for(
        "the second outage to be logged",
        Duration::from_secs(60),
        || (d.log().matches("token endpoint unavailable").count() >= 2).then_some(()),
    );
    assert_eq!(invitations(&mail, b).await, 0, "invited without a token?");
    oidc.start();
    wait_invited(&mail, b, Duration::from_secs(120), &d).await;
    drop(d);
    assert_eq!(invitations(&mail, a).await, 1);
    assert_eq!(invitations(&mail, b).await, 1);
    // Two outages, one line each, however often the token was asked for.
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert_eq!(
        log.matches("token endpoint unavailable").count(),
        2,
        "{log}"
    );
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    assert!(
        warnings.len() <= 8,
        "a flood of {} warnings:\n{}",
        warnings.len(),
        warnings.join("\n")
    );
    assert_no_secret("the daemon log", &log);
}

/// 2-minute tokens across a run of several minutes: they expire and are
/// replaced mid-run (the IMAP server restarts after the first expired, so
/// the daemon must log in again; SMTP connections idle past a minute are
/// replaced), and every contact is invited exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_minute_tokens_expire_and_are_refreshed_across_a_long_run() {
    let mail = stack();
    let oidc = OidcServer::start_for(&mail, &[client()], 120, 0);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &mail, &oidc, &Setup::default());
    let d = Running::start(&config, &dir.path().join("daemon.log"));
    let started = Instant::now();
    let contacts: Vec<String> = (0..4).map(|i| format!("lang{i}@kommune.test")).collect();
    for c in &contacts {
        mail.add_user(c);
    }
    // At 0 s, ~70 s, ~135 s (after the first token expired and Dovecot
    // restarted) and ~200 s; the second consultant mail names contact 0
    // again.
    let at = [0u64, 70, 135, 200];
    for (i, c) in contacts.iter().enumerate() {
        while started.elapsed() < Duration::from_secs(at[i]) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if i == 2 {
            mail.restart_imap();
        }
        let mut to = vec![c.as_str()];
        if i == 1 {
            to.push(contacts[0].as_str());
        }
        cc(&mail, &format!("long-{i}"), &to);
        wait_invited(&mail, c, Duration::from_secs(60), &d).await;
    }
    let issued = oidc.log().matches("issued token to").count();
    assert!(
        issued >= 2,
        "only {issued} token(s) issued in {:?}:\n{}",
        started.elapsed(),
        oidc.log()
    );
    drop(d);
    for c in &contacts {
        assert_eq!(invitations(&mail, c).await, 1, "{c}");
    }
}

/// The server throttles (Postfix's real anvil rate limit: `450 4.7.1 Error:
/// too much mail from ...`): canvass slows down and retries; nothing is
/// failed, bounced or sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_server_slows_the_outbox_down_and_nothing_fails() {
    let mail = stack();
    mail.throttle_submission(4);
    let oidc = OidcServer::start_for(&mail, &[client()], 600, 0);
    let dir = tempfile::tempdir().unwrap();
    // One connection: four go, the fifth is throttled, waits, goes.
    let config = write_config(
        dir.path(),
        &mail,
        &oidc,
        &Setup {
            smtp: "pool_size = 1",
            ..Setup::default()
        },
    );
    let contacts: Vec<String> = (0..5).map(|i| format!("mange{i}@kommune.test")).collect();
    let refs: Vec<&str> = contacts.iter().map(String::as_str).collect();
    mail.add_users(&refs);
    let d = Running::start(&config, &dir.path().join("daemon.log"));
    cc(&mail, "many-at-once", &refs);
    for c in &contacts {
        wait_invited(&mail, c, Duration::from_secs(120), &d).await;
    }
    let log = d.log();
    assert!(log.contains("asks canvass to slow down"), "{log}");
    let (ok, status) = canvass(&config, &["status", "--json"]);
    assert!(ok, "{status}");
    let s: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(s["total"]["failed"], 0, "{status}");
    assert_eq!(s["total"]["sent"], 5, "{status}");
    drop(d);
    for c in &contacts {
        assert_eq!(invitations(&mail, c).await, 1, "{c}");
    }
}

/// Microsoft's recommended credential: a certificate whose key signs a
/// client assertion (RFC 7523) in Microsoft's request shape, accepted by the
/// real authorization server (`private_key_jwt`), then IMAP and SMTP with
/// the token. The `microsoft365` preset is pointed at the harness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_client_assertion_gets_a_token_and_logs_in() {
    let mail = stack();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oauth");
    let cert_client = Client {
        client_id: "canvass-certificate".into(),
        client_secret: String::new(),
        public_key_file: Some(fixtures.join("test-key.pub.pem")),
        mailbox: SURVEY.into(),
        service_account: false,
    };
    let oidc = OidcServer::start_for(&mail, &[cert_client], 600, 0);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures.join("test-cert.pem"),
        dir.path().join("entra-certificate.pem"),
    )
    .unwrap();
    std::fs::copy(
        fixtures.join("test-key.pem"),
        dir.path().join("entra-private-key.pem"),
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        &mail,
        &oidc,
        &Setup {
            mailbox: "provider = \"microsoft365\"\ntenant_id = \"contoso.onmicrosoft.com\"",
            credential: Some(
                "client_id = \"canvass-certificate\"\ncertificate_file = \"entra-certificate.pem\"\nprivate_key_file = \"entra-private-key.pem\"",
            ),
            smtp: "pool_size = 3",
            ..Setup::default()
        },
    );
    let (ok, out) = canvass(&config, &["check-mail"]);
    assert!(ok, "{out}\n{}", oidc.log());
    assert!(out.contains("all 8 checks passed"), "{out}");
    assert!(
        out.contains("AUTH XOAUTH2 as undersoegelse@siri.test accepted"),
        "{out}"
    );
    assert_no_secret("check-mail", &out);
}

/// Google's credential: a service-account key file whose key signs the JWT
/// bearer grant (RFC 7523 §2.1, `sub` = the survey mailbox, scope
/// `https://mail.google.com/`), exchanged at the real authorization server,
/// which verifies the assertion with the account's public key and issues a
/// token acting as the mailbox; then IMAP and SMTP with it. The `google`
/// preset is pointed at the harness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_service_account_jwt_bearer_grant_gets_a_token_and_logs_in() {
    let mail = stack();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oauth");
    let client_email = "canvass@siri-survey.iam.gserviceaccount.com";
    let service_account = Client {
        client_id: client_email.into(),
        client_secret: String::new(),
        public_key_file: Some(fixtures.join("test-key.pub.pem")),
        mailbox: SURVEY.into(),
        service_account: true,
    };
    let oidc = OidcServer::start_for(&mail, &[service_account], 600, 0);
    let dir = tempfile::tempdir().unwrap();
    // A key file in Google's JSON shape.
    let key_file = serde_json::json!({
        "type": "service_account",
        "project_id": "siri-survey",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": std::fs::read_to_string(fixtures.join("test-key.pem")).unwrap(),
        "client_email": client_email,
        "client_id": "109876543210987654321",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    std::fs::write(
        dir.path().join("google-service-account.json"),
        key_file.to_string(),
    )
    .unwrap();
    let google = |auth| Setup {
        mailbox: "provider = \"google\"",
        credential: Some("service_account_file = \"google-service-account.json\""),
        auth,
        ..Setup::default()
    };
    let config = write_config(dir.path(), &mail, &oidc, &google(""));
    let (ok, out) = canvass(&config, &["check-mail"]);
    assert!(ok, "{out}\n{}", oidc.log());
    assert!(out.contains("ok   token "), "{out}");
    assert!(out.contains("all 8 checks passed"), "{out}");
    assert!(
        out.contains("AUTH XOAUTH2 as undersoegelse@siri.test accepted"),
        "{out}"
    );
    assert_no_secret("check-mail", &out);
    assert!(
        oidc.log()
            .contains(&format!("issued token to {client_email}")),
        "{}",
        oidc.log()
    );

    // A mailbox not delegated to the account: the server refuses the grant.
    let config = write_config(
        dir.path(),
        &mail,
        &oidc,
        &google("login = \"anne.hansen@siri.test\""),
    );
    let (ok, out) = canvass(&config, &["check-mail"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL token ") && out.contains("invalid_grant"),
        "{out}\n{}",
        oidc.log()
    );
    assert_no_secret("check-mail", &out);
}
