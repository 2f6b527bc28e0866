//! A long-lived SMTP connection that knows where a send failed.
//!
//! lettre's pooled transport hides two things the delivery engine needs:
//! its sockets lack `TCP_NODELAY` (Nagle meets delayed ACKs and every
//! message stalls ~40 ms on loopback), and its errors do not say whether the
//! message body had been handed over. Here each sender task owns one
//! connection opened on a socket we configured, and drives MAIL, RCPT, DATA
//! and the body separately, so a failure after the body is `AfterData` —
//! the message may have been delivered — and anything earlier is safe to retry.
//! `smtps://` connections are opened on our own socket too (TLS by rustls, as
//! lettre would), so they get `TCP_NODELAY` as well.
//! A failure to open a connection at all is `Unreachable`: the server's state,
//! not the message's.
//!
//! TLS trusts the webpki (Mozilla) roots, the system's store and the CAs in
//! `mail.tls_ca_file`, the same set for STARTTLS and `smtps://`. A
//! certificate that is not trusted makes the server unreachable with a
//! reason that says what to set; under `tls=opportunistic` a failed STARTTLS
//! is followed by a fresh plain-text connection instead.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Noop, Rcpt, Rset};
use lettre::transport::smtp::extension::ClientId;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

use super::MailError;
use super::tls::{ImplicitTls, Trust, said_once, tls_failure};
use crate::domain::SmtpStage;

/// How to reach the SMTP server, parsed once from `mail.smtp_url`.
#[derive(Debug, Clone)]
pub struct SmtpTarget {
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<(String, String)>,
    hello: ClientId,
    /// Why `hello` is that name, for the start-up log.
    hello_source: &'static str,
    idle_limit: Duration,
    trust: Arc<Trust>,
    /// `postmaster@` the domain of `mail.from`: the recipient announced to see whether the server takes mail from us.
    probe: Option<Address>,
}

/// How long a connection may sit unused before it is closed (`mail.smtp_idle_seconds`).
const DEFAULT_IDLE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    None,
    Opportunistic,
    Required,
    Implicit,
}

impl SmtpTarget {
    /// Parses `smtp://[user:pass@]host[:port][?tls=required|opportunistic]` or `smtps://…`.
    pub fn parse(raw: &str) -> Result<Self, MailError> {
        let url = url::Url::parse(raw).map_err(|e| MailError::Setup(format!("mail.smtp_url: {e}")))?;
        let implicit = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => return Err(MailError::Setup(format!("mail.smtp_url: unknown scheme {other:?} (smtp or smtps)"))),
        };
        let host = url.host_str().ok_or_else(|| MailError::Setup("mail.smtp_url: no host".into()))?.to_owned();
        let tls = match (implicit, url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned())) {
            (true, _) => Tls::Implicit,
            (false, None) => Tls::None,
            (false, Some(v)) if v == "required" => Tls::Required,
            (false, Some(v)) if v == "opportunistic" => Tls::Opportunistic,
            (false, Some(v)) => {
                return Err(MailError::Setup(format!("mail.smtp_url: tls={v} (expected required or opportunistic)")));
            }
        };
        let credentials = (!url.username().is_empty()).then(|| {
            let decode = |s: &str| percent_decode(s);
            (decode(url.username()), decode(url.password().unwrap_or_default()))
        });
        let port = url.port().unwrap_or(if implicit { 465 } else { 25 });
        let (hello, hello_source) = match host_name() {
            Some(name) => (ClientId::Domain(name), "this host's name"),
            None => (ClientId::default(), "lettre's default"),
        };
        let trust = Arc::new(Trust::new(&host, &[]).map_err(MailError::Setup)?);
        Ok(Self {
            host,
            port,
            tls,
            credentials,
            hello,
            hello_source,
            idle_limit: DEFAULT_IDLE_LIMIT,
            trust,
            probe: None,
        })
    }

    /// Sets the EHLO name: `configured` (`mail.helo_name`) when not empty, else
    /// this host's name when it is fully qualified, else the domain of
    /// `mail.from`. Relays commonly refuse a name without a dot
    /// (`reject_non_fqdn_helo_hostname`), and container host names rarely have one.
    pub fn with_helo_name(mut self, configured: &str, from_domain: &str) -> Result<Self, MailError> {
        let configured = configured.trim();
        if configured.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(MailError::Setup(format!("mail.helo_name {configured:?}: a host name has no spaces")));
        }
        let (name, source) = if !configured.is_empty() {
            (configured.to_owned(), "mail.helo_name")
        } else if let Some(name) = host_name() {
            (name, "this host's name")
        } else {
            (from_domain.to_owned(), "the domain of mail.from, as this host's name is not fully qualified")
        };
        self.hello = ClientId::Domain(name);
        self.hello_source = source;
        self.probe = Address::new("postmaster", from_domain).ok();
        Ok(self)
    }

    /// Trusts the CA certificates in this PEM file besides the webpki roots and
    /// the system's store (`mail.tls_ca_file`): a relay with a private CA.
    pub fn with_ca_file(mut self, path: &Path) -> Result<Self, MailError> {
        let bad = |e: &dyn std::fmt::Display| {
            MailError::Setup(format!("mail.tls_ca_file {}: {e} (expected PEM CA certificates)", path.display()))
        };
        let pem = std::fs::read(path).map_err(|e| bad(&e))?;
        let extra = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| bad(&e))?;
        if extra.is_empty() {
            return Err(bad(&"no certificate in it"));
        }
        self.trust = Arc::new(Trust::new(&self.host, &extra).map_err(|e| bad(&e))?);
        Ok(self)
    }

    /// The recipient [`SmtpConnection::accepts_us`] announces, when `mail.from` is known.
    pub fn probe(&self) -> Option<&Address> {
        self.probe.as_ref()
    }

    /// The EHLO name and why it is that one.
    pub fn hello_name(&self) -> (String, &'static str) {
        (self.hello.to_string(), self.hello_source)
    }

    /// Closes connections unused for `limit`: servers drop idle ones after seconds, and a
    /// dropped connection is only noticed when the next message fails on it.
    pub fn with_idle_limit(mut self, limit: Duration) -> Self {
        self.idle_limit = limit.max(Duration::from_secs(1));
        self
    }

    pub fn idle_limit(&self) -> Duration {
        self.idle_limit
    }

    /// Opens a connection: TCP with `TCP_NODELAY`, TLS, EHLO and AUTH as
    /// configured, each step within `timeout`. Under `tls=opportunistic` a
    /// STARTTLS that fails (an untrusted certificate, a broken handshake) is
    /// followed by a fresh connection in plain text.
    pub async fn connect(&self, timeout: Duration) -> Result<SmtpConnection, MailError> {
        match self.open(timeout, self.tls).await {
            Err(Opening::StartTls(e)) if self.tls == Tls::Opportunistic => {
                if !self.trust.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "STARTTLS with {}:{} failed ({e}); tls=opportunistic sends in plain text instead",
                        self.host,
                        self.port
                    );
                }
                self.open(timeout, Tls::None).await.map_err(Opening::into_error)
            }
            opened => opened.map_err(Opening::into_error),
        }
    }

    async fn open(&self, timeout: Duration, tls: Tls) -> Result<SmtpConnection, Opening> {
        let at = format!("{}:{}", self.host, self.port);
        let transient = |e: &dyn std::fmt::Display| {
            Opening::Failed(MailError::Transient(format!("connecting to {at}: {}", said_once(&e.to_string()))))
        };
        let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(|_| transient(&"timed out"))?
            .map_err(|e| transient(&e))?;
        stream.set_nodelay(true).map_err(|e| transient(&e))?;
        let transport: Box<dyn AsyncTokioStream> = if tls == Tls::Implicit {
            let name = ServerName::try_from(self.host.clone())
                .map_err(|e| Opening::Failed(MailError::Setup(format!("mail.smtp_url: {e}"))))?;
            let tls =
                tokio::time::timeout(timeout, TlsConnector::from(self.trust.rustls.clone()).connect(name, stream))
                    .await
                    .map_err(|_| transient(&"no TLS handshake in time"))?
                    .map_err(|e| Opening::Failed(MailError::Transient(tls_failure(&at, &e))))?;
            Box::new(ImplicitTls(tls))
        } else {
            Box::new(stream)
        };
        let mut conn =
            tokio::time::timeout(timeout, AsyncSmtpConnection::connect_with_transport(transport, &self.hello))
                .await
                .map_err(|_| transient(&"no greeting in time"))?
                .map_err(|e| {
                    let reply = server_reply(&e);
                    if refuses_hello(&reply) || reply.starts_with("504 ") || reply.starts_with("501 ") {
                        Opening::Failed(MailError::Transient(hello_refused(&self.hello.to_string(), &reply)))
                    } else {
                        transient(&reply)
                    }
                })?;
        let starttls = match tls {
            Tls::Required => {
                if !conn.can_starttls() {
                    conn.abort().await;
                    return Err(transient(&"the server does not offer STARTTLS, which tls=required asks for"));
                }
                true
            }
            Tls::Opportunistic => conn.can_starttls(),
            Tls::None | Tls::Implicit => false,
        };
        if starttls {
            let upgraded = tokio::time::timeout(timeout, conn.starttls(self.trust.starttls.clone(), &self.hello)).await;
            let failure = match upgraded {
                Ok(Ok(())) => None,
                Err(_) => Some("no STARTTLS in time".to_owned()),
                Ok(Err(e)) => Some(tls_failure(&at, &e)),
            };
            if let Some(failure) = failure {
                // No QUIT: after a failed handshake lettre holds no stream to write it on.
                return Err(Opening::StartTls(failure));
            }
        }
        // lettre reads the EHLO reply for the extensions it knows, and PIPELINING is not one of them: ask again.
        let pipelining = match tokio::time::timeout(timeout, conn.command(Ehlo::new(self.hello.clone()))).await {
            Ok(Ok(reply)) => offers_pipelining(reply.message()),
            Ok(Err(_)) => false,
            Err(_) => return Err(transient(&"no answer to EHLO in time")),
        };
        if let Some((user, pass)) = &self.credentials {
            let credentials = Credentials::new(user.clone(), pass.clone());
            tokio::time::timeout(timeout, conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials))
                .await
                .map_err(|_| transient(&"no answer to AUTH in time"))?
                .map_err(|e| {
                    if e.is_permanent() {
                        Opening::Failed(MailError::Setup(format!("SMTP authentication: {}", server_reply(&e))))
                    } else {
                        transient(&e)
                    }
                })?;
        }
        Ok(SmtpConnection { conn, hello: self.hello.to_string(), pipelining, in_data: false })
    }
}

/// Whether an EHLO reply's lines announce PIPELINING (RFC 2920).
fn offers_pipelining<'a>(lines: impl Iterator<Item = &'a str>) -> bool {
    lines.into_iter().any(|line| line.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING")))
}

/// Why a connection did not open.
enum Opening {
    /// STARTTLS failed: under `tls=opportunistic` plain text is tried next.
    StartTls(String),
    Failed(MailError),
}

impl Opening {
    fn into_error(self) -> MailError {
        match self {
            Self::StartTls(detail) => MailError::Transient(detail),
            Self::Failed(e) => e,
        }
    }
}

/// This host's name, when it is fully qualified (has a dot): a usable EHLO name.
fn host_name() -> Option<String> {
    hostname::get().ok().and_then(|h| h.into_string().ok()).filter(|name| name.contains('.'))
}

/// Userinfo is percent-encoded, not a form: `+` stays a plus and `&` is just a character.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Where a send stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    /// No connection could be opened (refused, DNS, TLS, greeting, EHLO,
    /// AUTH): the server is down or misconfigured, whatever the message.
    #[error("the mail server cannot be reached: {0}")]
    Unreachable(String),
    /// The server replied with an error code before accepting the message;
    /// `stage` is the command it answered (`None`: not a step of a delivery),
    /// which tells what its words can mean ([`SmtpStage`]).
    #[error("refused by the mail server: {reply}")]
    Rejected { code: u16, reply: String, stage: Option<SmtpStage> },
    /// The connection failed before the body was handed over: nothing was delivered.
    #[error("the connection failed before the message was sent: {0}")]
    Connection(String),
    /// The body was handed over but no final reply came: it may have been delivered.
    #[error("the connection was lost after the message was sent (it may have been delivered): {0}")]
    AfterData(String),
}

pub struct SmtpConnection {
    conn: AsyncSmtpConnection,
    /// Our EHLO name, for the reason given when the server refuses it.
    hello: String,
    /// The server offers PIPELINING (RFC 2920): MAIL, RCPT and DATA leave in
    /// one write and their replies are read together, one round trip instead of three.
    pipelining: bool,
    /// DATA was accepted (354): the server now reads a body, and only the body's
    /// end or a closed connection ends that (RSET or QUIT would be read as body text).
    in_data: bool,
}

/// How far [`SmtpConnection::envelope`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// MAIL and RCPT accepted; DATA not sent yet.
    Envelope,
    /// MAIL, RCPT and DATA accepted (pipelined): the body is awaited.
    Data,
}

impl SmtpConnection {
    pub fn is_broken(&self) -> bool {
        self.conn.has_broken()
    }

    /// A NOOP answered in time: the cheap check that a kept connection still works.
    pub async fn is_alive(&mut self, timeout: Duration) -> bool {
        matches!(tokio::time::timeout(timeout, self.conn.command(Noop)).await, Ok(Ok(_)))
    }

    /// Announces one message: MAIL FROM and RCPT TO, and with PIPELINING
    /// DATA too, all in one write. Every reply is bounded by `timeout`; a
    /// step that times out counts like a dropped connection at that step.
    /// Nothing is delivered until [`Self::data`] sends the body.
    pub async fn envelope(
        &mut self,
        from: &Address,
        to: &Address,
        timeout: Duration,
    ) -> Result<Announced, SendFailure> {
        let conn = &mut self.conn;
        let mail = Mail::new(Some(from.clone()), vec![]);
        let rcpt = Rcpt::new(to.clone(), vec![]);
        let announced = if self.pipelining {
            // Every reply is read, whichever fails, so the next command meets its own reply.
            let group = Pipelined(format!("{mail}{rcpt}{Data}"));
            let mail = step(timeout, "MAIL FROM", Some(SmtpStage::BeforeRcpt), conn.command(group)).await;
            let rcpt = if matches!(mail, Err(SendFailure::Connection(_))) {
                mail.clone()
            } else {
                step(timeout, "RCPT TO", Some(SmtpStage::Rcpt), conn.read_response()).await
            };
            let data = if matches!(rcpt, Err(SendFailure::Connection(_))) {
                rcpt.clone()
            } else {
                step(timeout, "DATA", Some(SmtpStage::Data), conn.read_response()).await
            };
            self.in_data = data.is_ok();
            mail.and(rcpt).and(data).map(|_| Announced::Data)
        } else {
            async {
                step(timeout, "MAIL FROM", Some(SmtpStage::BeforeRcpt), conn.command(mail)).await?;
                step(timeout, "RCPT TO", Some(SmtpStage::Rcpt), conn.command(rcpt)).await
            }
            .await
            .map(|_| Announced::Envelope)
        };
        match announced {
            Err(SendFailure::Rejected { reply, .. }) if refuses_hello(&reply) => {
                Err(SendFailure::Unreachable(hello_refused(&self.hello, &reply)))
            }
            other => other,
        }
    }

    /// A server waiting for a body after a pipelined DATA: it can only be
    /// closed without a word (see [`Self::in_data`]).
    pub fn awaits_body(&self) -> bool {
        self.in_data
    }

    /// Whether the server takes mail from us at all: a server that checks
    /// the EHLO name only at RCPT (Postfix's `smtpd_delay_reject`, the
    /// default) refuses it there. Announces `MAIL FROM:<>` to `probe` and
    /// drops it with RSET; only a refusal of our EHLO name counts as `Unreachable`.
    pub async fn accepts_us(&mut self, probe: &Address, timeout: Duration) -> Result<(), SendFailure> {
        let conn = &mut self.conn;
        let announced = async {
            step(timeout, "MAIL FROM", Some(SmtpStage::BeforeRcpt), conn.command(Mail::new(None, vec![]))).await?;
            step(timeout, "RCPT TO", Some(SmtpStage::Rcpt), conn.command(Rcpt::new(probe.clone(), vec![]))).await
        };
        let result = match announced.await {
            Err(SendFailure::Rejected { reply, .. }) if refuses_hello(&reply) => {
                Err(SendFailure::Unreachable(hello_refused(&self.hello, &reply)))
            }
            Err(SendFailure::Connection(detail)) => Err(SendFailure::Unreachable(detail)),
            _ => Ok(()),
        };
        let _ = step(timeout, "RSET", None, self.conn.command(Rset)).await;
        result
    }

    /// Hands over the body of the announced message (after DATA, unless a
    /// pipelined DATA was accepted already), dot-stuffed and ended in one
    /// write; `Ok` carries the final reply.
    pub async fn data(&mut self, message: &[u8], timeout: Duration) -> Result<String, SendFailure> {
        let conn = &mut self.conn;
        if !std::mem::take(&mut self.in_data) {
            step(timeout, "DATA", Some(SmtpStage::Data), conn.command(Data)).await?;
        }
        // Bodies are 7-bit (lettre encodes every part); anything else goes through lettre's own encoder.
        let sent = match std::str::from_utf8(message) {
            Ok(text) => tokio::time::timeout(timeout, conn.command(Pipelined(dot_stuffed(text)))).await,
            Err(_) => tokio::time::timeout(timeout, conn.message(message)).await,
        };
        match sent {
            Err(_) => Err(SendFailure::AfterData(format!("no reply to the end of data within {timeout:?}"))),
            Ok(Ok(response)) => Ok(format!("{} {}", response.code(), response.message().collect::<Vec<_>>().join(" "))),
            Ok(Err(e)) => match e.status() {
                Some(code) => Err(SendFailure::Rejected {
                    code: code_number(code),
                    reply: server_reply(&e),
                    stage: Some(SmtpStage::Data),
                }),
                None => Err(SendFailure::AfterData(e.to_string())),
            },
        }
    }

    /// Drops the announced message (RSET) so the connection can carry the next one.
    pub async fn reset(&mut self, timeout: Duration) -> Result<(), SendFailure> {
        step(timeout, "RSET", None, self.conn.command(Rset)).await.map(drop)
    }

    /// Says goodbye, waiting at most `timeout` for the server's reply.
    pub async fn quit(mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.conn.quit()).await;
    }
}

/// Text that goes to the server as it is, in one write: a pipelined group of
/// commands, or a dot-stuffed body with its end.
struct Pipelined(String);

impl std::fmt::Display for Pipelined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The body as it goes after DATA (RFC 5321 §4.5.2): a `.` opening a line
/// doubled, then `CRLF.CRLF`, as lettre's own encoder writes it, found with
/// one `memmem` pass instead of a byte-by-byte state machine.
fn dot_stuffed(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + message.len() / 64 + 5);
    if message.starts_with('.') {
        out.push('.');
    }
    let mut rest = 0;
    for at in memchr::memmem::find_iter(message.as_bytes(), b"\r\n.") {
        out.push_str(&message[rest..at + 2]);
        out.push('.');
        rest = at + 2;
    }
    out.push_str(&message[rest..]);
    out.push_str("\r\n.\r\n");
    out
}

/// Postfix's words for a refused EHLO/HELO name (504 5.5.2 "Helo command rejected").
fn refuses_hello(reply: &str) -> bool {
    reply.to_ascii_lowercase().contains("helo command rejected")
}

fn hello_refused(hello: &str, reply: &str) -> String {
    format!(
        "the mail server refuses our EHLO name {hello} ({reply}): set mail.helo_name to a fully-qualified \
         name the server accepts"
    )
}

/// One command before the body: a failure here means nothing was delivered.
async fn step(
    timeout: Duration,
    name: &str,
    stage: Option<SmtpStage>,
    command: impl std::future::Future<
        Output = Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error>,
    >,
) -> Result<lettre::transport::smtp::response::Response, SendFailure> {
    match tokio::time::timeout(timeout, command).await {
        Err(_) => Err(SendFailure::Connection(format!("no reply to {name} within {timeout:?}"))),
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(match e.status() {
            Some(code) => SendFailure::Rejected { code: code_number(code), reply: server_reply(&e), stage },
            None => SendFailure::Connection(said_once(&e.to_string())),
        }),
    }
}

/// The server's reply as it sent it ("550 5.1.1 <x@example.org>: …"), not
/// lettre's wording of it ("permanent error (550): 5.1.1 …").
fn server_reply(error: &lettre::transport::smtp::Error) -> String {
    let text = error.to_string();
    ["permanent error (", "transient error ("]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))
        .and_then(|rest| rest.split_once("): "))
        .map_or(text.clone(), |(code, reply)| format!("{code} {reply}"))
}

fn code_number(code: lettre::transport::smtp::response::Code) -> u16 {
    code.to_string().parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = SmtpTarget::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("127.0.0.1", 2525, Tls::None));
        let t = SmtpTarget::parse("smtps://user%40x:p%26ss@mail.example.com").unwrap();
        assert_eq!((t.port, t.tls), (465, Tls::Implicit));
        assert_eq!(t.credentials, Some(("user@x".into(), "p&ss".into())));
        let t = SmtpTarget::parse("smtp://news+letters:a+b&c=d%25@mail.example.com").unwrap();
        assert_eq!(t.credentials, Some(("news+letters".into(), "a+b&c=d%".into())), "+ and & survive");
        let t = SmtpTarget::parse("smtp://mail.example.com:587?tls=required").unwrap();
        assert_eq!(t.tls, Tls::Required);
        assert!(SmtpTarget::parse("http://x").is_err());
        assert!(SmtpTarget::parse("smtp://x?tls=maybe").is_err());
    }

    #[test]
    fn pipelining_is_read_from_the_ehlo_reply() {
        let reply = ["sink.test", "SIZE 10240000", "pipelining", "8BITMIME"];
        assert!(offers_pipelining(reply.into_iter()));
        assert!(!offers_pipelining(["sink.test", "PIPELININGX", "SIZE"].into_iter()));
        assert!(!offers_pipelining(std::iter::empty()));
    }

    /// lettre's byte-by-byte transparency (`ClientCodec::encode`), as the reference.
    fn stuffed_byte_by_byte(message: &[u8]) -> Vec<u8> {
        let mut out = vec![];
        let (mut line_start, mut after_cr) = (true, false);
        for &b in message {
            out.push(b);
            if b == b'.' && line_start {
                out.push(b'.');
            }
            line_start = b == b'\n' && after_cr;
            after_cr = b == b'\r';
        }
        out.extend_from_slice(b"\r\n.\r\n");
        out
    }

    #[test]
    fn dot_stuffing_matches_lettres_encoder() {
        for message in [".", "..\r\n.", "a\r\n.b\r\n..c\r\n", "a\n.b\r.c\r\r\n.d", "", "\r\n.\r\n", "x.\r\n"] {
            assert_eq!(dot_stuffed(message).as_bytes(), stuffed_byte_by_byte(message.as_bytes()), "{message:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn dot_stuffing_matches_lettres_encoder_on_any_text(message in "[a.\r\n]{0,40}") {
            let stuffed = dot_stuffed(&message);
            proptest::prop_assert_eq!(stuffed.as_bytes(), stuffed_byte_by_byte(message.as_bytes()));
        }
    }
}
