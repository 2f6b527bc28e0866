//! `bulletin subscribers import`: reads a list, says how it read it, asks
//! before queueing confirmation mail, and accounts for every row.
//!
//! Without `--yes` the file is read twice: once to count the confirmation
//! mails the import would queue (standard input is kept in a temporary file
//! meanwhile), then to import. Skipped rows are reported on standard error
//! during the first read only.

use std::io::{IsTerminal, Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::app;
use crate::clock::Clock;
use crate::config::Settings;
use crate::signup::roster::{self, ImportOptions, ImportReport, Pass, Skipped};

/// Import a list: a CSV file with a header row (`-` reads standard input).
///
/// The address column is found by its name (email, Email Address, …), as are
/// a name (name, or First Name and Last Name), a consent date (CONFIRM_TIME,
/// OPTIN_TIME, created_at, …), a status (status, subscribed_to_emails,
/// email_disabled) and a source: the export headers of Mailchimp, Substack,
/// listmonk and Ghost work as they are. Other columns are listed as ignored.
/// Fields may be separated by `,`, `;` or tabs (found from the header line).
///
/// New addresses get the double opt-in mail (under the per-address cap);
/// Bulletin asks first, or needs --yes without a terminal. With --confirmed
/// they are confirmed and sent nothing. Readers who unsubscribed, here or in
/// the source list, stay unsubscribed. Bad rows are reported with their line
/// numbers and skipped. Exit code 0: the list was imported (or rehearsed);
/// 1: nothing was imported (an error, the question answered no, or every row bad).
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The newsletter's slug, as in `bulletin newsletters list`.
    #[arg(long, value_name = "SLUG")]
    newsletter: String,
    /// The readers already consented elsewhere: confirm them, send nothing.
    #[arg(long)]
    confirmed: bool,
    /// The header name of the column that holds the addresses, when it is not recognised.
    #[arg(long, value_name = "NAME")]
    column: Option<String>,
    /// The character between fields: `,`, `;`, `tab`, … (found from the header line when not given).
    #[arg(long, value_name = "CHAR", value_parser = delimiter)]
    delimiter: Option<u8>,
    /// Read the file and report what the import would do, without changing or sending anything.
    #[arg(long)]
    dry_run: bool,
    /// Queue the confirmation mails without asking (needed when no terminal can answer).
    #[arg(long)]
    yes: bool,
    /// CSV file, or `-` for standard input.
    file: PathBuf,
}

/// `--delimiter`: one character, or `tab`.
fn delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        one if one.len() == 1 && one.is_ascii() && !matches!(one, "\"" | "\n" | "\r") => Ok(one.as_bytes()[0]),
        _ => Err("give one ASCII character, such as ';', or `tab`".to_owned()),
    }
}

pub async fn run(settings: &Settings, args: ImportArgs) -> anyhow::Result<()> {
    let services = app::services(settings, Clock::system()).await?;
    let newsletter = super::newsletter_by_slug(&services, &args.newsletter)?;
    let options = ImportOptions { confirmed: args.confirmed, column: args.column.clone(), delimiter: args.delimiter };
    let (store, keys, cap, clock) =
        (&services.store, services.signup.links().keys(), services.signup.cap(), Clock::system());
    let from_stdin = args.file.as_os_str() == "-";
    let pass = |input: Box<dyn Read + Send>, pass: Pass, quiet: bool| {
        roster::import(store, keys, &clock, &newsletter, input, &options, cap, pass, move |skipped| {
            if !quiet {
                say_skipped(&skipped);
            }
        })
    };

    if args.dry_run {
        let report = pass(open(&args.file)?, Pass::Rehearse, false).await?;
        summary(&mut std::io::stdout().lock(), newsletter.slug.as_str(), &report, true)?;
        return done(&report);
    }
    let mut skips_said = false;
    let mut spool = None;
    if !args.yes {
        let input = if from_stdin {
            let copy = tempfile::tempfile().context("making a temporary file for standard input")?;
            spool = Some(copy.try_clone()?);
            Box::new(Spool { input: std::io::stdin(), copy }) as Box<dyn Read + Send>
        } else {
            open(&args.file)?
        };
        let counted = pass(input, Pass::CountMails, false).await?;
        skips_said = true;
        let mails = counted.outcome.mails_queued;
        if mails > 0 {
            ask(mails, from_stdin)?;
        }
    }
    let input = match spool {
        Some(mut copy) => {
            copy.rewind()?;
            Box::new(copy) as Box<dyn Read + Send>
        }
        None => open(&args.file)?,
    };
    let report = pass(input, Pass::Write, skips_said).await?;
    summary(&mut std::io::stdout().lock(), newsletter.slug.as_str(), &report, false)?;
    done(&report)
}

/// The file, or standard input for `-`.
fn open(file: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    if file.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    Ok(Box::new(std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?))
}

/// Standard input, copied to a file as it is read, to be read again.
struct Spool {
    input: std::io::Stdin,
    copy: std::fs::File,
}

impl Read for Spool {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn say_skipped(skipped: &Skipped) {
    match skipped {
        Skipped::Bad(bad) => eprintln!("line {}: skipped: {}", bad.line, bad.reason),
        Skipped::Duplicate { line, first } => eprintln!("line {line}: skipped: the address of line {first} again"),
    }
}

/// Asks on the terminal before mail goes out; refuses when nobody can answer.
fn ask(mails: u64, from_stdin: bool) -> anyhow::Result<()> {
    let what = counted(mails, "confirmation email", "confirmation emails");
    if from_stdin || !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        bail!(
            "this import would send {what}, and there is no terminal to ask on: pass --yes to send them, \
             --confirmed if the readers already consented elsewhere, or --dry-run to see what it would do; \
             nothing was imported"
        );
    }
    if !super::prompt::yes(&format!("This will send {what}. Continue?"))? {
        bail!("nothing was imported, nothing sent");
    }
    Ok(())
}

/// The exit: an error when rows were read and none could be imported.
fn done(report: &ImportReport) -> anyhow::Result<()> {
    if report.rows > 0 && report.bad_rows == report.rows {
        bail!("nothing was imported: every row was bad (see the lines above)");
    }
    Ok(())
}

/// `1 confirmation email`, `2 confirmation emails`.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// How the file was read and where each row went, every row in one bucket.
fn summary(out: &mut impl Write, slug: &str, report: &ImportReport, dry_run: bool) -> std::io::Result<()> {
    let file = &report.file;
    let separator = match file.delimiter {
        b'\t' => "tabs".to_owned(),
        other => format!("'{}'", other as char),
    };
    let exporter = file.exporter.map(|e| format!("a {} export, ", e.name())).unwrap_or_default();
    writeln!(out, "Read {} ({exporter}fields separated by {separator}).", counted(report.rows, "row", "rows"))?;
    let used: Vec<String> = file.used.iter().map(|(what, column)| format!("{what}: {column}")).collect();
    writeln!(out, "  Columns used: {}.", used.join("; "))?;
    if !file.ignored.is_empty() {
        writeln!(out, "  Ignored: {}.", roster::cut(&file.ignored.join(", "), 400))?;
    }
    if dry_run {
        writeln!(out, "Dry run: nothing was changed or sent. Importing into {slug} would give:")?;
    } else {
        writeln!(out, "Imported into {slug}:")?;
    }
    let o = &report.outcome;
    let width = [report.new_rows(), report.already_there, report.duplicates, report.bad_rows, report.rows]
        .iter()
        .map(|n| n.to_string().len())
        .max()
        .unwrap_or(1);
    let queued = if dry_run { "to be queued" } else { "queued" };
    let mut new = format!("{} confirmed, {} pending ({} {queued})", o.new_confirmed, o.new_pending, {
        counted(o.mails_queued, "confirmation mail", "confirmation mails")
    });
    if o.new_unsubscribed > 0 {
        new.push_str(&format!(", {} unsubscribed as in the list", o.new_unsubscribed));
    }
    writeln!(out, "  {:>width$} new: {new}", report.new_rows())?;
    let mut changes = vec![];
    if o.confirmed > 0 {
        changes.push(format!("{} pending now confirmed", o.confirmed));
    }
    if o.unsubscribed > 0 {
        changes.push(format!("{} now unsubscribed as in the list", o.unsubscribed));
    }
    if report.kept_out > 0 {
        changes.push(format!("{} erased here earlier and left out", report.kept_out));
    }
    let changes = if changes.is_empty() { String::new() } else { format!(" ({})", changes.join(", ")) };
    writeln!(out, "  {:>width$} already there{changes}", report.already_there)?;
    let duplicates = if report.duplicates == 1 { "duplicate" } else { "duplicates" };
    writeln!(out, "  {:>width$} {duplicates} in the file (the first of each was used)", report.duplicates)?;
    let bad = if report.bad_rows == 1 { "bad row" } else { "bad rows" };
    writeln!(out, "  {:>width$} {bad} skipped", report.bad_rows)?;
    if report.needed_opt_in > 0 {
        writeln!(
            out,
            "{} address(es) had been erased before: they were not confirmed and get a new opt-in mail instead.",
            report.needed_opt_in
        )?;
    }
    if o.mails_queued > 0 && !dry_run {
        writeln!(out, "Confirmation mail is sent by `bulletin serve` or `bulletin worker`.")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signup::roster::{Exporter, FileSummary};
    use crate::store::ImportOutcome;

    #[test]
    fn delimiters_as_typed() {
        assert_eq!(delimiter(";"), Ok(b';'));
        assert_eq!(delimiter("tab"), Ok(b'\t'));
        assert!(delimiter(";;").is_err() && delimiter("\"").is_err() && delimiter("é").is_err());
    }

    #[test]
    fn the_summary_puts_every_row_somewhere() {
        let report = ImportReport {
            file: FileSummary {
                exporter: Some(Exporter::Mailchimp),
                delimiter: b';',
                used: vec![("address", "Email Address".to_owned())],
                ignored: vec!["Phone Number".to_owned()],
            },
            rows: 20_051,
            outcome: ImportOutcome {
                new_confirmed: 19_990,
                new_unsubscribed: 13,
                unsubscribed: 2,
                ..Default::default()
            },
            already_there: 20,
            duplicates: 20,
            bad_rows: 8,
            ..Default::default()
        };
        assert!(report.adds_up());
        let mut out = vec![];
        summary(&mut out, "morning-briefing", &report, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        let expected = "\
Read 20051 rows (a Mailchimp export, fields separated by ';').
  Columns used: address: Email Address.
  Ignored: Phone Number.
Imported into morning-briefing:
  20003 new: 19990 confirmed, 0 pending (0 confirmation mails queued), 13 unsubscribed as in the list
     20 already there (2 now unsubscribed as in the list)
     20 duplicates in the file (the first of each was used)
      8 bad rows skipped
";
        assert_eq!(text, expected);
    }
}
