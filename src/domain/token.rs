//! Tokens in emailed links.
//!
//! Confirmation tokens are 256-bit random values; only their SHA-256 is
//! stored, so a database leak does not confirm anyone. Unsubscribe and
//! preference tokens are HMAC-signed claims (subscriber, newsletter, purpose):
//! they need no storage, never expire, and keep working across key rotation
//! as long as the old key is listed in `previous_secrets`.
//!
//! A claim is sealed (XChaCha20-Poly1305 under a key derived from the link
//! secret), so a link shows nothing: not the subscriber's id, which would
//! tell the list's size and growth. It binds the id to a random salt kept
//! with the subscriber, so a link stops working when its subscriber is
//! erased, even were the id ever handed out again. The salt is checked
//! against the row found by its primary key: no index on a random value,
//! whose scattered inserts cost more than the rest of a signup.
//!
//! Links of the first format (version 1) carried the id in the clear under
//! an HMAC; they still verify, as [`LinkSubject::LegacyId`], and the store
//! accepts them only for subscribers older than the format change.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
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

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::Unsubscribe),
            2 => Some(Self::Preferences),
            _ => None,
        }
    }
}

/// What a link needs to name a subscriber: the row id and the random salt
/// stored with it (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkRef {
    pub subscriber_id: i64,
    pub salt: i64,
}

impl LinkRef {
    /// The reader a test copy's links name: nobody (no subscriber has id 0).
    pub const TEST_COPY: LinkRef = LinkRef { subscriber_id: 0, salt: 0 };
}

/// Whom a verified link names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSubject {
    /// Every link signed now.
    Sealed(LinkRef),
    /// A version 1 link, signed with the subscriber's row id alone.
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

/// Version 1: id and newsletter in the clear, under a truncated HMAC.
const LEGACY_VERSION: u8 = 1;
const LEGACY_PAYLOAD_LEN: usize = 1 + 1 + 8 + 8;
const MAC_LEN: usize = 16;
/// Version 2: a version byte, a random nonce, and the sealed claim
/// (purpose, subscriber id, salt, newsletter) with its tag.
const VERSION: u8 = 2;
const NONCE_LEN: usize = 24;
const CLAIM_LEN: usize = 1 + 8 + 8 + 8;
const TAG_LEN: usize = 16;
const SEALED_LEN: usize = 1 + NONCE_LEN + CLAIM_LEN + TAG_LEN;
/// Binds a sealed claim to its use, so no other sealed text of ours passes for one.
const SEAL_AAD: &[u8] = b"bulletin link v2";

/// The keys that sign links: the first signs, all verify.
#[derive(Clone)]
pub struct LinkKeys {
    keys: Vec<Vec<u8>>,
    /// One sealing cipher per key, in the same order, keyed by HMAC(key, "link-seal").
    seals: Vec<XChaCha20Poly1305>,
}

impl LinkKeys {
    /// `current` signs; `previous` only verify, so rotated-out keys keep old links working.
    pub fn new(current: Vec<u8>, previous: Vec<Vec<u8>>) -> Self {
        let mut keys = vec![current];
        keys.extend(previous);
        let seals = keys
            .iter()
            .map(|key| XChaCha20Poly1305::new_from_slice(&mac(key, b"link-seal", b"")).expect("a 32-byte key"))
            .collect();
        Self { keys, seals }
    }

    /// Seals a claim on `subscriber` for `purpose` (newsletter zero for preference links).
    pub fn sign(&self, purpose: LinkPurpose, subscriber: LinkRef, newsletter_id: i64) -> String {
        let mut claim = [0u8; CLAIM_LEN];
        claim[0] = purpose.tag();
        claim[1..9].copy_from_slice(&subscriber.subscriber_id.to_be_bytes());
        claim[9..17].copy_from_slice(&subscriber.salt.to_be_bytes());
        claim[17..25].copy_from_slice(&newsletter_id.to_be_bytes());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self.seals[0]
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &claim, aad: SEAL_AAD })
            .expect("sealing a short claim cannot fail");
        let mut token = Vec::with_capacity(SEALED_LEN);
        token.push(VERSION);
        token.extend_from_slice(&nonce);
        token.extend_from_slice(&sealed);
        B64.encode(token)
    }

    pub fn verify(&self, token: &str, purpose: LinkPurpose) -> Option<LinkClaim> {
        if token.len() > SEALED_LEN.div_ceil(3) * 4 {
            return None;
        }
        let raw = B64.decode(token).ok()?;
        let claim = match (raw.first()?, raw.len()) {
            (&VERSION, SEALED_LEN) => self.unseal(&raw[1..])?,
            (&LEGACY_VERSION, len) if len == LEGACY_PAYLOAD_LEN + MAC_LEN => self.verify_legacy(&raw)?,
            _ => return None,
        };
        (claim.purpose == purpose).then_some(claim)
    }

    fn unseal(&self, raw: &[u8]) -> Option<LinkClaim> {
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let claim = self
            .seals
            .iter()
            .find_map(|seal| seal.decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: SEAL_AAD }).ok())?;
        let int = |range: std::ops::Range<usize>| Some(i64::from_be_bytes(claim.get(range)?.try_into().ok()?));
        Some(LinkClaim {
            purpose: LinkPurpose::from_tag(*claim.first()?)?,
            subscriber: LinkSubject::Sealed(LinkRef { subscriber_id: int(1..9)?, salt: int(9..17)? }),
            newsletter_id: int(17..25)?,
        })
    }

    fn verify_legacy(&self, raw: &[u8]) -> Option<LinkClaim> {
        let (payload, tag) = raw.split_at(LEGACY_PAYLOAD_LEN);
        let genuine = self.keys.iter().any(|key| {
            let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length");
            m.update(b"link");
            m.update(payload);
            m.verify_truncated_left(tag).is_ok()
        });
        if !genuine {
            return None;
        }
        Some(LinkClaim {
            purpose: LinkPurpose::from_tag(payload[1])?,
            subscriber: LinkSubject::LegacyId(i64::from_be_bytes(payload[2..10].try_into().ok()?)),
            newsletter_id: i64::from_be_bytes(payload[10..18].try_into().ok()?),
        })
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
        tag.len() >= MAC_LEN && self.verify_truncated(domain, data, tag)
    }

    /// Checks a short tag (a MAC from [`Self::mac`] truncated to at least 8
    /// bytes, where an address or a Message-ID leaves little room) with any
    /// known key, in constant time.
    pub fn verify_tag(&self, domain: &[u8], data: &[u8], tag: &[u8]) -> bool {
        tag.len() >= 8 && self.verify_truncated(domain, data, tag)
    }

    fn verify_truncated(&self, domain: &[u8], data: &[u8], tag: &[u8]) -> bool {
        self.keys.iter().any(|key| {
            let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length");
            m.update(domain);
            m.update(data);
            m.verify_truncated_left(tag).is_ok()
        })
    }
}

fn mac(key: &[u8], domain: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length");
    m.update(domain);
    m.update(data);
    m.finalize().into_bytes().to_vec()
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
        let reader = LinkRef { subscriber_id: 7, salt: -42 };
        let claim =
            LinkClaim { purpose: LinkPurpose::Unsubscribe, subscriber: LinkSubject::Sealed(reader), newsletter_id: 3 };
        let old = LinkKeys::new(b"old-key".to_vec(), vec![]);
        let token = old.sign(LinkPurpose::Unsubscribe, reader, 3);
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
        let mut payload = vec![LEGACY_VERSION, purpose.tag()];
        payload.extend_from_slice(&subscriber_id.to_be_bytes());
        payload.extend_from_slice(&newsletter_id.to_be_bytes());
        let mut token = payload.clone();
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

    #[test]
    fn sealed_links_show_nothing_of_the_claim() {
        let keys = LinkKeys::new(b"key".to_vec(), vec![]);
        let reader = LinkRef { subscriber_id: 10, salt: 0x1234_5678 };
        let a = keys.sign(LinkPurpose::Preferences, reader, 0);
        let b = keys.sign(LinkPurpose::Preferences, reader, 0);
        assert_ne!(a, b, "a fresh nonce per link");
        for token in [&a, &b] {
            let raw = B64.decode(token).unwrap();
            let id = 10_i64.to_be_bytes();
            assert!(!raw.windows(8).any(|w| w == id), "the id is not readable in {token}");
            assert_eq!(keys.verify(token, LinkPurpose::Preferences).unwrap().subscriber, LinkSubject::Sealed(reader));
        }
    }
}
