//! Refusals for the sender's reasons by receiving domain, as `issue status`
//! and `bulletin stats` print them: the same columns and the same warning.

use std::io::Write;

use serde_json::json;

use super::output::table;
use crate::domain::{DomainRefusals, RefusalWarning};

/// Domains shown: the few with the most refusals, where a block would be.
pub(super) const TOP: usize = 5;

const HEADER: [&str; 5] = ["domain", "refused", "delivered/attempted", "share", "reason"];

/// The table, then a warning line for each domain past the threshold.
pub(super) fn print(out: &mut impl Write, domains: &[DomainRefusals], warning: &RefusalWarning) -> std::io::Result<()> {
    let rows: Vec<[String; 5]> = domains
        .iter()
        .map(|d| {
            [
                d.domain.clone(),
                d.refused.to_string(),
                format!("{}/{}", d.delivered, d.attempted),
                format!("{:.1} %", d.share() * 100.0),
                d.reason.as_str().to_owned(),
            ]
        })
        .collect();
    table(out, &HEADER, &rows)?;
    for line in domains.iter().filter_map(|d| d.warning(warning)) {
        writeln!(out, "Warning: {line}")?;
    }
    Ok(())
}

/// The same figures for JSON output.
pub(super) fn as_json(domains: &[DomainRefusals], warning: &RefusalWarning) -> serde_json::Value {
    domains
        .iter()
        .map(|d| {
            json!({"domain": d.domain, "refused": d.refused, "delivered": d.delivered, "attempted": d.attempted,
                   "share": d.share(), "reason": d.reason.as_str(), "warning": d.warning(warning)})
        })
        .collect()
}
