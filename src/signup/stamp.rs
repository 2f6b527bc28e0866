//! The time-trap: forms carry a signed issue time, and a form sent back
//! faster than a person could fill it in (or long after) is treated as a bot.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use crate::clock::Timestamp;
use crate::domain::LinkKeys;

const DOMAIN: &[u8] = b"form-stamp";

/// Signs the time a form was served.
pub fn issue(keys: &LinkKeys, now: Timestamp) -> String {
    let mac = keys.mac(DOMAIN, now.to_string().as_bytes());
    format!("{now}.{}", B64.encode(&mac[..16]))
}

/// Whether a stamp sent back with a form looks like a person filled it in.
pub fn is_human(keys: &LinkKeys, stamp: &str, now: Timestamp, min_secs: u64, max_age_secs: u64) -> bool {
    let Some((issued, tag)) = stamp.split_once('.') else {
        return false;
    };
    let (Ok(issued_at), Ok(tag)) = (issued.parse::<Timestamp>(), B64.decode(tag)) else {
        return false;
    };
    if !keys.verify_mac(DOMAIN, issued.as_bytes(), &tag) {
        return false;
    }
    let age = now - issued_at;
    age >= min_secs as i64 && age <= max_age_secs as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        let keys = LinkKeys::new(b"k".to_vec(), vec![]);
        let stamp = issue(&keys, 1000);
        assert!(!is_human(&keys, &stamp, 1001, 2, 3600), "too fast");
        assert!(is_human(&keys, &stamp, 1002, 2, 3600));
        assert!(!is_human(&keys, &stamp, 1000 + 3601, 2, 3600), "too old");
        assert!(!is_human(&keys, "1000.AAAA", 1005, 2, 3600), "forged");
        assert!(!is_human(&keys, &stamp.replace("1000", "900"), 1005, 2, 3600), "altered time");
        assert!(!is_human(&keys, "junk", 1005, 2, 3600));
    }
}
