//! TLS client set-up shared by the IMAP source and the SMTP transport:
//! rustls with the ring provider, the webpki roots plus an optional CA file.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;

/// A client configuration trusting the webpki roots and every certificate in
/// `ca_file`; `setting` names the config key in errors.
pub fn client_config(
    ca_file: Option<&Path>,
    setting: &str,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let what = format!("{setting} {}", path.display());
        let pem = std::fs::read(path).map_err(|e| format!("{what}: {e}"))?;
        let mut found = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("{what}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("{what}: unusable certificate: {e}"))?;
            found += 1;
        }
        if found == 0 {
            return Err(format!("{what}: no PEM certificate in the file"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
