//! Bulk work on the subscriber list for editors: import and erasure.

use std::collections::HashSet;
use std::io::Read;

use tokio::sync::mpsc;

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
    #[error("the CSV reader stopped: {0}")]
    Reader(String),
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
    /// How many rows were skipped.
    pub bad_rows: u64,
    /// The skipped rows themselves, kept only by [`import_csv`]: [`import_stream`]
    /// hands each to its caller as it is found.
    pub bad: Vec<BadRow>,
}

/// A bad value is quoted in its row's report up to this many characters.
const QUOTED: usize = 60;

/// What the reading thread hands over: an address, or a row to skip.
enum Parsed {
    Address(EmailAddress),
    Bad(BadRow),
}

/// Imports a CSV with an `email` column into `newsletter`, a batch at a
/// time, as [`import_stream`] does, for input already in memory (tests, small
/// lists): the bad rows are kept in the report.
pub async fn import_csv(
    store: &Store,
    keys: &LinkKeys,
    clock: &Clock,
    newsletter: &Newsletter,
    mut input: impl Read,
    confirmed: bool,
    cap: MailCap,
) -> Result<ImportReport, ImportError> {
    let mut bytes = vec![];
    input.read_to_end(&mut bytes).map_err(csv::Error::from)?;
    let mut bad = vec![];
    let cursor = std::io::Cursor::new(bytes);
    let mut report = import_stream(store, keys, clock, newsletter, cursor, confirmed, cap, |row| bad.push(row)).await?;
    report.bad = bad;
    Ok(report)
}

/// Imports a CSV with an `email` column into `newsletter`, a batch at a
/// time. Bad rows are skipped and handed to `on_bad` as they are found (with
/// their line number, a long value cut), not kept: any number of them takes
/// no memory. The rest are kept.
///
/// The CSV is read and parsed on a blocking thread, a bounded channel ahead
/// of the database writes, so a slow disk or pipe never stalls the runtime.
#[allow(clippy::too_many_arguments)]
pub async fn import_stream(
    store: &Store,
    keys: &LinkKeys,
    clock: &Clock,
    newsletter: &Newsletter,
    input: impl Read + Send + 'static,
    confirmed: bool,
    cap: MailCap,
    mut on_bad: impl FnMut(BadRow),
) -> Result<ImportReport, ImportError> {
    let (rows, mut parsed) = mpsc::channel(BATCH);
    let reading = tokio::task::spawn_blocking(move || read_rows(input, &rows));
    let mut report = ImportReport::default();
    let mut batch: Vec<EmailAddress> = Vec::with_capacity(BATCH);
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(row) = parsed.recv().await {
        match row {
            Parsed::Address(email) => {
                if seen.insert(email.key()) {
                    batch.push(email);
                }
            }
            Parsed::Bad(bad) => {
                report.bad_rows += 1;
                on_bad(bad);
            }
        }
        if batch.len() >= BATCH {
            flush(store, keys, clock, newsletter, &mut batch, confirmed, cap, &mut report).await?;
            seen.clear();
        }
    }
    reading.await.map_err(|e| ImportError::Reader(e.to_string()))??;
    flush(store, keys, clock, newsletter, &mut batch, confirmed, cap, &mut report).await?;
    Ok(report)
}

/// Parses `input` into `rows` until the end or until nobody listens.
fn read_rows(input: impl Read, rows: &mpsc::Sender<Parsed>) -> Result<(), ImportError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(input);
    let headers = reader.headers().map_err(|_| ImportError::NoHeader)?.clone();
    let column = headers
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case("email"))
        .ok_or_else(|| {
            let found = headers.iter().map(|h| cut(h, QUOTED)).collect::<Vec<_>>().join(",");
            ImportError::NoEmailColumn(cut(&found, QUOTED * 2))
        })?;
    for record in reader.records() {
        let parsed = match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                let raw = crate::spreadsheet::restore(record.get(column).unwrap_or_default());
                match EmailAddress::parse(raw) {
                    Ok(email) => Parsed::Address(email),
                    Err(e) => Parsed::Bad(BadRow { line, reason: format!("{:?}: {e}", cut(raw, QUOTED)) }),
                }
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                Parsed::Bad(BadRow { line, reason: format!("unreadable row: {e}") })
            }
        };
        if rows.blocking_send(parsed).is_err() {
            break;
        }
    }
    Ok(())
}

/// At most `max` characters of `value`, with "…" when it was longer: for
/// quoting input in messages, where a 20 MB field must not be echoed whole.
pub fn cut(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    }
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

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn long_values_are_cut() {
        assert_eq!(cut("short", 60), "short");
        assert_eq!(cut(&"x".repeat(20_000_000), 60), format!("{}…", "x".repeat(60)));
        assert_eq!(cut(&"é".repeat(61), 60), format!("{}…", "é".repeat(60)));
    }
}
