//! SASL responses carrying a bearer token (pure): Google's and Microsoft's
//! XOAUTH2 and RFC 7628 OAUTHBEARER. Both are sent in reply to the server's
//! `+` / `334` prompt, never on the command line (tokens run past 2 KB; IMAP
//! servers and Postfix cap command lines, Gmail answers 555).

use std::fmt;

use super::{AccessToken, Mechanism};

/// A SASL response holding a token: redacted in `Debug`.
pub struct SaslResponse(Vec<u8>);

impl SaslResponse {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// The base64 line sent to the server.
    pub fn base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }
}

impl fmt::Debug for SaslResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SaslResponse(<{} bytes redacted>)", self.0.len())
    }
}

/// The initial response for `mechanism`: `user` is the mailbox; `host` and
/// `port` are the server's (OAUTHBEARER carries them).
pub fn initial_response(
    mechanism: Mechanism,
    user: &str,
    host: &str,
    port: u16,
    token: &AccessToken,
) -> SaslResponse {
    match mechanism {
        Mechanism::Xoauth2 => xoauth2(user, token),
        Mechanism::Oauthbearer => oauthbearer(user, host, port, token),
    }
}

/// `user=<user>^Aauth=Bearer <token>^A^A` (Google's and Microsoft's docs).
pub fn xoauth2(user: &str, token: &AccessToken) -> SaslResponse {
    SaslResponse(format!("user={user}\x01auth=Bearer {}\x01\x01", token.expose()).into_bytes())
}

/// RFC 7628 §3.1: the GS2 header `n,a=<saslname>,` then key=value pairs
/// separated by ^A: `host`, `port`, `auth`, and a final ^A.
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &AccessToken) -> SaslResponse {
    SaslResponse(
        format!(
            "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
            saslname(user),
            token.expose()
        )
        .into_bytes(),
    )
}

/// RFC 5801 saslname: `,` and `=` escaped as `=2C` and `=3D`.
fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// The server's error challenge after a refused token (a JSON object with
/// `status`, `schemes`, `scope`, RFC 7628 §3.2.2), as a short text for the
/// operator. Anything else is shown as text, cut short.
pub fn error_challenge_text(challenge: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Challenge {
        status: Option<serde_json::Value>,
        scope: Option<String>,
    }
    let challenge = if let Ok(decoded) = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(challenge.trim_ascii())
    } {
        decoded
    } else {
        challenge.to_vec()
    };
    match serde_json::from_slice::<Challenge>(&challenge) {
        Ok(c) => {
            let status = match c.status {
                Some(serde_json::Value::String(s)) => s,
                Some(v) => v.to_string(),
                None => "unknown".into(),
            };
            match c.scope {
                Some(scope) if !scope.is_empty() => {
                    format!("token refused (status {status}, scope {scope})")
                }
                _ => format!("token refused (status {status})"),
            }
        }
        Err(_) => {
            let text: String = String::from_utf8_lossy(&challenge)
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            if text.is_empty() {
                "token refused".into()
            } else {
                format!("token refused: {text}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> AccessToken {
        AccessToken::new("ya29.tok".into())
    }

    #[test]
    fn xoauth2_is_user_and_bearer_separated_by_ctrl_a() {
        let r = xoauth2("survey@siri.dk", &token());
        assert_eq!(
            r.as_bytes(),
            b"user=survey@siri.dk\x01auth=Bearer ya29.tok\x01\x01"
        );
        // Google's documented example encodes the same shape.
        let g = xoauth2(
            "someuser@example.com",
            &AccessToken::new("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg".into()),
        );
        assert_eq!(
            g.base64(),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn oauthbearer_follows_rfc_7628() {
        let r = oauthbearer("user@example.com", "server.example.com", 143, &token());
        assert_eq!(
            r.as_bytes(),
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer ya29.tok\x01\x01"
        );
        let e = oauthbearer("a,b=c@x", "h", 1, &token());
        assert!(e.as_bytes().starts_with(b"n,a=a=2Cb=3Dc@x,\x01"));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let r = xoauth2("u", &token());
        assert!(!format!("{r:?}").contains("ya29"));
        assert!(!format!("{:?}", token()).contains("ya29"));
    }

    #[test]
    fn error_challenges_are_read() {
        // Google's documented failure challenge (base64 of the JSON).
        assert_eq!(
            error_challenge_text(b"eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="),
            "token refused (status 401, scope https://mail.google.com/)"
        );
        assert_eq!(
            error_challenge_text(br#"{"status":"invalid_token","schemes":"bearer"}"#),
            "token refused (status invalid_token)"
        );
        assert_eq!(error_challenge_text(b""), "token refused");
    }
}
