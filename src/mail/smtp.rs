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

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Noop, Rcpt, Rset};
use lettre::transport::smtp::extension::ClientId;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsConnector;

use super::MailError;

/// How to reach the SMTP server, parsed once from `mail.smtp_url`.
#[derive(Debug, Clone)]
pub struct SmtpTarget {
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<(String, String)>,
    hello: ClientId,
    idle_limit: Duration,
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
        let hello = hostname_client_id();
        Ok(Self { host, port, tls, credentials, hello, idle_limit: DEFAULT_IDLE_LIMIT })
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
    /// configured, each step within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<SmtpConnection, MailError> {
        let transient =
            |e: &dyn std::fmt::Display| MailError::Transient(format!("connecting to {}:{}: {e}", self.host, self.port));
        let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(|_| transient(&"timed out"))?
            .map_err(|e| transient(&e))?;
        stream.set_nodelay(true).map_err(|e| transient(&e))?;
        let transport: Box<dyn AsyncTokioStream> = if self.tls == Tls::Implicit {
            let name =
                ServerName::try_from(self.host.clone()).map_err(|e| MailError::Setup(format!("mail.smtp_url: {e}")))?;
            let tls = tokio::time::timeout(timeout, TlsConnector::from(tls_config()).connect(name, stream))
                .await
                .map_err(|_| transient(&"no TLS handshake in time"))?
                .map_err(|e| transient(&format!("TLS: {e}")))?;
            Box::new(ImplicitTls(tls))
        } else {
            Box::new(stream)
        };
        let mut conn =
            tokio::time::timeout(timeout, AsyncSmtpConnection::connect_with_transport(transport, &self.hello))
                .await
                .map_err(|_| transient(&"no greeting in time"))?
                .map_err(|e| transient(&e))?;
        let starttls = match self.tls {
            Tls::Required => true,
            Tls::Opportunistic => conn.can_starttls(),
            Tls::None | Tls::Implicit => false,
        };
        if starttls {
            let tls = TlsParameters::new(self.host.clone()).map_err(|e| MailError::Setup(e.to_string()))?;
            tokio::time::timeout(timeout, conn.starttls(tls, &self.hello))
                .await
                .map_err(|_| transient(&"no STARTTLS in time"))?
                .map_err(|e| transient(&e))?;
        }
        if let Some((user, pass)) = &self.credentials {
            let credentials = Credentials::new(user.clone(), pass.clone());
            tokio::time::timeout(timeout, conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials))
                .await
                .map_err(|_| transient(&"no answer to AUTH in time"))?
                .map_err(|e| {
                    if e.is_permanent() { MailError::Setup(format!("SMTP authentication: {e}")) } else { transient(&e) }
                })?;
        }
        Ok(SmtpConnection { conn })
    }
}

/// Implicit TLS (`smtps://`) on a socket opened here, so it has `TCP_NODELAY`
/// like every other connection (lettre's own connect does not set it).
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The TLS client setup lettre uses too: rustls with ring and the webpki roots, built once.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            let config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports TLS 1.2 and 1.3")
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// The EHLO name: this host's name when it is a usable domain, else lettre's default.
fn hostname_client_id() -> ClientId {
    match hostname::get().ok().and_then(|h| h.into_string().ok()) {
        Some(name) if name.contains('.') => ClientId::Domain(name),
        _ => ClientId::default(),
    }
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
    /// The server replied with an error code before accepting the message.
    #[error("refused by the mail server: {reply}")]
    Rejected { code: u16, reply: String },
    /// The connection failed before the body was handed over: nothing was delivered.
    #[error("the connection failed before the message was sent: {0}")]
    Connection(String),
    /// The body was handed over but no final reply came: it may have been delivered.
    #[error("the connection was lost after the message was sent (it may have been delivered): {0}")]
    AfterData(String),
}

pub struct SmtpConnection {
    conn: AsyncSmtpConnection,
}

impl SmtpConnection {
    pub fn is_broken(&self) -> bool {
        self.conn.has_broken()
    }

    /// A NOOP answered in time: the cheap check that a kept connection still works.
    pub async fn is_alive(&mut self, timeout: Duration) -> bool {
        matches!(tokio::time::timeout(timeout, self.conn.command(Noop)).await, Ok(Ok(_)))
    }

    /// Announces one message: MAIL FROM and RCPT TO. Every step is bounded
    /// by `timeout`; a step that times out counts like a dropped connection
    /// at that step. Nothing is delivered until [`Self::data`].
    pub async fn envelope(&mut self, from: &Address, to: &Address, timeout: Duration) -> Result<(), SendFailure> {
        let conn = &mut self.conn;
        step(timeout, "MAIL FROM", conn.command(Mail::new(Some(from.clone()), vec![]))).await?;
        step(timeout, "RCPT TO", conn.command(Rcpt::new(to.clone(), vec![]))).await?;
        Ok(())
    }

    /// Hands over the body of the announced message; `Ok` carries the final reply.
    pub async fn data(&mut self, message: &[u8], timeout: Duration) -> Result<String, SendFailure> {
        let conn = &mut self.conn;
        step(timeout, "DATA", conn.command(Data)).await?;
        match tokio::time::timeout(timeout, conn.message(message)).await {
            Err(_) => Err(SendFailure::AfterData(format!("no reply to the end of data within {timeout:?}"))),
            Ok(Ok(response)) => Ok(format!("{} {}", response.code(), response.message().collect::<Vec<_>>().join(" "))),
            Ok(Err(e)) => match e.status() {
                Some(code) => Err(SendFailure::Rejected { code: code_number(code), reply: e.to_string() }),
                None => Err(SendFailure::AfterData(e.to_string())),
            },
        }
    }

    /// Drops the announced message (RSET) so the connection can carry the next one.
    pub async fn reset(&mut self, timeout: Duration) -> Result<(), SendFailure> {
        step(timeout, "RSET", self.conn.command(Rset)).await.map(drop)
    }

    /// Says goodbye, waiting at most `timeout` for the server's reply.
    pub async fn quit(mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.conn.quit()).await;
    }
}

/// One command before the body: a failure here means nothing was delivered.
async fn step(
    timeout: Duration,
    name: &str,
    command: impl std::future::Future<
        Output = Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error>,
    >,
) -> Result<lettre::transport::smtp::response::Response, SendFailure> {
    match tokio::time::timeout(timeout, command).await {
        Err(_) => Err(SendFailure::Connection(format!("no reply to {name} within {timeout:?}"))),
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(match e.status() {
            Some(code) => SendFailure::Rejected { code: code_number(code), reply: e.to_string() },
            None => SendFailure::Connection(e.to_string()),
        }),
    }
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
}
