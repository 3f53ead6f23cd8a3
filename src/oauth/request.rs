//! Token requests, built field by field from the providers' documentation:
//!
//! - Microsoft identity platform, client-credentials flow
//!   (`learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow`):
//!   `POST https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token` with
//!   `client_id`, `scope=https://outlook.office365.com/.default`,
//!   `grant_type=client_credentials` and either `client_secret`, or
//!   `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
//!   and `client_assertion`: a JWT signed RS256 by the certificate's key,
//!   header `x5t#S256` (the certificate's SHA-256 thumbprint), claims `aud`
//!   (the token URL), `iss` = `sub` = client id, `jti`, `nbf`, `iat`, `exp`
//!   (`certificate-credentials`).
//! - Google, service account with domain-wide delegation
//!   (`developers.google.com/identity/protocols/oauth2/service-account`):
//!   `POST https://oauth2.googleapis.com/token` with
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and
//!   `assertion`: a JWT signed RS256 by the key file's private key, header
//!   `kid` = `private_key_id`, claims `iss` = `client_email`, `sub` = the
//!   mailbox, `scope=https://mail.google.com/`, `aud` = the token URL, `iat`,
//!   `exp` = `iat` + 1 hour at most.
//! - Anything else: RFC 6749 §4.4 with the secret in the form body.
//!
//! The JWTs are signed by `jsonwebtoken` (ring); nothing here is hand-made
//! crypto.

use std::fmt;
use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Credential, OAuthConfig, OAuthError};

pub const MICROSOFT_SCOPE: &str = "https://outlook.office365.com/.default";
pub const GOOGLE_SCOPE: &str = "https://mail.google.com/";
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long a signed assertion is valid (Google allows one hour at most).
const ASSERTION_LIFETIME_S: i64 = 600;

/// Microsoft's token endpoint for a tenant (id or verified domain).
pub fn microsoft_token_url(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
}

/// A form-encoded POST to the token endpoint. `Debug` shows the field names only.
pub struct TokenRequest {
    pub url: String,
    pub form: Vec<(&'static str, String)>,
}

impl TokenRequest {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `application/x-www-form-urlencoded` body.
    pub fn body(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.form {
            s.append_pair(k, v);
        }
        s.finish()
    }
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.form.iter().map(|(k, _)| *k).collect();
        f.debug_struct("TokenRequest")
            .field("url", &self.url)
            .field("fields", &names)
            .finish()
    }
}

/// The fields of a Google service-account key file that are used.
#[derive(Deserialize)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key_id: String,
    pub private_key: String,
    #[serde(default)]
    pub token_uri: Option<String>,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .finish_non_exhaustive()
    }
}

/// RFC 6749 §4.4 with a client secret (Microsoft's "first case").
pub fn client_secret(url: &str, client_id: &str, secret: &str, scope: &str) -> TokenRequest {
    TokenRequest {
        url: url.to_string(),
        form: vec![
            ("client_id", client_id.to_string()),
            ("scope", scope.to_string()),
            ("client_secret", secret.to_string()),
            ("grant_type", "client_credentials".to_string()),
        ],
    }
}

#[derive(Serialize, Deserialize, Debug)]
pub struct AssertionClaims {
    pub aud: String,
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub nbf: i64,
    pub iat: i64,
    pub exp: i64,
}

/// RFC 7523 §2.2 client assertion signed with a certificate's key
/// (Microsoft's "second case: access token request with a certificate").
pub fn client_assertion(
    url: &str,
    client_id: &str,
    scope: &str,
    certificate_der: &[u8],
    key: &EncodingKey,
    now: i64,
    jti: &str,
) -> Result<TokenRequest, jsonwebtoken::errors::Error> {
    use base64::Engine;
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.x5t_s256 = Some(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(certificate_der)),
    );
    let claims = AssertionClaims {
        aud: url.to_string(),
        iss: client_id.to_string(),
        sub: client_id.to_string(),
        jti: jti.to_string(),
        nbf: now,
        iat: now,
        exp: now + ASSERTION_LIFETIME_S,
    };
    let jwt = jsonwebtoken::encode(&header, &claims, key)?;
    Ok(TokenRequest {
        url: url.to_string(),
        form: vec![
            ("client_id", client_id.to_string()),
            ("scope", scope.to_string()),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_string()),
            ("client_assertion", jwt),
            ("grant_type", "client_credentials".to_string()),
        ],
    })
}

#[derive(Serialize, Deserialize, Debug)]
pub struct GoogleClaims {
    pub iss: String,
    pub sub: String,
    pub scope: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

/// RFC 7523 §2.1 JWT bearer grant for a Google service account acting as
/// `mailbox` (domain-wide delegation).
pub fn google_jwt_bearer(
    url: &str,
    sa: &ServiceAccountKey,
    mailbox: &str,
    scope: &str,
    now: i64,
) -> Result<TokenRequest, jsonwebtoken::errors::Error> {
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.kid = Some(sa.private_key_id.clone());
    let claims = GoogleClaims {
        iss: sa.client_email.clone(),
        sub: mailbox.to_string(),
        scope: scope.to_string(),
        aud: url.to_string(),
        iat: now,
        exp: now + ASSERTION_LIFETIME_S,
    };
    let key = EncodingKey::from_rsa_pem(sa.private_key.as_bytes())?;
    let jwt = jsonwebtoken::encode(&header, &claims, &key)?;
    Ok(TokenRequest {
        url: url.to_string(),
        form: vec![
            ("grant_type", JWT_BEARER_GRANT.to_string()),
            ("assertion", jwt),
        ],
    })
}

/// A random `jti` in GUID form.
fn new_jti() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn read(key: &'static str, path: &Path) -> Result<String, OAuthError> {
    crate::config::read_secret(path).map_err(|e| OAuthError::Credentials {
        key,
        path: path.display().to_string(),
        detail: e.to_string(),
    })
}

/// Reads the credential files and builds the request for `cfg` at `now`
/// (Unix seconds).
pub fn build(cfg: &OAuthConfig, now: i64) -> Result<TokenRequest, OAuthError> {
    match &cfg.credential {
        Credential::ClientSecret {
            client_id,
            secret_file,
        } => {
            let secret = read("auth.client_secret_file", secret_file)?;
            if secret.is_empty() || secret.contains(['\r', '\n']) {
                return Err(OAuthError::Credentials {
                    key: "auth.client_secret_file",
                    path: secret_file.display().to_string(),
                    detail: "is empty or has a line break inside the secret".into(),
                });
            }
            Ok(client_secret(
                &cfg.token_url,
                client_id,
                &secret,
                &cfg.scope,
            ))
        }
        Credential::Certificate {
            client_id,
            certificate_file,
            private_key_file,
        } => {
            let bad = |key: &'static str, path: &Path, detail: String| OAuthError::Credentials {
                key,
                path: path.display().to_string(),
                detail,
            };
            let cert_pem = read("auth.certificate_file", certificate_file)?;
            let der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
                .next()
                .and_then(|c| c.ok())
                .ok_or_else(|| {
                    bad(
                        "auth.certificate_file",
                        certificate_file,
                        "holds no PEM certificate".into(),
                    )
                })?;
            let key_pem = read("auth.private_key_file", private_key_file)?;
            let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).map_err(|e| {
                bad(
                    "auth.private_key_file",
                    private_key_file,
                    format!("not an RSA private key in PEM: {e}"),
                )
            })?;
            client_assertion(
                &cfg.token_url,
                client_id,
                &cfg.scope,
                der.as_ref(),
                &key,
                now,
                &new_jti(),
            )
            .map_err(|e| {
                bad(
                    "auth.private_key_file",
                    private_key_file,
                    format!("cannot sign: {e}"),
                )
            })
        }
        Credential::ServiceAccount { key_file } => {
            let text = read("auth.service_account_file", key_file)?;
            let bad = |detail: String| OAuthError::Credentials {
                key: "auth.service_account_file",
                path: key_file.display().to_string(),
                detail,
            };
            let sa: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
                bad(format!(
                    "not a Google service-account key (JSON with client_email, private_key_id, private_key): {e}"
                ))
            })?;
            google_jwt_bearer(&cfg.token_url, &sa, &cfg.login, &cfg.scope, now)
                .map_err(|e| bad(format!("cannot sign with its private_key: {e}")))
        }
    }
}

/// A successful token response (RFC 6749 §5.1). `expires_in` may be a
/// number or, from some endpoints, a string.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<serde_json::Value>,
}

impl TokenResponse {
    pub fn lifetime_seconds(&self) -> Option<u64> {
        match &self.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
    }
}

/// An error response (RFC 6749 §5.2).
#[derive(Deserialize, Debug)]
pub struct ErrorResponse {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// What an operator should do about an error code, per provider.
pub fn hint(provider: super::Provider, error: &str, description: &str) -> &'static str {
    use super::Provider::*;
    match (provider, error) {
        (Microsoft365, "invalid_client") if description.contains("AADSTS7000215") => {
            "the client secret is wrong: create a new one under Certificates & secrets and put it in auth.client_secret_file"
        }
        (Microsoft365, "invalid_client") if description.contains("AADSTS7000222") => {
            "the client secret has expired: create a new one under Certificates & secrets"
        }
        (Microsoft365, "unauthorized_client") | (Microsoft365, "invalid_client") => {
            "check auth.client_id and mailbox.tenant_id against the app registration in Entra ID, and that the app still exists"
        }
        (Microsoft365, "invalid_scope") => {
            "grant the IMAP.AccessAsApp and SMTP.SendAsApp application permissions with admin consent"
        }
        (Google, "unauthorized_client") => {
            "authorise the service account's client id for https://mail.google.com/ under domain-wide delegation in the Admin console"
        }
        (Google, "invalid_grant") => {
            "check that auth.login is a mailbox in the Workspace domain and the service-account key is still active"
        }
        (_, "invalid_client") => {
            "the identity provider does not know this client or its secret: check auth.client_id and the secret file, or whether the client was revoked"
        }
        (_, "invalid_scope") => "check auth.scope",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    const KEY: &str = include_str!("../../tests/fixtures/oauth/test-key.pem");
    const PUB: &str = include_str!("../../tests/fixtures/oauth/test-key.pub.pem");
    const CERT: &str = include_str!("../../tests/fixtures/oauth/test-cert.pem");

    fn form(r: &TokenRequest) -> Vec<(&str, &str)> {
        r.form.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    #[test]
    fn microsoft_client_secret_request_is_as_documented() {
        let url = microsoft_token_url("contoso.onmicrosoft.com");
        assert_eq!(
            url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        let r = client_secret(
            &url,
            "535fb089-9ff3-47b6-9bfb-4f1264799865",
            "sampleCredentia1s",
            MICROSOFT_SCOPE,
        );
        assert_eq!(
            form(&r),
            [
                ("client_id", "535fb089-9ff3-47b6-9bfb-4f1264799865"),
                ("scope", "https://outlook.office365.com/.default"),
                ("client_secret", "sampleCredentia1s"),
                ("grant_type", "client_credentials"),
            ]
        );
        assert_eq!(
            r.body(),
            "client_id=535fb089-9ff3-47b6-9bfb-4f1264799865&scope=https%3A%2F%2Foutlook.office365.com%2F.default&client_secret=sampleCredentia1s&grant_type=client_credentials"
        );
        assert!(!format!("{r:?}").contains("sampleCredentia1s"));
    }

    #[test]
    fn microsoft_certificate_assertion_is_as_documented() {
        let url = microsoft_token_url("tenant-id");
        let key = EncodingKey::from_rsa_pem(KEY.as_bytes()).unwrap();
        let der = rustls_pemfile::certs(&mut CERT.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let r = client_assertion(
            &url,
            "app-id",
            MICROSOFT_SCOPE,
            der.as_ref(),
            &key,
            1_700_000_000,
            "jti-1",
        )
        .unwrap();
        let names: Vec<&str> = r.form.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "client_id",
                "scope",
                "client_assertion_type",
                "client_assertion",
                "grant_type"
            ]
        );
        assert_eq!(
            r.field("client_assertion_type"),
            Some(CLIENT_ASSERTION_TYPE)
        );
        assert_eq!(r.field("grant_type"), Some("client_credentials"));
        let jwt = r.field("client_assertion").unwrap();
        let header = jsonwebtoken::decode_header(jwt).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        use base64::Engine;
        let thumb =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(der.as_ref()));
        assert_eq!(header.x5t_s256.as_deref(), Some(thumb.as_str()));
        // Signed by the certificate's key: verifies with its public key.
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[url.as_str()]);
        v.validate_exp = false;
        v.validate_nbf = false;
        let claims = jsonwebtoken::decode::<AssertionClaims>(
            jwt,
            &DecodingKey::from_rsa_pem(PUB.as_bytes()).unwrap(),
            &v,
        )
        .unwrap()
        .claims;
        assert_eq!(
            (claims.iss.as_str(), claims.sub.as_str()),
            ("app-id", "app-id")
        );
        assert_eq!(claims.jti, "jti-1");
        assert_eq!(
            (claims.nbf, claims.iat, claims.exp),
            (1_700_000_000, 1_700_000_000, 1_700_000_600)
        );
    }

    #[test]
    fn google_service_account_grant_is_as_documented() {
        let sa = ServiceAccountKey {
            client_email: "canvass@project.iam.gserviceaccount.com".into(),
            private_key_id: "abc123".into(),
            private_key: KEY.into(),
            token_uri: None,
        };
        let r = google_jwt_bearer(
            GOOGLE_TOKEN_URL,
            &sa,
            "survey@agency.dk",
            GOOGLE_SCOPE,
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(r.url, "https://oauth2.googleapis.com/token");
        assert_eq!(
            r.field("grant_type"),
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        );
        let jwt = r.field("assertion").unwrap();
        let header = jsonwebtoken::decode_header(jwt).unwrap();
        assert_eq!(header.kid.as_deref(), Some("abc123"));
        assert_eq!(header.alg, Algorithm::RS256);
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[GOOGLE_TOKEN_URL]);
        v.validate_exp = false;
        let c = jsonwebtoken::decode::<GoogleClaims>(
            jwt,
            &DecodingKey::from_rsa_pem(PUB.as_bytes()).unwrap(),
            &v,
        )
        .unwrap()
        .claims;
        assert_eq!(c.iss, "canvass@project.iam.gserviceaccount.com");
        assert_eq!(c.sub, "survey@agency.dk");
        assert_eq!(c.scope, "https://mail.google.com/");
        assert!(c.exp - c.iat <= 3600);
        assert!(!format!("{sa:?}").contains("PRIVATE"));
    }

    #[test]
    fn expires_in_is_read_as_number_or_string() {
        let a: TokenResponse =
            serde_json::from_str(r#"{"access_token":"t","expires_in":3599}"#).unwrap();
        let b: TokenResponse =
            serde_json::from_str(r#"{"access_token":"t","expires_in":"3599"}"#).unwrap();
        assert_eq!(a.lifetime_seconds(), Some(3599));
        assert_eq!(b.lifetime_seconds(), Some(3599));
    }
}
