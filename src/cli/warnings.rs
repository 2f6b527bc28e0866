//! The delivery engine's per-message warnings, gathered during a foreground send.
//!
//! During an outage every message logs its own "not delivered", which buries
//! the progress display under thousands of lines. While a [`Gathering`] is
//! alive, WARN events of the delivery engine are counted by what they say
//! instead of printed, and the display shows them as one counted line every
//! few seconds. Errors and everything outside the delivery engine still print
//! at once; without a foreground send (`serve`, `worker`) nothing changes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::EitherWriter;
use tracing_subscriber::layer::{Context, Layer};

use crate::signup::roster::cut;

/// How often the gathered warnings are shown.
const EVERY: Duration = Duration::from_secs(5);

static GATHERING: AtomicBool = AtomicBool::new(false);
static GATHERED: Mutex<BTreeMap<String, Seen>> = Mutex::new(BTreeMap::new());

/// How often one kind of warning was seen, and the detail of the latest.
struct Seen {
    count: u64,
    latest: String,
}

fn gathered(meta: &Metadata<'_>) -> bool {
    GATHERING.load(Ordering::Relaxed) && *meta.level() == Level::WARN && meta.target().starts_with("bulletin::delivery")
}

/// Counts the events that [`Stderr`] leaves out.
pub struct GatherLayer;

impl<S: Subscriber> Layer<S> for GatherLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if !gathered(event.metadata()) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut gathered = GATHERED.lock().unwrap_or_else(|e| e.into_inner());
        let seen = gathered.entry(fields.message).or_insert(Seen { count: 0, latest: String::new() });
        seen.count += 1;
        seen.latest = fields.detail;
    }
}

/// The event's message, and its reply or error as the detail.
#[derive(Default)]
struct Fields {
    message: String,
    detail: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "reply" | "error" => self.detail = format!("{value:?}"),
            _ => {}
        }
    }
}

/// Standard error for the log, without the events being gathered.
pub struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = EitherWriter<std::io::Stderr, std::io::Sink>;

    fn make_writer(&'a self) -> Self::Writer {
        EitherWriter::A(std::io::stderr())
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        if gathered(meta) { EitherWriter::B(std::io::sink()) } else { self.make_writer() }
    }
}

/// Gathers the delivery engine's warnings until dropped.
pub struct Gathering {
    shown: Instant,
}

impl Gathering {
    pub fn start() -> Self {
        GATHERING.store(true, Ordering::Relaxed);
        Self { shown: Instant::now() }
    }

    /// The warnings gathered since the last summary, at most every few seconds.
    pub fn summary_due(&mut self) -> Option<String> {
        if self.shown.elapsed() < EVERY {
            return None;
        }
        self.shown = Instant::now();
        Self::summary()
    }

    /// The warnings gathered since the last summary, e.g.
    /// `warnings: 812 × not delivered (latest: 451 4.3.0 try later)`.
    pub fn summary() -> Option<String> {
        let gathered = std::mem::take(&mut *GATHERED.lock().unwrap_or_else(|e| e.into_inner()));
        if gathered.is_empty() {
            return None;
        }
        let parts: Vec<String> = gathered
            .into_iter()
            .map(|(message, seen)| {
                let latest = cut(&seen.latest.replace(['\r', '\n'], " "), 120);
                if latest.is_empty() {
                    format!("{} × {message}", seen.count)
                } else {
                    format!("{} × {message} (latest: {latest})", seen.count)
                }
            })
            .collect();
        Some(format!("warnings: {}", parts.join("; ")))
    }
}

impl Drop for Gathering {
    fn drop(&mut self) {
        GATHERING.store(false, Ordering::Relaxed);
    }
}
