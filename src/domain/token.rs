//! Tokens in emailed links.
//!
//! Confirmation tokens are 256-bit random values; only their SHA-256 is
//! stored, so a database leak does not confirm anyone. Unsubscribe and
//! preference tokens are HMAC-signed claims (subscriber, newsletter, purpose):
//! they need no storage, never expire, and keep working across key rotation
//! as long as the old key is listed in `previous_secrets`.
//!
//! A claim names the subscriber by a random reference kept with the
//! subscriber, never by the row id: an id shows the list's size, and one
//! freed by an erasure must not let the erased reader's links act on whoever
//! gets it next. Links of the first format (version 1) named the id; they
//! still verify, as [`LinkSubject::LegacyId`], and the store accepts them
//! only for subscribers older than the format change.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// A fresh confirmation token, shown once in a mail and then forgotten.
pub struct ConfirmationToken(String);

impl ConfirmationToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(B64.encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

/// What the database keeps of a confirmation token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(String);

impl TokenHash {
    /// Hashes a token taken from a URL; `None` if it cannot be one of ours,
    /// so junk never reaches the database.
    pub fn from_presented(token: &str) -> Option<Self> {
        let well_formed =
            token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self::of(token))
    }

    fn of(token: &str) -> Self {
        Self(hex(&Sha256::digest(token.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lowercase hexadecimal, for hashes and MACs kept as text.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a signed link lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Leave one newsletter.
    Unsubscribe,
    /// See and change every subscription of one subscriber.
    Preferences,
}

impl LinkPurpose {
    fn tag(self) -> u8 {
        match self {
            Self::Unsubscribe => 1,
            Self::Preferences => 2,
        }
    }
}

/// A subscriber's link reference: random, unique, never reused, and
/// meaningless outside the database (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkRef(pub i64);

/// Whom a verified link names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSubject {
    /// Every link signed now.
    Ref(LinkRef),
    /// A version 1 link, signed with the subscriber's row id.
    LegacyId(i64),
}

/// The claim a signed link carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkClaim {
    pub purpose: LinkPurpose,
    pub subscriber: LinkSubject,
    /// Zero for preference links, which cover every newsletter.
    pub newsletter_id: i64,
}

/// Version 1 carried the subscriber id; version 2 carries the link reference.
const LEGACY_VERSION: u8 = 1;
const VERSION: u8 = 2;
const PAYLOAD_LEN: usize = 1 + 1 + 8 + 8;
const MAC_LEN: usize = 16;

/// The keys that sign links: the first signs, all verify.
#[derive(Clone)]
pub struct LinkKeys {
    keys: Vec<Vec<u8>>,
}

impl LinkKeys {
    /// `current` signs; `previous` only verify, so rotated-out keys keep old links working.
    pub fn new(current: Vec<u8>, previous: Vec<Vec<u8>>) -> Self {
        let mut keys = vec![current];
        keys.extend(previous);
        Self { keys }
    }

    /// Signs a claim on `subscriber` for `purpose` (newsletter zero for preference links).
    pub fn sign(&self, purpose: LinkPurpose, subscriber: LinkRef, newsletter_id: i64) -> String {
        let payload = encode_claim(VERSION, purpose, subscriber.0, newsletter_id);
        let mut token = payload.to_vec();
        token.extend_from_slice(&mac(&self.keys[0], b"link", &payload)[..MAC_LEN]);
        B64.encode(token)
    }

    pub fn verify(&self, token: &str, purpose: LinkPurpose) -> Option<LinkClaim> {
        if token.len() > 64 {
            return None;
        }
        let raw = B64.decode(token).ok()?;
        if raw.len() != PAYLOAD_LEN + MAC_LEN {
            return None;
        }
        let (payload, tag) = raw.split_at(PAYLOAD_LEN);
        let genuine = self.keys.iter().any(|key| {
            let mut m = HmacSha256::new_from_slice(key).expect("any key length");
            m.update(b"link");
            m.update(payload);
            m.verify_truncated_left(tag).is_ok()
        });
        if !genuine {
            return None;
        }
        let claim = decode_claim(payload)?;
        (claim.purpose == purpose).then_some(claim)
    }

    /// The keyed hashes of an address under every known key, current first:
    /// what the suppression list stores instead of the address.
    pub fn suppression_hashes(&self, email_key: &str) -> Vec<String> {
        self.keys.iter().map(|key| hex(&mac(key, b"suppression", email_key.as_bytes()))).collect()
    }

    /// A keyed MAC for other uses (form stamps), separated by `domain`.
    pub fn mac(&self, domain: &[u8], data: &[u8]) -> Vec<u8> {
        mac(&self.keys[0], domain, data)
    }

    /// Checks a MAC made by [`Self::mac`] (or its first 16+ bytes) with any
    /// known key, in constant time.
    pub fn verify_mac(&self, domain: &[u8], data: &[u8], tag: &[u8]) -> bool {
        if tag.len() < MAC_LEN {
            return false;
        }
        self.keys.iter().any(|key| {
            let mut m = HmacSha256::new_from_slice(key).expect("any key length");
            m.update(domain);
            m.update(data);
            m.verify_truncated_left(tag).is_ok()
        })
    }
}

fn mac(key: &[u8], domain: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("any key length");
    m.update(domain);
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn encode_claim(version: u8, purpose: LinkPurpose, subscriber: i64, newsletter_id: i64) -> [u8; PAYLOAD_LEN] {
    let mut out = [0u8; PAYLOAD_LEN];
    out[0] = version;
    out[1] = purpose.tag();
    out[2..10].copy_from_slice(&subscriber.to_be_bytes());
    out[10..18].copy_from_slice(&newsletter_id.to_be_bytes());
    out
}

fn decode_claim(payload: &[u8]) -> Option<LinkClaim> {
    let purpose = match payload[1] {
        1 => LinkPurpose::Unsubscribe,
        2 => LinkPurpose::Preferences,
        _ => return None,
    };
    let subscriber = i64::from_be_bytes(payload[2..10].try_into().ok()?);
    let subscriber = match payload[0] {
        VERSION => LinkSubject::Ref(LinkRef(subscriber)),
        LEGACY_VERSION => LinkSubject::LegacyId(subscriber),
        _ => return None,
    };
    Some(LinkClaim { purpose, subscriber, newsletter_id: i64::from_be_bytes(payload[10..18].try_into().ok()?) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_tokens_are_random_and_hashed() {
        let a = ConfirmationToken::generate();
        let b = ConfirmationToken::generate();
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.as_str().len(), 43);
        assert_eq!(TokenHash::from_presented(a.as_str()), Some(a.hash()));
        assert_ne!(a.hash().as_str(), a.as_str());
        assert_eq!(TokenHash::from_presented("short"), None);
    }

    #[test]
    fn signed_links_verify_and_rotate() {
        let claim =
            LinkClaim { purpose: LinkPurpose::Unsubscribe, subscriber: LinkSubject::Ref(LinkRef(7)), newsletter_id: 3 };
        let old = LinkKeys::new(b"old-key".to_vec(), vec![]);
        let token = old.sign(LinkPurpose::Unsubscribe, LinkRef(7), 3);
        assert_eq!(old.verify(&token, LinkPurpose::Unsubscribe), Some(claim));
        assert_eq!(old.verify(&token, LinkPurpose::Preferences), None);

        let rotated = LinkKeys::new(b"new-key".to_vec(), vec![b"old-key".to_vec()]);
        assert_eq!(rotated.verify(&token, LinkPurpose::Unsubscribe), Some(claim));
        let stranger = LinkKeys::new(b"other".to_vec(), vec![]);
        assert_eq!(stranger.verify(&token, LinkPurpose::Unsubscribe), None);

        let mut tampered = token.into_bytes();
        tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
        assert_eq!(old.verify(std::str::from_utf8(&tampered).unwrap(), LinkPurpose::Unsubscribe), None);
    }

    /// A link in a mail sent before the format change, as version 1 signed it.
    fn legacy_token(key: &[u8], purpose: LinkPurpose, subscriber_id: i64, newsletter_id: i64) -> String {
        let payload = encode_claim(LEGACY_VERSION, purpose, subscriber_id, newsletter_id);
        let mut token = payload.to_vec();
        token.extend_from_slice(&mac(key, b"link", &payload)[..MAC_LEN]);
        B64.encode(token)
    }

    #[test]
    fn legacy_links_still_verify_as_legacy() {
        let keys = LinkKeys::new(b"new-key".to_vec(), vec![b"old-key".to_vec()]);
        let token = legacy_token(b"old-key", LinkPurpose::Preferences, 10, 0);
        let claim = keys.verify(&token, LinkPurpose::Preferences).expect("an old link verifies");
        assert_eq!(claim.subscriber, LinkSubject::LegacyId(10));
        assert_eq!(keys.verify(&token, LinkPurpose::Unsubscribe), None);
    }
}
