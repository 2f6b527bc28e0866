//! Amazon SES notifications (bounces and complaints) that an SNS topic sends
//! by mail: an `email` subscription puts SES's JSON in a plain-text body,
//! with a footer after it; an `email-json` one the whole SNS message around
//! it. Either is read by the SES reader the webhook uses (`ses.rs`), so a
//! notification that comes both ways has one id and is applied once.
//!
//! A mail is taken for one only when SNS sent it (`x-amz-sns-message-id`, or
//! a sender at `sns.amazonaws.com`) and its body holds an SES notification;
//! anything else is left to the next reader. SNS puts the JSON on one line,
//! and a relay that breaks lines past 990 characters (Sendmail) leaves a `!`,
//! a line end and a space inside it: those are taken out before reading.

use serde_json::Value;

use super::message::{ParseError, Parsed, ReportFormat, Whole, text_values};
use super::ses;

const SNS_MESSAGE_ID: &str = "x-amz-sns-message-id";
const SNS_DOMAIN: &str = "@sns.amazonaws.com";

/// The reports an SNS mail carries, or `None` when the message is no SES notification.
pub(super) fn read(whole: &Whole<'_, '_>) -> Option<Result<Parsed, ParseError>> {
    let message = whole.message;
    let header_id = text_values(message, SNS_MESSAGE_ID).into_iter().find(|id| !id.is_empty());
    let sender = message.from().and_then(|f| f.first()).and_then(|a| a.address()).unwrap_or_default();
    if header_id.is_none() && !sender.trim().to_ascii_lowercase().ends_with(SNS_DOMAIN) {
        return None;
    }
    let json = first_json(&message.body_text(0)?)?;
    let (notification, sns_id) = match (json.get("Type"), json.get("Message").and_then(Value::as_str)) {
        // email-json: SNS's message, with SES's notification as its Message.
        (Some(_), Some(inner)) => {
            (inner.to_owned(), json.get("MessageId").and_then(Value::as_str).map(str::to_owned).or(header_id))
        }
        _ => (json.to_string(), header_id),
    };
    // Another topic's message (an alarm, a budget) is no report.
    let is_ses = |key| notification.contains(&format!("\"{key}\""));
    if !is_ses("notificationType") && !is_ses("eventType") {
        return None;
    }
    let sns_id = sns_id.unwrap_or_else(|| whole.report_id());
    let parsed = ses::parse(&notification, &sns_id).ok()?;
    Some(Ok(Parsed { format: ReportFormat::Ses, reports: parsed.reports, ignored: parsed.ignored }))
}

/// The first JSON object in `body`, with the line breaks a relay put in it taken out.
fn first_json(body: &str) -> Option<Value> {
    let text = body[body.find('{')?..].replace("!\r\n ", "").replace("!\n ", "");
    serde_json::Deserializer::from_str(&text).into_iter::<Value>().next()?.ok().filter(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::super::message::parse;
    use super::super::{ReportKind, ReportSource};
    use super::*;

    /// sisimai's lhost-amazonses-11: SES's mailbox simulator's complaint, by
    /// mail, with a line a relay broke inside the JSON.
    const COMPLAINT: &str = include_str!("../../tests/fixtures/bounces/lhost-amazonses-11.eml");
    /// sisimai's lhost-amazonses-13: a delivery notification, by mail.
    const DELIVERY: &str = include_str!("../../tests/fixtures/bounces/lhost-amazonses-13.eml");

    #[test]
    fn an_ses_complaint_by_mail_is_a_complaint() {
        let parsed = parse(COMPLAINT.as_bytes(), None).unwrap();
        assert_eq!(parsed.format, ReportFormat::Ses);
        let [report] = parsed.reports.as_slice() else { panic!("{parsed:?}") };
        assert_eq!(report.kind, ReportKind::Complaint);
        assert_eq!(report.source, ReportSource::Ses);
        assert_eq!(report.recipient.as_ref().map(|r| r.as_str()), Some("complaint@simulator.amazonses.com"));
        assert_eq!(report.return_path.as_deref(), Some("kijitora@neko.example.jp"));
        assert_eq!(report.detail, "SES complaint (abuse)");
        // The id the webhook would give the same notification.
        assert_eq!(
            report.report_id.as_deref(),
            Some("ses:01010158992bed93-5747af89-b2b1-11e6-be59-ed91bcff66c4-000000:complaint@simulator.amazonses.com")
        );
    }

    #[test]
    fn other_notifications_by_mail_need_nothing() {
        let parsed = parse(DELIVERY.as_bytes(), None).unwrap();
        assert_eq!((parsed.format, parsed.reports.len(), parsed.ignored), (ReportFormat::Ses, 0, 1));
    }

    #[test]
    fn the_email_json_shape_is_read_too() {
        let body = COMPLAINT.split_once("\n\n").unwrap().1;
        let notification = first_json(body).unwrap().to_string();
        let envelope = serde_json::json!({
            "Type": "Notification", "MessageId": "a9824ea2", "TopicArn": "arn:aws:sns:us-west-2:1:SES",
            "Message": notification,
        });
        let mail = format!(
            "From: AWS Notifications <no-reply@sns.amazonaws.com>\nSubject: AWS Notification Message\n\n{envelope}\n"
        );
        let parsed = parse(mail.as_bytes(), None).unwrap();
        assert_eq!(parsed.reports.len(), 1);
        assert_eq!(parsed.reports[0].kind, ReportKind::Complaint);
    }

    #[test]
    fn only_sns_mail_holding_an_ses_notification_is_read() {
        let body = COMPLAINT.split_once("\n\n").unwrap().1;
        let stranger = format!("From: someone@example.com\nSubject: fyi\n\n{body}");
        assert_eq!(parse(stranger.as_bytes(), None), Err(ParseError::NotAReport));
        let other = "From: no-reply@sns.amazonaws.com\nx-amz-sns-message-id: 1\n\n{\"alarm\": \"CPU high\"}\n";
        assert_eq!(parse(other.as_bytes(), None), Err(ParseError::NotAReport));
    }
}
