//! How the CLI prints lists: aligned tables for people, CSV and JSON for programs.
//! CSV cells are neutralised so a spreadsheet never runs one as a formula.

use std::collections::HashMap;
use std::io::Write;

use clap::ValueEnum;
use serde_json::json;

use crate::clock::format_timestamp;
use crate::domain::{Newsletter, SubscriptionStatus};
use crate::signup::suppression::review::Reviewed;
use crate::signup::suppression::{ErasedAddresses, Reason, Suppressed};
use crate::signup::{ReaderRhythm, RhythmOffer};
use crate::spreadsheet::neutralise;
use crate::store::{ItemRow, Store, SubscriberRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Rows fetched per query when walking a subscriber list.
const PAGE: i64 = 1000;

/// Newsletters with their counts; `configured` tells the archived apart:
/// taken out of the configuration, they take no signups and keep their history.
pub fn newsletters(
    out: &mut impl Write,
    format: Format,
    newsletters: &[Newsletter],
    counts: &HashMap<(i64, SubscriptionStatus), i64>,
    configured: &dyn Fn(&Newsletter) -> bool,
) -> anyhow::Result<()> {
    let count = |id, status| counts.get(&(id, status)).copied().unwrap_or(0);
    let rows: Vec<[String; 6]> = newsletters
        .iter()
        .map(|n| {
            [
                n.slug.to_string(),
                n.name.clone(),
                count(n.id, SubscriptionStatus::Confirmed).to_string(),
                count(n.id, SubscriptionStatus::Pending).to_string(),
                count(n.id, SubscriptionStatus::Unsubscribed).to_string(),
                if configured(n) { "active" } else { "archived" }.to_owned(),
            ]
        })
        .collect();
    let header = ["slug", "name", "confirmed", "pending", "unsubscribed", "state"];
    match format {
        Format::Table => table(out, &header, &rows)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(header)?;
            for row in &rows {
                w.write_record(row.iter().map(|cell| neutralise(cell).into_owned()))?;
            }
            w.flush()?;
        }
        Format::Json => {
            let list: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({"slug": r[0], "name": r[1], "confirmed": r[2].parse::<i64>().unwrap_or(0),
                           "pending": r[3].parse::<i64>().unwrap_or(0), "unsubscribed": r[4].parse::<i64>().unwrap_or(0),
                           "state": r[5]})
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &list)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Streams a newsletter's subscribers page by page, so memory stays flat on
/// any list size (a table is the exception: it needs every width first).
/// On a newsletter that offers rhythms (`offer`), the table and JSON show
/// each reader's rhythm and zone. The CSV's first four columns are a
/// contract with the spreadsheets and scripts that read it; `name` follows them.
pub async fn subscribers(
    out: &mut impl Write,
    format: Format,
    store: &Store,
    newsletter_id: i64,
    status: Option<SubscriptionStatus>,
    offer: Option<&RhythmOffer>,
) -> anyhow::Result<()> {
    let header = ["email", "status", "created_at", "confirmed_at", "name"];
    let record = |row: &SubscriberRow| {
        [
            row.email.clone(),
            row.status.to_string(),
            format_timestamp(row.created_at),
            row.confirmed_at.map(format_timestamp).unwrap_or_default(),
            row.name.clone().unwrap_or_default(),
        ]
    };
    let rhythm = |row: &SubscriberRow| offer.map(|offer| ReaderRhythm::resolve(offer, row.rhythm, row.zone));
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(header)?;
            walk(store, newsletter_id, status, |row| {
                Ok(w.write_record(record(row).iter().map(|cell| neutralise(cell).into_owned()))?)
            })
            .await?;
            w.flush()?;
        }
        Format::Json => {
            let mut first = true;
            write!(out, "[")?;
            walk(store, newsletter_id, status, |row| {
                let mut value = json!({"email": row.email, "name": row.name, "status": row.status,
                                   "created_at": format_timestamp(row.created_at),
                                   "confirmed_at": row.confirmed_at.map(format_timestamp)});
                if let Some(r) = rhythm(row) {
                    super::reader::rhythm(&mut value, &r);
                }
                write!(out, "{}{value}", if first { "\n  " } else { ",\n  " })?;
                first = false;
                Ok(())
            })
            .await?;
            writeln!(out, "{}]", if first { "" } else { "\n" })?;
        }
        Format::Table => {
            let marked = |value: &str, own: bool| if own { value.to_owned() } else { format!("{value} (default)") };
            let (mut plain, mut paced) = (vec![], vec![]);
            walk(store, newsletter_id, status, |row| {
                match rhythm(row) {
                    Some(r) => {
                        let [email, status, created_at, confirmed_at, name] = record(row);
                        let (rhythm, zone) =
                            (marked(r.rhythm.as_str(), r.own_rhythm), marked(r.zone.name(), r.own_zone));
                        paced.push([email, status, rhythm, zone, created_at, confirmed_at, name]);
                    }
                    None => plain.push(record(row)),
                }
                Ok(())
            })
            .await?;
            if offer.is_some() {
                table(out, &["email", "status", "rhythm", "timezone", "created_at", "confirmed_at", "name"], &paced)?;
            } else {
                table(out, &header, &plain)?;
            }
            writeln!(out, "{} subscriber(s)", plain.len() + paced.len())?;
        }
    }
    Ok(())
}

/// `subscribers export`: every subscription of `newsletters`, a newsletter
/// at a time, streamed as `subscribers list` does. The first four columns
/// are the list's CSV, a contract with the spreadsheets and scripts that
/// read it; the rest follow them, `name` last.
pub async fn export(
    out: &mut impl Write,
    store: &Store,
    newsletters: &[Newsletter],
    erased: &ErasedAddresses,
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "email",
        "status",
        "created_at",
        "confirmed_at",
        "newsletter",
        "unsubscribed_at",
        "suppression",
        "name",
    ])?;
    let at = |t: Option<i64>| t.map(format_timestamp).unwrap_or_default();
    for newsletter in newsletters {
        walk(store, newsletter.id, None, |row| {
            let suppression = if row.bounced_at.is_some() {
                Reason::Bounced.as_str()
            } else if erased.erased_at(&row.email).is_some() {
                Reason::Erased.as_str()
            } else {
                ""
            };
            let record = [
                row.email.clone(),
                row.status.to_string(),
                format_timestamp(row.created_at),
                at(row.confirmed_at),
                newsletter.slug.to_string(),
                at(row.unsubscribed_at),
                suppression.to_owned(),
                row.name.clone().unwrap_or_default(),
            ];
            Ok(w.write_record(record.iter().map(|cell| neutralise(cell).into_owned()))?)
        })
        .await?;
    }
    w.flush()?;
    Ok(())
}

/// The suppression list as `bulletin suppressions list` prints it.
pub fn suppressions(out: &mut impl Write, format: Format, list: &[Suppressed]) -> anyhow::Result<()> {
    let header = ["address", "reason", "since"];
    let cells: Vec<[String; 3]> = list
        .iter()
        .map(|s| {
            let address = s.address.clone().unwrap_or_else(|| "(erased: only a keyed hash is kept)".to_owned());
            [address, s.reason.as_str().to_owned(), format_timestamp(s.since)]
        })
        .collect();
    match format {
        Format::Table => {
            table(out, &header, &cells)?;
            writeln!(out, "{} suppressed address(es)", list.len())?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(header)?;
            for (s, row) in list.iter().zip(&cells) {
                let address = s.address.as_deref().unwrap_or_default();
                w.write_record([neutralise(address).as_ref(), &row[1], &row[2]])?;
            }
            w.flush()?;
        }
        Format::Json => {
            let rows: Vec<_> = list
                .iter()
                .map(|s| json!({"address": s.address, "reason": s.reason, "since": format_timestamp(s.since)}))
                .collect();
            serde_json::to_writer_pretty(&mut *out, &rows)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Bounce suppressions as `bulletin suppressions review` lists them.
pub fn reviewed(out: &mut impl Write, format: Format, list: &[Reviewed]) -> anyhow::Result<()> {
    let header = ["address", "since", "reason", "cause", "detail"];
    let cells: Vec<[String; 5]> = list
        .iter()
        .map(|r| {
            [
                r.address.clone(),
                format_timestamp(r.since),
                r.reads_as.reason.map_or("provider's verdict", |reason| reason.as_str()).to_owned(),
                r.reads_as.cause.as_str().to_owned(),
                r.detail.clone(),
            ]
        })
        .collect();
    match format {
        Format::Table => {
            table(out, &header, &cells)?;
            writeln!(out, "{} bounce suppression(s) no longer read as gone", list.len())?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(header)?;
            for row in &cells {
                w.write_record([
                    neutralise(&row[0]).as_ref(),
                    &row[1],
                    &row[2],
                    &row[3],
                    neutralise(&row[4]).as_ref(),
                ])?;
            }
            w.flush()?;
        }
        Format::Json => {
            let rows: Vec<_> = list
                .iter()
                .map(|r| {
                    json!({
                        "address": r.address,
                        "since": format_timestamp(r.since),
                        "reason": r.reads_as.reason,
                        "cause": r.reads_as.cause,
                        "detail": r.detail,
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &rows)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// A newsletter's stories as `bulletin items list` prints them, in the order given.
pub fn items(out: &mut impl Write, format: Format, rows: &[ItemRow]) -> anyhow::Result<()> {
    let header = ["published", "source", "digest", "title", "url"];
    let digest = |row: &ItemRow| match (row.issue_id, row.run_id) {
        (Some(issue), _) => format!("issue #{issue}"),
        (None, Some(run)) => format!("run #{run}"),
        (None, None) => "pending".to_owned(),
    };
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|row| {
            [format_timestamp(row.published_at), row.source.clone(), digest(row), row.title.clone(), row.url.clone()]
        })
        .collect();
    match format {
        Format::Table => {
            table(out, &header, &cells)?;
            writeln!(out, "{} item(s)", rows.len())?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(header)?;
            for row in &cells {
                w.write_record(row.iter().map(|cell| neutralise(cell).into_owned()))?;
            }
            w.flush()?;
        }
        Format::Json => {
            let list: Vec<_> = rows
                .iter()
                .map(|row| {
                    json!({"published": format_timestamp(row.published_at), "added": format_timestamp(row.added_at),
                           "source": row.source, "issue": row.issue_id, "pending": row.run_id.is_none(),
                           "title": row.title, "url": row.url, "summary": row.summary})
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &list)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Calls `each` for every subscriber of the newsletter, fetching a page at a time.
async fn walk(
    store: &Store,
    newsletter_id: i64,
    status: Option<SubscriptionStatus>,
    mut each: impl FnMut(&SubscriberRow) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut after = 0;
    loop {
        let page = store.subscribers_page(newsletter_id, status, after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.subscriber_id;
        page.iter().try_for_each(&mut each)?;
    }
}

pub(super) fn table<const N: usize>(
    out: &mut impl Write,
    header: &[&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths: [usize; N] = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}
