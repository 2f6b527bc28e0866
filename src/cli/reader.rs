//! How `bulletin subscribers show` prints one reader: a table for people,
//! JSON for an access request's answer or a script.

use std::io::Write;

use serde_json::json;

use super::output::table;
use crate::clock::format_timestamp;
use crate::signup::{Reader, ReaderRhythm};

pub fn table_of(out: &mut impl Write, reader: &Reader) -> anyhow::Result<()> {
    let at = |t: Option<i64>| t.map(format_timestamp).unwrap_or_default();
    writeln!(out, "address            {}", reader.address)?;
    writeln!(out, "name               {}", reader.name.as_deref().unwrap_or("(none given)"))?;
    writeln!(out, "stored since       {}", format_timestamp(reader.created_at))?;
    let mut suppression = vec![];
    if let Some(bounced) = reader.bounced_at {
        let what = if reader.complained { "reported our mail as spam" } else { "bounced" };
        suppression.push(format!("{what} on {}: no issue is sent to it", format_timestamp(bounced)));
    }
    if let Some(erased) = reader.erased_at {
        suppression.push(format!("erased on {} and stored again: needs a new opt-in", format_timestamp(erased)));
    }
    if suppression.is_empty() {
        suppression.push("none".to_owned());
    }
    writeln!(out, "suppression        {}", suppression.join("; "))?;
    writeln!(out)?;
    let marked = |value: &str, own: bool| if own { value.to_owned() } else { format!("{value} (default)") };
    let rows: Vec<[String; 7]> = reader
        .subscriptions
        .iter()
        .map(|s| {
            let (rhythm, zone) = s.rhythm.as_ref().map_or((String::new(), String::new()), |r| {
                (marked(r.rhythm.as_str(), r.own_rhythm), marked(r.zone.name(), r.own_zone))
            });
            [
                s.newsletter.clone(),
                s.state.status.to_string(),
                format_timestamp(s.state.created_at),
                at(s.state.confirmed_at),
                at(s.state.unsubscribed_at),
                rhythm,
                zone,
            ]
        })
        .collect();
    table(out, &["newsletter", "status", "created", "confirmed", "unsubscribed", "rhythm", "timezone"], &rows)?;
    writeln!(out)?;
    let entries = if reader.consent.len() == 1 { "entry" } else { "entries" };
    writeln!(out, "consent record, oldest first: {} {entries}", reader.consent.len())?;
    let rows: Vec<[String; 6]> = reader
        .consent
        .iter()
        .map(|c| {
            let e = &c.event;
            [
                format_timestamp(e.created_at),
                c.newsletter.clone(),
                e.action.clone(),
                e.source.clone(),
                e.ip.clone().unwrap_or_default(),
                e.user_agent.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(out, &["time", "newsletter", "action", "source", "ip", "user agent"], &rows)?;
    Ok(())
}

pub fn json_of(out: &mut impl Write, reader: &Reader) -> anyhow::Result<()> {
    let at = |t: Option<i64>| t.map(format_timestamp);
    let value = json!({
        "email": reader.address,
        "name": reader.name,
        "created_at": format_timestamp(reader.created_at),
        "bounced_at": at(reader.bounced_at),
        "suppressed_for": reader.bounced_at.map(|_| if reader.complained { "complained" } else { "bounced" }),
        "erased_at": at(reader.erased_at),
        "subscriptions": reader.subscriptions.iter().map(|s| {
            let mut v = json!({"newsletter": s.newsletter, "status": s.state.status,
                "created_at": format_timestamp(s.state.created_at), "confirmed_at": at(s.state.confirmed_at),
                "unsubscribed_at": at(s.state.unsubscribed_at)});
            if let Some(r) = &s.rhythm {
                rhythm(&mut v, r);
            }
            v
        }).collect::<Vec<_>>(),
        "consent": reader.consent.iter().map(|c| json!({
            "at": format_timestamp(c.event.created_at), "newsletter": c.newsletter, "action": c.event.action,
            "source": c.event.source, "ip": c.event.ip, "user_agent": c.event.user_agent,
        })).collect::<Vec<_>>(),
    });
    serde_json::to_writer_pretty(&mut *out, &value)?;
    writeln!(out)?;
    Ok(())
}

/// A reader's rhythm and zone as `subscribers list --format json` shows them.
pub(super) fn rhythm(value: &mut serde_json::Value, r: &ReaderRhythm) {
    value["rhythm"] = json!(r.rhythm);
    value["rhythm_is_default"] = json!(!r.own_rhythm);
    value["timezone"] = json!(r.zone.name());
    value["timezone_is_default"] = json!(!r.own_zone);
}
