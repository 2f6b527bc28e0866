//! `bulletin stats`: growth, churn and bounces per UTC day, and how each
//! issue went (spam complaints included), as a table, CSV or JSON, and
//! optionally one HTML page with charts.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::json;

use super::output::{Format, table};
use super::refusals;
use crate::app;
use crate::clock::{Clock, format_timestamp};
use crate::config::Settings;
use crate::domain::{NewsletterSlug, RefusalWarning};
use crate::spreadsheet::neutralise;
use crate::stats::{self, Day, Report};

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Only this newsletter (its slug, as in `bulletin newsletters list`); all of them by default.
    #[arg(long)]
    newsletter: Option<String>,
    /// Only days from this UTC date on, and issues sent since (YYYY-MM-DD); the list size still counts everyone before.
    #[arg(long, value_name = "DATE", value_parser = Day::parse)]
    since: Option<Day>,
    /// How to print: an aligned table, CSV (the days, a blank line, then the issues) or JSON.
    /// The receiving domains that refused for the sender's reasons are in the table and JSON.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Also write one self-contained HTML page with charts to FILE (nothing on it is fetched from elsewhere).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

pub async fn run(settings: &Settings, args: StatsArgs) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    let mut newsletters = store.list_newsletters().await?;
    if let Some(wanted) = &args.newsletter {
        let slug = NewsletterSlug::parse(wanted).with_context(|| format!("--newsletter {wanted:?}"))?;
        newsletters.retain(|n| n.slug == slug);
        if newsletters.is_empty() {
            bail!("there is no newsletter \"{slug}\"; `bulletin newsletters list` shows them");
        }
    }
    let report = stats::gather(&store, &newsletters, args.since).await?;
    if let Some(path) = &args.html {
        let page = stats::render_page(&report, Clock::system().now())?;
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("Wrote {}.", path.display());
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    print(&mut out, args.format, &report, &settings.bounces.refusal_warning())?;
    out.flush()?;
    Ok(())
}

const DAY_HEADER: [&str; 6] = ["day (UTC)", "newsletter", "joined", "unsubscribed", "bounced", "list size"];
const ISSUE_HEADER: [&str; 10] = [
    "issue",
    "newsletter",
    "subject",
    "sent",
    "delivered",
    "bounced",
    "failed",
    "other",
    "unsubscribed in 7 days",
    "complaints",
];

fn print(out: &mut impl Write, format: Format, report: &Report, warning: &RefusalWarning) -> anyhow::Result<()> {
    let days: Vec<[String; 6]> = report
        .newsletters
        .iter()
        .flat_map(|h| {
            h.days.iter().map(|d| {
                [
                    d.day.to_string(),
                    h.newsletter.slug.to_string(),
                    d.joined.to_string(),
                    d.unsubscribed.to_string(),
                    d.bounced.to_string(),
                    d.list_size.to_string(),
                ]
            })
        })
        .collect();
    let issues: Vec<[String; 10]> = report
        .issues
        .iter()
        .map(|i| {
            [
                i.id.to_string(),
                i.newsletter.to_string(),
                i.subject.clone(),
                format_timestamp(i.sent_at),
                i.delivered.to_string(),
                i.bounced.to_string(),
                i.failed.to_string(),
                i.other.to_string(),
                i.unsubscribed_within_7_days.to_string(),
                i.complaints.to_string(),
            ]
        })
        .collect();
    match format {
        Format::Table => {
            writeln!(out, "Per day (UTC days, days with activity only):")?;
            table(out, &DAY_HEADER, &days)?;
            writeln!(out, "\nPer issue:")?;
            table(out, &ISSUE_HEADER, &issues)?;
            if !report.refusals_by_domain.is_empty() {
                writeln!(
                    out,
                    "\nRefused for the sender's reasons by receiving domain (the issues above; nobody suppressed):"
                )?;
                refusals::print(out, &report.refusals_by_domain, warning)?;
            }
        }
        Format::Csv => {
            csv_block(out, &DAY_HEADER, &days)?;
            writeln!(out)?;
            csv_block(out, &ISSUE_HEADER, &issues)?;
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &as_json(report, warning))?;
            writeln!(out)?;
        }
    }
    Ok(())
}

fn csv_block<const N: usize>(out: &mut impl Write, header: &[&str; N], rows: &[[String; N]]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(header)?;
    for row in rows {
        w.write_record(row.iter().map(|cell| neutralise(cell).into_owned()))?;
    }
    w.flush()?;
    Ok(())
}

fn as_json(report: &Report, warning: &RefusalWarning) -> serde_json::Value {
    let newsletters: Vec<_> = report
        .newsletters
        .iter()
        .map(|h| {
            let days: Vec<_> = h
                .days
                .iter()
                .map(|d| {
                    json!({"day": d.day.to_string(), "joined": d.joined, "unsubscribed": d.unsubscribed,
                           "bounced": d.bounced, "list_size": d.list_size})
                })
                .collect();
            json!({"slug": h.newsletter.slug.as_str(), "name": h.newsletter.name, "days": days})
        })
        .collect();
    let issues: Vec<_> = report
        .issues
        .iter()
        .map(|i| {
            json!({"id": i.id, "newsletter": i.newsletter.as_str(), "subject": i.subject,
                   "sent_at": format_timestamp(i.sent_at), "completed_at": i.completed_at.map(format_timestamp),
                   "delivered": i.delivered, "bounced": i.bounced, "failed": i.failed, "other": i.other,
                   "unsubscribed_within_7_days": i.unsubscribed_within_7_days, "complaints": i.complaints})
        })
        .collect();
    json!({"days_are": "UTC", "since": report.since.map(|d| d.to_string()),
           "newsletters": newsletters, "issues": issues,
           "sender_refusals_by_domain": refusals::as_json(&report.refusals_by_domain, warning)})
}
