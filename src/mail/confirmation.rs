//! The double opt-in mail. It carries nothing the visitor typed but the
//! address itself: newsletter names come from the config.

use askama::Template;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};

use super::{AutoSubmitted, MailError, Mailer};
use crate::domain::EmailAddress;

#[derive(Template)]
#[template(path = "confirm.txt")]
struct Text<'a> {
    newsletters: &'a [String],
    confirm_url: &'a str,
    ttl_hours: u32,
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct Html<'a> {
    newsletters: &'a [String],
    confirm_url: &'a str,
    ttl_hours: u32,
}

pub struct ConfirmationMail<'a> {
    pub to: &'a EmailAddress,
    pub newsletters: &'a [String],
    pub confirm_url: &'a str,
    pub ttl_hours: u32,
    /// The envelope sender bounces go to (a VERP address); `None`: the From address.
    pub return_path: Option<&'a lettre::Address>,
}

impl ConfirmationMail<'_> {
    pub fn build(&self, mailer: &Mailer, message_id: String) -> Result<Message, MailError> {
        let text = Text { newsletters: self.newsletters, confirm_url: self.confirm_url, ttl_hours: self.ttl_hours }
            .render()?;
        let html = Html { newsletters: self.newsletters, confirm_url: self.confirm_url, ttl_hours: self.ttl_hours }
            .render()?;
        let mut builder = Message::builder();
        if let Some(envelope) = super::envelope(self.to, self.return_path)? {
            builder = builder.envelope(envelope);
        }
        let mut message = builder
            .from(mailer.from().clone())
            .to(Mailbox::new(None, self.to.to_lettre()))
            .subject("Please confirm your subscription")
            .message_id(Some(message_id))
            .header(AutoSubmitted)
            .multipart(MultiPart::alternative_plain_html(text, html))?;
        mailer.sign(&mut message);
        Ok(message)
    }
}
