//! CSV cells that are safe to open in a spreadsheet.
//!
//! `=cmd|'/C calc'!A0@example.org` is a valid address, and Excel, LibreOffice
//! and Google Sheets run a cell that starts with `=`, `+`, `-` or `@` (or a
//! tab or carriage return before one) as a formula. Every cell Bulletin
//! writes to CSV goes through [`neutralise`], which prefixes such a cell with
//! a single quote, as OWASP recommends; [`restore`] takes the quote off again
//! on import, so an exported list imports unchanged.

use std::borrow::Cow;

/// The characters a spreadsheet may read as the start of a formula.
fn is_trigger(c: char) -> bool {
    matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r')
}

/// Whether a spreadsheet could run the cell, or [`restore`] would mistake it
/// for a quoted one (a value that itself starts with quotes before a trigger).
fn needs_quote(cell: &str) -> bool {
    cell.trim_start_matches('\'').chars().next().is_some_and(is_trigger)
}

/// The cell as written to CSV: quoted with a leading `'` when a spreadsheet would run it.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if needs_quote(cell) { Cow::Owned(format!("'{cell}")) } else { Cow::Borrowed(cell) }
}

/// A cell read from CSV, without the quote [`neutralise`] added: the exact inverse.
pub fn restore(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if needs_quote(rest) => rest,
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_quoted_and_come_back_unchanged() {
        let formulas =
            ["=cmd|'/C calc'!A0@example.org", "+1@example.org", "-x@example.org", "@SUM(A1)", "\t=1", "\r=1"];
        for cell in formulas.into_iter().chain(["'=already-quoted@example.org", "''-x@example.org"]) {
            let written = neutralise(cell);
            assert!(written.starts_with('\''), "{cell:?} -> {written:?}");
            assert_eq!(restore(&written), cell);
        }
        for cell in ["reader@example.org", "O'Brien@example.org", "'quoted@example.org", ""] {
            assert_eq!(neutralise(cell), cell);
            assert_eq!(restore(cell), cell);
        }
    }
}
