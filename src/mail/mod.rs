//! Outgoing mail: message building and the transports that carry it.
//!
//! The transport is an enum (SMTP, or `.eml` files for a box with no mail
//! server) so the rest of the code holds one concrete `Mailer`. Send errors
//! are classified once here, into retry-later or give-up.

mod confirmation;

use std::path::Path;

use lettre::message::Mailbox;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub use confirmation::ConfirmationMail;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("could not set up the mail transport: {0}")]
    Setup(String),
    #[error("could not render the message: {0}")]
    Render(#[from] askama::Error),
    #[error("could not build the message: {0}")]
    Build(#[from] lettre::error::Error),
    /// Worth trying again later (4xx replies, connection trouble).
    #[error("temporary delivery failure: {0}")]
    Transient(String),
    /// The receiving side refused for good (5xx replies).
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
}

/// How mail leaves this process.
#[derive(Clone)]
pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(AsyncFileTransport<Tokio1Executor>),
}

impl Transport {
    pub fn smtp(url: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailError::Setup(format!("mail.smtp_url: {e}")))?
            .build();
        Ok(Self::Smtp(transport))
    }

    pub fn file(dir: &Path) -> Result<Self, MailError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| MailError::Setup(format!("mail.file_dir {}: {e}", dir.display())))?;
        Ok(Self::File(AsyncFileTransport::new(dir)))
    }

    pub async fn send(&self, message: Message) -> Result<(), MailError> {
        match self {
            Self::Smtp(t) => t.send(message).await.map(drop).map_err(|e| {
                if e.is_permanent() {
                    MailError::Permanent(e.to_string())
                } else {
                    MailError::Transient(e.to_string())
                }
            }),
            Self::File(t) => t
                .send(message)
                .await
                .map(drop)
                .map_err(|e| MailError::Transient(e.to_string())),
        }
    }
}

/// Who mail comes from and how its Message-IDs are made.
#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

impl Mailer {
    pub fn new(transport: Transport, from: Mailbox) -> Self {
        Self { transport, from }
    }

    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// `<random@sending-domain>`: on the From domain, never the host's name.
    pub fn new_message_id(&self) -> String {
        format!(
            "<{}@{}>",
            uuid::Uuid::new_v4().simple(),
            self.from.email.domain()
        )
    }

    pub async fn send(&self, message: Message) -> Result<(), MailError> {
        self.transport.send(message).await
    }
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
