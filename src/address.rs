//! Email addresses as canvass compares them: trimmed, lower-cased, validated.
//!
//! Two spellings of one mailbox (`Anne@Kommune.DK `, `anne@kommune.dk`) are the
//! same [`Address`]; de-duplication in the store goes one step further and keys
//! on an HMAC of it ([`crate::address::AddressKey`]), so the store never needs the
//! plain address to know whether somebody was invited.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A normalised, syntactically valid address (`local@domain`, lower case).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Address(String);

/// Why a string is not an address canvass will write to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("it is empty")]
    Empty,
    #[error("it has no @")]
    NoAt,
    #[error("the part before @ is empty")]
    EmptyLocal,
    #[error("a quoted local part (\"...\"@) is not accepted")]
    Quoted,
    #[error("the part before @ contains {0:?}")]
    BadLocalChar(char),
    #[error("the domain {0:?} is not a domain name with a dot")]
    BadDomain(String),
    #[error("the domain {0:?} is this machine (localhost), not a mailbox elsewhere")]
    Localhost(String),
    #[error("the domain {0:?} is an IP address; write the mailbox's domain name instead")]
    IpLiteral(String),
    #[error("the domain {0:?} is not a valid international domain name")]
    BadIdn(String),
    #[error("it is longer than 254 characters")]
    TooLong,
}

impl Address {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or("")
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Normalises and validates one address: trims whitespace and angle brackets,
/// lower-cases it (canvass treats addresses case-insensitively, as every mail
/// system the agency meets does), and checks a conservative syntax.
pub fn parse(s: &str) -> Result<Address, AddressError> {
    let s = s
        .trim()
        .trim_start_matches("mailto:")
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    if s.len() > 254 {
        return Err(AddressError::TooLong);
    }
    if s.starts_with('"') {
        return Err(AddressError::Quoted);
    }
    let (local, domain) = s.rsplit_once('@').ok_or(AddressError::NoAt)?;
    if local.is_empty() {
        return Err(AddressError::EmptyLocal);
    }
    if let Some(c) = local.chars().find(|c| !is_atext(*c) && *c != '.') {
        return Err(AddressError::BadLocalChar(c));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(AddressError::BadLocalChar('.'));
    }
    let domain = domain.trim_end_matches('.').to_lowercase();
    if domain.starts_with('[') || domain.parse::<std::net::IpAddr>().is_ok() {
        return Err(AddressError::IpLiteral(domain));
    }
    // IDNA: `bølle.dk` and `xn--blle-gra.dk` are one mailbox, so the store
    // keys them as one (the ASCII form). ASCII domains are left exactly as
    // before, so their HMACs, and the stores holding them, stay valid.
    let domain = if domain.is_ascii() {
        domain
    } else {
        idna::domain_to_ascii(&domain).map_err(|_| AddressError::BadIdn(domain.clone()))?
    };
    if domain == "localhost" || domain.ends_with(".localhost") {
        return Err(AddressError::Localhost(domain));
    }
    let labels_ok = domain.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    // A single label (`user@intranet`) is no domain on the internet; an
    // all-numeric top label is an IPv4 address in disguise (`127.1`).
    let top_numeric = domain
        .rsplit('.')
        .next()
        .is_some_and(|t| t.chars().all(|c| c.is_ascii_digit()));
    if !labels_ok || !domain.contains('.') || top_numeric {
        return Err(AddressError::BadDomain(domain));
    }
    Ok(Address(format!("{}@{}", local.to_lowercase(), domain)))
}

fn is_atext(c: char) -> bool {
    c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// The keyed hash of a normalised address: what the store de-duplicates on.
///
/// HMAC-SHA256 under a secret that lives outside the database, so a copy of the
/// store alone does not reveal who was invited, and addresses can be erased
/// (retention) while de-duplication keeps working.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct AddressKey(pub [u8; 32]);

/// The HMAC secret, read once at start.
#[derive(Clone)]
pub struct HmacKey(Vec<u8>);

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

/// Why the HMAC key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the HMAC key file {path}: {source}; create it with `canvass keygen --out {path}` (mode 0600)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the HMAC key file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    WorldReadable { path: String, mode: u32 },
    #[error("the HMAC key file {path} holds {len} bytes; it needs at least 32 (generate one with `canvass keygen`)")]
    TooShort { path: String, len: usize },
}

impl HmacKey {
    pub fn from_bytes(bytes: &[u8]) -> HmacKey {
        HmacKey(bytes.to_vec())
    }

    /// Loads the key, refusing a missing, short or world-readable file.
    pub fn load(path: &std::path::Path) -> Result<HmacKey, KeyError> {
        let p = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| KeyError::Read {
            path: p.clone(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o004 != 0 {
                return Err(KeyError::WorldReadable { path: p, mode });
            }
        }
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: p.clone(),
            source,
        })?;
        let trimmed: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if trimmed.len() < 32 {
            return Err(KeyError::TooShort {
                path: p,
                len: trimmed.len(),
            });
        }
        Ok(HmacKey(trimmed))
    }

    pub fn key_of(&self, addr: &Address) -> AddressKey {
        self.mac(b"address:", addr.as_str().as_bytes())
    }

    /// A keyed hash for other identifiers (consultants' daily caps).
    pub fn mac(&self, domain: &[u8], data: &[u8]) -> AddressKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(domain);
        mac.update(data);
        AddressKey(mac.finalize().into_bytes().into())
    }
}

/// Writes a fresh random key (64 hex characters) to `path`, mode 0600.
pub fn generate_key_file(path: &std::path::Path) -> std::io::Result<()> {
    use rand::RngCore;
    use std::io::Write;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    writeln!(f, "{}", hex::encode(bytes))?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_space() {
        assert_eq!(
            parse("  Anne.Hansen@Kommune.DK ").unwrap().as_str(),
            "anne.hansen@kommune.dk"
        );
        assert_eq!(parse("<b@x.dk>").unwrap().as_str(), "b@x.dk");
    }

    #[test]
    fn refuses_what_it_cannot_send_to() {
        assert_eq!(parse("\"a@b\"@c"), Err(AddressError::Quoted));
        assert_eq!(parse("nobody"), Err(AddressError::NoAt));
        assert!(matches!(parse("a@b"), Err(AddressError::BadDomain(_))));
        assert!(matches!(
            parse("a b@x.dk"),
            Err(AddressError::BadLocalChar(' '))
        ));
        assert_eq!(parse(""), Err(AddressError::Empty));
    }

    /// Issue 14, item 9: both spellings of one IDN mailbox were invited, and
    /// so were `user@localhost` and `user@127.0.0.1`.
    #[test]
    fn idn_domains_are_one_mailbox_and_local_hosts_are_refused() {
        let u = parse("idn@Bølle.dk").unwrap();
        assert_eq!(u.as_str(), "idn@xn--blle-gra.dk");
        assert_eq!(parse("idn@xn--blle-gra.dk").unwrap(), u);
        let k = HmacKey::from_bytes(&[1; 32]);
        assert_eq!(
            k.key_of(&u),
            k.key_of(&parse("IDN@XN--BLLE-GRA.DK").unwrap())
        );
        for (a, want) in [
            ("user@localhost", "localhost"),
            ("user@LocalHost.", "localhost"),
            ("user@mail.localhost", "mail.localhost"),
        ] {
            assert_eq!(parse(a), Err(AddressError::Localhost(want.into())), "{a}");
        }
        for a in [
            "user@127.0.0.1",
            "user@[127.0.0.1]",
            "user@[IPv6:::1]",
            "user@::1",
        ] {
            let e = parse(a).unwrap_err();
            assert!(
                matches!(e, AddressError::IpLiteral(_) | AddressError::BadDomain(_)),
                "{a}: {e:?}"
            );
        }
        assert!(matches!(
            parse("user@127.1"),
            Err(AddressError::BadDomain(_))
        ));
        assert!(matches!(
            parse("user@intranet"),
            Err(AddressError::BadDomain(_))
        ));
        let e = parse("user@127.0.0.1").unwrap_err().to_string();
        assert!(e.contains("IP address"), "{e}");
    }

    /// ASCII addresses keep the HMAC they had before IDNA (existing stores).
    #[test]
    fn ascii_hmacs_are_unchanged() {
        let k = HmacKey::from_bytes(&[7; 32]);
        let a = parse("Anne.Hansen@Kommune.DK").unwrap();
        // HMAC-SHA256(key = [7; 32], "address:anne.hansen@kommune.dk").
        assert_eq!(
            hex::encode(k.key_of(&a).0),
            "9925f0d217c2820f296413864e22f4836f22a629e690c378d9060c6405abede9"
        );
    }

    #[test]
    fn danish_letters_are_fine() {
        assert_eq!(
            parse("søren@kommune.dk").unwrap().as_str(),
            "søren@kommune.dk"
        );
    }

    #[test]
    fn hmac_is_stable_and_keyed() {
        let k1 = HmacKey::from_bytes(&[1; 32]);
        let k2 = HmacKey::from_bytes(&[2; 32]);
        let a = parse("A@x.dk").unwrap();
        let b = parse("a@X.DK").unwrap();
        assert_eq!(k1.key_of(&a), k1.key_of(&b));
        assert_ne!(k1.key_of(&a), k2.key_of(&a));
    }
}
