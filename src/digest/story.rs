//! A story as it arrives from the CLI, the API or a feed, checked once.
//!
//! Every title and summary becomes one line of text here, whatever its
//! source: control characters (ESC, BEL, NUL…) would reach a mail's Subject
//! and an operator's terminal, and PostgreSQL refuses NUL in text outright;
//! MIME encoded-words (`=?UTF-8?Q?…?=`, RFC 2047) that a CMS copied from a
//! mail header are decoded, so readers see words, not the encoding.

use mail_parser::HeaderValue;
use mail_parser::parsers::MessageStream;
use url::Url;

use crate::clock::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoryError {
    #[error("the title is empty")]
    EmptyTitle,
    #[error("the title is longer than {MAX_TITLE} characters")]
    LongTitle,
    #[error("the URL must be an absolute http:// or https:// URL")]
    Url,
    #[error("the URL is longer than {MAX_URL} characters")]
    LongUrl,
    #[error("the summary is longer than {MAX_SUMMARY} characters")]
    LongSummary,
}

impl StoryError {
    /// The input field at fault, so the CLI and the API can name it.
    pub fn field(&self) -> &'static str {
        match self {
            Self::EmptyTitle | Self::LongTitle => "title",
            Self::Url | Self::LongUrl => "url",
            Self::LongSummary => "summary",
        }
    }
}

const MAX_TITLE: usize = 500;
const MAX_URL: usize = 2048;
const MAX_SUMMARY: usize = 5000;

/// A story ready to be stored: one line of title, an http(s) link, plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Story {
    pub title: String,
    pub url: Url,
    pub summary: Option<String>,
    /// When it was published, if the source says; else when it arrived.
    pub published_at: Option<Timestamp>,
    /// The feed's own id for it, which deduplicates better than the link.
    pub guid: Option<String>,
}

impl Story {
    pub fn new(
        title: &str,
        url: &str,
        summary: Option<&str>,
        published_at: Option<Timestamp>,
    ) -> Result<Self, StoryError> {
        let title = one_line(title);
        if title.is_empty() {
            return Err(StoryError::EmptyTitle);
        }
        if title.chars().count() > MAX_TITLE {
            return Err(StoryError::LongTitle);
        }
        let url = url.trim();
        if url.len() > MAX_URL {
            return Err(StoryError::LongUrl);
        }
        let url = match Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => u,
            _ => return Err(StoryError::Url),
        };
        let summary = summary.map(one_line).filter(|s| !s.is_empty());
        if summary.as_ref().is_some_and(|s| s.chars().count() > MAX_SUMMARY) {
            return Err(StoryError::LongSummary);
        }
        Ok(Self { title, url, summary, published_at, guid: None })
    }

    /// Stored once per newsletter under this key: the feed's GUID, else the link.
    pub fn dedup_key(&self) -> String {
        match &self.guid {
            Some(guid) => format!("guid:{guid}"),
            None => format!("url:{}", self.url),
        }
    }
}

/// `text` as one trimmed line: RFC 2047 encoded-words decoded, every run of
/// whitespace and control characters (before and after decoding) one space.
pub fn one_line(text: &str) -> String {
    let line = words(text);
    if !line.contains("=?") {
        return line;
    }
    // mail-parser reads an unstructured header field up to its line end.
    let field = format!("{line}\n");
    match MessageStream::new(field.as_bytes()).parse_unstructured() {
        HeaderValue::Text(decoded) => words(&decoded),
        _ => line,
    }
}

fn words(text: &str) -> String {
    let words = text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|word| !word.is_empty());
    words.collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stories_are_checked() {
        let s = Story::new("  Kyiv\n wakes  up ", "https://news.example.org/a", Some("  "), None).unwrap();
        assert_eq!(s.title, "Kyiv wakes up");
        assert_eq!(s.summary, None);
        assert_eq!(s.dedup_key(), "url:https://news.example.org/a");
        assert_eq!(Story::new(" ", "https://x.org/", None, None), Err(StoryError::EmptyTitle));
        for bad in ["javascript:alert(1)", "/relative", "ftp://x.org/a", "https://"] {
            assert_eq!(Story::new("t", bad, None, None), Err(StoryError::Url), "{bad}");
        }
    }

    #[test]
    fn control_characters_become_spaces() {
        let s =
            Story::new("\u{1b}[31mRed\u{7} alert\0!", "https://x.org/", Some("one\r\ntwo\0\u{1b}three"), None).unwrap();
        assert_eq!(s.title, "[31mRed alert !");
        assert_eq!(s.summary.as_deref(), Some("one two three"));
        assert_eq!(Story::new("\0\u{7}", "https://x.org/", None, None), Err(StoryError::EmptyTitle));
    }

    #[test]
    fn encoded_words_are_decoded() {
        assert_eq!(one_line("=?UTF-8?Q?Caf=C3=A9?= opens"), "Café opens");
        assert_eq!(
            one_line("News: =?utf-8?B?0JrQuNGX0LI=?= =?utf-8?B?INC/0YDQvtC60LjQtNCw0ZTRgtGM0YHRjw==?="),
            "News: Київ прокидається"
        );
        // Decoded text is cleaned again: an encoded ESC is still a control character.
        assert_eq!(one_line("=?UTF-8?Q?a=1Bb?= c"), "a b c");
        for plain in ["1 + 1 =? 2", "=?not an encoded word?=", "a=?b"] {
            assert_eq!(one_line(plain), plain);
        }
    }
}
