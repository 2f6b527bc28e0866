//! An issue as mail: Markdown rendered once, then one message per reader
//! with their own unsubscribe link in the body and in the RFC 8058 headers.

use askama::Template;
use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};

use super::{MailError, Mailer};
use crate::domain::EmailAddress;

#[derive(Template)]
#[template(path = "issue.txt")]
struct Text<'a> {
    newsletter: &'a str,
    subject: &'a str,
    body: &'a str,
    unsubscribe_url: &'a str,
    preferences_url: &'a str,
}

#[derive(Template)]
#[template(path = "issue.html")]
struct Html<'a> {
    newsletter: &'a str,
    subject: &'a str,
    body_html: &'a str,
    unsubscribe_url: &'a str,
    preferences_url: &'a str,
}

/// An issue ready to be personalized: rendered once per issue, not per reader.
#[derive(Debug, Clone)]
pub struct RenderedIssue {
    pub newsletter_name: String,
    /// `List-Id` value: `Name <slug.sending-domain>`.
    pub list_id: String,
    pub subject: String,
    pub markdown: String,
    pub html: String,
}

impl RenderedIssue {
    pub fn new(newsletter_name: &str, slug: &str, subject: &str, markdown: &str, mailer: &Mailer) -> Self {
        let name = one_line(newsletter_name);
        Self {
            list_id: format!("{name} <{slug}.{}>", mailer.from().email.domain()),
            newsletter_name: name,
            subject: one_line(subject),
            markdown: markdown.to_owned(),
            html: markdown_to_html(markdown),
        }
    }
}

/// Renders the editor's Markdown (CommonMark with tables, footnotes, strikethrough).
pub fn markdown_to_html(markdown: &str) -> String {
    use pulldown_cmark::{Options, Parser, html};
    let options = Options::ENABLE_TABLES | Options::ENABLE_FOOTNOTES | Options::ENABLE_STRIKETHROUGH;
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, Parser::new_ext(markdown, options));
    out
}

/// Header values never carry a line break, whatever the editor typed.
fn one_line(s: &str) -> String {
    s.split(['\r', '\n']).map(str::trim).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ")
}

pub struct IssueMail<'a> {
    pub issue: &'a RenderedIssue,
    pub to: &'a EmailAddress,
    pub unsubscribe_url: &'a str,
    pub preferences_url: &'a str,
    /// Stable for one delivery, so a retry carries the same Message-ID.
    pub message_id: String,
}

impl IssueMail<'_> {
    pub fn build(&self, mailer: &Mailer) -> Result<Message, MailError> {
        let issue = self.issue;
        let text = Text {
            newsletter: &issue.newsletter_name,
            subject: &issue.subject,
            body: &issue.markdown,
            unsubscribe_url: self.unsubscribe_url,
            preferences_url: self.preferences_url,
        }
        .render()?;
        let html = Html {
            newsletter: &issue.newsletter_name,
            subject: &issue.subject,
            body_html: &issue.html,
            unsubscribe_url: self.unsubscribe_url,
            preferences_url: self.preferences_url,
        }
        .render()?;
        let mut message = Message::builder()
            .from(mailer.from().clone())
            .to(Mailbox::new(None, self.to.to_lettre()))
            .subject(issue.subject.clone())
            .message_id(Some(self.message_id.clone()))
            .multipart(MultiPart::alternative_plain_html(text, html))?;
        let headers = message.headers_mut();
        let mut set = |name: &'static str, value: String| {
            headers.insert_raw(HeaderValue::new(HeaderName::new_from_ascii_str(name), value));
        };
        set("List-Id", issue.list_id.clone());
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
}
