//! An issue as mail: Markdown rendered once, then one message per reader
//! with their own unsubscribe link in the body and in the RFC 8058 headers.

use std::time::SystemTime;

use askama::Template;
use lettre::Message;
use lettre::message::header::{Date, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use super::{Layout, MailError, Mailer};
use crate::domain::EmailAddress;

#[derive(Template)]
#[template(path = "issue.txt")]
struct Text<'a> {
    newsletter: &'a str,
    /// The reader's name, if known (see [`Reader`]).
    #[allow(dead_code, reason = "offered to a site's own templates; the shipped ones leave it out")]
    name: Option<&'a str>,
    subject: &'a str,
    body: &'a str,
    unsubscribe_url: &'a str,
    preferences_url: &'a str,
    layout: &'a Layout,
}

#[derive(Template)]
#[template(path = "issue.html")]
struct Html<'a> {
    newsletter: &'a str,
    preheader: &'a str,
    /// The reader's name, if known (see [`Reader`]).
    #[allow(dead_code, reason = "offered to a site's own templates; the shipped ones leave it out")]
    name: Option<&'a str>,
    subject: &'a str,
    body_html: &'a str,
    unsubscribe_url: &'a str,
    preferences_url: &'a str,
    layout: &'a Layout,
}

#[derive(Template)]
#[template(path = "digest.txt")]
struct DigestText<'a> {
    newsletter: &'a str,
    /// The reader's name, if known (see [`Reader`]).
    #[allow(dead_code, reason = "offered to a site's own templates; the shipped ones leave it out")]
    name: Option<&'a str>,
    date: &'a str,
    stories: &'a [DigestStory],
    unsubscribe_url: &'a str,
    preferences_url: &'a str,
    layout: &'a Layout,
}

#[derive(Template)]
#[template(path = "digest.html")]
struct DigestHtml<'a> {
    newsletter: &'a str,
    preheader: &'a str,
    /// The reader's name, if known (see [`Reader`]).
    #[allow(dead_code, reason = "offered to a site's own templates; the shipped ones leave it out")]
    name: Option<&'a str>,
    subject: &'a str,
    date: &'a str,
    stories: &'a [DigestStory],
    unsubscribe_url: &'a str,
    preferences_url: &'a str,
    layout: &'a Layout,
}

/// One story in a digest: plain text, escaped by the HTML template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestStory {
    pub title: String,
    pub url: String,
    pub summary: Option<String>,
}

/// What a digest issue lists, instead of an editor's Markdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestContent {
    /// The period's date in the newsletter's zone: "28 November 2026".
    pub date: String,
    pub stories: Vec<DigestStory>,
}

/// An issue ready to be personalized: rendered once per issue, not per reader.
#[derive(Debug, Clone)]
pub struct RenderedIssue {
    pub newsletter_name: String,
    /// `List-Id` value as it goes on the wire: `Name <slug.sending-domain>`,
    /// the name quoted or RFC 2047-encoded where it needs to be.
    pub list_id: String,
    pub subject: String,
    pub markdown: String,
    pub html: String,
    /// The plain-text part's body: the rendered HTML as text, not the Markdown source.
    pub text: String,
    /// Set for a digest, rendered from the digest templates instead of `markdown`.
    pub digest: Option<DigestContent>,
    /// What the site's mail layout adds around every issue (`[mail]` logo and postal address).
    pub layout: Layout,
    /// The hidden preview line after the subject; empty: none.
    pub preheader: String,
}

impl RenderedIssue {
    pub fn new(newsletter_name: &str, slug: &str, subject: &str, markdown: &str, mailer: &Mailer) -> Self {
        let name = one_line(newsletter_name);
        let html = markdown_to_html(markdown);
        Self {
            list_id: list_id(&name, &format!("{slug}.{}", mailer.from().email.domain())),
            newsletter_name: name,
            subject: one_line(subject),
            markdown: markdown.to_owned(),
            text: html_to_text(&html),
            html,
            digest: None,
            layout: mailer.layout().clone(),
            preheader: String::new(),
        }
    }

    /// With a preview line (an editor's `--preheader`).
    pub fn with_preheader(mut self, preheader: Option<&str>) -> Self {
        self.preheader = preheader.map(one_line).unwrap_or_default();
        self
    }

    /// A digest of stories, rendered from `digest.html` and `digest.txt`.
    pub fn digest(newsletter_name: &str, slug: &str, subject: &str, content: DigestContent, mailer: &Mailer) -> Self {
        Self { digest: Some(content), ..Self::new(newsletter_name, slug, subject, "", mailer) }
    }

    /// The text and HTML parts for a reader Bulletin knows nothing about
    /// (a preview, a test copy).
    pub fn render(&self, unsubscribe_url: &str, preferences_url: &str) -> Result<(String, String), askama::Error> {
        self.render_for(&Reader { name: None, unsubscribe_url, preferences_url })
    }

    /// The text and HTML parts for one reader.
    pub fn render_for(&self, reader: &Reader<'_>) -> Result<(String, String), askama::Error> {
        let Reader { name, unsubscribe_url, preferences_url } = *reader;
        let newsletter = &self.newsletter_name;
        let subject = &self.subject;
        let layout = &self.layout;
        let preheader = &self.preheader;
        Ok(match &self.digest {
            Some(d) => (
                DigestText {
                    newsletter,
                    name,
                    date: &d.date,
                    stories: &d.stories,
                    unsubscribe_url,
                    preferences_url,
                    layout,
                }
                .render()?,
                DigestHtml {
                    newsletter,
                    preheader,
                    name,
                    subject,
                    date: &d.date,
                    stories: &d.stories,
                    unsubscribe_url,
                    preferences_url,
                    layout,
                }
                .render()?,
            ),
            None => (
                Text { newsletter, name, subject, body: &self.text, unsubscribe_url, preferences_url, layout }
                    .render()?,
                Html {
                    newsletter,
                    preheader,
                    name,
                    subject,
                    body_html: &self.html,
                    unsubscribe_url,
                    preferences_url,
                    layout,
                }
                .render()?,
            ),
        })
    }
}

/// What the issue and digest templates know of the reader a copy is for.
///
/// `name` comes from an imported list and is `None` for most readers; the
/// shipped templates do not print it, so a copy looks the same either way. A
/// site that wants a greeting edits the templates and rebuilds:
/// `{% if let Some(name) = name %}Hello {{ name }},{% endif %}`.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    pub name: Option<&'a str>,
    pub unsubscribe_url: &'a str,
    pub preferences_url: &'a str,
}

/// The `List-Id` header value (RFC 2919): the newsletter's name as a phrase
/// (quoted when it holds `<`, `>`, `"` or other specials, encoded when it is
/// not ASCII), then the list's id in angle brackets.
fn list_id(name: &str, id: &str) -> String {
    use email_encoding::headers::{quoted_string, writer::EmailWriter};
    // RFC 5322 atext: a name made of such words needs no quoting.
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let mut value = String::new();
    if name.split(' ').all(|word| !word.is_empty() && word.chars().all(atext)) {
        value.push_str(name);
    } else {
        // Writing to a String cannot fail.
        let _ = quoted_string::encode(name, &mut EmailWriter::new(&mut value, "List-Id: ".len(), 0, false));
    }
    value.push_str(&format!(" <{id}>"));
    value
}

/// Renders the editor's Markdown (CommonMark with tables, footnotes, strikethrough).
pub fn markdown_to_html(markdown: &str) -> String {
    use pulldown_cmark::{Options, Parser, html};
    let options = Options::ENABLE_TABLES | Options::ENABLE_FOOTNOTES | Options::ENABLE_STRIKETHROUGH;
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, Parser::new_ext(markdown, options));
    out
}

/// How wide the plain-text part's lines are: mail clients show 72 to 78 columns.
const TEXT_WIDTH: usize = 72;

/// The plain-text part as a reader of plain text wants it: emphasis as
/// plain words, links and images as numbered references listed below,
/// tables drawn, scripts and styles gone.
pub fn html_to_text(html: &str) -> String {
    html2text::config::plain_no_decorate()
        .link_footnotes(true)
        .string_from_read(html.as_bytes(), TEXT_WIDTH)
        // Fails only on a width too narrow for the content, which 72 is not, or a failing reader (a slice never fails).
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

/// The raw HTML tags an issue's Markdown carries: they go into the HTML
/// part as written, so the editor is told (`<script>` and the like are
/// dropped by every mail client, and mark the mail as suspicious).
pub fn raw_html_tags(markdown: &str) -> Vec<String> {
    use pulldown_cmark::{Event, Parser};
    let mut tags: Vec<String> = Parser::new(markdown)
        .filter_map(|event| match event {
            Event::Html(raw) | Event::InlineHtml(raw) => Some(raw.into_string()),
            _ => None,
        })
        .flat_map(|raw| {
            raw.split('<')
                .skip(1)
                .filter_map(|tag| {
                    let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                    (!name.is_empty()).then(|| format!("<{}>", name.to_ascii_lowercase()))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

/// Header values never carry a line break, whatever the editor typed.
fn one_line(s: &str) -> String {
    s.split(['\r', '\n']).map(str::trim).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ")
}

pub struct IssueMail<'a> {
    pub issue: &'a RenderedIssue,
    pub to: &'a EmailAddress,
    /// The reader's name, if known: in the `To` header and the templates.
    pub name: Option<&'a str>,
    pub unsubscribe_url: &'a str,
    pub preferences_url: &'a str,
    /// Stable for one delivery, so a retry carries the same Message-ID.
    pub message_id: String,
    /// The envelope sender bounces go to (a VERP address); `None`: the From address.
    pub return_path: Option<&'a lettre::Address>,
}

impl IssueMail<'_> {
    pub fn build(&self, mailer: &Mailer) -> Result<Message, MailError> {
        self.build_framed(mailer, None, None)
    }

    /// [`Self::build`] with the MIME boundary and the `Date` fixed (a random
    /// boundary and now when `None`), so a spliced copy can be held to it byte for byte.
    pub(crate) fn build_framed(
        &self,
        mailer: &Mailer,
        boundary: Option<&str>,
        date: Option<SystemTime>,
    ) -> Result<Message, MailError> {
        let (text, html) = self.issue.render_for(&self.reader())?;
        let mut alternative = MultiPart::alternative();
        if let Some(boundary) = boundary {
            alternative = alternative.boundary(boundary);
        }
        let body = alternative.singlepart(SinglePart::plain(text)).singlepart(SinglePart::html(html));
        self.assemble(mailer, body, date)
    }

    /// What the templates know of this copy's reader.
    pub(crate) fn reader(&self) -> Reader<'_> {
        Reader { name: self.name, unsubscribe_url: self.unsubscribe_url, preferences_url: self.preferences_url }
    }

    /// The message around `body` (the multipart/alternative of the text and
    /// HTML parts, however they were made): every copy's headers, then the
    /// DKIM signature.
    pub(crate) fn assemble(
        &self,
        mailer: &Mailer,
        body: MultiPart,
        date: Option<SystemTime>,
    ) -> Result<Message, MailError> {
        let issue = self.issue;
        let mut builder = Message::builder();
        if let Some(envelope) = super::envelope(self.to, self.return_path)? {
            builder = builder.envelope(envelope);
        }
        let mut message = builder
            .from(mailer.from().clone())
            .to(Mailbox::new(self.name.map(str::to_owned), self.to.to_lettre()))
            .subject(issue.subject.clone())
            .message_id(Some(self.message_id.clone()))
            .multipart(body)?;
        let headers = message.headers_mut();
        if let Some(date) = date {
            // In the place lettre put the current time: the header order stays as sent.
            headers.set(Date::new(date));
        }
        // Encoded once per issue by `list_id`: lettre must not encode it again.
        headers.insert_raw(HeaderValue::dangerous_new_pre_encoded(
            HeaderName::new_from_ascii_str("List-Id"),
            issue.list_id.clone(),
            issue.list_id.clone(),
        ));
        let mut set = |name: &'static str, value: String| {
            headers.insert_raw(HeaderValue::new(HeaderName::new_from_ascii_str(name), value));
        };
        set("List-Unsubscribe", format!("<{}>", self.unsubscribe_url));
        set("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".to_owned());
        set("Precedence", "bulk".to_owned());
        mailer.sign(&mut message);
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_header_safety() {
        assert!(markdown_to_html("# Hello\n\n*world*").contains("<h1>Hello</h1>"));
        assert_eq!(one_line("Breaking\r\nBcc: x@example.org"), "Breaking Bcc: x@example.org");
    }

    #[test]
    fn list_id_quotes_and_encodes_the_name() {
        assert_eq!(list_id("Morning", "mb.example.org"), "Morning <mb.example.org>");
        assert_eq!(list_id("Morning Briefing", "mb.example.org"), "Morning Briefing <mb.example.org>");
        // Specials and non-ASCII never reach the header raw: one `<`, the id's.
        for name in ["News <b>hot</b>", "Say \"hi\"", "Ранок", "a>b<c@d", "Tech: today", "Morning Briefing"] {
            let value = list_id(name, "n.example.org");
            assert!(value.ends_with(" <n.example.org>"), "{value}");
            assert_eq!(value.matches('<').count(), 1, "{value}");
            assert!(value.is_ascii(), "{value}");
            let header = format!("List-Id: {value}\r\n\r\n");
            let parsed = mail_parser::MessageParser::default().parse(header.as_bytes()).unwrap();
            let list = parsed.header("List-Id").and_then(|h| h.as_address()).and_then(|a| a.first()).unwrap();
            assert_eq!(list.name(), Some(name), "{value}");
        }
    }
}
