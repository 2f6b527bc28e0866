//! Importing a list into one newsletter, a batch at a time.
//!
//! Every row read lands in exactly one bucket: new here, already there,
//! a duplicate of an earlier row of the file (the first one counts), or bad
//! (skipped, with its line and what is wrong). What the source list says
//! comes along: the reader's name, when and where they consented (the
//! consent event's time and source, `import:mailchimp` or the row's
//! `source`), and whether they left. A reader who unsubscribed or was
//! cleaned there is recorded here as unsubscribed, never made a subscriber
//! again by an import: only their own signup brings them back. An address
//! erased here earlier stays out if the list says it left, and otherwise
//! needs a new opt-in whatever `--confirmed` says.
//!
//! The file is read and parsed on a blocking thread, a bounded channel ahead
//! of the database, so a slow disk or pipe never stalls the runtime; bad rows
//! and duplicates are handed on as they are found and not kept, so any number
//! of them takes no memory. Only a 16-byte digest per distinct address is kept,
//! to know a duplicate.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::io::Read;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::columns::{Exporter, HeaderError, ListRow, Standing};
use super::list_file::{Entry, ListFile};
use crate::clock::Clock;
use crate::domain::{LinkKeys, Newsletter};
use crate::store::{ImportOutcome, ImportRow, ImportWish, MailCap, Store, StoreError};

/// Rows written per transaction: large, since each commit waits for the
/// disk, and small enough for SQLite's 32 766 bound parameters (seven per
/// consent event, six per subscription).
const BATCH: usize = 4000;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the file has no header row: its first line must name the columns, such as `email`")]
    NoHeader,
    #[error("the header is not UTF-8 text: save the file as \"CSV UTF-8\" and import it again")]
    NotUtf8,
    #[error("{0}{1}")]
    Header(HeaderError, String),
    #[error("could not read the file: {0}")]
    Csv(#[from] csv::Error),
    #[error("could not read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the file reader stopped: {0}")]
    Reader(String),
}

/// What the editor asked for beside the file.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The readers consented elsewhere: confirm them, send nothing.
    pub confirmed: bool,
    /// The header name of the address column, when it is not recognised.
    pub column: Option<String>,
    /// The field separator, when not the one the header line uses.
    pub delimiter: Option<u8>,
}

/// What a run over the file does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Imports.
    Write,
    /// Does everything and rolls each batch back: the report says exactly
    /// what [`Pass::Write`] would do (unless the list changes meanwhile).
    Rehearse,
    /// Counts only the confirmation mails an import would queue, rehearsing
    /// just the rows that could get one: what to ask the editor before.
    CountMails,
}

/// A row that was skipped, with the line it stood on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub line: u64,
    pub reason: String,
}

/// A row left out, as it is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    Bad(BadRow),
    /// The address of line `first` again.
    Duplicate {
        line: u64,
        first: u64,
    },
}

/// How the file was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSummary {
    pub exporter: Option<Exporter>,
    pub delimiter: u8,
    /// Columns used, by what for: ("address", "Email Address").
    pub used: Vec<(&'static str, String)>,
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub file: FileSummary,
    /// Rows read after the header: each is new, already there, a duplicate or bad.
    pub rows: u64,
    /// New subscriptions by state, and what changed among those already there.
    pub outcome: ImportOutcome,
    /// Rows whose address was already in the newsletter (or erased and left out).
    pub already_there: u64,
    /// Of those: erased here earlier and unsubscribed in the list, so not stored again.
    pub kept_out: u64,
    pub duplicates: u64,
    pub bad_rows: u64,
    /// Addresses erased earlier that `--confirmed` could not confirm: they need a new opt-in.
    pub needed_opt_in: u64,
    /// The skipped rows themselves, kept only by [`import_csv`]: [`import`]
    /// hands each to its caller as it is found.
    pub bad: Vec<BadRow>,
}

impl ImportReport {
    pub fn new_rows(&self) -> u64 {
        self.outcome.new_total()
    }

    /// Whether every row read is in exactly one bucket.
    pub fn adds_up(&self) -> bool {
        self.rows == self.new_rows() + self.already_there + self.duplicates + self.bad_rows
    }
}

/// What the reading thread hands over.
enum Parsed {
    File(FileSummary),
    Entry(Entry),
}

/// What a batch needs besides its rows.
struct Target<'a> {
    store: &'a Store,
    keys: &'a LinkKeys,
    clock: &'a Clock,
    newsletter: &'a Newsletter,
    options: &'a ImportOptions,
    cap: MailCap,
    pass: Pass,
}

/// Imports a CSV with an `email` column into `newsletter` as [`import`]
/// does, for input already in memory (tests, small lists): the bad rows are
/// kept in the report.
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
    input.read_to_end(&mut bytes)?;
    let mut bad = vec![];
    let options = ImportOptions { confirmed, ..ImportOptions::default() };
    let cursor = std::io::Cursor::new(bytes);
    let mut report = import(store, keys, clock, newsletter, cursor, &options, cap, Pass::Write, |skipped| {
        if let Skipped::Bad(row) = skipped {
            bad.push(row);
        }
    })
    .await?;
    report.bad = bad;
    Ok(report)
}

/// Reads a list file into `newsletter` (or rehearses it, see [`Pass`]), a
/// batch at a time, handing each skipped row to `on_skip` as it is found.
#[allow(clippy::too_many_arguments)]
pub async fn import(
    store: &Store,
    keys: &LinkKeys,
    clock: &Clock,
    newsletter: &Newsletter,
    input: impl Read + Send + 'static,
    options: &ImportOptions,
    cap: MailCap,
    pass: Pass,
    mut on_skip: impl FnMut(Skipped),
) -> Result<ImportReport, ImportError> {
    let (sender, mut parsed) = mpsc::channel(BATCH);
    let (column, delimiter, now) = (options.column.clone(), options.delimiter, clock.now());
    let reading = tokio::task::spawn_blocking(move || read(input, column.as_deref(), delimiter, now, &sender));
    let target = Target { store, keys, clock, newsletter, options, cap, pass };
    let mut report = ImportReport::default();
    let mut batch: Vec<ListRow> = Vec::with_capacity(BATCH);
    // The line each distinct address was first seen on, by a digest of its key.
    let mut seen: HashMap<u128, u64> = HashMap::new();
    while let Some(next) = parsed.recv().await {
        match next {
            Parsed::File(summary) => report.file = summary,
            Parsed::Entry(Entry::Row { line, row }) => {
                report.rows += 1;
                match seen.entry(digest(&row.email.key())) {
                    Slot::Occupied(first) => {
                        report.duplicates += 1;
                        on_skip(Skipped::Duplicate { line, first: *first.get() });
                    }
                    Slot::Vacant(slot) => {
                        slot.insert(line);
                        batch.push(row);
                    }
                }
            }
            Parsed::Entry(Entry::Bad(bad)) => {
                report.rows += 1;
                report.bad_rows += 1;
                on_skip(Skipped::Bad(bad));
            }
        }
        if batch.len() >= BATCH {
            flush(&target, &mut batch, &mut report).await?;
        }
    }
    reading.await.map_err(|e| ImportError::Reader(e.to_string()))??;
    flush(&target, &mut batch, &mut report).await?;
    Ok(report)
}

/// Parses `input` into `rows` until the end or until nobody listens.
fn read(
    input: impl Read + Send + 'static,
    column: Option<&str>,
    delimiter: Option<u8>,
    now: i64,
    rows: &mpsc::Sender<Parsed>,
) -> Result<(), ImportError> {
    let file = ListFile::open(input, column, delimiter)?;
    let summary = FileSummary {
        exporter: file.columns.exporter,
        delimiter: file.delimiter,
        used: file.columns.used(),
        ignored: file.columns.ignored().into_iter().map(str::to_owned).collect(),
    };
    if rows.blocking_send(Parsed::File(summary)).is_err() {
        return Ok(());
    }
    for entry in file.entries(now) {
        if rows.blocking_send(Parsed::Entry(entry?)).is_err() {
            break;
        }
    }
    Ok(())
}

/// A 16-byte digest of an address key: as good as the key for telling
/// addresses apart, at a fraction of its memory.
fn digest(key: &str) -> u128 {
    let hash = Sha256::digest(key.as_bytes());
    u128::from_le_bytes(hash[..16].try_into().expect("a SHA-256 has 32 bytes"))
}

/// What an import asks for one address, from where the list says the
/// reader stands; `None`: nothing (erased here, and gone there too).
fn wish(standing: Standing, erased: bool, confirmed: bool) -> Option<ImportWish> {
    match standing {
        Standing::Unsubscribed | Standing::Cleaned if erased => None,
        Standing::Unsubscribed | Standing::Cleaned => Some(ImportWish::Leave),
        Standing::Subscribed if confirmed && !erased => Some(ImportWish::Confirm),
        Standing::Subscribed | Standing::Unconfirmed => Some(ImportWish::OptIn),
    }
}

/// The consent record's source for a row: its own `source` value, else the exporter.
fn source(row: &ListRow, exporter: Option<Exporter>) -> String {
    match (&row.source, exporter) {
        (Some(own), _) => format!("import:{own}"),
        (None, Some(exporter)) => format!("import:{}", exporter.label()),
        (None, None) => "import".to_owned(),
    }
}

async fn flush(target: &Target<'_>, batch: &mut Vec<ListRow>, report: &mut ImportReport) -> Result<(), ImportError> {
    if batch.is_empty() {
        return Ok(());
    }
    let hashes: Vec<Vec<String>> = batch.iter().map(|row| target.keys.suppression_hashes(&row.email.key())).collect();
    let all: Vec<String> = hashes.iter().flatten().cloned().collect();
    let suppressed = target.store.suppressed_hashes(&all).await?;
    let now = target.clock.now();
    let mut rows = Vec::with_capacity(batch.len());
    for (row, hashes) in batch.drain(..).zip(hashes) {
        let erased = hashes.iter().any(|h| suppressed.contains(h));
        let Some(wish) = wish(row.standing, erased, target.options.confirmed) else {
            report.already_there += 1;
            report.kept_out += 1;
            continue;
        };
        if erased && target.options.confirmed && row.standing == Standing::Subscribed {
            report.needed_opt_in += 1;
        }
        let at = if wish == ImportWish::Leave { row.left_at } else { row.consented_at };
        rows.push(ImportRow {
            source: source(&row, report.file.exporter),
            at: at.unwrap_or(now),
            wish,
            email: row.email,
            name: row.name,
        });
    }
    if target.pass == Pass::CountMails {
        rows.retain(|row| row.wish == ImportWish::OptIn);
    }
    let commit = target.pass == Pass::Write;
    let outcome = target.store.import_batch(target.newsletter.id, &rows, now, target.cap, commit).await?;
    report.already_there += rows.len() as u64 - outcome.new_total();
    report.outcome.add(&outcome);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_decides_what_an_import_asks_for() {
        use ImportWish::*;
        use Standing::*;
        for (standing, erased, confirmed, expected) in [
            (Subscribed, false, true, Some(Confirm)),
            (Subscribed, false, false, Some(OptIn)),
            (Subscribed, true, true, Some(OptIn)),
            (Unconfirmed, false, true, Some(OptIn)),
            (Unsubscribed, false, true, Some(Leave)),
            (Cleaned, false, false, Some(Leave)),
            (Unsubscribed, true, true, None),
        ] {
            assert_eq!(
                wish(standing, erased, confirmed),
                expected,
                "{standing:?} erased={erased} --confirmed={confirmed}"
            );
        }
    }

    #[test]
    fn digests_tell_addresses_apart() {
        assert_eq!(digest("ada@example.org"), digest("ada@example.org"));
        assert_ne!(digest("ada@example.org"), digest("ada@example.com"));
    }
}
