//! The domain of a subscriber's address, judged by whether mail can reach it.
//!
//! `idna` applies UTS 46: it maps what the reader typed (case, width, NFC)
//! and checks hyphens, bidi, joiners and lengths. UTS 46 is lenient where
//! IDNA2008 is not (it turns `com©` into `xn--com-1ea`), so each label's
//! Unicode form is then held to the IDNA2008 derived property (RFC 5892),
//! the top-level label to the shape delegated TLDs have, and special-use
//! names (RFC 6761, 6762, 7686, 9476) are refused: no mail reaches them.
//!
//! Code point properties come from `icu_properties` (ICU4X), the crate
//! `idna` itself maps with, so both steps read the same Unicode version.
//! No maintained crate exposes the IDNA2008 derived property itself; its
//! rules are derived here from those properties, in the RFC's order.

use icu_properties::props::{
    Block, DefaultIgnorableCodePoint, GeneralCategory, GeneralCategoryGroup, HangulSyllableType, NoncharacterCodePoint,
    Script, WhiteSpace,
};
use icu_properties::{CodePointMapData, CodePointSetData};

use super::EmailError;

/// Top-level names set aside for special use: never delegated, so no mail
/// system delivers there. (`example.com`, `.net` and `.org` are registered
/// domains and stay accepted; only the TLD `.example` is special.)
const SPECIAL_USE_TLDS: &[&str] = &[
    "example",   // RFC 6761 §6.5
    "invalid",   // RFC 6761 §6.4
    "localhost", // RFC 6761 §6.3
    "test",      // RFC 6761 §6.2
    "local",     // RFC 6762: multicast DNS
    "onion",     // RFC 7686: Tor
    "alt",       // RFC 9476: names outside the DNS
    "arpa",      // RFC 3172 infrastructure: in-addr.arpa, ip6.arpa (RFC 6761 §6.1), home.arpa (RFC 8375)
];

/// The domain lowercased and in ASCII (punycode), or why mail cannot reach it.
pub(super) fn normalize(domain: &str) -> Result<String, EmailError> {
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|_| EmailError::InvalidDomain)?;
    let labels: Vec<&str> = ascii.split('.').collect();
    let tld = labels[labels.len() - 1];
    if SPECIAL_USE_TLDS.contains(&tld) {
        return Err(EmailError::ReservedDomain);
    }
    if labels.len() < 2 || !labels.iter().all(|label| ldh_label(label)) {
        return Err(EmailError::InvalidDomain);
    }
    // ASCII labels are letters, digits and hyphens, all PVALID; only A-labels need a look.
    for label in labels.iter().filter(|label| label.starts_with("xn--")) {
        let unicode = unicode_form(label).ok_or(EmailError::InvalidDomain)?;
        if !idna2008_label(&unicode) {
            return Err(EmailError::InvalidDomain);
        }
    }
    let unicode_tld = unicode_form(tld).ok_or(EmailError::InvalidDomain)?;
    if !delegable_tld(tld, &unicode_tld) {
        return Err(EmailError::InvalidDomain);
    }
    Ok(ascii)
}

fn ldh_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The Unicode form of an ASCII label: an A-label decoded, any other as it is.
fn unicode_form(label: &str) -> Option<String> {
    match label.strip_prefix("xn--") {
        Some(encoded) => idna::punycode::decode_to_string(encoded),
        None => Some(label.to_owned()),
    }
}

/// Whether a top-level label has the shape of a TLD that can be delegated:
/// it starts with a letter (so never all digits, as RFC 3696 §2 asks, nor an
/// IPv4 address's last byte), and is not a numbered copy such as `com-2`.
fn delegable_tld(ascii: &str, unicode: &str) -> bool {
    let starts_with_letter =
        unicode.chars().next().is_some_and(|c| GeneralCategoryGroup::Letter.contains(general_category(c)));
    let numbered = !ascii.starts_with("xn--")
        && ascii.rsplit_once('-').is_some_and(|(_, tail)| tail.bytes().all(|b| b.is_ascii_digit()));
    starts_with_letter && !numbered
}

/// Whether IDNA2008 allows `label` (Unicode form) in a domain name: it does
/// not begin with a combining mark (RFC 5891 §4.2.3.2), and every code point
/// is PVALID, or CONTEXTO with its rule met. CONTEXTJ joiners pass here:
/// `idna` has applied their rules already (UTS 46 CheckJoiners is RFC 5892 A.1, A.2).
fn idna2008_label(label: &str) -> bool {
    let chars: Vec<char> = label.chars().collect();
    if chars.first().is_some_and(|&c| GeneralCategoryGroup::Mark.contains(general_category(c))) {
        return false;
    }
    (0..chars.len()).all(|i| match derived_property(chars[i]) {
        Property::Pvalid | Property::ContextJ => true,
        Property::ContextO => context_rule(&chars, i),
        Property::Disallowed => false,
    })
}

enum Property {
    Pvalid,
    ContextJ,
    ContextO,
    Disallowed,
}

/// The IDNA2008 derived property of `c`: RFC 5892 §3, rule by rule, in order.
fn derived_property(c: char) -> Property {
    if let Some(property) = exception(c) {
        return property; // (F); (G) BackwardCompatible is empty
    }
    let category = general_category(c);
    if category == GeneralCategory::Unassigned {
        return Property::Disallowed; // (J): UNASSIGNED, refused at lookup too
    }
    if matches!(c, 'a'..='z' | '0'..='9' | '-') {
        return Property::Pvalid; // (K) LDH
    }
    if matches!(c, '\u{200C}' | '\u{200D}') {
        return Property::ContextJ; // (H) JoinControl
    }
    // (B) Unstable needs no test: `idna` mapped the label with UTS 46 and
    // refuses an A-label that decodes to anything it would map.
    if CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || CodePointSetData::new::<WhiteSpace>().contains(c)
        || CodePointSetData::new::<NoncharacterCodePoint>().contains(c)
    {
        return Property::Disallowed; // (C) IgnorableProperties
    }
    let block = CodePointMapData::<Block>::new().get(c);
    if block == Block::CombiningDiacriticalMarksForSymbols
        || block == Block::MusicalSymbols
        || block == Block::AncientGreekMusicalNotation
    {
        return Property::Disallowed; // (D) IgnorableBlocks
    }
    let jamo = [HangulSyllableType::LeadingJamo, HangulSyllableType::VowelJamo, HangulSyllableType::TrailingJamo];
    if jamo.contains(&CodePointMapData::<HangulSyllableType>::new().get(c)) {
        return Property::Disallowed; // (I) OldHangulJamo
    }
    let letter_digits = GeneralCategoryGroup::Ll
        .union(GeneralCategoryGroup::Lu)
        .union(GeneralCategoryGroup::Lo)
        .union(GeneralCategoryGroup::Nd)
        .union(GeneralCategoryGroup::Lm)
        .union(GeneralCategoryGroup::Mn)
        .union(GeneralCategoryGroup::Mc);
    if letter_digits.contains(category) { Property::Pvalid } else { Property::Disallowed } // (A), else (L)
}

/// RFC 5892 §2.6: code points whose property is fixed rather than derived.
fn exception(c: char) -> Option<Property> {
    match c {
        '\u{00DF}' | '\u{03C2}' | '\u{06FD}' | '\u{06FE}' | '\u{0F0B}' | '\u{3007}' => Some(Property::Pvalid),
        '\u{00B7}' | '\u{0375}' | '\u{05F3}' | '\u{05F4}' | '\u{30FB}' => Some(Property::ContextO),
        '\u{0660}'..='\u{0669}' | '\u{06F0}'..='\u{06F9}' => Some(Property::ContextO),
        '\u{0640}' | '\u{07FA}' | '\u{302E}' | '\u{302F}' | '\u{3031}'..='\u{3035}' | '\u{303B}' => {
            Some(Property::Disallowed)
        }
        _ => None,
    }
}

/// The CONTEXTO rules of RFC 5892 appendix A (A.3 to A.9) for `chars[i]`.
fn context_rule(chars: &[char], i: usize) -> bool {
    let script = |c: char| CodePointMapData::<Script>::new().get(c);
    let before = i.checked_sub(1).map(|j| chars[j]);
    let after = chars.get(i + 1).copied();
    let arabic_indic = |c: &char| ('\u{0660}'..='\u{0669}').contains(c);
    let extended_arabic_indic = |c: &char| ('\u{06F0}'..='\u{06F9}').contains(c);
    match chars[i] {
        // The Catalan ela geminada, l·l.
        '\u{00B7}' => before == Some('l') && after == Some('l'),
        '\u{0375}' => after.is_some_and(|c| script(c) == Script::Greek),
        '\u{05F3}' | '\u{05F4}' => before.is_some_and(|c| script(c) == Script::Hebrew),
        '\u{30FB}' => chars.iter().any(|&c| [Script::Hiragana, Script::Katakana, Script::Han].contains(&script(c))),
        c if arabic_indic(&c) => !chars.iter().any(extended_arabic_indic),
        c if extended_arabic_indic(&c) => !chars.iter().any(arabic_indic),
        _ => false,
    }
}

fn general_category(c: char) -> GeneralCategory {
    CodePointMapData::<GeneralCategory>::new().get(c)
}
