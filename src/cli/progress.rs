//! Watching an issue go out: a progress bar on a terminal, plain lines elsewhere.
//! Either says so while the engine waits for the mail server; `issue status`
//! says it too, and when the relay takes fewer connections than configured.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::store::{MailServerWait, RelayCap, Store};

/// "waiting for the mail server since 09:12 (connecting to …: connection refused)", in local time.
pub fn waiting_line(wait: &MailServerWait) -> String {
    format!("waiting for the mail server since {} ({})", local_time(wait.since), wait.detail)
}

/// "the relay accepts 2 connections; sending on 2 (sending.concurrency = 8) since 09:12 (…: 421 4.7.0 …)".
pub fn cap_line(cap: &RelayCap) -> String {
    format!("{} since {} ({})", cap.summary(), local_time(cap.since), cap.reply)
}

/// The hour and minute of `at`, in local time.
fn local_time(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.with_timezone(&chrono::Local).format("%H:%M").to_string())
        .unwrap_or_default()
}

/// Ledger counts of one issue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: i64,
    pub sent: i64,
    pub failed: i64,
    pub ambiguous: i64,
    pub skipped: i64,
    pub waiting: i64,
}

impl Tally {
    pub async fn of(store: &Store, issue: i64) -> anyhow::Result<Self> {
        let mut t = Tally::default();
        for (status, n) in store.delivery_counts(Some(issue)).await? {
            t.total += n;
            match status.as_str() {
                "sent" => t.sent += n,
                "failed" | "bounced" => t.failed += n,
                "ambiguous" => t.ambiguous += n,
                "skipped" => t.skipped += n,
                _ => t.waiting += n,
            }
        }
        Ok(t)
    }

    pub fn settled(&self) -> i64 {
        self.total - self.waiting
    }

    pub fn summary(&self) -> String {
        format!(
            "{} sent, {} failed, {} ambiguous, {} skipped, {} waiting (of {})",
            self.sent, self.failed, self.ambiguous, self.skipped, self.waiting, self.total
        )
    }
}

pub enum Progress {
    Bar(ProgressBar),
    /// Plain lines every two seconds; `from` is what was settled before this run.
    Lines {
        last: Instant,
        started: Instant,
        from: Option<i64>,
    },
}

impl Progress {
    pub fn new(total: i64) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total.max(0) as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} · {msg} · {rate} · ETA {eta}")
                    .expect("valid template")
                    .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}/s", state.per_sec());
                    })
                    .progress_chars("█▉▊▋▌▍▎▏ "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            Self::Bar(bar)
        } else {
            Self::Lines { last: Instant::now(), started: Instant::now(), from: None }
        }
    }

    /// Shows the counts, and `wait` while the engine waits for the mail server.
    pub fn update(&mut self, tally: &Tally, wait: Option<&MailServerWait>) {
        match self {
            Self::Bar(bar) => {
                bar.set_length(tally.total.max(0) as u64);
                bar.set_position(tally.settled().max(0) as u64);
                match wait {
                    Some(wait) => bar.set_message(format!("{} sent · {}", tally.sent, waiting_line(wait))),
                    None => bar.set_message(format!("{} sent, {} failed", tally.sent, tally.failed)),
                }
            }
            Self::Lines { last, started, from } => {
                let from = *from.get_or_insert(tally.settled());
                if last.elapsed() >= Duration::from_secs(2) {
                    *last = Instant::now();
                    let rate = (tally.settled() - from) as f64 / started.elapsed().as_secs_f64().max(0.001);
                    match wait {
                        Some(wait) => eprintln!("{} · {}", tally.summary(), waiting_line(wait)),
                        None => eprintln!("{} · {rate:.0}/s", tally.summary()),
                    }
                }
            }
        }
    }

    /// A line above the bar (or among the plain lines).
    pub fn note(&self, line: &str) {
        match self {
            Self::Bar(bar) => bar.println(line),
            Self::Lines { .. } => eprintln!("{line}"),
        }
    }

    pub fn finish(self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Waits until the next look at the ledger. Each look counts every row of
/// the issue, so big issues are looked at less often (every 500 ms up to
/// 100 000 recipients, every 5 s from a million), so counting does not
/// compete with sending; the bar's spinner and clock tick on between looks.
pub async fn sleep_tick(total: i64) {
    let ms = (total / 200).clamp(500, 5_000) as u64;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
