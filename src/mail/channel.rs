//! One sender's way out: for SMTP a long-lived connection with a lifecycle.
//!
//! After knadh/smtppool (listmonk's pool): a connection unused for
//! `mail.smtp_idle_seconds` is closed, since servers drop idle connections
//! anyway and a dropped one is only noticed when the next message fails on
//! it; a connection kept through a quiet second is checked with a NOOP
//! before it carries a message; and if a kept connection still fails before
//! the body, the message goes at once over a fresh one, once. Nothing was
//! delivered then, so that is no retry and costs the message no attempt. A
//! reply refusing one message (4xx or 5xx before or at the end of data) ends
//! that transaction with RSET and keeps the connection; only a 421 (the
//! server is closing) or a broken connection ends it.

use std::time::Duration;

use lettre::Message;
use tokio::time::Instant;

use super::{Announced, MailError, Outbound, SendFailure, SmtpConnection};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one SMTP step may take; RFC 5321 §4.5.3.2 allows minutes, real servers answer in seconds.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// A kept connection unused this long gets a NOOP before it carries a message:
/// one round trip, only after a quiet spell.
const CHECK_AFTER: Duration = Duration::from_secs(1);
/// For replies that are a courtesy (NOOP, QUIT): a server this slow is dropped.
const COURTESY_TIMEOUT: Duration = Duration::from_secs(5);

/// One sender's way out: for SMTP a long-lived connection, reopened after a
/// failure and closed after `mail.smtp_idle_seconds` unused.
pub struct Channel {
    outbound: Outbound,
    open: Option<Open>,
}

struct Open {
    conn: SmtpConnection,
    last_used: Instant,
    /// It carried a message before: a failure on it may only mean the server dropped it meanwhile.
    used: bool,
}

impl Channel {
    pub(super) fn new(outbound: Outbound) -> Self {
        Self { outbound, open: None }
    }

    /// Sends one message to one recipient; `Ok` carries the server's reply.
    pub async fn send(&mut self, message: &Message) -> Result<String, SendFailure> {
        let ((), sent) = self.send_if(message, std::future::ready(()), |_| true).await;
        sent.expect("always allowed")
    }

    /// Makes sure a working connection is open: closes one idle past the
    /// limit, checks one kept through a quiet spell, opens one if needed.
    /// `Unreachable` when none can be opened: nothing was attempted.
    pub async fn ready(&mut self) -> Result<(), SendFailure> {
        let Outbound::Smtp(target) = &self.outbound else { return Ok(()) };
        if let Some(mut open) = self.open.take() {
            let idle = open.last_used.elapsed();
            if open.conn.is_broken() {
                // dropped
            } else if idle >= target.idle_limit() {
                open.conn.quit(COURTESY_TIMEOUT).await;
            } else if idle < CHECK_AFTER || open.conn.is_alive(COURTESY_TIMEOUT).await {
                self.open = Some(open);
            } else {
                // No answer to NOOP, or a 421: say goodbye in case it still listens.
                open.conn.quit(COURTESY_TIMEOUT).await;
            }
        }
        if self.open.is_none() {
            let conn = target.connect(CONNECT_TIMEOUT).await.map_err(|e| {
                SendFailure::Unreachable(match e {
                    MailError::Transient(detail) | MailError::Setup(detail) => detail,
                    other => other.to_string(),
                })
            })?;
            self.open = Some(Open { conn, last_used: Instant::now(), used: false });
        }
        Ok(())
    }

    /// Whether the server takes mail from us on the open connection (see
    /// [`SmtpConnection::accepts_us`]); `Unreachable` when it refuses our EHLO name.
    pub async fn accepts_us(&mut self) -> Result<(), SendFailure> {
        let Outbound::Smtp(target) = &self.outbound else { return Ok(()) };
        let (Some(probe), Some(open)) = (target.probe(), self.open.as_mut()) else { return Ok(()) };
        let accepted = open.conn.accepts_us(probe, REPLY_TIMEOUT).await;
        if accepted.is_err() {
            self.let_go().await;
        }
        accepted
    }

    /// Whether a connection is open (it may since have been dropped by the
    /// server; [`Self::ready`] finds out). Writing files needs none: always open.
    pub fn is_open(&self) -> bool {
        !matches!(self.outbound, Outbound::Smtp(_)) || self.open.is_some()
    }

    /// When the open connection will have been unused for too long; `None` without one.
    pub fn idle_deadline(&self) -> Option<Instant> {
        let Outbound::Smtp(target) = &self.outbound else { return None };
        self.open.as_ref().map(|open| open.last_used + target.idle_limit())
    }

    /// Closes the connection once it has been unused past the limit (the idle sweep).
    pub async fn close_if_idle(&mut self) {
        if self.idle_deadline().is_some_and(|deadline| deadline <= Instant::now())
            && let Some(open) = self.open.take()
        {
            open.conn.quit(COURTESY_TIMEOUT).await;
        }
    }

    /// Sends one message if `decision`, once known, passes `go`; `None` when it did not.
    ///
    /// Over SMTP the envelope (MAIL FROM, RCPT TO; connecting first if need
    /// be) is announced while `decision` is still being made, so the two
    /// waits overlap; nothing is delivered before the body follows, and a
    /// message that may not go is dropped with RSET.
    pub async fn send_if<T>(
        &mut self,
        message: &Message,
        decision: impl Future<Output = T>,
        go: impl FnOnce(&T) -> bool,
    ) -> (T, Option<Result<String, SendFailure>>) {
        if let Outbound::File(dir) = &self.outbound {
            let decision = decision.await;
            if !go(&decision) {
                return (decision, None);
            }
            let sent = super::write_eml(dir, message)
                .await
                .map(|id| format!("written to file {id}"))
                .map_err(|e| SendFailure::Connection(format!("writing to {}: {e}", dir.display())));
            return (decision, Some(sent));
        }
        let envelope = message.envelope();
        let (Some(from), [to]) = (envelope.from(), envelope.to()) else {
            let decision = decision.await;
            let refused =
                SendFailure::Rejected { code: 0, reply: "one sender and one recipient expected".into(), stage: None };
            let sent = go(&decision).then_some(Err(refused));
            return (decision, sent);
        };
        let (decision, (reused, announced)) = tokio::join!(decision, self.announce(from, to));
        if !go(&decision) {
            let next = match &announced {
                Ok(Announced::Envelope) => Next::Reset,
                // A pipelined DATA was accepted: the server reads a body now, and only closing abandons it.
                Ok(Announced::Data) => Next::Drop,
                Err(e) => Next::after(e),
            };
            self.end_transaction(next).await;
            return (decision, None);
        }
        let body = message.formatted();
        let mut sent = match announced {
            Ok(_) => self.data(&body).await,
            Err(e) => Err(e),
        };
        if reused && sent.as_ref().is_err_and(dropped) {
            // The server dropped the connection we kept (an idle timeout, a
            // restart). Nothing was delivered: the message goes at once over
            // a fresh connection, once.
            tracing::debug!(error = ?sent, "SMTP connection was dropped by the server; sending over a new one");
            self.let_go().await;
            sent = match self.announce(from, to).await.1 {
                Ok(_) => self.data(&body).await,
                Err(e) => Err(e),
            };
        }
        self.end_transaction(sent.as_ref().err().map_or(Next::Keep, Next::after)).await;
        (decision, Some(sent))
    }

    /// MAIL FROM and RCPT TO (and DATA, pipelined), on a ready connection;
    /// with whether that connection had carried a message before.
    async fn announce(
        &mut self,
        from: &lettre::Address,
        to: &lettre::Address,
    ) -> (bool, Result<Announced, SendFailure>) {
        if let Err(e) = self.ready().await {
            return (false, Err(e));
        }
        let open = self.open.as_mut().expect("ready opened a connection");
        (open.used, open.conn.envelope(from, to, REPLY_TIMEOUT).await)
    }

    async fn data(&mut self, body: &[u8]) -> Result<String, SendFailure> {
        let open = self.open.as_mut().expect("announced on an open connection");
        open.conn.data(body, REPLY_TIMEOUT).await
    }

    /// Readies the connection for the next message, or lets it go.
    async fn end_transaction(&mut self, next: Next) {
        let Some(open) = &mut self.open else { return };
        let kept = match next {
            Next::Keep => true,
            Next::Reset => open.conn.reset(REPLY_TIMEOUT).await.is_ok(),
            Next::Drop => false,
        };
        if kept {
            open.used = true;
            open.last_used = Instant::now();
        } else {
            self.let_go().await;
        }
    }

    /// Closes the connection on purpose: with QUIT unless it is broken
    /// (RFC 5321 §4.1.1.10; after a 421 too, in case the server still reads)
    /// or waits for a body, which QUIT would only extend.
    async fn let_go(&mut self) {
        if let Some(open) = self.open.take()
            && !open.conn.is_broken()
            && !open.conn.awaits_body()
        {
            open.conn.quit(COURTESY_TIMEOUT).await;
        }
    }

    pub async fn close(mut self) {
        if let Some(open) = self.open.take() {
            open.conn.quit(COURTESY_TIMEOUT).await;
        }
    }
}

/// What a transaction's end means for its connection.
enum Next {
    Keep,
    /// The message was refused or abandoned, not the connection: RSET and keep it.
    Reset,
    /// Broken, or the server is closing it (421).
    Drop,
}

impl Next {
    fn after(failure: &SendFailure) -> Self {
        match failure {
            SendFailure::Rejected { code, .. } if *code != 421 => Self::Reset,
            _ => Self::Drop,
        }
    }
}

/// A failure that says the server dropped the connection rather than refused the message.
fn dropped(failure: &SendFailure) -> bool {
    matches!(failure, SendFailure::Connection(_) | SendFailure::Rejected { code: 421, .. })
}
