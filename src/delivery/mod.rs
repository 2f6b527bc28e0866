//! The delivery engine: every message Bulletin sends goes through here,
//! confirmation mail and issues alike.
//!
//! A claim loop takes due ledger rows in batches under a lease and feeds
//! `concurrency` sender tasks, each owning one SMTP connection. A sender
//! marks its row `sending` (re-checking that the reader still wants it)
//! while it announces the envelope, sends the body once the mark is stored,
//! and queues the row's result right after the reply. Memory holds two
//! batches at most (one being sent, the next claimed), whatever the list
//! size. On shutdown nothing new is claimed, senders finish the message in
//! hand, and claimed rows not yet started are released for the next worker.
//!
//! When the mail server cannot be reached at all, the engine waits for it
//! (see [`outage`]) instead of spending every message's attempts; when it
//! refuses a connection while others work, the engine sends on the ones it
//! takes (see [`connections`]); when it asks to slow down, the pace is
//! halved (see [`throttle`]).

mod compose;
mod connections;
mod issues;
mod ledger;
mod outage;
mod prepared_issues;
mod refusal_watch;
mod reply;
mod throttle;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, mpsc, watch};

pub use compose::{ComposeError, Composed, Composer};
pub use issues::{Draft, HeldIssue, QueueError, hold_unconfigured};
pub use ledger::{Ledger, LedgerError};
pub use reply::{Verdict, judge, reply_class};

use crate::clock::Clock;
use crate::config::SendingSettings;
use crate::domain::RefusalWarning;
use crate::domain::sender_refusal::{recipient_domain, sender_refusal};
use crate::mail::{Channel, Outbound, SendFailure};
use crate::metrics::Metrics;
use crate::signup::Backlog;
use crate::store::{ClaimedDelivery, DeliveryKind, Handover, RelayCap, Settlement, Store, StoreError};
use connections::{Change, Connections, Refusal, Seat};
use outage::Outage;
use refusal_watch::RefusalWatch;
use throttle::Throttle;

/// How often an idle engine looks for due rows (another instance may have queued some).
const POLL: Duration = Duration::from_millis(500);

/// The pause after a claim that took every due row, so that rows queued
/// meanwhile are claimed together rather than a claim per handful of them;
/// longer while signups wait to be stored (see [`Engine::yielding_to`]).
const GATHER: Duration = Duration::from_millis(50);
const GATHER_IN_SURGE: Duration = Duration::from_millis(250);

/// Pace and persistence, from `[sending]`.
#[derive(Debug, Clone)]
pub struct Pace {
    pub rate_per_second: u32,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub retry_base_secs: u64,
    pub lease_secs: i64,
    pub pause_after_policy_failures: u32,
}

impl From<&SendingSettings> for Pace {
    fn from(s: &SendingSettings) -> Self {
        Self {
            rate_per_second: s.rate_per_second,
            concurrency: s.concurrency.max(1) as usize,
            max_attempts: s.max_attempts,
            retry_base_secs: s.retry_base_seconds,
            lease_secs: s.lease_seconds as i64,
            pause_after_policy_failures: s.pause_after_policy_failures.max(1),
        }
    }
}

impl Pace {
    /// Rows claimed at a time: enough to keep every sender busy between
    /// claims, few enough to be sent well within the lease at the set rate.
    pub fn batch_size(&self) -> usize {
        let batch = (self.concurrency * 16).clamp(64, 512);
        match self.rate_per_second {
            0 => batch,
            rate => batch.min((rate as usize * self.lease_secs.max(4) as usize / 4).max(1)),
        }
    }

    /// Full-jitter exponential backoff: between half and all of base·2^(attempt-1), at most an hour.
    pub fn retry_delay_secs(&self, attempt: i64) -> i64 {
        let exp = (attempt - 1).clamp(0, 16) as u32;
        let ceiling = self.retry_base_secs.saturating_mul(1 << exp).clamp(1, 3600);
        rand::rng().random_range(ceiling / 2..=ceiling) as i64
    }
}

/// A claimed row with the token of the claim that holds it.
type Claimed = (ClaimedDelivery, Arc<str>);

#[derive(Clone)]
pub struct Engine {
    store: Store,
    outbound: Outbound,
    composer: Composer,
    clock: Clock,
    pace: Pace,
    server: Arc<Outage>,
    /// How many connections the relay takes, which may be fewer than `concurrency`.
    connections: Arc<Connections>,
    throttle: Arc<Throttle>,
    /// Issues this engine has sent for since they began, so the log says once
    /// when each starts going out and when it is done.
    sending: Arc<std::sync::Mutex<std::collections::HashSet<i64>>>,
    /// Counts attempts by result and SMTP replies by class.
    metrics: Metrics,
    /// Signups waiting to be stored: while there are any, claims come less often.
    signups: Backlog,
    /// Each receiving domain's refusals for the sender's reasons, per issue sending.
    refusals: Arc<RefusalWatch>,
}

impl Engine {
    pub fn new(
        store: Store,
        outbound: Outbound,
        composer: Composer,
        clock: Clock,
        pace: Pace,
        metrics: Metrics,
    ) -> Self {
        let throttle = Arc::new(Throttle::new(pace.rate_per_second, metrics.send_pace()));
        let connections = Arc::new(Connections::new(pace.concurrency, metrics.send_connections()));
        Self {
            store,
            outbound,
            composer,
            clock,
            pace,
            server: Arc::default(),
            connections,
            throttle,
            sending: Arc::default(),
            metrics,
            signups: Backlog::default(),
            refusals: Arc::new(RefusalWatch::new(crate::config::BounceSettings::default().refusal_warning())),
        }
    }

    /// Warns when a receiving domain's refusals for the sender's reasons pass `warning`
    /// (`bounces.sender_refusal_warning_share` and `_min`).
    pub fn warning_on_sender_refusals(self, warning: RefusalWarning) -> Self {
        Self { refusals: Arc::new(RefusalWatch::new(warning)), ..self }
    }

    /// Gives way to a surge of signups: readers waiting for their answer go
    /// first, and the confirmation mail they asked for follows in bigger,
    /// less frequent claims (each claim costs the database several statements).
    pub fn yielding_to(self, signups: Backlog) -> Self {
        Self { signups, ..self }
    }

    /// Runs until `shutdown` turns true, waking early on `ready`.
    pub async fn run(self, ready: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        // Room for a whole batch, so the next claim is made while senders work through this one.
        let (tx, rx) = mpsc::channel::<Claimed>(self.pace.batch_size());
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let (ledger, writer) = Ledger::start(self.store.clone(), self.clock.clone(), self.pace.lease_secs);
        let senders: Vec<_> = (0..self.pace.concurrency)
            .map(|_| tokio::spawn(self.clone().sender(rx.clone(), ledger.clone(), shutdown.clone())))
            .collect();
        drop(ledger);

        let mut tokens: Vec<Arc<str>> = vec![];
        let mut tidied: Option<tokio::time::Instant> = None;
        'claiming: loop {
            if *shutdown.borrow() {
                break;
            }
            if self.server.is_waiting() {
                self.wait_for_server(&mut shutdown).await;
                continue;
            }
            let tidy = tidied.is_none_or(|at| at.elapsed() >= POLL);
            if tidy {
                tidied = Some(tokio::time::Instant::now());
            }
            let batch = match self.claim(tidy).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "delivery: claiming failed");
                    vec![]
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = ready.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let drained = batch.len() < self.pace.batch_size();
            let mut batch = batch.into_iter();
            while let Some((delivery, token)) = batch.next() {
                if self.server.is_waiting() {
                    self.release(std::iter::once((delivery, token)).chain(batch).collect()).await;
                    break;
                }
                if !tokens.contains(&token) {
                    tokens.push(token.clone());
                    if tokens.len() > 64 {
                        tokens.remove(0);
                    }
                }
                tokio::select! {
                    sent = tx.send((delivery, token)) => if sent.is_err() { break 'claiming },
                    _ = shutdown.changed() => break 'claiming,
                }
            }
            if drained {
                let pause = if self.signups.is_waiting() { GATHER_IN_SURGE } else { GATHER };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        drop(tx);
        for sender in senders {
            let _ = sender.await;
        }
        let _ = writer.await;
        if self.server.is_waiting()
            && let Err(e) = self.store.clear_mail_server_wait().await
        {
            tracing::warn!(error = %e, "delivery: could not clear the record of the wait for the mail server");
        }
        if self.connections.is_capped()
            && let Err(e) = self.store.clear_relay_cap().await
        {
            tracing::warn!(error = %e, "delivery: could not clear the record of the relay's connection cap");
        }
        for token in tokens {
            if let Err(e) = self.store.release_claim(&token).await {
                tracing::warn!(error = %e, "delivery: could not release claimed rows; their lease will expire");
            }
        }
        tracing::debug!("delivery engine stopped");
    }

    /// Claims a batch; with `tidy` first recovers rows of dead workers and
    /// completes finished issues (twice a second is soon enough for those).
    async fn claim(&self, tidy: bool) -> Result<Vec<Claimed>, StoreError> {
        let now = self.clock.now();
        if tidy {
            let recovered = self.store.recover_expired(now).await?;
            if recovered > 0 {
                tracing::warn!(recovered, "delivery: rows left 'sending' by a stopped worker are now ambiguous");
            }
            for (issue, created_at) in self.store.complete_issues(now).await? {
                self.sending.lock().expect("never poisoned").remove(&issue);
                self.composer.forget_issue(issue);
                self.refusals.forget(issue);
                tracing::info!(issue, took_seconds = now - created_at, "issue sent: nothing left to deliver");
            }
        }
        let token: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let limit = self.pace.batch_size() as i64;
        let claimed = self.store.claim_deliveries(now, self.pace.lease_secs, &token, limit).await?;
        // One lock a batch, not one a message: a batch holds one issue or a few.
        let mut issues: Vec<i64> = claimed.iter().filter_map(|d| d.issue_id).collect();
        issues.dedup();
        if !issues.is_empty() {
            let mut sending = self.sending.lock().expect("never poisoned");
            for issue in issues.into_iter().filter(|issue| sending.insert(*issue)) {
                tracing::info!(issue, "sending issue");
            }
        }
        Ok(claimed.into_iter().map(|d| (d, token.clone())).collect())
    }

    /// While the mail server cannot be reached: nothing is claimed; the
    /// server is tried after each pause, and the wait is recorded for
    /// `issue status` and the progress display.
    async fn wait_for_server(&self, shutdown: &mut watch::Receiver<bool>) {
        let Some((wait, next_try)) = self.server.current() else { return };
        if let Err(e) = self.store.record_mail_server_wait(&wait).await {
            tracing::warn!(error = %e, "delivery: could not record the wait for the mail server");
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_try) => {}
            _ = shutdown.changed() => return,
        }
        match self.outbound.check().await {
            Ok(()) => {
                let ended = self.server.ended();
                if let Err(e) = self.store.clear_mail_server_wait().await {
                    tracing::warn!(error = %e, "delivery: could not clear the record of the wait for the mail server");
                }
                let waited = ended.map_or(0, |w| self.clock.now() - w.since);
                tracing::info!(waited_seconds = waited, "the mail server answers again; sending continues");
            }
            Err(failure) => self.server.failed_again(self.clock.now(), &unreachable_detail(failure)),
        }
    }

    /// No connection could be opened: from now on the engine waits for the
    /// server. A cap on connections found before is forgotten: it may have
    /// been the server going away, and what it takes is found anew once it answers.
    async fn server_unreachable(&self, detail: &str) {
        if self.server.unreachable(self.clock.now(), detail) {
            tracing::error!(
                %detail,
                "the mail server cannot be reached: sending waits for it (no message loses an attempt) and continues when it answers"
            );
        }
        if self.connections.forget_cap() {
            self.cap_changed(None).await;
        }
    }

    /// A connection could not be opened (`detail` says why): a cap on
    /// connections when others work, else the server cannot be reached.
    async fn refused(&self, seat: &mut Seat, detail: &str) {
        match self.connections.refused(seat, detail, || self.clock.now()).await {
            Refusal::Outage => self.server_unreachable(detail).await,
            Refusal::Capped { cap, tell } => {
                if tell {
                    tracing::warn!(
                        reply = %cap.reply,
                        "{}: the relay refuses more connections, so the other senders wait (not an outage); one more is tried after a quiet minute",
                        cap.summary()
                    );
                }
                self.cap_changed(Some(cap)).await;
            }
        }
    }

    /// A probe for one more connection raised the limit, or its connection opened.
    async fn apply(&self, change: Change) {
        match change {
            Change::Capped(cap) => self.cap_changed(Some(cap)).await,
            Change::Lifted { concurrency } => {
                tracing::info!("the relay takes {concurrency} connections again (sending.concurrency): sending on all");
                self.cap_changed(None).await;
            }
        }
    }

    /// Records the relay's cap for `issue status`, or that there is none any more.
    async fn cap_changed(&self, cap: Option<RelayCap>) {
        let recorded = match &cap {
            Some(cap) => {
                tracing::debug!("{}", cap.summary());
                self.store.record_relay_cap(cap).await
            }
            None => self.store.clear_relay_cap().await,
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "delivery: could not record the relay's connection cap");
        }
    }

    /// Lets go of claimed rows not yet handed over, so they are claimed again once sending resumes.
    async fn release(&self, rows: Vec<Claimed>) {
        let mut by_claim: Vec<(Arc<str>, Vec<i64>)> = vec![];
        for (delivery, token) in rows {
            match by_claim.iter_mut().find(|(t, _)| *t == token) {
                Some((_, ids)) => ids.push(delivery.id),
                None => by_claim.push((token, vec![delivery.id])),
            }
        }
        for (token, ids) in by_claim {
            if let Err(e) = self.store.release_deliveries(&token, &ids).await {
                tracing::warn!(error = %e, "delivery: could not release claimed rows; their lease will expire");
            }
        }
    }

    async fn sender(
        self,
        queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Claimed>>>,
        ledger: Ledger,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut channel = self.outbound.channel();
        let mut seat = Seat::Parked;
        loop {
            if seat == Seat::Parked {
                // Beyond what the relay takes a sender waits here, taking no message, instead of knocking again.
                tokio::select! {
                    _ = self.connections.take_seat(&mut seat) => {}
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
            }
            let idle_deadline = channel.idle_deadline();
            let next = tokio::select! {
                next = async { queue.lock().await.recv().await } => next,
                _ = until(idle_deadline) => {
                    channel.close_if_idle().await;
                    if !channel.is_open() {
                        self.connections.closed(&mut seat);
                    }
                    continue;
                }
            };
            let Some((delivery, token)) = next else { break };
            if *shutdown.borrow() {
                continue; // drain without sending; the claim is released by the loop
            }
            if self.server.is_waiting() {
                let mut rows = vec![(delivery, token)];
                let mut queue = queue.lock().await;
                while let Ok(row) = queue.try_recv() {
                    rows.push(row);
                }
                drop(queue);
                self.release(rows).await;
                continue;
            }
            self.throttle.wait().await;
            if let Err(e) = self.deliver(&mut channel, &mut seat, &ledger, &delivery, token).await {
                tracing::error!(
                    delivery = delivery.id,
                    error = &e as &dyn std::error::Error,
                    "delivery: could not record a result"
                );
            }
            if !channel.is_open() {
                self.connections.closed(&mut seat);
            }
        }
        channel.close().await;
    }

    /// One attempt at one message, in a span that names the delivery (never
    /// its address) so whatever the attempt logs can be followed.
    #[tracing::instrument(
        name = "delivery",
        skip_all,
        fields(id = delivery.id, kind = mail_kind(delivery.kind, false), issue = delivery.issue_id)
    )]
    async fn deliver(
        &self,
        channel: &mut Channel,
        seat: &mut Seat,
        ledger: &Ledger,
        delivery: &ClaimedDelivery,
        token: Arc<str>,
    ) -> Result<(), LedgerError> {
        if !channel.is_open() {
            self.connections.connecting(seat);
        }
        match channel.ready().await {
            Ok(()) => {
                if let Some(change) = self.connections.opened(seat, self.clock.now()) {
                    self.apply(change).await;
                }
            }
            Err(failure) => {
                // A refused connection is the server's state, not this message's: the row goes back as it was.
                let released = self.store.release_deliveries(&token, &[delivery.id]).await;
                self.refused(seat, &unreachable_detail(failure)).await;
                released?;
                return Ok(());
            }
        }
        let stored_kind = mail_kind(delivery.kind, false);
        let Composed { message, token: link, digest } = match self.composer.compose(delivery).await {
            Ok(Some(composed)) => composed,
            Ok(None) => {
                let reason = "not sent: nothing left to send".to_owned();
                self.metrics.delivery(stored_kind, "skipped");
                return ledger.settle(delivery.id, token, Settlement::Skipped { reason }).await;
            }
            Err(ComposeError::Store(e)) => return Err(e.into()),
            Err(e) => {
                let reply = format!("could not build the message: {e}");
                self.metrics.delivery(stored_kind, "failed");
                return ledger.settle(delivery.id, token, Settlement::Failed { reply }).await;
            }
        };
        let kind = mail_kind(delivery.kind, digest);
        // The hand-over is decided while the envelope is announced; the body leaves only after it is stored.
        let handover = ledger.hand_over(delivery.id, delivery.kind, token.clone(), link);
        let (handover, sent) = channel.send_if(&message, handover, |h| matches!(h, Ok(Handover::Go))).await;
        let Some(sent) = sent else {
            if let Ok(Handover::Skipped) = handover {
                self.metrics.delivery(kind, "skipped");
            }
            return handover.map(drop);
        };
        if let Err(SendFailure::Unreachable(detail)) = &sent {
            // The kept connection broke and no new one opened: the message never left.
            self.server_unreachable(detail).await;
            ledger.put_back(delivery.id, token).await?;
            return Ok(());
        }
        self.metrics.smtp_reply(reply_class(&sent));
        let verdict = judge(sent);
        let attempt = delivery.attempts + 1;
        let exhausted = attempt >= i64::from(self.pace.max_attempts);
        let settlement = match verdict.clone() {
            Verdict::Sent(reply) => Settlement::Sent { reply },
            Verdict::TryAgain(reply) | Verdict::SlowDown(reply) if exhausted => Settlement::Failed { reply },
            Verdict::TryAgain(reply) | Verdict::SlowDown(reply) => {
                Settlement::Retry { at: self.clock.now() + self.pace.retry_delay_secs(attempt), reply }
            }
            Verdict::NoSuchMailbox(reply) => Settlement::Bounced { reply },
            Verdict::Policy(reply) | Verdict::Refused(reply) => Settlement::Failed { reply },
            Verdict::Ambiguous(reply) => Settlement::Ambiguous { reply },
        };
        let now = self.clock.now();
        self.metrics.delivery(kind, settlement.status());
        if matches!(verdict, Verdict::Sent(_)) {
            ledger.settle(delivery.id, token, settlement).await?;
        } else {
            // What follows from this result (suppression, a pause) needs it stored first.
            ledger.settle_now(delivery.id, token, settlement).await?;
        }
        if let (DeliveryKind::Issue, Some(issue)) = (delivery.kind, delivery.issue_id) {
            self.count_refusal(delivery, issue, &verdict, exhausted, now).await;
        }
        match verdict {
            Verdict::Sent(_) => {
                self.throttle.sent();
                if let Some(change) = self.connections.sent(now) {
                    self.apply(change).await;
                }
                tracing::debug!(delivery = delivery.id, "sent");
            }
            Verdict::SlowDown(reply) => {
                if let Some(rate) = self.throttle.slow_down() {
                    tracing::warn!(%reply, rate_per_second = rate, "the mail server asks to slow down: pace halved");
                }
                tracing::warn!(delivery = delivery.id, attempt, %reply, "not delivered");
            }
            Verdict::NoSuchMailbox(reply) => {
                tracing::warn!(delivery = delivery.id, email = %crate::domain::email::mask(&delivery.email), %reply, "mailbox does not exist: address suppressed");
                self.store.suppress_bounced(delivery.subscriber_id, now).await?;
            }
            Verdict::Policy(reply) => {
                tracing::warn!(delivery = delivery.id, %reply, "refused by policy");
                if let (DeliveryKind::Issue, Some(issue)) = (delivery.kind, delivery.issue_id) {
                    let limit = i64::from(self.pace.pause_after_policy_failures);
                    if self.store.record_policy_failure(issue, limit, &reply).await? {
                        tracing::error!(
                            issue,
                            "issue paused after repeated policy refusals; `bulletin issue resume` continues it"
                        );
                    }
                }
            }
            Verdict::TryAgain(reply) | Verdict::Refused(reply) | Verdict::Ambiguous(reply) => {
                tracing::warn!(delivery = delivery.id, attempt, %reply, "not delivered");
            }
        }
        Ok(())
    }
}

impl Engine {
    /// Counts an issue message's final answer per receiving domain: a refusal
    /// for the sender's reasons (a 5.x.x one, or a 4.x.x one that used up
    /// every attempt) is recorded for `issue status`, and the first time a
    /// domain passes the warning threshold the log says so, naming the domain only.
    /// A count that cannot be stored is logged, never a reason to skip what
    /// the result itself calls for (a suppression, a pause).
    async fn count_refusal(
        &self,
        delivery: &ClaimedDelivery,
        issue: i64,
        verdict: &Verdict,
        exhausted: bool,
        now: crate::clock::Timestamp,
    ) {
        let refused = match verdict {
            Verdict::Sent(_) | Verdict::NoSuchMailbox(_) | Verdict::Refused(_) => None,
            Verdict::Policy(reply) => sender_refusal(reply, true),
            Verdict::TryAgain(reply) | Verdict::SlowDown(reply) if exhausted => sender_refusal(reply, false),
            // Not answered for good yet (tried again), or maybe delivered.
            Verdict::TryAgain(_) | Verdict::SlowDown(_) | Verdict::Ambiguous(_) => return,
        };
        let Some(domain) = recipient_domain(&delivery.email) else { return };
        if let Some(reason) = refused
            && let Err(e) = self.store.record_refusal_at_send(issue, delivery.id, &domain, reason, now).await
        {
            tracing::warn!(issue, %domain, error = %e, "delivery: a refusal for the sender's reasons was not counted");
        }
        if let Some(line) = self.refusals.answered(issue, &domain, refused) {
            tracing::warn!(issue, %domain, "{line}");
        }
    }
}

/// The kind of mail a delivery is, as the metrics name it.
fn mail_kind(kind: DeliveryKind, digest: bool) -> &'static str {
    match kind {
        DeliveryKind::Confirmation => "confirmation",
        DeliveryKind::Issue if digest => "digest",
        DeliveryKind::Issue => "issue",
    }
}

/// What an operator needs to know about why no connection opened.
fn unreachable_detail(failure: SendFailure) -> String {
    match failure {
        SendFailure::Unreachable(detail) | SendFailure::Connection(detail) | SendFailure::AfterData(detail) => detail,
        SendFailure::Rejected { reply, .. } => reply,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
