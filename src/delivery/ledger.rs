//! Group commit for the ledger's per-message writes.
//!
//! Every message needs two writes: `sending` just before SMTP, and its
//! result right after. Done one by one they cost a statement and a commit
//! each, which caps sending far below what an SMTP server takes. Here sender
//! tasks hand their writes to one writer task, which takes whatever has
//! queued up meanwhile and writes it in one statement per kind.
//!
//! A sender waits for its `sending` mark to be stored before the message
//! body leaves, so a crash can never forget a message that went out. It does
//! not wait for the result to be stored: the writer stores it before the
//! sender's next hand-over, and until then the row stays `sending`, which
//! after a crash reads as "may have been delivered" (`ambiguous`), never as
//! "send again".
//!
//! A row is the writer's only while its claim holds: the writer renews the
//! lease of every message in hand (a slow server must not make a live send
//! look like a dead worker's), and stores a result only on a row still held
//! under the claim it was sent under. A result that comes too late is
//! dropped, never written over what recovery decided. Whoever waits for a
//! result learns whether it was stored, and acts on it only if it was.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use crate::clock::Clock;
use crate::store::{DeliveryKind, Handover, NewToken, Settlement, Store, StoreError};

/// Most writes taken into one batch.
const BATCH: usize = 512;

/// Longest a row is kept leased for a sender that has not settled it. Every
/// SMTP step has its own timeout (30 s to connect, 60 s per step), so only a
/// sender that will never settle (a bug) gets here; its row then turns
/// `ambiguous` when the lease runs out, as if its worker had died.
const MAX_HOLD: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// The database refused the write (shared by every sender in the batch).
    #[error("the delivery ledger could not be written")]
    Store(#[source] Arc<StoreError>),
    /// The row's lease ran out before its result came: it was recovered as
    /// `ambiguous` or claimed by another worker, and the result was dropped.
    #[error("the row was no longer held by this worker (its lease ran out); the result was not recorded")]
    ClaimLost,
    #[error("the ledger writer stopped")]
    Stopped,
}

impl From<StoreError> for LedgerError {
    fn from(e: StoreError) -> Self {
        Self::Store(Arc::new(e))
    }
}

/// Who waits for a write, and learns whether it was stored.
type Waiter<T> = oneshot::Sender<Result<T, LedgerError>>;

/// Hand-overs under one claim token: the rows and who waits for each.
type HandOverGroup = (Arc<str>, Vec<(i64, DeliveryKind)>, Vec<Waiter<Handover>>);

/// A result to store, under the claim that holds its row.
struct Settle {
    id: i64,
    token: Arc<str>,
    settlement: Settlement,
    stored: Option<Waiter<()>>,
}

enum Op {
    HandOver {
        id: i64,
        kind: DeliveryKind,
        token: Arc<str>,
        link: Option<NewToken>,
        done: Waiter<Handover>,
    },
    Settle(Settle),
    /// A row handed over whose message never left: no connection could be opened.
    PutBack {
        id: i64,
        token: Arc<str>,
        done: Waiter<()>,
    },
}

/// A sender's handle on the writer.
#[derive(Clone)]
pub struct Ledger {
    ops: mpsc::Sender<Op>,
}

impl Ledger {
    /// Starts the writer; it ends when every handle is dropped.
    pub fn start(store: Store, clock: Clock, lease_secs: i64) -> (Self, tokio::task::JoinHandle<()>) {
        let (ops, rx) = mpsc::channel(BATCH);
        (Self { ops }, tokio::spawn(write(store, clock, lease_secs, rx)))
    }

    /// Marks a claimed row `sending` if it may still go out (see
    /// [`Store::hand_over`]), storing first the confirmation token `link`
    /// its message carries. From then on the writer renews the row's lease
    /// until its result comes.
    pub async fn hand_over(
        &self,
        id: i64,
        kind: DeliveryKind,
        token: Arc<str>,
        link: Option<NewToken>,
    ) -> Result<Handover, LedgerError> {
        let (done, result) = oneshot::channel();
        self.send(Op::HandOver { id, kind, token, link, done }).await?;
        result.await.map_err(|_| LedgerError::Stopped)?
    }

    /// Queues the record of how an attempt ended on a row held under the
    /// claim `token`; the writer stores it with the next batch (and logs a
    /// failure: the row then stays `sending` and turns `ambiguous`).
    pub async fn settle(&self, id: i64, token: Arc<str>, settlement: Settlement) -> Result<(), LedgerError> {
        self.send(Op::Settle(Settle { id, token, settlement, stored: None })).await
    }

    /// Like [`Self::settle`], returning once the result is stored, or why it
    /// was not: for results that other records follow from (a bounce, a
    /// policy refusal), which must follow only a stored cause.
    pub async fn settle_now(&self, id: i64, token: Arc<str>, settlement: Settlement) -> Result<(), LedgerError> {
        let (stored, written) = oneshot::channel();
        self.send(Op::Settle(Settle { id, token, settlement, stored: Some(stored) })).await?;
        written.await.map_err(|_| LedgerError::Stopped)?
    }

    /// Gives back a handed-over row whose message never left because no
    /// connection to the mail server could be opened: as it was before the
    /// hand-over, attempt not counted (see [`Store::put_back`]), and no longer in hand.
    pub async fn put_back(&self, id: i64, token: Arc<str>) -> Result<(), LedgerError> {
        let (done, result) = oneshot::channel();
        self.send(Op::PutBack { id, token, done }).await?;
        result.await.map_err(|_| LedgerError::Stopped)?
    }

    async fn send(&self, op: Op) -> Result<(), LedgerError> {
        self.ops.send(op).await.map_err(|_| LedgerError::Stopped)
    }
}

/// Rows handed over and not yet settled, under their claim tokens, with when
/// they were handed over.
type InHand = HashMap<(i64, Arc<str>), Instant>;

async fn write(store: Store, clock: Clock, lease_secs: i64, mut rx: mpsc::Receiver<Op>) {
    let mut in_hand = InHand::new();
    // A third of the lease: two renewals can be late before a lease runs out.
    let mut renew = tokio::time::interval(Duration::from_millis(lease_secs.max(1) as u64 * 1000 / 3));
    renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            op = rx.recv() => match op {
                Some(op) => op,
                None => break,
            },
            _ = renew.tick() => {
                renew_leases(&store, &clock, lease_secs, &mut in_hand).await;
                continue;
            }
        };
        // One turn for the senders woken meanwhile, so their writes join this batch.
        tokio::task::yield_now().await;
        let mut ops = vec![first];
        while ops.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut settled = vec![];
        let mut put_back = vec![];
        let mut handovers: Vec<HandOverGroup> = vec![];
        let mut links = vec![];
        for op in ops {
            match op {
                Op::Settle(settle) => settled.push(settle),
                Op::PutBack { id, token, done } => put_back.push((id, token, done)),
                Op::HandOver { id, kind, token, link, done } => {
                    links.extend(link);
                    match handovers.iter_mut().find(|(t, _, _)| *t == token) {
                        Some((_, rows, dones)) => {
                            rows.push((id, kind));
                            dones.push(done);
                        }
                        None => handovers.push((token, vec![(id, kind)], vec![done])),
                    }
                }
            }
        }
        let now = clock.now();
        // One batch at a time (writes queue up meanwhile and make the next
        // batch bigger); within it, results before hand-overs. A sender
        // queues its result before it asks for its next hand-over, so once
        // that is granted the result is stored: a connection never has more
        // than one row `sending`, and a crash leaves at most one ambiguous
        // row per connection.
        write_results(&store, now, settled, &mut in_hand).await;
        for (id, token, done) in put_back {
            in_hand.remove(&(id, token.clone()));
            let _ = done.send(store.put_back(id, &token).await.map(drop).map_err(LedgerError::from));
        }
        hand_over(&store, now + lease_secs, links, handovers, &mut in_hand).await;
    }
}

/// Stores results, each only while its row is still held under its claim,
/// and tells whoever waits whether it was stored.
async fn write_results(store: &Store, now: crate::clock::Timestamp, settled: Vec<Settle>, in_hand: &mut InHand) {
    if settled.is_empty() {
        return;
    }
    for settle in &settled {
        in_hand.remove(&(settle.id, settle.token.clone()));
    }
    let rows: Vec<(i64, &str, &Settlement)> = settled.iter().map(|s| (s.id, &*s.token, &s.settlement)).collect();
    match store.settle(&rows, now).await {
        Ok(stored) => {
            let stored: HashSet<i64> = stored.into_iter().collect();
            for settle in settled {
                let result = if stored.contains(&settle.id) { Ok(()) } else { Err(LedgerError::ClaimLost) };
                match settle.stored {
                    // Whoever waits reports it.
                    Some(waiting) => {
                        let _ = waiting.send(result);
                    }
                    None if result.is_err() => tracing::warn!(
                        delivery = settle.id,
                        result = settle.settlement.status(),
                        "delivery: result dropped: the row's lease ran out before it came, so the row is no longer this worker's"
                    ),
                    None => {}
                }
            }
        }
        Err(e) => {
            let e = LedgerError::from(e);
            tracing::error!(
                error = &e as &dyn std::error::Error,
                rows = settled.len(),
                "delivery: results not recorded; the rows stay 'sending' and turn ambiguous"
            );
            for waiting in settled.into_iter().filter_map(|s| s.stored) {
                let _ = waiting.send(Err(e.clone()));
            }
        }
    }
}

async fn hand_over(
    store: &Store,
    lease_until: crate::clock::Timestamp,
    links: Vec<NewToken>,
    handovers: Vec<HandOverGroup>,
    in_hand: &mut InHand,
) {
    // Tokens first: a mail whose token was not stored must not leave. A
    // token of a row then skipped is never mailed and simply expires.
    if let Err(e) = store.insert_confirmation_tokens(&links).await {
        let e = LedgerError::from(e);
        for done in handovers.into_iter().flat_map(|(_, _, dones)| dones) {
            let _ = done.send(Err(e.clone()));
        }
        return;
    }
    for (token, rows, dones) in handovers {
        match store.hand_over(&token, &rows, lease_until).await {
            Ok(results) => {
                for ((id, handover), done) in results.into_iter().zip(dones) {
                    if handover == Handover::Go {
                        in_hand.insert((id, token.clone()), Instant::now());
                    }
                    let _ = done.send(Ok(handover));
                }
            }
            Err(e) => {
                let e = LedgerError::from(e);
                for done in dones {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Extends the leases of the rows in hand, letting go of any held past [`MAX_HOLD`].
async fn renew_leases(store: &Store, clock: &Clock, lease_secs: i64, in_hand: &mut InHand) {
    in_hand.retain(|(id, _), since| {
        let keep = since.elapsed() < MAX_HOLD;
        if !keep {
            tracing::error!(
                delivery = id,
                "delivery: a message was in hand for too long; its lease is left to run out"
            );
        }
        keep
    });
    if in_hand.is_empty() {
        return;
    }
    let held: Vec<(i64, &str)> = in_hand.keys().map(|(id, token)| (*id, &**token)).collect();
    if let Err(e) = store.renew_leases(&held, clock.now() + lease_secs).await {
        tracing::warn!(error = %e, rows = held.len(), "delivery: could not renew the leases of messages in hand");
    }
}
