//! Personal survey tokens: URL-safe in the link, only their SHA-256 in the store.
//!
//! A token is derived, not stored: 128 bits from the OS RNG (the *nonce*, kept
//! with the invitation) go through HMAC-SHA256 under the secret key that lives
//! outside the database, truncated to 128 bits. The store alone therefore
//! holds nothing that opens a link, yet canvass can write the same link again
//! in a reminder. Without the key the nonce is useless.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A token as it appears in the link. Never logged, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// What the store keeps of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TokenHash(pub [u8; 32]);

/// The random half of a token, stored with the invitation.
#[derive(Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenNonce(pub [u8; 16]);

impl std::fmt::Debug for TokenNonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenNonce(..)")
    }
}

impl TokenNonce {
    /// 128 bits from the OS RNG.
    pub fn generate() -> TokenNonce {
        TokenNonce::from_rng(&mut rand::rngs::OsRng)
    }

    /// 128 bits from the caller's `rng` (the planner takes its randomness
    /// in: `apply::plan`; production passes the OS RNG).
    pub fn from_rng(rng: &mut dyn RngCore) -> TokenNonce {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        TokenNonce(bytes)
    }
}

impl Token {
    /// The token for `nonce` under `key`: base64url, 22 characters.
    pub fn derive(key: &crate::address::HmacKey, nonce: &TokenNonce) -> Token {
        let mac = key.mac(b"token:", &nonce.0);
        Token(URL_SAFE_NO_PAD.encode(&mac.0[..16]))
    }

    /// A fresh token from a fresh nonce (for tests and tools).
    pub fn generate() -> Token {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Token(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts a token from a URL if it has the right shape; anything else is no token.
    pub fn from_url(s: &str) -> Option<Token> {
        let ok = s.len() == 22
            && URL_SAFE_NO_PAD
                .decode(s)
                .map(|b| b.len() == 16)
                .unwrap_or(false);
        ok.then(|| Token(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_urlsafe_and_hashed() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 22);
        assert!(a
            .as_str()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(Token::from_url(a.as_str()), Some(a.clone()));
        assert_eq!(a.hash(), a.clone().hash());
        assert_ne!(a.hash(), b.hash());
        assert!(format!("{a:?}").contains(".."));
    }

    #[test]
    fn derived_tokens_need_the_key() {
        let k1 = crate::address::HmacKey::from_bytes(&[1; 32]);
        let k2 = crate::address::HmacKey::from_bytes(&[2; 32]);
        let n = TokenNonce::generate();
        assert_eq!(Token::derive(&k1, &n), Token::derive(&k1, &n));
        assert_ne!(Token::derive(&k1, &n), Token::derive(&k2, &n));
        assert_ne!(
            Token::derive(&k1, &n),
            Token::derive(&k1, &TokenNonce::generate())
        );
        let t = Token::derive(&k1, &n);
        assert_eq!(Token::from_url(t.as_str()), Some(t));
    }

    #[test]
    fn malformed_tokens_are_no_tokens() {
        assert_eq!(Token::from_url(""), None);
        assert_eq!(Token::from_url("../../etc/passwd"), None);
        assert_eq!(Token::from_url("AAAAAAAAAAAAAAAAAAAAA"), None);
    }
}
