//! Outgoing mail: message building (headers, MIME, templates, DKIM) and the
//! ways a message leaves this process.
//!
//! `Mailer` is who mail is from and how it is signed; `Outbound` is where it
//! goes: an SMTP server, or `.eml` files for a box with no mail server.

mod channel;
mod confirmation;
mod issue;
pub mod smtp;
mod splice;
mod tls;

use std::path::{Path, PathBuf};

use lettre::Message;
use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm, DkimSigningKey,
};
use lettre::message::header::{Header, HeaderName, HeaderValue};

pub use channel::Channel;
pub use confirmation::ConfirmationMail;
pub use issue::{
    DigestContent, DigestStory, IssueMail, Reader, RenderedIssue, html_to_text, markdown_to_html, raw_html_tags,
};
pub use smtp::{Announced, SendFailure, SmtpConnection, SmtpTarget};
pub use splice::PreparedIssue;

use crate::config::{DkimSettings, MailSettings, TransportKind};
use crate::domain::EmailAddress;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail setup: {0}")]
    Setup(String),
    #[error("could not render the message: {0}")]
    Render(#[from] askama::Error),
    #[error("could not build the message: {0}")]
    Build(#[from] lettre::error::Error),
    /// Worth trying again later (connection trouble).
    #[error("temporary delivery failure: {0}")]
    Transient(String),
}

/// Who mail is from, how Message-IDs are made and whether it is DKIM-signed.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    dkim: Option<std::sync::Arc<DkimConfig>>,
    layout: Layout,
}

/// What an issue's or digest's layout shows besides the content, from `[mail]`:
/// set in the config, not in the (compiled-in) templates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// An absolute https:// image shown at the top; empty: none.
    pub logo_url: String,
    /// The sender's postal address in the footer (CAN-SPAM asks for one); empty: none.
    pub postal_address: String,
}

impl Mailer {
    pub fn new(from: Mailbox) -> Self {
        Self { from, dkim: None, layout: Layout::default() }
    }

    /// Reads the DKIM key when `[mail.dkim]` is set.
    pub fn from_settings(settings: &MailSettings) -> Result<Self, MailError> {
        let from: Mailbox = settings.from.parse().map_err(|e| MailError::Setup(format!("mail.from: {e}")))?;
        let mut mailer = Self::new(from);
        mailer.layout =
            Layout { logo_url: settings.logo_url.clone(), postal_address: settings.postal_address.trim().to_owned() };
        if let Some(dkim) = &settings.dkim {
            mailer.dkim = Some(std::sync::Arc::new(dkim_config(dkim)?));
        }
        Ok(mailer)
    }

    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// `<random@sending-domain>`: on the From domain, never the host's name.
    pub fn new_message_id(&self) -> String {
        format!("<{}@{}>", uuid::Uuid::new_v4().simple(), self.from.email.domain())
    }

    /// A Message-ID fixed by `key`, so every retry of one delivery carries the same one.
    pub fn stable_message_id(&self, key: &str) -> String {
        format!("<{key}@{}>", self.from.email.domain())
    }

    /// Signs the message when DKIM is configured; a no-op otherwise.
    pub fn sign(&self, message: &mut Message) {
        if let Some(dkim) = &self.dkim {
            message.sign(dkim);
        }
    }
}

/// The headers a receiver must be able to trust: the RFC 8058 pair among them.
const DKIM_HEADERS: [&str; 9] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

fn dkim_config(settings: &DkimSettings) -> Result<DkimConfig, MailError> {
    let pem = std::fs::read_to_string(&settings.key_file)
        .map_err(|e| MailError::Setup(format!("mail.dkim.key_file {}: {e}", settings.key_file.display())))?;
    let key = DkimSigningKey::new(&pem, DkimSigningAlgorithm::Rsa)
        .map_err(|e| MailError::Setup(format!("mail.dkim.key_file: not an RSA private key in PEM: {e}")))?;
    Ok(DkimConfig::new(
        settings.selector.clone(),
        settings.domain.clone(),
        key,
        DKIM_HEADERS.iter().map(|h| HeaderName::new_from_ascii_str(h)).collect(),
        DkimCanonicalization { header: DkimCanonicalizationType::Relaxed, body: DkimCanonicalizationType::Relaxed },
    ))
}

/// Where messages go.
#[derive(Clone)]
pub enum Outbound {
    Smtp(SmtpTarget),
    /// `.eml` files in this directory.
    File(PathBuf),
}

impl Outbound {
    pub fn from_settings(settings: &MailSettings) -> Result<Self, MailError> {
        use secrecy::ExposeSecret;
        Ok(match settings.transport {
            TransportKind::Smtp => {
                let from: Mailbox = settings.from.parse().map_err(|e| MailError::Setup(format!("mail.from: {e}")))?;
                let mut target = SmtpTarget::parse(settings.smtp_url.expose_secret())?
                    .with_idle_limit(std::time::Duration::from_secs(settings.smtp_idle_seconds))
                    .with_helo_name(&settings.helo_name, from.email.domain())?;
                if !settings.tls_ca_file.trim().is_empty() {
                    target = target.with_ca_file(Path::new(settings.tls_ca_file.trim()))?;
                }
                Self::Smtp(target)
            }
            TransportKind::File => Self::file(&settings.file_dir)?,
        })
    }

    pub fn file(dir: &Path) -> Result<Self, MailError> {
        std::fs::create_dir_all(dir).map_err(|e| MailError::Setup(format!("mail.file_dir {}: {e}", dir.display())))?;
        Ok(Self::File(dir.to_owned()))
    }

    /// A sender's own channel: one SMTP connection, opened when first needed.
    pub fn channel(&self) -> Channel {
        Channel::new(self.clone())
    }

    /// Opens and closes one connection: whether the server can be reached
    /// now and takes mail from us (a refused EHLO name may show only at RCPT).
    pub async fn check(&self) -> Result<(), SendFailure> {
        let mut channel = self.channel();
        channel.ready().await?;
        channel.accepts_us().await?;
        channel.close().await;
        Ok(())
    }
}

/// The SMTP envelope for a message to `to` whose bounces go to `return_path`
/// (a VERP address, see README "Bounces and complaints"); `None` leaves
/// lettre's envelope, from the From header.
fn envelope(to: &EmailAddress, return_path: Option<&lettre::Address>) -> Result<Option<Envelope>, MailError> {
    return_path.map(|from| Ok(Envelope::new(Some(from.clone()), vec![to.to_lettre()])?)).transpose()
}

/// `Auto-Submitted: auto-generated` (RFC 3834), on system mail such as confirmations.
#[derive(Clone)]
pub struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// Writes one message as `dir/ID.eml`, returning the ID. It is written
/// under a hidden temporary name and renamed once complete, so a full disk
/// leaves no empty or cut-off `.eml` for a pickup job to send.
pub(crate) async fn write_eml(dir: &Path, message: &Message) -> std::io::Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let partial = dir.join(format!(".{id}.eml.partial"));
    let written = async {
        tokio::fs::write(&partial, message.formatted()).await?;
        tokio::fs::rename(&partial, dir.join(format!("{id}.eml"))).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    written.map(|()| id)
}
