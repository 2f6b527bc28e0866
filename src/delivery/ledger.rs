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

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::store::{DeliveryKind, Handover, NewToken, Settlement, Store};

/// Most writes taken into one batch.
const BATCH: usize = 512;

#[derive(Debug, Clone, thiserror::Error)]
#[error("ledger write failed: {0}")]
pub struct LedgerError(String);

/// Hand-overs under one claim token: the rows and who waits for each.
type HandOverGroup = (Arc<str>, Vec<(i64, DeliveryKind)>, Vec<oneshot::Sender<Result<Handover, LedgerError>>>);

enum Op {
    HandOver {
        id: i64,
        kind: DeliveryKind,
        token: Arc<str>,
        link: Option<NewToken>,
        done: oneshot::Sender<Result<Handover, LedgerError>>,
    },
    Settle {
        id: i64,
        settlement: Settlement,
        stored: Option<oneshot::Sender<()>>,
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
    /// its message carries.
    pub async fn hand_over(
        &self,
        id: i64,
        kind: DeliveryKind,
        token: Arc<str>,
        link: Option<NewToken>,
    ) -> Result<Handover, LedgerError> {
        let (done, result) = oneshot::channel();
        self.send(Op::HandOver { id, kind, token, link, done }).await?;
        result.await.map_err(|_| stopped())?
    }

    /// Queues the record of how an attempt ended; the writer stores it with
    /// the next batch (and logs a failure: the row then stays `sending`).
    pub async fn settle(&self, id: i64, settlement: Settlement) -> Result<(), LedgerError> {
        self.send(Op::Settle { id, settlement, stored: None }).await
    }

    /// Like [`Self::settle`], returning once the batch holding it was
    /// written: for results that other records follow from (a bounce, a
    /// policy refusal), which must not appear before their cause.
    pub async fn settle_now(&self, id: i64, settlement: Settlement) -> Result<(), LedgerError> {
        let (stored, written) = oneshot::channel();
        self.send(Op::Settle { id, settlement, stored: Some(stored) }).await?;
        written.await.map_err(|_| stopped())
    }

    async fn send(&self, op: Op) -> Result<(), LedgerError> {
        self.ops.send(op).await.map_err(|_| stopped())
    }
}

impl From<crate::store::StoreError> for LedgerError {
    fn from(e: crate::store::StoreError) -> Self {
        Self(e.to_string())
    }
}

fn stopped() -> LedgerError {
    LedgerError("the ledger writer stopped".into())
}

async fn write(store: Store, clock: Clock, lease_secs: i64, mut rx: mpsc::Receiver<Op>) {
    while let Some(first) = rx.recv().await {
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
        let mut stored = vec![];
        let mut handovers: Vec<HandOverGroup> = vec![];
        let mut links = vec![];
        for op in ops {
            match op {
                Op::Settle { id, settlement, stored: waiting } => {
                    settled.push((id, settlement));
                    stored.extend(waiting);
                }
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
        write_batch(&store, now, lease_secs, settled, links, handovers).await;
        for waiting in stored {
            let _ = waiting.send(());
        }
    }
}

async fn write_batch(
    store: &Store,
    now: crate::clock::Timestamp,
    lease_secs: i64,
    settled: Vec<(i64, Settlement)>,
    links: Vec<NewToken>,
    handovers: Vec<HandOverGroup>,
) {
    // One batch at a time (writes queue up meanwhile and make the next batch
    // bigger); within it, results before hand-overs. A sender queues its
    // result before it asks for its next hand-over, so once that is granted
    // the result is stored: a connection never has more than one row
    // `sending`, and a crash leaves at most one ambiguous row per connection.
    if let Err(e) = store.settle(&settled, now).await {
        tracing::error!(error = %e, rows = settled.len(), "delivery: results not recorded; the rows stay 'sending' and turn ambiguous");
    }
    // Tokens first: a mail whose token was not stored must not leave. A
    // token of a row then skipped is never mailed and simply expires.
    if let Err(e) = store.insert_confirmation_tokens(&links).await {
        let e = LedgerError(e.to_string());
        for done in handovers.into_iter().flat_map(|(_, _, dones)| dones) {
            let _ = done.send(Err(e.clone()));
        }
        return;
    }
    for (token, rows, dones) in handovers {
        match store.hand_over(&token, &rows, now + lease_secs).await {
            Ok(results) => {
                for ((_, handover), done) in results.into_iter().zip(dones) {
                    let _ = done.send(Ok(handover));
                }
            }
            Err(e) => {
                let e = LedgerError(e.to_string());
                for done in dones {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }
}
