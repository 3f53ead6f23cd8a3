//! Fixtures shared by the unit tests that drive the loops without servers
//! (`ingest::tests`, `outbox::tests`): a pipeline configured as the demo
//! (config/demo.toml), its store and key in a temp dir.

use std::path::Path;

use crate::config::Config;
use crate::pipeline::Pipeline;

/// The demo's config, copied into `dir/conf` (its `../var` paths then point
/// into `dir`) with `sending` added to its `[sending]`, opened as a pipeline.
pub(crate) fn demo_pipeline(dir: &Path, sending: &str) -> Pipeline {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).expect("conf dir");
    for f in ["demo.toml", "survey.da.toml", "survey.en.toml"] {
        std::fs::copy(root.join(f), conf.join(f)).expect("copy the demo config");
    }
    let demo = std::fs::read_to_string(conf.join("demo.toml")).expect("demo.toml");
    assert!(
        demo.contains("\n[sending]\n"),
        "the demo has a [sending] table"
    );
    let demo = demo.replace("\n[sending]\n", &format!("\n[sending]\n{sending}\n"));
    std::fs::write(conf.join("demo.toml"), demo).expect("write demo.toml");
    let cfg = Config::load(&conf.join("demo.toml")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.join("var")).expect("var dir");
    crate::address::generate_key_file(&cfg.hmac_key_file).expect("the key");
    Pipeline::open_offline(cfg).expect("open the pipeline")
}

/// A consultant (Sjælland) CCs the survey address, naming `contact`.
pub(crate) fn cc_trigger(message_id: &str, contact: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{message_id}>\r\nDate: Wed, 25 Nov 2026 10:12:00 +0100\r\nFrom: Anne Hansen <anne.hansen@siri.dk>\r\nTo: {contact}\r\nCc: undersoegelse@siri.dk\r\nSubject: Opfølgning\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHej, tak for samtalen.\r\n"
    )
    .into_bytes()
}

/// A token endpoint for unit tests (a test double; the integration tests in
/// tests/it/oauth.rs use the real oidc-provider): answers the `n`-th POST
/// (from 1) with `answer(n)` = (HTTP status, JSON body), and counts them.
pub(crate) struct TokenEndpoint {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenEndpoint {
    pub(crate) fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A generic client-secret configuration for this endpoint, logging in
    /// as `login`; the secret file goes in `dir`.
    pub(crate) fn config(
        &self,
        dir: &Path,
        login: &str,
        mechanism: crate::oauth::Mechanism,
    ) -> crate::oauth::OAuthConfig {
        let secret_file = dir.join("client-secret");
        std::fs::write(&secret_file, "unit-test-client-secret").expect("write the secret");
        crate::oauth::OAuthConfig {
            provider: crate::oauth::Provider::Generic,
            mechanism,
            login: login.into(),
            token_url: self.url.clone(),
            scope: "mail".into(),
            credential: crate::oauth::Credential::ClientSecret {
                client_id: "unit-test".into(),
                secret_file,
            },
        }
    }
}

/// Starts a [`TokenEndpoint`] on a loopback port.
pub(crate) async fn token_endpoint(
    answer: impl Fn(usize) -> (u16, String) + Send + Sync + 'static,
) -> TokenEndpoint {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the token endpoint");
    let url = format!(
        "http://{}/token",
        listener.local_addr().expect("its address")
    );
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (count, answer) = (count.clone(), answer.clone());
            tokio::spawn(async move {
                let mut r = BufReader::new(sock);
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).await.is_err() {
                    return;
                }
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let (status, json) = answer(n);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                );
                let _ = r.get_mut().write_all(reply.as_bytes()).await;
                let _ = r.get_mut().shutdown().await;
            });
        }
    });
    TokenEndpoint { url, requests }
}

/// A token response: `tok-<n>`, valid an hour.
pub(crate) fn token_number(n: usize) -> (u16, String) {
    (
        200,
        format!(r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":3600}}"#),
    )
}

/// A SASL response line as the server read it, decoded.
pub(crate) fn sasl_line(line: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line.trim_end())
        .expect("a base64 line");
    String::from_utf8(bytes).expect("UTF-8")
}

/// Google's documented error challenge (base64 of its JSON), after a
/// refused token.
pub(crate) const GOOGLE_ERROR_CHALLENGE: &str = "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==";
