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

/// A token's 22 characters (base64url of 128 bits).
const CORE_CHARS: usize = 22;
/// A link's invitation id after the token: 8 bytes big-endian, base64url.
const ID_CHARS: usize = 11;

/// What a link is looked up by: the token's hash, and the invitation id the
/// link carries (store schema 2; a link of an earlier schema carries none
/// and is found through the store's `tokens` index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkKey {
    pub hash: TokenHash,
    pub invitation: Option<u64>,
}

impl From<&LinkKey> for LinkKey {
    fn from(key: &LinkKey) -> LinkKey {
        *key
    }
}

impl From<&TokenHash> for LinkKey {
    fn from(hash: &TokenHash) -> LinkKey {
        LinkKey {
            hash: *hash,
            invitation: None,
        }
    }
}

impl From<&Token> for LinkKey {
    fn from(token: &Token) -> LinkKey {
        LinkKey {
            hash: token.hash(),
            invitation: token.invitation_id(),
        }
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

    /// The link of invitation `id`: the token with the id after it, so
    /// that the store finds the invitation without an index of tokens.
    pub fn for_invitation(&self, id: u64) -> Token {
        Token(format!(
            "{}{}",
            self.core(),
            URL_SAFE_NO_PAD.encode(id.to_be_bytes())
        ))
    }

    /// The invitation id the link carries, if it carries one.
    pub fn invitation_id(&self) -> Option<u64> {
        let suffix = self.0.get(CORE_CHARS..).filter(|s| s.len() == ID_CHARS)?;
        let bytes = URL_SAFE_NO_PAD.decode(suffix).ok()?;
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }

    fn core(&self) -> &str {
        self.0.get(..CORE_CHARS).unwrap_or(&self.0)
    }

    /// Accepts a token from a URL if it has the right shape (a token, or a
    /// token with an invitation id); anything else is no token.
    pub fn from_url(s: &str) -> Option<Token> {
        let decodes_to = |part: &str, n: usize| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map(|b| b.len() == n)
                .unwrap_or(false)
        };
        let ok = match (s.get(..CORE_CHARS), s.get(CORE_CHARS..)) {
            (Some(core), Some("")) => decodes_to(core, 16),
            (Some(core), Some(id)) => {
                id.len() == ID_CHARS && decodes_to(core, 16) && decodes_to(id, 8)
            }
            _ => false,
        };
        ok.then(|| Token(s.to_string()))
    }

    /// The token as it appears in the link (with the invitation id, if any).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the token (never of the invitation id a link adds).
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.core().as_bytes()).into())
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
        let t = Token::generate().for_invitation(7);
        assert_eq!(Token::from_url(&t.as_str()[..30]), None);
        assert_eq!(Token::from_url(&format!("{}..", t.as_str())), None);
    }

    #[test]
    fn a_link_carries_its_invitation_and_hashes_as_its_token() {
        let t = Token::generate();
        let link = t.for_invitation(0x0123_4567_89ab_cdef);
        assert_eq!(link.as_str().len(), 33);
        assert!(link.as_str().starts_with(t.as_str()));
        assert_eq!(Token::from_url(link.as_str()), Some(link.clone()));
        assert_eq!(link.invitation_id(), Some(0x0123_4567_89ab_cdef));
        assert_eq!(t.invitation_id(), None);
        assert_eq!(link.hash(), t.hash());
        assert_eq!(link.for_invitation(3).invitation_id(), Some(3));
        assert_eq!(
            LinkKey::from(&link),
            LinkKey {
                hash: t.hash(),
                invitation: Some(0x0123_4567_89ab_cdef)
            }
        );
    }
}
