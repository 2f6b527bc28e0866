//! Bulk work on the subscriber list for editors: import and erasure.

mod columns;
mod dates;
mod import;
mod list_file;

pub use columns::{Exporter, ListRow, Standing};
pub use import::{BadRow, FileSummary, ImportError, ImportOptions, ImportReport, Pass, Skipped, import, import_csv};

use crate::clock::Clock;
use crate::domain::{EmailAddress, LinkKeys};
use crate::store::{Store, StoreError};

/// A bad value is quoted in its row's report up to this many characters.
const QUOTED: usize = 60;

/// At most `max` characters of `value`, with "…" when it was longer: for
/// quoting input in messages, where a 20 MB field must not be echoed whole.
pub fn cut(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    }
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
