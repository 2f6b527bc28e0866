//! Newsletters: the slug that names one in URLs, forms and the CLI.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a newsletter slug is 1 to 64 characters of a-z, 0-9 and '-', not starting or ending with '-'")]
pub struct SlugError;

/// A newsletter's stable name: lowercase ASCII letters, digits and dashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NewsletterSlug(String);

impl NewsletterSlug {
    pub fn parse(input: &str) -> Result<Self, SlugError> {
        let ok = (1..=64).contains(&input.len())
            && !input.starts_with('-')
            && !input.ends_with('-')
            && input.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok { Ok(Self(input.to_owned())) } else { Err(SlugError) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NewsletterSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A newsletter as stored: its database id and what readers see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newsletter {
    pub id: i64,
    pub slug: NewsletterSlug,
    pub name: String,
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["a", "morning-briefing", "news2go"] {
            assert!(NewsletterSlug::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Morning", "a b", "a_b", "ü", &"a".repeat(65)] {
            assert!(NewsletterSlug::parse(bad).is_err(), "{bad}");
        }
    }
}
