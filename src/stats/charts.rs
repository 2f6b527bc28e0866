//! The stats page's charts, drawn by `plotters` into SVG strings that the
//! page inlines: no script, no font file, no request to anywhere. Text is
//! left to the browser (`<text>` elements), so plotters only estimates label
//! widths.

use chrono::Datelike;
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::types::RangedCoordi64;
use plotters::prelude::*;

use super::{Day, IssueReport, NewsletterHistory, StatsError};

const WIDTH: u32 = 960;
const HEIGHT: u32 = 320;
const FONT: &str = "sans-serif";

/// One colour per newsletter, in order: none of them is a colour the
/// joins-and-leaves and delivery charts give a meaning (joined, unsubscribed, bounced, failed).
const SERIES: [RGBColor; 5] = [
    RGBColor(0x1a, 0x4d, 0x8f),
    RGBColor(0x7b, 0x3f, 0xa0),
    RGBColor(0xb0, 0x89, 0x00),
    RGBColor(0x56, 0xb4, 0xe9),
    RGBColor(0xcc, 0x79, 0xa7),
];
const JOINED: RGBColor = RGBColor(0x00, 0x9e, 0x73);
const UNSUBSCRIBED: RGBColor = RGBColor(0xd5, 0x5e, 0x00);
const BOUNCED: RGBColor = RGBColor(0x80, 0x2a, 0x2a);
const FAILED: RGBColor = RGBColor(0x99, 0x99, 0x99);

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// A legend's filled square of `colour`.
fn swatch(colour: RGBColor) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
}

/// The series' legend, top left (where the charts start low).
fn legend<'a, CT: CoordTranslate>(chart: &mut ChartContext<'a, SVGBackend<'a>, CT>) -> Drawn {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 15))
        .draw()?;
    Ok(())
}

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

/// A day axis from `first` to `end` (exclusive) with its labels on the
/// first of each month, or, on a span under three months, on every few days.
fn day_axis(first: i64, end: i64) -> WithKeyPoints<RangedCoordi64> {
    let months: Vec<i64> = (first..end).filter(|d| Day(*d).date().is_some_and(|date| date.day() == 1)).collect();
    let points = if months.len() >= 3 {
        months
    } else {
        let step = ((end - first) / 8).max(1);
        (first..end).step_by(step as usize).collect()
    };
    (first..end).with_key_points(points)
}

/// "Mar", with the year on January and on the axis's first label; "5 Mar" mid-month.
fn day_label(first_label: i64) -> impl Fn(&i64) -> String {
    move |day| {
        let Some(date) = Day(*day).date() else { return String::new() };
        match (date.day(), date.month()) {
            (1, 1) => date.format("%b %Y").to_string(),
            (1, _) if *day == first_label => date.format("%b %Y").to_string(),
            (1, _) => date.format("%b").to_string(),
            _ => date.format("%-d %b").to_string(),
        }
    }
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
            .build_cartesian_2d(day_axis(first, end), 0..top + top / 10 + 1)?;
        let label = day_label(first);
        chart
            .configure_mesh()
            .x_label_formatter(&label)
            .y_desc("confirmed readers")
            .label_style((FONT, 15))
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
        legend(&mut chart)?;
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
            .build_cartesian_2d(day_axis(first, end), -down - down / 10 - 1..up + up / 10 + 1)?;
        let label = day_label(first);
        chart
            .configure_mesh()
            .x_label_formatter(&label)
            .y_label_formatter(&|v: &i64| v.abs().to_string())
            .y_desc("readers per day")
            .label_style((FONT, 15))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let bars = |value: fn(&super::DayTally) -> (i64, i64), colour: RGBColor| {
            history.days.iter().filter(move |d| value(d).0 != value(d).1).map(move |d| {
                let (from, to) = value(d);
                Rectangle::new([(d.day.0, from), (d.day.0 + 1, to)], colour.filled())
            })
        };
        chart.draw_series(bars(|d| (0, d.joined), JOINED))?.label("joined").legend(swatch(JOINED));
        chart
            .draw_series(bars(|d| (0, -d.unsubscribed), UNSUBSCRIBED))?
            .label("unsubscribed")
            .legend(swatch(UNSUBSCRIBED));
        chart
            .draw_series(bars(|d| (-d.unsubscribed, -d.unsubscribed - d.bounced), BOUNCED))?
            .label("bounced")
            .legend(swatch(BOUNCED));
        chart.draw_series(LineSeries::new([(first, 0), (end, 0)], BLACK.mix(0.6)))?;
        legend(&mut chart)?;
        Ok(())
    })
    .map(Some)
}

/// Each issue's mail: delivered messages on top, in its newsletter's colour
/// (as in the list-size chart); bounced and failed ones below on their own
/// scale, since a fraction of a percent would not show on the first.
pub fn deliveries(issues: &[IssueReport], histories: &[NewsletterHistory]) -> Result<Option<String>, StatsError> {
    if issues.is_empty() {
        return Ok(None);
    }
    let count = issues.len() as i64;
    let colour_of = |issue: &IssueReport| {
        let i = histories.iter().position(|h| h.newsletter.slug == issue.newsletter).unwrap_or(0);
        SERIES[i % SERIES.len()]
    };
    let delivered_top = issues.iter().map(|i| i.delivered).max().unwrap_or(0).max(1);
    let lost_top = issues.iter().map(|i| i.bounced + i.failed).max().unwrap_or(0).max(1);
    let gap = (WIDTH / count.max(1) as u32 / 6).min(8);
    let bar = |i: usize, from: i64, to: i64, colour: RGBColor| {
        let mut bar = Rectangle::new([(i as i64, from), (i as i64 + 1, to)], colour.filled());
        bar.set_margin(0, 0, gap, gap);
        bar
    };
    let label = |i: &i64| issues.get(*i as usize).map(|issue| format!("#{}", issue.id)).unwrap_or_default();
    svg("deliveries", |root| {
        let (upper, lower) = root.split_vertically(HEIGHT * 3 / 5);
        let mut chart = ChartBuilder::on(&upper)
            .margin(12)
            .margin_bottom(4)
            .y_label_area_size(56)
            .build_cartesian_2d(0..count, 0..delivered_top + delivered_top / 10 + 1)?;
        chart
            .configure_mesh()
            .y_desc("delivered")
            .label_style((FONT, 15))
            .light_line_style(WHITE.mix(0.0))
            .disable_x_mesh()
            .draw()?;
        for (n, history) in histories.iter().enumerate() {
            let colour = SERIES[n % SERIES.len()];
            let own = issues.iter().enumerate().filter(|(_, issue)| issue.newsletter == history.newsletter.slug);
            let mut drawn = own
                .filter(|(_, issue)| issue.delivered > 0)
                .map(|(i, issue)| bar(i, 0, issue.delivered, colour_of(issue)))
                .peekable();
            if drawn.peek().is_none() {
                continue;
            }
            chart.draw_series(drawn)?.label(history.newsletter.name.clone()).legend(swatch(colour));
        }
        legend(&mut chart)?;

        let mut chart = ChartBuilder::on(&lower)
            .margin(12)
            .margin_top(4)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0..count, 0..lost_top + lost_top / 10 + 1)?;
        chart
            .configure_mesh()
            .x_labels(count.min(16) as usize)
            .x_label_formatter(&label)
            .y_labels(4)
            .y_desc("not delivered")
            .label_style((FONT, 15))
            .light_line_style(WHITE.mix(0.0))
            .disable_x_mesh()
            .draw()?;
        chart
            .draw_series(
                issues.iter().enumerate().filter(|(_, i)| i.bounced > 0).map(|(n, i)| bar(n, 0, i.bounced, BOUNCED)),
            )?
            .label("bounced")
            .legend(swatch(BOUNCED));
        chart
            .draw_series(
                issues
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| i.failed > 0)
                    .map(|(n, i)| bar(n, i.bounced, i.bounced + i.failed, FAILED)),
            )?
            .label("failed")
            .legend(swatch(FAILED));
        legend(&mut chart)?;
        Ok(())
    })
    .map(Some)
}
