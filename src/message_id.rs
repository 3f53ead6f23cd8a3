//! The shape of canvass' Message-IDs, pure: `canvass.<hex>@<survey domain>`
//! (without angle brackets; see `classify::MESSAGE_ID_PREFIX`).
//!
//! - The planner draws 24 random hex digits (`compose::message_id_from`).
//! - An invitation's Message-ID carries its id in front of them: 16 hex
//!   digits of the id, then the 24 random ones ([`of_invitation`]; the store
//!   writes it when it gives the invitation its id). A bounce, reply or
//!   complaint is matched by reading the id and comparing the whole
//!   Message-ID with the invitation's: the random part keeps it unguessable,
//!   and no index of Message-IDs is needed.
//! - Its k-th reminder's adds k as two more hex digits ([`of_reminder`]).
//! - Before store schema 2 a Message-ID was the 24 random digits alone; the
//!   store finds those through its legacy `msgids` index.
//!
//! Only lower-case hex digits: the bounce scanner reads `canvass.` followed
//! by hex digits and `@`.

use crate::classify::MESSAGE_ID_PREFIX;

const ID_HEX: usize = 16;
const RANDOM_HEX: usize = 24;
const REMINDER_HEX: usize = 2;

/// What a Message-ID of canvass' shape names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub invitation_id: u64,
    /// 0: the invitation itself; k: its k-th reminder.
    pub reminder: u32,
    /// The invitation's own Message-ID (a reminder's, without its number).
    pub invitation_message_id: String,
}

/// (hex digits, domain) of `canvass.<hex>@<domain>`, or `None`.
fn split(message_id: &str) -> Option<(&str, &str)> {
    let rest = message_id.strip_prefix(MESSAGE_ID_PREFIX)?;
    let (hex, domain) = rest.split_once('@')?;
    let ok = !hex.is_empty()
        && !domain.is_empty()
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some((hex, domain))
}

/// The Message-ID of invitation `id`, from the planned one (24 random
/// digits: the id is put in front) or its own (returned as it is);
/// `None` for any other shape, or one that carries another id.
pub fn of_invitation(message_id: &str, id: u64) -> Option<String> {
    let (hex, domain) = split(message_id)?;
    match hex.len() {
        RANDOM_HEX => Some(format!("{MESSAGE_ID_PREFIX}{id:016x}{hex}@{domain}")),
        n if n == ID_HEX + RANDOM_HEX => {
            (u64::from_str_radix(&hex[..ID_HEX], 16).ok()? == id).then(|| message_id.to_string())
        }
        _ => None,
    }
}

/// The Message-ID of reminder `k` (from 1) of the invitation whose
/// Message-ID (as [`of_invitation`] gives it) is `invitation`.
pub fn of_reminder(invitation: &str, k: u32) -> Option<String> {
    let (hex, domain) = split(invitation)?;
    if hex.len() != ID_HEX + RANDOM_HEX || k == 0 || k > 0xff {
        return None;
    }
    Some(format!("{MESSAGE_ID_PREFIX}{hex}{k:02x}@{domain}"))
}

/// What a Message-ID carrying an invitation id names; `None` for any other
/// (a schema-1 one, or not canvass').
pub fn named(message_id: &str) -> Option<Named> {
    let (hex, domain) = split(message_id)?;
    let own = ID_HEX + RANDOM_HEX;
    let reminder = match hex.len() {
        n if n == own => 0,
        n if n == own + REMINDER_HEX => u32::from_str_radix(&hex[own..], 16).ok()?,
        _ => return None,
    };
    Some(Named {
        invitation_id: u64::from_str_radix(&hex[..ID_HEX], 16).ok()?,
        reminder,
        invitation_message_id: format!("{MESSAGE_ID_PREFIX}{}@{domain}", &hex[..own]),
    })
}

/// (random half, domain) of an invitation's own Message-ID carrying `id`:
/// what the store keeps of it (the rest is the record's id).
pub fn compact(message_id: &str, id: u64) -> Option<([u8; RANDOM_HEX / 2], &str)> {
    let (hex, domain) = split(message_id)?;
    if hex.len() != ID_HEX + RANDOM_HEX || u64::from_str_radix(&hex[..ID_HEX], 16).ok()? != id {
        return None;
    }
    let mut random = [0u8; RANDOM_HEX / 2];
    hex::decode_to_slice(&hex[ID_HEX..], &mut random).ok()?;
    Some((random, domain))
}

/// The inverse of [`compact`].
pub fn expand(id: u64, random: &[u8; RANDOM_HEX / 2], domain: &str) -> String {
    format!(
        "{MESSAGE_ID_PREFIX}{id:016x}{}@{domain}",
        hex::encode(random)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANNED: &str = "canvass.0123456789abcdef01234567@siri.dk";

    #[test]
    fn an_invitation_carries_its_id_and_its_reminders_their_number() {
        let own = of_invitation(PLANNED, 0x2a).unwrap();
        assert_eq!(
            own,
            "canvass.000000000000002a0123456789abcdef01234567@siri.dk"
        );
        assert_eq!(of_invitation(&own, 0x2a).as_deref(), Some(own.as_str()));
        assert_eq!(of_invitation(&own, 7), None, "another id");
        assert_eq!(of_invitation("canvass.a@x.dk", 7), None);
        assert_eq!(of_invitation("<x@y>", 7), None);
        let n = named(&own).unwrap();
        assert_eq!((n.invitation_id, n.reminder), (0x2a, 0));
        assert_eq!(n.invitation_message_id, own);
        let r2 = of_reminder(&own, 2).unwrap();
        assert_eq!(
            r2,
            "canvass.000000000000002a0123456789abcdef0123456702@siri.dk"
        );
        let n = named(&r2).unwrap();
        assert_eq!((n.invitation_id, n.reminder), (0x2a, 2));
        assert_eq!(n.invitation_message_id, own);
        assert_eq!(of_reminder(PLANNED, 1), None);
        assert_eq!(of_reminder(&own, 0), None);
        assert_eq!(of_reminder(&own, 256), None);
        // Schema-1 Message-IDs and others name nothing.
        assert_eq!(named(PLANNED), None);
        assert_eq!(named("canvass.c@x.dk"), None);
        assert_eq!(
            named("canvass.000000000000002A0123456789abcdef01234567@siri.dk"),
            None
        );
        let (random, domain) = compact(&own, 0x2a).unwrap();
        assert_eq!(domain, "siri.dk");
        assert_eq!(expand(0x2a, &random, domain), own);
        assert_eq!(compact(&own, 0x2b), None);
        assert_eq!(compact(PLANNED, 0x2a), None);
    }
}
