//! How a message names its delivery where a bounce or a complaint brings it
//! back: the VERP envelope sender (`bounces+<delivery id>-<MAC>@domain`) and
//! the Message-ID (`<delivery id>.<nonce>.<MAC>@domain`).
//!
//! The nonce is 64 random bits stored with the delivery when it is first
//! claimed: delivery ids start at 1 in every database, and two databases
//! sharing `server.secret` (staging beside production, a restored backup)
//! would otherwise send different mail under one Message-ID, which receivers
//! drop as a repeat and a late bounce would pin on the wrong delivery.
//! Message-IDs of mail sent before the nonce (`<id>.<MAC>`) still read.
//!
//! Both carry the delivery id under a MAC truncated to 64 bits, each with
//! its own purpose, made with the current link key and checked against the
//! previous ones too, so nobody can name a delivery that is not theirs and a
//! key rotation does not orphan the bounces of mail already out. The VERP
//! MAC also covers the base address, so no character of it can change.
//!
//! Reading one back has three answers: a delivery, a tag of ours that does
//! not verify (forged or garbled: it must match nothing, and nothing else
//! may be tried instead), or no tag of ours at all.

use super::LinkKeys;
use super::token::hex;

/// Bytes of MAC a tag carries: 64 bits, 16 hex digits.
const TAG_BYTES: usize = 8;
const VERP_PURPOSE: &[u8] = b"verp";
const MESSAGE_ID_PURPOSE: &[u8] = b"message-id";

/// What a return path or Message-ID says about the delivery it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tagged {
    /// A tag of ours that verifies: this delivery, with the Message-ID's
    /// nonce when the tag carries one (the stored row must have the same).
    Delivery(i64, Option<i64>),
    /// Shaped like a tag of ours but it does not verify: forged or garbled.
    Forged,
    /// No tag of ours.
    Untagged,
}

/// `bounces.return_path` parsed: the base address VERP tags are added to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnPath {
    local: String,
    domain: String,
}

impl ReturnPath {
    /// `None` for an empty setting (no VERP) or one without `@`.
    pub fn parse(address: &str) -> Option<Self> {
        let (local, domain) = address.trim().rsplit_once('@')?;
        (!local.is_empty() && !domain.is_empty())
            .then(|| Self { local: local.to_owned(), domain: domain.to_ascii_lowercase() })
    }

    /// The envelope sender for one delivery: `local+<id>-<MAC>@domain`.
    pub fn for_delivery(&self, keys: &LinkKeys, delivery_id: i64) -> String {
        let mac = keys.mac(VERP_PURPOSE, &verp_data(&self.local, &self.domain, delivery_id));
        format!("{}+{delivery_id}-{}@{}", self.local, hex(&mac[..TAG_BYTES]), self.domain)
    }

    /// Whether `address` is this return path with some tag (`local+…@domain`).
    fn is_tagged_base_of(&self, address: &str) -> bool {
        address.rsplit_once('@').is_some_and(|(local, domain)| {
            domain.eq_ignore_ascii_case(&self.domain)
                && local.rsplit_once('+').is_some_and(|(base, _)| base.eq_ignore_ascii_case(&self.local))
        })
    }
}

/// What the VERP MAC covers: the base address (lowercased: mail systems may
/// change its case on the way back) and the delivery id.
fn verp_data(local: &str, domain: &str, delivery_id: i64) -> Vec<u8> {
    let mut data = format!("{}@{}", local.to_ascii_lowercase(), domain.to_ascii_lowercase()).into_bytes();
    data.push(0);
    data.extend_from_slice(&delivery_id.to_be_bytes());
    data
}

/// Reads the delivery out of an envelope sender (a VERP address, with or
/// without angle brackets). A tag is ours when it has our shape
/// (`+<digits>-<16 hex>`) or sits on `configured`; anything else is
/// [`Tagged::Untagged`], so a plain sender with a `+` of its own is no forgery.
pub fn delivery_of_return_path(keys: &LinkKeys, configured: Option<&ReturnPath>, address: &str) -> Tagged {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>').trim();
    let on_base = configured.is_some_and(|base| base.is_tagged_base_of(address));
    let Some((local, domain)) = address.rsplit_once('@') else { return Tagged::Untagged };
    let Some((base, tag)) = local.rsplit_once('+') else {
        return if on_base { Tagged::Forged } else { Tagged::Untagged };
    };
    let Some((id, mac)) = parse_tag(tag, '-') else {
        return if on_base { Tagged::Forged } else { Tagged::Untagged };
    };
    if keys.verify_tag(VERP_PURPOSE, &verp_data(base, domain, id), &mac) {
        Tagged::Delivery(id, None)
    } else {
        Tagged::Forged
    }
}

/// The part of the Message-ID before `@` for one delivery: `<id>.<nonce>.<MAC>`,
/// the nonce as 16 hex digits, the MAC over both.
pub fn message_id_key(keys: &LinkKeys, delivery_id: i64, nonce: i64) -> String {
    let mac = keys.mac(MESSAGE_ID_PURPOSE, &message_id_data(delivery_id, Some(nonce)));
    format!("{delivery_id}.{:016x}.{}", nonce as u64, hex(&mac[..TAG_BYTES]))
}

/// What the Message-ID MAC covers: the delivery id, and the nonce after it
/// (none in the Message-IDs made before there was one).
fn message_id_data(delivery_id: i64, nonce: Option<i64>) -> Vec<u8> {
    let mut data = delivery_id.to_be_bytes().to_vec();
    if let Some(nonce) = nonce {
        data.extend_from_slice(&nonce.to_be_bytes());
    }
    data
}

/// Reads the delivery out of a Message-ID Bulletin set (with or without
/// angle brackets), in either shape. Any other Message-ID is [`Tagged::Untagged`].
pub fn delivery_of_message_id(keys: &LinkKeys, message_id: &str) -> Tagged {
    let Some((delivery, nonce, mac)) = message_id_tag(message_id) else { return Tagged::Untagged };
    if keys.verify_tag(MESSAGE_ID_PURPOSE, &message_id_data(delivery, nonce), &mac) {
        Tagged::Delivery(delivery, nonce)
    } else {
        Tagged::Forged
    }
}

/// The delivery id, nonce and MAC of a Message-ID of our shape, unverified.
fn message_id_tag(message_id: &str) -> Option<(i64, Option<i64>, Vec<u8>)> {
    let id = message_id.trim().trim_start_matches('<').trim_end_matches('>').trim();
    let (key, _domain) = id.rsplit_once('@')?;
    let (key, nonce) = match key.split('.').collect::<Vec<_>>()[..] {
        [delivery, nonce, mac] if nonce.len() == 16 => {
            (format!("{delivery}.{mac}"), Some(u64::from_str_radix(nonce, 16).ok()? as i64))
        }
        [_, _] => (key.to_owned(), None),
        _ => return None,
    };
    let (delivery, mac) = parse_tag(&key, '.')?;
    Some((delivery, nonce, mac))
}

/// Whether a return path or a Message-ID has the shape of one of our tags,
/// whatever the keys: a report carrying one is matched by it, or by nothing
/// (so a reader named some other way must not be tried instead).
pub fn has_tag_shape(return_path: Option<&str>, message_id: Option<&str>) -> bool {
    let verp = return_path.is_some_and(|address| {
        let address = address.trim().trim_start_matches('<').trim_end_matches('>');
        let tag = address.rsplit_once('@').and_then(|(local, _)| local.rsplit_once('+')).map(|(_, tag)| tag);
        tag.is_some_and(|tag| parse_tag(tag, '-').is_some())
    });
    verp || message_id.is_some_and(|id| message_id_tag(id).is_some())
}

/// `<digits><sep><16 hex digits>`: a delivery id and its MAC, or `None` for any other shape.
fn parse_tag(tag: &str, separator: char) -> Option<(i64, Vec<u8>)> {
    let (id, mac) = tag.split_once(separator)?;
    if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if mac.len() != 2 * TAG_BYTES || !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id: i64 = id.parse().ok()?;
    let mac = (0..TAG_BYTES).map(|i| u8::from_str_radix(&mac[2 * i..2 * i + 2], 16)).collect::<Result<_, _>>().ok()?;
    Some((id, mac))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> LinkKeys {
        LinkKeys::new(b"current".to_vec(), vec![b"previous".to_vec()])
    }

    #[test]
    fn return_paths_name_their_delivery() {
        let base = ReturnPath::parse("bounces@Example.com").unwrap();
        let verp = base.for_delivery(&keys(), 42);
        assert!(verp.starts_with("bounces+42-") && verp.ends_with("@example.com"), "{verp}");
        assert_eq!(verp.split_once('@').unwrap().0.len(), "bounces+42-".len() + 16);
        assert_eq!(delivery_of_return_path(&keys(), Some(&base), &verp), Tagged::Delivery(42, None));
        assert_eq!(delivery_of_return_path(&keys(), None, &format!("<{verp}>")), Tagged::Delivery(42, None));
        assert_eq!(delivery_of_return_path(&keys(), None, &verp.to_uppercase()), Tagged::Delivery(42, None));
        // Signed before a key rotation: still ours.
        let old = LinkKeys::new(b"previous".to_vec(), vec![]);
        assert_eq!(delivery_of_return_path(&keys(), None, &base.for_delivery(&old, 7)), Tagged::Delivery(7, None));
        // Another delivery's id under this MAC, or a stranger's key: forged.
        let other = verp.replacen("+42-", "+43-", 1);
        assert_eq!(delivery_of_return_path(&keys(), Some(&base), &other), Tagged::Forged);
        let stranger = LinkKeys::new(b"stranger".to_vec(), vec![]);
        assert_eq!(delivery_of_return_path(&keys(), None, &base.for_delivery(&stranger, 42)), Tagged::Forged);
        // On our base but garbled: forged. A plain sender with a `+` of its own: not ours.
        assert_eq!(delivery_of_return_path(&keys(), Some(&base), "bounces+42@example.com"), Tagged::Forged);
        assert_eq!(delivery_of_return_path(&keys(), Some(&base), "bounces@example.com"), Tagged::Untagged);
        assert_eq!(delivery_of_return_path(&keys(), Some(&base), "news+weekly@example.com"), Tagged::Untagged);
        assert_eq!(delivery_of_return_path(&keys(), None, ""), Tagged::Untagged);
        assert_eq!(ReturnPath::parse(""), None);
    }

    #[test]
    fn tags_are_told_by_their_shape_alone() {
        let base = ReturnPath::parse("bounces@example.com").unwrap();
        let stranger = LinkKeys::new(b"stranger".to_vec(), vec![]);
        assert!(has_tag_shape(Some(&base.for_delivery(&stranger, 42)), None));
        let id = format!("<{}@news.example.com>", message_id_key(&stranger, 7, 1));
        assert!(has_tag_shape(None, Some(&id)));
        assert!(has_tag_shape(Some("news@example.com"), Some(&id)));
        assert!(!has_tag_shape(Some("news+weekly@example.com"), Some("<CAF=abc@mail.gmail.com>")));
        assert!(!has_tag_shape(None, None));
    }

    #[test]
    fn message_ids_name_their_delivery() {
        let key = message_id_key(&keys(), 1234, -5);
        assert!(key.starts_with("1234.fffffffffffffffb."), "{key}");
        let id = format!("<{key}@news.example.com>");
        assert_eq!(delivery_of_message_id(&keys(), &id), Tagged::Delivery(1234, Some(-5)));
        assert_eq!(delivery_of_message_id(&keys(), id.trim_matches(['<', '>'])), Tagged::Delivery(1234, Some(-5)));
        assert_eq!(delivery_of_message_id(&keys(), &id.replacen("1234.", "1235.", 1)), Tagged::Forged);
        // Another nonce under this MAC: forged.
        assert_eq!(delivery_of_message_id(&keys(), &id.replacen(".ffff", ".efff", 1)), Tagged::Forged);
        assert_eq!(delivery_of_message_id(&keys(), "<5f0c2d9e8b7a4c1d@example.com>"), Tagged::Untagged);
        assert_eq!(delivery_of_message_id(&keys(), "<CAF=abc@mail.gmail.com>"), Tagged::Untagged);
    }

    #[test]
    fn message_ids_differ_by_nonce_and_old_ones_still_read() {
        assert_ne!(message_id_key(&keys(), 1, 1), message_id_key(&keys(), 1, 2));
        // The shape sent before the nonce: `<id>.<MAC over the id alone>`.
        let old_mac = keys().mac(MESSAGE_ID_PURPOSE, &1234i64.to_be_bytes());
        let old = format!("<1234.{}@news.example.com>", hex(&old_mac[..TAG_BYTES]));
        assert_eq!(delivery_of_message_id(&keys(), &old), Tagged::Delivery(1234, None));
    }

    proptest! {
        #[test]
        fn verp_round_trips_and_refuses_any_single_change(
            id in 1i64..i64::MAX,
            local in "[a-z][a-z0-9.]{0,15}",
            domain in "[a-z]{1,10}\\.(com|org|example)",
            position in any::<prop::sample::Index>(),
            replacement in "[a-z0-9.+@-]",
        ) {
            let base = ReturnPath::parse(&format!("{local}@{domain}")).unwrap();
            let verp = base.for_delivery(&keys(), id);
            prop_assert_eq!(delivery_of_return_path(&keys(), Some(&base), &verp), Tagged::Delivery(id, None));
            let mut chars: Vec<char> = verp.chars().collect();
            let at = position.index(chars.len());
            let new = replacement.chars().next().unwrap();
            prop_assume!(!new.eq_ignore_ascii_case(&chars[at]));
            chars[at] = new;
            let changed: String = chars.into_iter().collect();
            prop_assert_ne!(delivery_of_return_path(&keys(), Some(&base), &changed), Tagged::Delivery(id, None));
            prop_assert!(!matches!(delivery_of_return_path(&keys(), None, &changed), Tagged::Delivery(..)));
        }
    }
}
