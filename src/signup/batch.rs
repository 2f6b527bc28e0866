//! Group commit for signups.
//!
//! One transaction per signup caps a surge at what the database commits one
//! by one (SQLite writes one at a time; PostgreSQL waits for a WAL flush per
//! commit). Requests here hand their signup to one writer task, which takes
//! whatever has queued up meanwhile and records it in one transaction with
//! one statement per step (`Store::record_signups`); on PostgreSQL two
//! batches may be under way at once. Each request still waits until its own
//! signup is stored, so a reader is never told "check your inbox" for a
//! signup that was not kept.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::store::{MailCap, SignupOutcome, SignupRequest, Store, StoreError};

/// Most signups in one transaction.
const BATCH: usize = 256;

type Reply = oneshot::Sender<Result<SignupOutcome, StoreError>>;

/// A request's handle on the writer.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<(SignupRequest, Reply)>,
    backlog: Backlog,
}

/// Signups handed to the writer and not answered yet. The delivery engine
/// yields to them (`Engine::yielding_to`): in a surge the readers waiting
/// for an answer go first, and their confirmation mail follows in batches.
#[derive(Clone, Debug, Default)]
pub struct Backlog(Arc<AtomicUsize>);

impl Backlog {
    /// Whether any signup is waiting to be stored.
    pub fn is_waiting(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }

    /// Counts one signup until the guard is dropped (answered, or the request abandoned).
    fn enter(&self) -> Waiting<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Waiting(&self.0)
    }
}

/// One signup in the [`Backlog`].
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Batcher {
    /// Starts the writer; it ends when every handle is dropped.
    pub fn start(store: Store, clock: Clock, cap: MailCap) -> Self {
        let (queue, rx) = mpsc::channel(BATCH * 4);
        tokio::spawn(write(store, clock, cap, rx));
        Self { queue, backlog: Backlog::default() }
    }

    /// The signups waiting for this writer.
    pub fn backlog(&self) -> Backlog {
        self.backlog.clone()
    }

    /// Records `signup` with the next batch and returns what it did.
    pub async fn record(&self, signup: SignupRequest) -> Result<SignupOutcome, StoreError> {
        let _waiting = self.backlog.enter();
        let (reply, outcome) = oneshot::channel();
        self.queue.send((signup, reply)).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

async fn write(store: Store, clock: Clock, cap: MailCap, mut rx: mpsc::Receiver<(SignupRequest, Reply)>) {
    // PostgreSQL commits a batch while the next one is written on another
    // connection (row locks order any address the two share); SQLite has
    // one writer, and waiting makes the next batch bigger instead.
    let in_flight = if store.backend_name() == "postgres" { 2 } else { 1 };
    let mut writing = tokio::task::JoinSet::new();
    let mut waiting: VecDeque<(SignupRequest, Reply)> = VecDeque::new();
    loop {
        while writing.len() >= in_flight {
            writing.join_next().await;
        }
        if waiting.is_empty() {
            match rx.recv().await {
                Some(next) => waiting.push_back(next),
                None => break,
            }
        }
        while waiting.len() < BATCH * 2 {
            match rx.try_recv() {
                Ok(next) => waiting.push_back(next),
                Err(_) => break,
            }
        }
        // One signup per address per batch (a statement may not touch a row
        // twice); a second one waits for the next batch, in arrival order.
        let mut keys = HashSet::new();
        let mut batch = vec![];
        let mut later = VecDeque::new();
        for (signup, reply) in waiting.drain(..) {
            if batch.len() < BATCH && keys.insert(signup.email.key()) {
                batch.push((signup, reply));
            } else {
                later.push_back((signup, reply));
            }
        }
        waiting = later;
        let (store, clock) = (store.clone(), clock.clone());
        writing.spawn(async move { write_batch(&store, &clock, cap, batch).await });
    }
    while writing.join_next().await.is_some() {}
}

async fn write_batch(store: &Store, clock: &Clock, cap: MailCap, batch: Vec<(SignupRequest, Reply)>) {
    let (signups, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    match store.record_signups(&signups, clock.now(), cap).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) if signups.len() == 1 => {
            let _ = replies.into_iter().next().map(|reply| reply.send(Err(e)));
        }
        Err(_) => {
            // Find out whose signup failed: each on its own, so one bad row fails only itself.
            for (signup, reply) in signups.into_iter().zip(replies) {
                let outcome = store.record_signups(std::slice::from_ref(&signup), clock.now(), cap).await;
                let _ = reply.send(outcome.and_then(|mut o| o.pop().ok_or_else(stopped)));
            }
        }
    }
}
