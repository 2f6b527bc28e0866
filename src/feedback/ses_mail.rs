//! Amazon SES notifications that arrive as mail: an SNS topic with an email
//! subscription sends each bounce or complaint notification as a plain-text
//! message whose body is the notification's JSON. Read by the same
//! [`ses::parse`] as the webhook's, so both paths judge alike.
//!
//! Told apart by SNS's own `X-Amz-Sns-Message-Id` header and a body that is
//! an SES notification; anything else is left to the other readers.

use mail_parser::{MimeHeaders, PartType};

use super::message::{Parsed, ReportFormat, Whole};
use super::ses;

/// The notification in `whole`, when it is an SES notification sent by SNS as mail.
pub(super) fn read(whole: &Whole<'_, '_>) -> Option<Parsed> {
    let message = whole.message;
    let sns_id = message.header_raw("X-Amz-Sns-Message-Id")?.trim().to_owned();
    let body = message.parts.iter().find_map(|part| match &part.body {
        PartType::Text(text) if !part.is_content_type("text", "html") => Some(text.as_ref()),
        _ => None,
    })?;
    let parsed = ses::parse(&notification_json(body)?, &sns_id).ok()?;
    (!parsed.reports.is_empty()).then_some(Parsed {
        format: ReportFormat::Ses,
        reports: parsed.reports,
        ignored: parsed.ignored,
    })
}

/// The JSON object the body opens with, without the `!` and line break
/// SNS's mailer puts into lines longer than SMTP allows (no JSON holds a
/// raw line break, so removing them restores the text).
fn notification_json(body: &str) -> Option<String> {
    let body = body.trim_start();
    if !body.starts_with('{') {
        return None;
    }
    let end = body.rfind('}')?;
    let json = body[..=end].replace("!\r\n ", "").replace("!\n ", "");
    Some(json)
}

#[cfg(test)]
mod tests {
    use super::super::message::parse;
    use super::super::{ReportKind, ReportSource};
    use super::*;

    const NOTIFICATION: &str = "From: SES <no-reply@sns.amazonaws.com>\r\n\
        To: ops@example.com\r\n\
        Subject: AWS Notification Message\r\n\
        Message-ID: <n1@us-west-2.amazonses.com>\r\n\
        Content-Type: text/plain; charset=UTF-8\r\n\
        x-amz-sns-message-id: ad6bdf42-f483-5bae-bf50-8fc1aad3f981\r\n\
        \r\n\
        {\"notificationType\":\"Bounce\",\"bounce\":{\"bounceType\":\"Permanent\",\"bounceSubType\":\"General\",\
        \"bouncedRecipients\":[{\"emailAddress\":\"gone@example.org\",\"status\":\"5.1.1\",\"diagnosticCode\":\"smtp; 550 5.1.1 user unknown\"}],\
        \"feedbackId\":\"0101-feedback\"},\"mail\":{\"source\":\"bounces+7-abc@news.example.com\",\"headers\":[{\"name\":\"!\r\n \
        Message-ID\",\"value\":\"<7.0011223344556677@example.com>\"}]}}\r\n\
        \r\n\
        --\r\n\
        If you wish to stop receiving notifications from this topic, please click the link below.\r\n";

    #[test]
    fn an_sns_mail_holding_an_ses_bounce_is_read_as_the_webhook_reads_it() {
        let parsed = parse(NOTIFICATION.as_bytes(), None).unwrap();
        assert_eq!(parsed.format, ReportFormat::Ses);
        let [report] = parsed.reports.as_slice() else { panic!("{parsed:?}") };
        assert_eq!(report.kind, ReportKind::HardBounce);
        assert_eq!(report.source, ReportSource::Ses);
        assert_eq!(report.recipient.as_ref().map(|r| r.as_str()), Some("gone@example.org"));
        assert_eq!(report.return_path.as_deref(), Some("bounces+7-abc@news.example.com"));
        assert_eq!(report.message_id.as_deref(), Some("<7.0011223344556677@example.com>"));
    }

    #[test]
    fn other_mail_with_json_is_not_taken_for_one() {
        let without_header = NOTIFICATION.replace("x-amz-sns-message-id", "X-Other");
        assert!(parse(without_header.as_bytes(), None).is_err());
        let delivery = NOTIFICATION.replace("\"Bounce\"", "\"Delivery\"");
        assert!(parse(delivery.as_bytes(), None).is_err(), "a delivery notification reports nothing");
    }
}
