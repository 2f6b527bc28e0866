//! The HTTP listener: accepts connections and bounds what each one may hold.
//!
//! Every connection holds one of `server.max_connections` slots from accept to
//! close; when all are taken the listener stops accepting and new connections
//! wait in the kernel's backlog. A connection is closed when its client takes
//! longer than `server.header_read_timeout_seconds` to send a request head
//! (counted from the connection's start, or from the first byte of a later
//! request) or sits idle between requests for `server.keepalive_idle_seconds`;
//! the time a request body may take is bounded by the router (408, 413).
//! Accept errors such as "too many open files" back off, never spin.
//!
//! hyper's own `header_read_timeout` is not used: it also runs while a
//! keep-alive connection waits for its next request, so it would cut every
//! idle connection at the header timeout instead of the idle one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// How long and how many connections the listener keeps.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read: Duration,
    pub keepalive_idle: Duration,
    pub max_connections: usize,
}

/// A connection's read buffer may grow to this (hyper's default is ~400 KiB):
/// request heads of real browsers are a few KiB, bodies are at most 16 KiB.
const READ_BUFFER: usize = 64 * 1024;
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a stop waits for requests in hand before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `stop` turns true, then lets the
/// requests in hand finish (idle connections close at once).
pub async fn serve(listener: TcpListener, router: Router, limits: ConnectionLimits, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.header_read_timeout(None).max_buf_size(READ_BUFFER);
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_FIRST;
                accepted
            }
            // The client gave up before we got to it: nothing wrong on our side.
            Err(e) if is_about_one_connection(&e) => continue,
            Err(e) => {
                // Out of file descriptors or memory: retrying at once would spin.
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "could not accept a connection");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|stop| *stop) => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched { stream, activity: activity.clone() });
        // The peer's address goes into every request (`ConnectInfo`, for the
        // client IP); a request counts as in hand until its response is ready.
        let router = router.clone();
        let watched = activity.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let in_hand = watched.begin();
            let router = router.clone();
            async move {
                let response = router.oneshot(req.map(Body::new)).await;
                drop(in_hand);
                response
            }
        });
        let conn = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                () = activity.expired(limits) => tracing::debug!("closed a slow or idle connection"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            "requests still running {} s after the stop; not waiting for them any longer",
            SHUTDOWN_GRACE.as_secs()
        );
    }
}

/// Errors of `accept` that concern only the connection being accepted.
fn is_about_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

/// What the connection is doing, for its deadline. Times are milliseconds
/// since the connection started.
struct Activity {
    started: Instant,
    /// Requests whose response is not ready yet.
    in_hand: AtomicU32,
    /// When the last response became ready.
    quiet_since: AtomicU64,
    /// When the request head being read began; `NOT_READING` while idle.
    head_since: AtomicU64,
    changed: Notify,
}

const NOT_READING: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        // A new connection is reading its first head from the start.
        Self {
            started: Instant::now(),
            in_hand: AtomicU32::new(0),
            quiet_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn begin(self: &Arc<Self>) -> InHand {
        self.in_hand.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
        InHand(self.clone())
    }

    /// Bytes arrived: if the connection was idle, a new head has begun.
    fn read(&self) {
        if self.in_hand.load(Ordering::Relaxed) == 0 && self.head_since.load(Ordering::Relaxed) == NOT_READING {
            self.head_since.store(self.now(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    fn deadline(&self, limits: ConnectionLimits) -> Option<Instant> {
        if self.in_hand.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let since = |at: &AtomicU64| self.started + Duration::from_millis(at.load(Ordering::Relaxed));
        Some(match self.head_since.load(Ordering::Relaxed) {
            NOT_READING => since(&self.quiet_since) + limits.keepalive_idle,
            _ => since(&self.head_since) + limits.header_read,
        })
    }

    /// Completes when the connection has been too slow or too idle.
    async fn expired(&self, limits: ConnectionLimits) {
        loop {
            let changed = self.changed.notified();
            match self.deadline(limits) {
                None => changed.await,
                Some(deadline) if Instant::now() >= deadline => return,
                Some(deadline) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
            }
        }
    }
}

/// A request in hand; dropping it (response ready, or the request abandoned)
/// makes the connection idle again once no other is in hand.
struct InHand(Arc<Activity>);

impl Drop for InHand {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_hand.fetch_sub(1, Ordering::Relaxed) == 1 {
            activity.quiet_since.store(activity.now(), Ordering::Relaxed);
            activity.head_since.store(NOT_READING, Ordering::Relaxed);
            activity.changed.notify_one();
        }
    }
}

/// The client's socket, reporting every read to the connection's activity.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
