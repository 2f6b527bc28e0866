//! The one-file stats page `bulletin stats --html` writes: its styles and
//! charts inline, nothing fetched, so it can be mailed or opened offline.

use askama::Template;

use super::{IssueReport, Report, StatsError, charts};
use crate::clock::{Timestamp, format_timestamp};

#[derive(Template)]
#[template(path = "stats.html")]
struct StatsPage<'a> {
    generated: String,
    since: Option<String>,
    list_size: Option<String>,
    newsletters: Vec<NewsletterPart>,
    deliveries: Option<String>,
    issues: Vec<IssueLine<'a>>,
}

/// One newsletter's totals over the period and its joins-and-leaves chart.
struct NewsletterPart {
    name: String,
    slug: String,
    list_size: i64,
    joined: i64,
    unsubscribed: i64,
    bounced: i64,
    chart: Option<String>,
}

struct IssueLine<'a> {
    issue: &'a IssueReport,
    sent: String,
    bounce_rate: String,
}

/// Renders the report as one self-contained HTML page.
pub fn render_page(report: &Report, now: Timestamp) -> Result<String, StatsError> {
    let newsletters = report
        .newsletters
        .iter()
        .map(|h| {
            Ok(NewsletterPart {
                name: h.newsletter.name.clone(),
                slug: h.newsletter.slug.to_string(),
                list_size: h.days.last().map_or(0, |d| d.list_size),
                joined: h.days.iter().map(|d| d.joined).sum(),
                unsubscribed: h.days.iter().map(|d| d.unsubscribed).sum(),
                bounced: h.days.iter().map(|d| d.bounced).sum(),
                chart: charts::joins_and_leaves(h)?,
            })
        })
        .collect::<Result<_, StatsError>>()?;
    let issues = report
        .issues
        .iter()
        .rev()
        .map(|issue| IssueLine { issue, sent: format_timestamp(issue.sent_at), bounce_rate: bounce_rate(issue) })
        .collect();
    let page = StatsPage {
        generated: format_timestamp(now),
        since: report.since.map(|d| d.to_string()),
        list_size: charts::list_size(&report.newsletters)?,
        newsletters,
        deliveries: charts::deliveries(&report.issues, &report.newsletters)?,
        issues,
    };
    Ok(page.render()?)
}

/// Bounced as a share of the messages that reached an answer, to one decimal.
fn bounce_rate(issue: &IssueReport) -> String {
    let settled = issue.delivered + issue.bounced + issue.failed;
    if settled == 0 {
        return "–".to_owned();
    }
    format!("{:.1} %", issue.bounced as f64 * 100.0 / settled as f64)
}
