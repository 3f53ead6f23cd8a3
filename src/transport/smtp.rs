//! SMTP through lettre's pooled async transport, over implicit TLS, STARTTLS
//! or (to loopback only, enforced by the config) plaintext.

use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{envelope, SendError, SendFuture, Transport};
use crate::config::{read_secret, SmtpConfig, TlsMode};

pub struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
    what: String,
}

impl SmtpTransport {
    pub fn new(cfg: &SmtpConfig) -> anyhow::Result<SmtpTransport> {
        let mut tls_builder = TlsParameters::builder(cfg.host.clone());
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| anyhow::anyhow!("outbound.smtp.ca_file {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("outbound.smtp.ca_file {}: {e}", ca.display()))?;
            tls_builder = tls_builder.add_root_certificate(cert);
        }
        let tls_params = tls_builder
            .build_rustls()
            .map_err(|e| anyhow::anyhow!("TLS setup for {}: {e}", cfg.host))?;
        let tls = match cfg.tls {
            TlsMode::Implicit => Tls::Wrapper(tls_params),
            TlsMode::Starttls => Tls::Required(tls_params),
            TlsMode::None => Tls::None,
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(cfg.timeout_seconds)))
            .pool_config(PoolConfig::new().max_size(cfg.pool_size));
        if let (Some(user), Some(pw_file)) = (&cfg.username, &cfg.password_file) {
            let pw = read_secret(pw_file).map_err(|e| {
                anyhow::anyhow!("outbound.smtp.password_file {}: {e}", pw_file.display())
            })?;
            b = b.credentials(Credentials::new(user.clone(), pw));
        }
        Ok(SmtpTransport {
            inner: b.build(),
            what: format!("smtp {}:{} ({:?})", cfg.host, cfg.port, cfg.tls),
        })
    }
}

/// 5xx is permanent; 4xx, refused connections and time-outs are transient.
fn classify_error(e: &lettre::transport::smtp::Error) -> SendError {
    let msg = e.to_string();
    if e.is_permanent() {
        SendError::permanent(msg)
    } else {
        SendError::transient(msg)
    }
}

impl Transport for SmtpTransport {
    fn send<'a>(&'a self, from: &'a str, to: &'a [String], raw: &'a [u8]) -> SendFuture<'a> {
        Box::pin(async move {
            let env = envelope(from, to)?;
            self.inner
                .send_raw(&env, raw)
                .await
                .map(|_| ())
                .map_err(|e| classify_error(&e))
        })
    }

    fn check(&self) -> SendFuture<'_> {
        Box::pin(async move {
            match self.inner.test_connection().await {
                Ok(true) => Ok(()),
                Ok(false) => Err(SendError::transient("the SMTP server did not answer NOOP")),
                Err(e) => Err(classify_error(&e)),
            }
        })
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}
