//! A real OAuth 2.0 authorization server for the tests: npm `oidc-provider`
//! (pinned by tests/oidc/package-lock.json, installed by
//! scripts/install-test-deps) run by tests/oidc/server.mjs with Node, on a
//! loopback port, in client-credentials mode (and the JWT bearer grant for a
//! Google service account), issuing RS256 JWT access tokens (RFC 9068). Its
//! signing key is made here; the public half goes to the
//! [`super::MailStack`]'s Dovecot, which validates the tokens locally.
//!
//! * [`OidcServer::stop`] / [`OidcServer::start`]: the token endpoint down
//!   and back (same port, same key).
//! * [`OidcServer::revoke`]: the client is removed and the server restarted:
//!   its token requests get `invalid_client`; tokens already issued stay
//!   valid until they expire (Dovecot validates them offline, as Exchange
//!   does until expiry).
//! * Token lifetime and padding (an extra claim, for tokens over 2 KB) are
//!   chosen at start.
//! * Killed on drop (its own process group).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::os;

/// The key id in the tokens' header (Dovecot's key file name).
pub const KID: &str = "canvass-harness-1";

/// A client of the authorization server.
#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: String,
    /// Empty: the client authenticates with a signed assertion instead,
    /// verified with the public key in `public_key_file`.
    pub client_secret: String,
    pub public_key_file: Option<PathBuf>,
    /// The mailbox the token logs in to (its `email` claim).
    pub mailbox: String,
    /// A Google service account (`client_id` = its `client_email`, its key's
    /// public half in `public_key_file`): it uses the JWT bearer grant
    /// (RFC 7523 §2.1), and its token acts as the assertion's `sub`, which
    /// must be `mailbox`.
    pub service_account: bool,
}

pub struct OidcServer {
    dir: tempfile::TempDir,
    port: u16,
    ttl_seconds: u64,
    pad_bytes: usize,
    clients: Mutex<Vec<Client>>,
    child: Mutex<Option<Child>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

impl OidcServer {
    /// Starts the server for `clients`, installs its public key in `mail`'s
    /// Dovecot, and returns once it accepts connections. Tokens live
    /// `ttl_seconds`; `pad_bytes` of extra claim make them longer.
    pub fn start_for(
        mail: &super::MailStack,
        clients: &[Client],
        ttl_seconds: u64,
        pad_bytes: usize,
    ) -> OidcServer {
        assert!(
            script_dir().join("node_modules/oidc-provider").exists(),
            "tests/oidc/node_modules is missing: run scripts/install-test-deps"
        );
        let dir = tempfile::Builder::new()
            .prefix("canvass-oidc-")
            .tempdir()
            .expect("temp dir for the OIDC server");
        let key = dir.path().join("key.pem");
        run_openssl(&["genrsa", "-out", path_str(&key), "2048"]);
        let public = dir.path().join("key.pub.pem");
        run_openssl(&[
            "rsa",
            "-in",
            path_str(&key),
            "-pubout",
            "-out",
            path_str(&public),
        ]);
        mail.install_oauth_key(KID, &std::fs::read(&public).expect("read the public key"));
        let port = os::reserve_ports(1)[0];
        let server = OidcServer {
            dir,
            port,
            ttl_seconds,
            pad_bytes,
            clients: Mutex::new(clients.to_vec()),
            child: Mutex::new(None),
        };
        server.start();
        server
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server again (after [`Self::stop`]); idempotent.
    pub fn start(&self) {
        if lock(&self.child).is_some() {
            return;
        }
        let settings = self.dir.path().join("settings.json");
        let clients: Vec<serde_json::Value> = lock(&self.clients)
            .iter()
            .map(|c| {
                serde_json::json!({
                    "client_id": c.client_id,
                    "client_secret": (!c.client_secret.is_empty()).then_some(&c.client_secret),
                    "public_key_file": c.public_key_file,
                    "mailbox": c.mailbox,
                    "service_account": c.service_account,
                })
            })
            .collect();
        let json = serde_json::json!({
            "port": self.port,
            "issuer": format!("http://127.0.0.1:{}", self.port),
            "key_file": self.dir.path().join("key.pem"),
            "kid": KID,
            "ttl_seconds": self.ttl_seconds,
            "pad_bytes": self.pad_bytes,
            "clients": clients,
        });
        std::fs::write(&settings, json.to_string()).expect("write the OIDC settings");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.dir.path().join("server.log");
            let stderr = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("open the OIDC log");
            let mut child = Command::new("node")
                .arg(script_dir().join("server.mjs"))
                .arg(&settings)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stderr)
                .process_group(0)
                .spawn()
                .expect("start node (is Node.js installed?)");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            if line.starts_with("listening") {
                *lock(&self.child) = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            // The port may still be held by the previous process.
            assert!(
                Instant::now() < deadline,
                "the OIDC server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server: the token endpoint refuses connections.
    pub fn stop(&self) {
        if let Some(mut child) = lock(&self.child).take() {
            // (node has no children of its own: its pid is enough.)
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Removes `client_id` (a revoked app registration) and restarts.
    pub fn revoke(&self, client_id: &str) {
        lock(&self.clients).retain(|c| c.client_id != client_id);
        self.stop();
        self.start();
    }

    /// The server's log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The `exp` (Unix seconds) of the last token issued, from the log.
    pub fn last_token_exp(&self) -> Option<u64> {
        self.log()
            .lines()
            .filter(|l| l.starts_with("issued token to "))
            .filter_map(|l| l.rsplit_once(" exp=")?.1.trim().parse().ok())
            .next_back()
    }

    /// Waits until the last token issued has expired by the real clock (as
    /// Dovecot checks `exp`): once the Unix time is past its `exp`. Panics
    /// if none was issued or it is not past within `within`.
    pub fn wait_last_token_expired(&self, within: Duration) {
        let exp = self
            .last_token_exp()
            .unwrap_or_else(|| panic!("no token issued:\n{}", self.log()));
        let deadline = Instant::now() + within;
        while std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
            <= exp
        {
            assert!(
                Instant::now() < deadline,
                "the token expiring at {exp} was not expired within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OidcServer {
    fn drop(&mut self) {
        self.stop();
        os::release_ports(&[self.port]);
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn run_openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
