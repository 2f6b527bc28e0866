//! The stats page's charts, drawn by `plotters` into SVG strings that the
//! page inlines: no script, no font file, no request to anywhere. Text is
//! left to the browser (`<text>` elements), so plotters only estimates label
//! widths.

use plotters::prelude::*;

use super::{Day, IssueReport, NewsletterHistory, StatsError};

const WIDTH: u32 = 960;
const HEIGHT: u32 = 320;
const FONT: &str = "sans-serif";

/// One colour per newsletter, in order; readable on white and told apart by most colour-blind readers.
const SERIES: [RGBColor; 6] = [
    RGBColor(0x1a, 0x4d, 0x8f),
    RGBColor(0xd5, 0x5e, 0x00),
    RGBColor(0x00, 0x9e, 0x73),
    RGBColor(0xcc, 0x79, 0xa7),
    RGBColor(0x56, 0xb4, 0xe9),
    RGBColor(0x99, 0x88, 0x33),
];
const JOINED: RGBColor = RGBColor(0x00, 0x9e, 0x73);
const UNSUBSCRIBED: RGBColor = RGBColor(0xd5, 0x5e, 0x00);
const BOUNCED: RGBColor = RGBColor(0x80, 0x2a, 0x2a);
const DELIVERED: RGBColor = RGBColor(0x1a, 0x4d, 0x8f);
const FAILED: RGBColor = RGBColor(0x99, 0x99, 0x99);

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// Runs `draw` on a fresh SVG canvas and returns the SVG text.
fn svg(
    chart: &'static str,
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Drawn,
) -> Result<String, StatsError> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (WIDTH, HEIGHT)).into_drawing_area();
        let drawn = root.fill(&WHITE).map_err(Into::into).and_then(|()| draw(&root)).and_then(|()| Ok(root.present()?));
        drawn.map_err(|e| StatsError::Chart { chart, reason: e.to_string() })?;
    }
    // Inline in HTML the namespace is implied; without it the page names no address at all.
    Ok(text.replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1))
}

fn day_label(day: &i64) -> String {
    Day(*day).to_string()
}

/// The first and last day (exclusive) any history covers, or `None` without activity.
fn day_span<'a>(histories: impl IntoIterator<Item = &'a NewsletterHistory>) -> Option<(i64, i64)> {
    let days = histories.into_iter().flat_map(|h| h.days.iter().map(|d| d.day.0));
    let (first, last) = days.fold((i64::MAX, i64::MIN), |(lo, hi), d| (lo.min(d), hi.max(d)));
    (first <= last).then_some((first, last + 1))
}

/// Readers on each newsletter's list at the end of each day: one line per newsletter.
pub fn list_size(histories: &[NewsletterHistory]) -> Result<Option<String>, StatsError> {
    let Some((first, end)) = day_span(histories) else { return Ok(None) };
    let top = histories.iter().flat_map(|h| h.days.iter().map(|d| d.list_size)).max().unwrap_or(0).max(1);
    svg("list size", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(first..end, 0..top + top / 10 + 1)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&day_label)
            .y_desc("confirmed readers")
            .label_style((FONT, 13))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (i, history) in histories.iter().enumerate() {
            let colour = SERIES[i % SERIES.len()];
            chart
                .draw_series(LineSeries::new(
                    history.days.iter().map(|d| (d.day.0, d.list_size)),
                    colour.stroke_width(2),
                ))?
                .label(history.newsletter.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 13))
            .draw()?;
        Ok(())
    })
    .map(Some)
}

/// One newsletter's daily joins (up) and leaves (down: unsubscribes, then bounces below them).
pub fn joins_and_leaves(history: &NewsletterHistory) -> Result<Option<String>, StatsError> {
    let Some((first, end)) = day_span([history]) else { return Ok(None) };
    let up = history.days.iter().map(|d| d.joined).max().unwrap_or(0).max(1);
    let down = history.days.iter().map(|d| d.unsubscribed + d.bounced).max().unwrap_or(0).max(1);
    svg("joins and leaves", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(first..end, -down - down / 10 - 1..up + up / 10 + 1)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&day_label)
            .y_label_formatter(&|v: &i64| v.abs().to_string())
            .y_desc("readers per day")
            .label_style((FONT, 13))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let bars = |value: fn(&super::DayTally) -> (i64, i64), colour: RGBColor| {
            history.days.iter().filter(move |d| value(d).0 != value(d).1).map(move |d| {
                let (from, to) = value(d);
                Rectangle::new([(d.day.0, from), (d.day.0 + 1, to)], colour.filled())
            })
        };
        chart
            .draw_series(bars(|d| (0, d.joined), JOINED))?
            .label("joined")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], JOINED.filled()));
        chart
            .draw_series(bars(|d| (0, -d.unsubscribed), UNSUBSCRIBED))?
            .label("unsubscribed")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], UNSUBSCRIBED.filled()));
        chart
            .draw_series(bars(|d| (-d.unsubscribed, -d.unsubscribed - d.bounced), BOUNCED))?
            .label("bounced")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BOUNCED.filled()));
        chart.draw_series(LineSeries::new([(first, 0), (end, 0)], BLACK.mix(0.6)))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 13))
            .draw()?;
        Ok(())
    })
    .map(Some)
}

/// Each issue's mail, stacked: delivered, bounced, failed.
pub fn deliveries(issues: &[IssueReport]) -> Result<Option<String>, StatsError> {
    if issues.is_empty() {
        return Ok(None);
    }
    let count = issues.len() as i64;
    let top = issues.iter().map(|i| i.delivered + i.bounced + i.failed).max().unwrap_or(0).max(1);
    svg("deliveries", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0..count, 0..top + top / 10 + 1)?;
        let label = |i: &i64| issues.get(*i as usize).map(|issue| format!("#{}", issue.id)).unwrap_or_default();
        chart
            .configure_mesh()
            .x_labels(count.min(16) as usize)
            .x_label_formatter(&label)
            .y_desc("messages")
            .label_style((FONT, 13))
            .light_line_style(WHITE.mix(0.0))
            .disable_x_mesh()
            .draw()?;
        let gap = (WIDTH / count.max(1) as u32 / 6).min(8);
        let bars = |value: fn(&IssueReport) -> (i64, i64), colour: RGBColor| {
            issues.iter().enumerate().filter(move |(_, issue)| value(issue).0 != value(issue).1).map(
                move |(i, issue)| {
                    let (from, to) = value(issue);
                    let mut bar = Rectangle::new([(i as i64, from), (i as i64 + 1, to)], colour.filled());
                    bar.set_margin(0, 0, gap, gap);
                    bar
                },
            )
        };
        chart
            .draw_series(bars(|i| (0, i.delivered), DELIVERED))?
            .label("delivered")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], DELIVERED.filled()));
        chart
            .draw_series(bars(|i| (i.delivered, i.delivered + i.bounced), BOUNCED))?
            .label("bounced")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BOUNCED.filled()));
        chart
            .draw_series(bars(|i| (i.delivered + i.bounced, i.delivered + i.bounced + i.failed), FAILED))?
            .label("failed")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], FAILED.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 13))
            .draw()?;
        Ok(())
    })
    .map(Some)
}
