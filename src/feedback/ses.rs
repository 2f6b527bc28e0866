//! Amazon SES bounce and complaint notifications (the `Message` of a verified
//! SNS notification) as [`Report`]s, one per bounced or complained recipient.
//!
//! Both of SES's shapes are read: identity notifications (`notificationType`)
//! and configuration-set event publishing (`eventType`). `bounceType`
//! `Permanent` is a hard bounce; `Transient` and `Undetermined` are soft ones.
//! Deliveries, sends, opens and every other event are ignored. The report
//! carries `mail.source` (the envelope sender, Bulletin's VERP address) and the
//! original Message-ID (from `mail.headers`, else `mail.commonHeaders`), so
//! the rules can match it to its delivery; SES's own `mail.messageId` is not ours.

use serde::Deserialize;

use super::webhook::{Parsed, detail, message_id, recipient};
use super::{Report, ReportKind, ReportSource};
use crate::domain::BounceReason;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    #[serde(default)]
    notification_type: Option<String>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    bounce: Option<Bounce>,
    #[serde(default)]
    complaint: Option<Complaint>,
    #[serde(default)]
    mail: Option<Mail>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bounce {
    bounce_type: String,
    #[serde(default)]
    bounce_sub_type: Option<String>,
    bounced_recipients: Vec<BouncedRecipient>,
    #[serde(default)]
    feedback_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BouncedRecipient {
    email_address: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    diagnostic_code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Complaint {
    complained_recipients: Vec<ComplainedRecipient>,
    #[serde(default)]
    complaint_feedback_type: Option<String>,
    #[serde(default)]
    feedback_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ComplainedRecipient {
    email_address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mail {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    common_headers: Option<CommonHeaders>,
}

#[derive(Debug, Deserialize)]
struct Header {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommonHeaders {
    #[serde(default)]
    message_id: Option<String>,
}

/// Reads an SES notification; `sns_message_id` names the report when SES gave no `feedbackId`.
pub fn parse(message: &str, sns_message_id: &str) -> Result<Parsed, String> {
    let notification: Notification =
        serde_json::from_str(message).map_err(|e| format!("the SNS Message is not an SES notification: {e}"))?;
    let event = notification.notification_type.as_deref().or(notification.event_type.as_deref()).unwrap_or("");
    let mail = notification.mail.unwrap_or_default();
    let return_path = mail.source.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let original_id = mail
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("Message-ID"))
        .map(|h| h.value.as_str())
        .or(mail.common_headers.as_ref().and_then(|c| c.message_id.as_deref()))
        .and_then(message_id);
    let report = |kind, typed: Option<BounceReason>, address: &str, detail: String, feedback_id: Option<&str>| Report {
        kind,
        source: ReportSource::Ses,
        recipient: recipient(address),
        return_path: return_path.clone(),
        message_id: original_id.clone(),
        reason: BounceReason::by_words(&detail).or(typed),
        detail,
        report_id: Some(format!("ses:{}:{}", feedback_id.unwrap_or(sns_message_id), address.trim().to_lowercase())),
    };
    match event {
        "Bounce" => {
            let bounce = notification.bounce.ok_or("an SES Bounce notification has no bounce object")?;
            let sub_type = bounce.bounce_sub_type.as_deref().unwrap_or("General");
            // SES's sub-type says when a bounce is about the message, not the
            // address, whatever the bounce type (AWS documents "Permanent" with
            // any of these): a rejected attachment is never a gone reader.
            let typed = match sub_type {
                "MessageTooLarge" => Some(BounceReason::TooLarge),
                "ContentRejected" | "AttachmentRejected" => Some(BounceReason::Filtered),
                "MailboxFull" => Some(BounceReason::MailboxFull),
                "NoEmail" => Some(BounceReason::UserUnknown),
                _ => None,
            };
            let kind = match (bounce.bounce_type.as_str(), typed) {
                (_, Some(reason)) => ReportKind::of_cause(reason.cause()),
                ("Permanent", None) => ReportKind::HardBounce,
                ("Transient" | "Undetermined", None) => ReportKind::SoftBounce,
                (other, None) => {
                    return Err(format!("unknown SES bounceType {:?}", other.chars().take(32).collect::<String>()));
                }
            };
            let reports = bounce
                .bounced_recipients
                .iter()
                .map(|r| {
                    let said = [r.status.as_deref(), r.diagnostic_code.as_deref()].into_iter().flatten();
                    let said: Vec<&str> = said.collect();
                    let text = if said.is_empty() {
                        format!("SES {} bounce ({sub_type})", bounce.bounce_type)
                    } else {
                        said.join(" ")
                    };
                    let kind = kind.with_words(&text);
                    report(kind, typed, &r.email_address, detail(&text), bounce.feedback_id.as_deref())
                })
                .collect();
            Ok(Parsed { reports, ignored: 0 })
        }
        "Complaint" => {
            let complaint = notification.complaint.ok_or("an SES Complaint notification has no complaint object")?;
            let text = match complaint.complaint_feedback_type.as_deref() {
                Some(kind) => format!("SES complaint ({kind})"),
                None => "SES complaint".to_owned(),
            };
            let reports = complaint
                .complained_recipients
                .iter()
                .map(|r| {
                    report(
                        ReportKind::Complaint,
                        None,
                        &r.email_address,
                        detail(&text),
                        complaint.feedback_id.as_deref(),
                    )
                })
                .collect();
            Ok(Parsed { reports, ignored: 0 })
        }
        // Delivery, Send, Reject, Open, Click, DeliveryDelay, AmazonSnsSubscriptionSucceeded, ...
        _ => Ok(Parsed { reports: vec![], ignored: 1 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example of a bounce notification with a DSN, cut to what matters.
    const BOUNCE: &str = r#"{
       "notificationType":"Bounce",
       "bounce":{
          "bounceType":"Permanent",
          "reportingMTA":"dns; email.example.com",
          "bouncedRecipients":[
             {"emailAddress":"jane@example.com","status":"5.1.1","action":"failed",
              "diagnosticCode":"smtp; 550 5.1.1 <jane@example.com>... User"}
          ],
          "bounceSubType":"General",
          "timestamp":"2016-01-27T14:59:38.237Z",
          "feedbackId":"00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000",
          "remoteMtaIp":"127.0.2.0"
       },
       "mail":{
          "timestamp":"2016-01-27T14:59:38.237Z",
          "source":"bounces+abc.def@example.com",
          "sourceArn": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
          "sourceIp": "127.0.3.0",
          "sendingAccountId":"123456789012",
          "messageId":"00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
          "destination":["jane@example.com", "mary@example.com", "richard@example.com"],
          "headersTruncated":false,
          "headers":[
             {"name":"From","value":"\"John Doe\" <john@example.com>"},
             {"name":"To","value":"\"Jane Doe\" <jane@example.com>"},
             {"name":"Message-ID","value":"<custom-message-ID@example.com>"},
             {"name":"Subject","value":"Hello"}
          ],
          "commonHeaders":{
             "from":["John Doe <john@example.com>"],
             "date":"Wed, 27 Jan 2016 14:05:45 +0000",
             "to":["Jane Doe <jane@example.com>"],
             "messageId":"custom-message-ID@example.com",
             "subject":"Hello"
          }
       }
    }"#;

    const COMPLAINT: &str = r#"{
      "notificationType":"Complaint",
      "complaint":{
         "userAgent":"AnyCompany Feedback Loop (V0.01)",
         "complainedRecipients":[{"emailAddress":"richard@example.com"}],
         "complaintFeedbackType":"abuse",
         "arrivalDate":"2016-01-27T14:59:38.237Z",
         "timestamp":"2016-01-27T14:59:38.237Z",
         "feedbackId":"000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000"
      },
      "mail":{
         "timestamp":"2016-01-27T14:59:38.237Z",
         "messageId":"000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
         "source":"bounces+abc.def@example.com",
         "destination":["richard@example.com"],
         "commonHeaders":{"messageId":"<custom-message-ID@example.com>"}
      }
    }"#;

    #[test]
    fn a_permanent_bounce_is_a_hard_bounce_per_recipient() {
        let parsed = parse(BOUNCE, "sns-id").unwrap();
        assert_eq!(parsed.ignored, 0);
        let [report] = parsed.reports.as_slice() else { panic!("{parsed:?}") };
        assert_eq!(report.kind, ReportKind::HardBounce);
        assert_eq!(report.source, ReportSource::Ses);
        assert_eq!(report.recipient.as_ref().map(|r| r.as_str()), Some("jane@example.com"));
        assert_eq!(report.return_path.as_deref(), Some("bounces+abc.def@example.com"));
        assert_eq!(report.message_id.as_deref(), Some("<custom-message-ID@example.com>"));
        assert_eq!(report.detail, "5.1.1 smtp; 550 5.1.1 <address>... User");
        assert_eq!(
            report.report_id.as_deref(),
            Some("ses:00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000:jane@example.com")
        );
    }

    #[test]
    fn a_sub_type_about_the_message_never_suppresses_the_reader() {
        let cases = [
            ("Permanent", "MessageTooLarge", ReportKind::SenderRefused, BounceReason::TooLarge),
            ("Transient", "ContentRejected", ReportKind::SenderRefused, BounceReason::Filtered),
            ("Transient", "AttachmentRejected", ReportKind::SenderRefused, BounceReason::Filtered),
            ("Permanent", "MailboxFull", ReportKind::SoftBounce, BounceReason::MailboxFull),
            ("Permanent", "NoEmail", ReportKind::HardBounce, BounceReason::UserUnknown),
        ];
        for (bounce_type, sub_type, kind, reason) in cases {
            // Only SES's own words: no remote status or diagnostic.
            let body = BOUNCE
                .replace("\"Permanent\"", &format!("\"{bounce_type}\""))
                .replace("\"General\"", &format!("\"{sub_type}\""))
                .replace("\"status\":\"5.1.1\",", "")
                .replace("\"diagnosticCode\"", "\"ignored\"");
            let parsed = parse(&body, "id").unwrap();
            let [report] = parsed.reports.as_slice() else { panic!("{parsed:?}") };
            assert_eq!((report.kind, report.reason), (kind, Some(reason)), "{bounce_type}/{sub_type}: {report:?}");
        }
    }

    #[test]
    fn transient_and_undetermined_bounces_are_soft() {
        for bounce_type in ["Transient", "Undetermined"] {
            let body = BOUNCE.replace("\"Permanent\"", &format!("\"{bounce_type}\""));
            assert_eq!(parse(&body, "id").unwrap().reports[0].kind, ReportKind::SoftBounce, "{bounce_type}");
        }
        let body = BOUNCE.replace("\"Permanent\"", "\"Sideways\"");
        assert!(parse(&body, "id").unwrap_err().contains("bounceType"));
    }

    #[test]
    fn a_complaint_is_read_and_its_message_id_bracketed() {
        let parsed = parse(COMPLAINT, "sns-id").unwrap();
        let [report] = parsed.reports.as_slice() else { panic!("{parsed:?}") };
        assert_eq!(report.kind, ReportKind::Complaint);
        assert_eq!(report.recipient.as_ref().map(|r| r.as_str()), Some("richard@example.com"));
        assert_eq!(report.message_id.as_deref(), Some("<custom-message-ID@example.com>"));
        assert_eq!(report.detail, "SES complaint (abuse)");
        // Event publishing names the event differently and the same shape follows.
        let event = COMPLAINT.replace("\"notificationType\"", "\"eventType\"");
        assert_eq!(parse(&event, "sns-id").unwrap().reports, parsed.reports);
    }

    #[test]
    fn deliveries_and_other_events_are_ignored() {
        let delivery = r#"{"notificationType":"Delivery","mail":{"source":"a@example.com"},"delivery":{}}"#;
        let parsed = parse(delivery, "id").unwrap();
        assert!(parsed.reports.is_empty());
        assert_eq!(parsed.ignored, 1);
        assert_eq!(parse(r#"{"eventType":"Open"}"#, "id").unwrap().ignored, 1);
        assert!(parse("not json", "id").is_err());
        assert!(parse(r#"{"notificationType":"Bounce"}"#, "id").is_err());
    }

    #[test]
    fn without_a_feedback_id_the_sns_message_names_the_report() {
        let body =
            BOUNCE.replace("\"feedbackId\":\"00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000\",", "");
        assert_eq!(
            parse(&body, "sns-id").unwrap().reports[0].report_id.as_deref(),
            Some("ses:sns-id:jane@example.com")
        );
    }
}
