//! Reading a list file: CSV with a header row, or the semicolon- or
//! tab-separated text spreadsheets save in many countries, with any line
//! endings (`\n`, `\r\n`, a lone `\r`).
//!
//! The field separator is the one the header line uses most (outside
//! quotes) unless `--delimiter` says; line endings become `\n` before the
//! CSV parser sees them, so a row's line number is the line an editor's
//! text editor shows (the parser counts only `\n`).

use std::io::{Cursor, Read};

use csv::StringRecord;

use super::columns::{Columns, ListRow};
use super::{BadRow, ImportError};
use crate::clock::Timestamp;

/// The separators looked for in the header line, preferred in this order on a tie.
const SEPARATORS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// The header line is looked for in this much of the file.
const HEADER_LIMIT: usize = 64 * 1024;

/// One row of the file, read or refused.
#[derive(Debug)]
pub enum Entry {
    Row { line: u64, row: ListRow },
    Bad(BadRow),
}

/// A list file past its header.
pub struct ListFile {
    reader: csv::Reader<Box<dyn Read + Send>>,
    pub columns: Columns,
    pub delimiter: u8,
}

impl ListFile {
    /// Reads the header; `column` names the address column, `delimiter` the separator.
    pub fn open(
        input: impl Read + Send + 'static,
        column: Option<&str>,
        delimiter: Option<u8>,
    ) -> Result<Self, ImportError> {
        let mut input = LineEndings { inner: input, after_cr: false };
        let head = first_line(&mut input)?;
        let sniffed = sniff(&head);
        let delimiter = delimiter.or(sniffed).unwrap_or(b',');
        let input: Box<dyn Read + Send> = Box::new(Cursor::new(head).chain(input));
        let mut reader =
            csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).delimiter(delimiter).from_reader(input);
        let headers = reader.headers().map_err(unreadable_header)?.clone();
        if headers.iter().all(str::is_empty) {
            return Err(ImportError::NoHeader);
        }
        let columns = Columns::recognise(&headers, column).map_err(|e| {
            let hint = match sniffed {
                Some(other) if other != delimiter => {
                    format!("; the header line is separated by {}: try --delimiter {}", shown(other), shown(other))
                }
                _ => String::new(),
            };
            ImportError::Header(e, hint)
        })?;
        Ok(Self { reader, columns, delimiter })
    }

    /// The rows after the header, each read or refused, in order; an I/O error ends them.
    pub fn entries(self, now: Timestamp) -> impl Iterator<Item = Result<Entry, ImportError>> {
        let Self { reader, columns, .. } = self;
        reader.into_records().map(move |record| entry(&columns, record, now))
    }
}

fn entry(columns: &Columns, record: Result<StringRecord, csv::Error>, now: Timestamp) -> Result<Entry, ImportError> {
    let record = match record {
        Ok(record) => record,
        Err(e) => {
            let line = e.position().map_or(0, |p| p.line());
            let reason = match e.kind() {
                csv::ErrorKind::Io(_) => return Err(ImportError::Csv(e)),
                csv::ErrorKind::Utf8 { .. } => {
                    "the row is not UTF-8 text: save the file as \"CSV UTF-8\" and import it again".to_owned()
                }
                _ => format!("unreadable row: {e}"),
            };
            return Ok(Entry::Bad(BadRow { line, reason }));
        }
    };
    let line = record.position().map_or(0, |p| p.line());
    Ok(match columns.read(&record, now) {
        Ok(row) => Entry::Row { line, row },
        Err(reason) => Entry::Bad(BadRow { line, reason }),
    })
}

fn unreadable_header(e: csv::Error) -> ImportError {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => ImportError::NotUtf8,
        csv::ErrorKind::Io(_) => ImportError::Csv(e),
        _ => ImportError::NoHeader,
    }
}

/// A separator as the editor types it after `--delimiter`.
fn shown(separator: u8) -> String {
    match separator {
        b'\t' => "tab".to_owned(),
        other => format!("'{}'", other as char),
    }
}

/// The start of `input` up to and with its first line end (or all of a short file).
fn first_line(input: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.contains(&b'\n') && head.len() < HEADER_LIMIT {
        let n = input.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(head)
}

/// The separator the first line uses most outside quotes, if any.
fn sniff(head: &[u8]) -> Option<u8> {
    let mut counts = [0usize; SEPARATORS.len()];
    let mut quoted = false;
    for &byte in head.iter().take_while(|b| **b != b'\n') {
        if byte == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(i) = SEPARATORS.iter().position(|s| *s == byte) {
            counts[i] += 1;
        }
    }
    let most = *counts.iter().max()?;
    (most > 0).then(|| SEPARATORS[counts.iter().position(|c| *c == most).unwrap_or(0)])
}

/// Turns `\r\n` and a lone `\r` into `\n`, also across reads.
struct LineEndings<R> {
    inner: R,
    /// The last byte read was a `\r` (already given out as `\n`).
    after_cr: bool,
}

impl<R: Read> Read for LineEndings<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.inner.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            let mut kept = 0;
            for i in 0..n {
                let byte = buf[i];
                if byte == b'\n' && self.after_cr {
                    self.after_cr = false;
                    continue;
                }
                self.after_cr = byte == b'\r';
                buf[kept] = if self.after_cr { b'\n' } else { byte };
                kept += 1;
            }
            // A read that was only the `\n` of a `\r\n` gave nothing: read on.
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads through [`LineEndings`] in reads of `size` bytes.
    fn normalised(input: &[u8], size: usize) -> Vec<u8> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = vec![];
        LineEndings { inner: Trickle(input, size), after_cr: false }.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn every_line_end_becomes_one_newline() {
        for size in [1, 2, 3, 1024] {
            assert_eq!(normalised(b"a\r\nb\rc\nd\r\n\r\ne\r", size), b"a\nb\nc\nd\n\ne\n", "reads of {size}");
        }
    }

    proptest::proptest! {
        #[test]
        fn line_ends_normalise_the_same_whatever_the_reads(
            input in proptest::collection::vec(proptest::sample::select(b"a,\r\n".to_vec()), 0..64),
            size in 1usize..8,
        ) {
            let text = String::from_utf8(input.clone()).unwrap();
            let expected = text.replace("\r\n", "\n").replace('\r', "\n");
            proptest::prop_assert_eq!(normalised(&input, size), expected.into_bytes());
        }
    }

    #[test]
    fn the_separator_is_the_headers() {
        assert_eq!(sniff(b"email;name;\"a,b,c\"\nx,y,z,w"), Some(b';'));
        assert_eq!(sniff(b"Email Address\tFirst Name\n"), Some(b'\t'));
        assert_eq!(sniff(b"email,name\n"), Some(b','));
        assert_eq!(sniff(b"email\na;b"), None);
    }

    fn lines(text: &str) -> Vec<(u64, String)> {
        let file = ListFile::open(std::io::Cursor::new(text.as_bytes().to_vec()), None, None).unwrap();
        file.entries(2_000_000_000)
            .map(|e| match e.unwrap() {
                Entry::Row { line, row } => (line, row.email.as_str().to_owned()),
                Entry::Bad(bad) => (bad.line, bad.reason),
            })
            .collect()
    }

    #[test]
    fn line_numbers_are_the_editors_whatever_the_line_ends() {
        let expected = vec![
            (2, "a@example.org".to_owned()),
            (3, "b@example.org".to_owned()),
            (4, "c@example.org".to_owned()),
            (6, "\"nope\": the address has no @".to_owned()),
        ];
        for end in ["\n", "\r\n", "\r"] {
            let text = ["Name;Email", "A;a@example.org", "B;b@example.org", "\"C", "C\";c@example.org", "N;nope", ""]
                .join(end);
            let got = lines(&text);
            assert_eq!(got.len(), 4, "{end:?}: {got:?}");
            for ((line, what), (want_line, want)) in got.iter().zip(&expected) {
                assert_eq!(line, want_line, "{end:?}: {got:?}");
                assert!(what.starts_with(want.split(':').next().unwrap()), "{end:?}: {got:?}");
            }
        }
    }
}
