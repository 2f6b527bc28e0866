//! Bulk work on the subscriber list for editors: import and erasure.

use std::collections::HashSet;
use std::io::Read;

use crate::clock::Clock;
use crate::domain::{ConsentSource, EmailAddress, LinkKeys, Newsletter};
use crate::store::{Consent, ImportOutcome, ImportRow, MailCap, Store, StoreError};

/// Rows written per transaction: large, since each commit waits for the
/// disk, and small enough for SQLite's 32 766 bound parameters (seven per
/// consent row).
const BATCH: usize = 4000;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the CSV has no header row")]
    NoHeader,
    #[error("the CSV header has no `email` column (found: {0})")]
    NoEmailColumn(String),
    #[error("could not read the CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A row that was skipped, with the line it stood on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub outcome: ImportOutcome,
    /// Addresses erased earlier that were imported as pending: they need a new opt-in.
    pub needed_opt_in: u64,
    pub bad: Vec<BadRow>,
}

/// Imports a CSV with an `email` column into `newsletter`, a batch at a
/// time. Bad rows are reported with their line numbers and skipped; the rest
/// are kept.
pub async fn import_csv(
    store: &Store,
    keys: &LinkKeys,
    clock: &Clock,
    newsletter: &Newsletter,
    input: impl Read,
    confirmed: bool,
    cap: MailCap,
) -> Result<ImportReport, ImportError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(input);
    let headers = reader.headers().map_err(|_| ImportError::NoHeader)?.clone();
    let column = headers
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case("email"))
        .ok_or_else(|| ImportError::NoEmailColumn(headers.iter().collect::<Vec<_>>().join(",")))?;
    let mut report = ImportReport::default();
    let mut batch: Vec<EmailAddress> = Vec::with_capacity(BATCH);
    let mut seen: HashSet<String> = HashSet::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                report.bad.push(BadRow { line, reason: format!("unreadable row: {e}") });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let raw = crate::spreadsheet::restore(record.get(column).unwrap_or_default());
        match EmailAddress::parse(raw) {
            Ok(email) => {
                if seen.insert(email.key()) {
                    batch.push(email);
                }
            }
            Err(e) => report.bad.push(BadRow { line, reason: format!("{raw:?}: {e}") }),
        }
        if batch.len() >= BATCH {
            flush(store, keys, clock, newsletter, &mut batch, confirmed, cap, &mut report).await?;
            seen.clear();
        }
    }
    flush(store, keys, clock, newsletter, &mut batch, confirmed, cap, &mut report).await?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn flush(
    store: &Store,
    keys: &LinkKeys,
    clock: &Clock,
    newsletter: &Newsletter,
    batch: &mut Vec<EmailAddress>,
    confirmed: bool,
    cap: MailCap,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    if batch.is_empty() {
        return Ok(());
    }
    let hashes: Vec<Vec<String>> = batch.iter().map(|e| keys.suppression_hashes(&e.key())).collect();
    let all: Vec<String> = hashes.iter().flatten().cloned().collect();
    let suppressed = store.suppressed_hashes(&all).await?;
    let rows: Vec<ImportRow> = batch
        .drain(..)
        .zip(hashes)
        .map(|(email, hashes)| ImportRow { suppressed: hashes.iter().any(|h| suppressed.contains(h)), email })
        .collect();
    if confirmed {
        report.needed_opt_in += rows.iter().filter(|r| r.suppressed).count() as u64;
    }
    let consent = Consent { source: ConsentSource::Import, ip: None, user_agent: None, at: clock.now() };
    let outcome = store.import_batch(newsletter.id, &rows, confirmed, &consent, cap).await?;
    report.outcome.confirmed += outcome.confirmed;
    report.outcome.pending += outcome.pending;
    report.outcome.unchanged += outcome.unchanged;
    report.outcome.mails_queued += outcome.mails_queued;
    Ok(())
}

/// Erases an address: its personal data goes, a keyed hash stays on the
/// suppression list. Returns whether a subscriber existed.
pub async fn erase(store: &Store, keys: &LinkKeys, clock: &Clock, email: &EmailAddress) -> Result<bool, StoreError> {
    let hash = keys.suppression_hashes(&email.key()).remove(0);
    store.erase(email, &hash, clock.now()).await
}
