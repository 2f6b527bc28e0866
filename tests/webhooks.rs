//! Bounces and complaints posted by providers: Amazon SES through SNS (signed
//! messages checked against a certificate fetched from the SNS host, here a
//! local stand-in, see webhooks/sns_site.rs), Postmark and the generic JSON
//! form, behind a path token or HTTP basic auth.

mod common;
#[path = "webhooks/sns_site.rs"]
mod sns_site;

use bulletin::app::StartOptions;
use bulletin::config::Settings;
use bulletin::domain::SubscriptionStatus;
use std::time::{Duration, Instant};

use common::bin::Serve;
use common::{Backend, TestApp};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sns_site::SnsSite;

const TOKEN: &str = "wh-0123456789abcdef0123456789";
const USER: &str = "postmark";
const PASSWORD: &str = "a-password-of-some-length";
const NEWSLETTER: &str = "morning-briefing";
/// The largest webhook body read.
const BODY_LIMIT: usize = 512 * 1024;

fn with_webhooks(s: &mut Settings) {
    s.webhooks.token = SecretString::from(TOKEN);
    s.webhooks.basic_auth = SecretString::from(format!("{USER}:{PASSWORD}"));
    s.bounces.return_path = "bounces@example.com".into();
}

async fn post_token(app: &TestApp, provider: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.http.post(app.url(&format!("/webhooks/{provider}/{TOKEN}"))).body(body).send().await.expect("request")
}

async fn post_basic(app: &TestApp, provider: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    let url = app.url(&format!("/webhooks/{provider}"));
    app.http.post(url).basic_auth(USER, Some(PASSWORD)).body(body).send().await.expect("request")
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.expect("a JSON answer"))
}

/// Imports `readers` as confirmed and sends them one issue; returns each one's (Message-ID, envelope sender).
async fn send_issue(app: &TestApp, readers: &[String]) -> Vec<(String, String)> {
    app.import_confirmed(NEWSLETTER, readers).await;
    let id = app.queue_issue(NEWSLETTER, "Monday", "The news.").await;
    app.wait_issue(id, "done").await;
    let mut ids = vec![];
    for reader in readers {
        let mail = app.mail.wait_for(reader, 1).await;
        ids.push((mail[0].header("Message-ID").expect("Message-ID").trim().to_owned(), mail[0].from.clone()));
    }
    ids
}

/// What a reader's standing is: (subscription status, why suppressed: `bounced` or `complained`).
async fn standing(app: &TestApp, email: &str) -> (Option<SubscriptionStatus>, Option<String>) {
    let suppressed = app.store.suppressed_subscribers().await.unwrap();
    let why = suppressed.into_iter().find(|(e, _, _)| e == email).map(|(_, _, why)| why);
    (app.status_of(email, NEWSLETTER).await, why)
}

const UNTOUCHED: (Option<SubscriptionStatus>, Option<String>) = (Some(SubscriptionStatus::Confirmed), None);

fn bounced() -> (Option<SubscriptionStatus>, Option<String>) {
    (Some(SubscriptionStatus::Confirmed), Some("bounced".into()))
}

fn complained() -> (Option<SubscriptionStatus>, Option<String>) {
    (Some(SubscriptionStatus::Unsubscribed), Some("complained".into()))
}

/// SES's bounce notification for `recipient` of the message sent as (Message-ID, envelope sender).
fn ses_bounce(bounce_type: &str, recipient: &str, (message_id, source): &(String, String)) -> String {
    json!({
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": recipient, "action": "failed", "status": "5.1.1",
                                   "diagnosticCode": format!("smtp; 550 5.1.1 <{recipient}>: user unknown")}],
            "timestamp": "2026-11-28T07:00:01.000Z",
            "feedbackId": format!("0100018c-bounce-{recipient}"),
            "reportingMTA": "dsn; a8-1.smtp-out.amazonses.com"
        },
        "mail": {
            "timestamp": "2026-11-28T07:00:00.000Z",
            "source": source,
            "messageId": "0100018c-ses-own-id",
            "destination": [recipient],
            "headersTruncated": false,
            "headers": [{"name": "Message-ID", "value": message_id}, {"name": "Subject", "value": "Monday"}],
            "commonHeaders": {"messageId": message_id, "subject": "Monday"}
        }
    })
    .to_string()
}

/// SES's complaint notification for `recipient`, naming the message by its envelope sender only.
fn ses_complaint(recipient: &str, source: &str) -> String {
    json!({
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": recipient}],
            "complaintFeedbackType": "abuse",
            "timestamp": "2026-11-28T08:00:00.000Z",
            "feedbackId": format!("0100018c-complaint-{recipient}")
        },
        "mail": {"source": source, "messageId": "0100018c-ses-own-id-2", "commonHeaders": {"subject": "Monday"}}
    })
    .to_string()
}

/// A signed SES bounce is acted on; the same message with one byte changed, or
/// naming a certificate on another host, is refused with 403 and changes nothing.
async fn ses_through_sns(backend: Backend) {
    let site = SnsSite::start().await;
    let options = StartOptions { sns_client: Some(site.client()) };
    let Some(app) = TestApp::spawn_with_options(backend, with_webhooks, options).await else { return };
    let readers: Vec<String> =
        ["gone@example.org", "stays@example.org", "angry@example.org"].map(String::from).to_vec();
    let ids = send_issue(&app, &readers).await;
    let newsletter = app.newsletter(NEWSLETTER).await;
    let before = app.store.audience_size(newsletter.id).await.unwrap();

    let bounce = ses_bounce("Permanent", &readers[0], &ids[0]);
    let signed = site.notification("9f2c6d3e-1111-4a8b-9c1d-000000000001", &bounce, 2, &site.cert_url());

    // One byte of Message changed: refused after the certificate was fetched.
    let mut tampered = signed.clone();
    let message = tampered["Message"].as_str().unwrap().replacen("Permanent", "Permanenu", 1);
    tampered["Message"] = Value::String(message);
    let (status, body) = json_of(post_token(&app, "ses", tampered.to_string()).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "not_verified", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("signature does not verify"), "{body}");
    assert_eq!(site.requests().len(), 1, "the certificate was fetched once: {:?}", site.requests());
    assert_eq!(standing(&app, &readers[0]).await, UNTOUCHED);

    // A valid signature over a certificate from another host: refused before any fetch.
    let elsewhere = site.notification("9f2c6d3e-1111-4a8b-9c1d-000000000002", &bounce, 2, &site.lookalike_cert_url());
    let (status, body) = json_of(post_token(&app, "ses", elsewhere.to_string()).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("SigningCertURL"), "{body}");
    assert_eq!(site.requests().len(), 1, "nothing fetched from the look-alike host: {:?}", site.requests());
    assert_eq!(app.store.audience_size(newsletter.id).await.unwrap(), before, "nothing changed");

    // The real one: the bounced reader is suppressed, nobody else.
    let (status, body) = json_of(post_token(&app, "ses", signed.to_string()).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "applied", "{body}");
    assert_eq!(body["reports"], 1, "{body}");
    assert_eq!(body["suppressed"], 1, "{body}");
    assert_eq!(standing(&app, &readers[0]).await, bounced(), "the bounced reader is suppressed");
    assert_eq!(standing(&app, &readers[1]).await, UNTOUCHED);
    assert_eq!(standing(&app, &readers[2]).await, UNTOUCHED);
    assert_eq!(app.store.audience_size(newsletter.id).await.unwrap(), before - 1);
    assert_eq!(site.requests().len(), 1, "the certificate came from the cache");

    // A well-signed bounce for another reader, under a forged VERP address and no Message-ID: nothing.
    assert!(ids[1].1.starts_with("bounces+"), "the envelope sender is a VERP address: {}", ids[1].1);
    let forged = (String::new(), "bounces+1-0123456789abcdef@example.com".to_owned());
    let bounce_forged = ses_bounce("Permanent", &readers[1], &forged);
    let signed_forged = site.notification("9f2c6d3e-1111-4a8b-9c1d-000000000005", &bounce_forged, 2, &site.cert_url());
    let (status, body) = json_of(post_token(&app, "ses", signed_forged.to_string()).await).await;
    assert_eq!((status, &body["unmatched"]), (StatusCode::OK, &json!(1)), "{body}");
    assert_eq!(standing(&app, &readers[1]).await, UNTOUCHED);

    // SNS retries: the same notification again changes nothing more.
    let (status, body) = json_of(post_token(&app, "ses", signed.to_string()).await).await;
    assert_eq!((status, &body["duplicates"]), (StatusCode::OK, &json!(1)), "{body}");

    // A complaint signed with SignatureVersion 1 (SHA-1), through basic auth.
    let complaint = ses_complaint(&readers[2], &ids[2].1);
    let signed = site.notification("9f2c6d3e-1111-4a8b-9c1d-000000000003", &complaint, 1, &site.cert_url());
    let (status, body) = json_of(post_basic(&app, "ses", signed.to_string()).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["unsubscribed"], 1, "{body}");
    assert_eq!(standing(&app, &readers[2]).await, complained());
    assert_eq!(standing(&app, &readers[1]).await, UNTOUCHED);

    // A delivery notification is taken and ignored.
    let delivery = json!({"notificationType": "Delivery", "mail": {"source": "newsletters@example.com"}}).to_string();
    let signed = site.notification("9f2c6d3e-1111-4a8b-9c1d-000000000004", &delivery, 2, &site.cert_url());
    let (status, body) = json_of(post_token(&app, "ses", signed.to_string()).await).await;
    assert_eq!((status, &body["ignored"], &body["reports"]), (StatusCode::OK, &json!(1), &json!(0)), "{body}");

    // Adding the endpoint in SNS: the subscription is confirmed by a GET of its SubscribeURL.
    let confirmation = site.subscription_confirmation();
    let (status, body) = json_of(post_token(&app, "ses", confirmation.to_string()).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "subscription_confirmed", "{body}");
    let requests = site.requests();
    assert!(
        requests.last().unwrap().starts_with("/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-1:"),
        "{requests:?}"
    );
    app.stop().await;
}

/// `webhooks.ses_topic_arns` set: another topic's message is refused, however well signed.
async fn ses_topics_are_an_allow_list(backend: Backend) {
    let site = SnsSite::start().await;
    let options = StartOptions { sns_client: Some(site.client()) };
    let configure = |s: &mut Settings| {
        with_webhooks(s);
        s.webhooks.ses_topic_arns = vec!["arn:aws:sns:us-east-1:123456789012:another-topic".into()];
    };
    let Some(app) = TestApp::spawn_with_options(backend, configure, options).await else { return };
    let readers = vec!["gone@example.org".to_owned()];
    let ids = send_issue(&app, &readers).await;
    let bounce = ses_bounce("Permanent", &readers[0], &ids[0]);
    let signed = site.notification("9f2c6d3e-2222-4a8b-9c1d-000000000001", &bounce, 2, &site.cert_url());
    let (status, body) = json_of(post_token(&app, "ses", signed.to_string()).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("ses_topic_arns"), "{body}");
    assert!(site.requests().is_empty(), "{:?}", site.requests());
    assert_eq!(standing(&app, &readers[0]).await, UNTOUCHED);
    app.stop().await;
}

/// Postmark's hard bounce and spam complaint, and the generic form; a body
/// that does not parse changes nothing, even where part of it would have.
async fn postmark_and_generic(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, with_webhooks).await else { return };
    let readers: Vec<String> = [
        "pm-gone@example.org",
        "pm-spam@example.org",
        "gen-gone@example.org",
        "gen-spam@example.org",
        "bystander@example.org",
    ]
    .map(String::from)
    .to_vec();
    let ids = send_issue(&app, &readers).await;

    let hard = json!({"RecordType": "Bounce", "ID": 4323372036854775807u64, "Type": "HardBounce", "TypeCode": 1,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Email": readers[0], "From": "newsletters@example.com",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist", "Inactive": true});
    let (status, body) = json_of(post_basic(&app, "postmark", hard.to_string()).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["suppressed"], 1, "{body}");
    assert_eq!(standing(&app, &readers[0]).await, bounced());

    let spam = json!({"RecordType": "SpamComplaint", "ID": 42, "Type": "SpamComplaint", "TypeCode": 100001,
        "MessageID": "00000000-0000-0000-0000-000000000000", "Email": readers[1], "From": "newsletters@example.com"});
    let (status, body) = json_of(post_token(&app, "postmark", spam.to_string()).await).await;
    assert_eq!((status, &body["unsubscribed"]), (StatusCode::OK, &json!(1)), "{body}");
    assert_eq!(standing(&app, &readers[1]).await, complained());

    let transient = json!({"RecordType": "Bounce", "ID": 7, "Type": "Transient", "Email": readers[4]});
    let (status, body) = json_of(post_token(&app, "postmark", transient.to_string()).await).await;
    assert_eq!((status, &body["ignored"]), (StatusCode::OK, &json!(1)), "{body}");

    // Generic: one good entry, then a broken one: 400, and the good one was not applied.
    let broken = json!([{"type": "hard_bounce", "email": readers[2]}, {"type": "bounce", "email": readers[3]}]);
    let (status, body) = json_of(post_token(&app, "generic", broken.to_string()).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_body", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("unknown variant `bounce`"), "{body}");
    assert_eq!(standing(&app, &readers[2]).await, UNTOUCHED);
    let (status, body) = json_of(post_token(&app, "generic", "{\"type\": \"hard_bounce\", ").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("not valid JSON"), "{body}");

    let good = json!([
        {"type": "hard_bounce", "email": readers[2], "detail": "5.1.1 user unknown", "id": "evt-1"},
        {"type": "complaint", "message_id": ids[3].0, "id": "evt-2"}
    ]);
    let (status, body) = json_of(post_token(&app, "generic", good.to_string()).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["reports"], &body["suppressed"], &body["unsubscribed"]),
        (&json!(2), &json!(1), &json!(1)),
        "{body}"
    );
    assert_eq!(standing(&app, &readers[2]).await, bounced());
    assert_eq!(standing(&app, &readers[3]).await, complained());
    assert_eq!(standing(&app, &readers[4]).await, UNTOUCHED, "the bystander");
    app.stop().await;
}

/// The doors: nothing configured is 404 everywhere; a wrong token is 404, wrong
/// basic auth 401 with the challenge; an unknown provider 404; bodies past the
/// webhook limit 413, while ones past the forms' 16 KiB are read.
async fn who_may_post(backend: Backend) {
    let Some(closed) = TestApp::spawn(backend).await else { return };
    for provider in ["ses", "postmark", "generic", "sendgrid"] {
        assert_eq!(post_token(&closed, provider, "{}").await.status(), StatusCode::NOT_FOUND, "{provider}");
        assert_eq!(post_basic(&closed, provider, "{}").await.status(), StatusCode::NOT_FOUND, "{provider}");
    }
    closed.stop().await;

    let Some(app) = TestApp::spawn_with(backend, with_webhooks).await else { return };
    let bounce = json!({"type": "hard_bounce", "email": "nobody@example.org"}).to_string();
    let wrong_token = app.url("/webhooks/generic/wh-0123456789abcdef0123456780");
    let response = app.http.post(wrong_token).body(bounce.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let url = app.url("/webhooks/generic");
    for request in [
        app.http.post(&url).basic_auth(USER, Some("a-password-of-some-lengtH")),
        app.http.post(&url).basic_auth("other", Some(PASSWORD)),
        app.http.post(&url).bearer_auth(TOKEN),
        app.http.post(&url),
    ] {
        let response = request.body(bounce.clone()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
    }
    assert_eq!(post_token(&app, "sendgrid", bounce.clone()).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(post_basic(&app, "sendgrid", bounce.clone()).await.status(), StatusCode::NOT_FOUND);

    // 100 KiB (an SNS-sized body) is read; past the webhook limit is 413.
    let padded: Vec<Value> = (0..25)
        .map(|i| json!({"type": "soft_bounce", "email": format!("nobody{i}@example.org"), "detail": "x".repeat(5000)}))
        .collect();
    let padded = Value::Array(padded).to_string();
    assert!(padded.len() > 100 * 1024);
    let (status, body) = json_of(post_token(&app, "generic", padded).await).await;
    assert_eq!((status, &body["reports"], &body["unmatched"]), (StatusCode::OK, &json!(25), &json!(25)), "{body}");
    let (status, body) = declare_body(&app, &format!("/webhooks/generic/{TOKEN}"), BODY_LIMIT + 1).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    app.stop().await;
}

/// Sends a request head declaring a body of `length` bytes, and none of it;
/// returns the answer's status and body, which must come at once.
async fn declare_body(app: &TestApp, path: &str, length: usize) -> (u16, String) {
    common::bin::declare_body(&app.base, path, &[], length, b"", Duration::from_secs(5)).await
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Authorization: Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn webhooks_config() -> String {
    format!("[webhooks]\ntoken = \"{TOKEN}\"\nbasic_auth = \"{USER}:{PASSWORD}\"\n")
}

/// Against `bulletin serve`: a wrong token, wrong or missing basic auth and an
/// unknown provider are answered at once, from the head alone, while the
/// body they announce (the largest allowed) has barely begun to arrive; the
/// right secret, sent the same way, waits for its body.
async fn secrets_are_checked_before_the_body(backend: Backend) {
    let Some(db) = common::TestDb::create(backend).await else { return };
    let serve = Serve::start(&db.url, &webhooks_config()).await;
    let json = vec!["Content-Type: application/json".to_owned()];
    let with = |header: String| vec![json[0].clone(), header];
    let wrong_token = "/webhooks/generic/wh-0123456789abcdef0123456780".to_owned();
    for (path, headers, expected) in [
        (wrong_token, json.clone(), 404),
        ("/webhooks/generic".to_owned(), with(basic(USER, "a-password-of-some-lengtH")), 401),
        ("/webhooks/generic".to_owned(), with(format!("Authorization: Bearer {TOKEN}")), 401),
        ("/webhooks/generic".to_owned(), json.clone(), 401),
        (format!("/webhooks/sendgrid/{TOKEN}"), json.clone(), 404),
        ("/webhooks/sendgrid".to_owned(), with(basic(USER, PASSWORD)), 404),
    ] {
        let started = Instant::now();
        let (status, body) =
            common::bin::declare_body(&serve.base, &path, &headers, BODY_LIMIT, b"[{\"type\"", Duration::from_secs(3))
                .await;
        assert_eq!(status, expected, "{path} {headers:?}: {body}");
        assert!(started.elapsed() < Duration::from_secs(3), "{path}: {:?}", started.elapsed());
    }

    // The right token with a partial body gets no answer until the rest arrives.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!([{"type": "soft_bounce", "email": "nobody@example.org"}]).to_string();
    let mut stream = tokio::net::TcpStream::connect(serve.base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /webhooks/generic/{TOKEN} HTTP/1.1\r\nHost: bulletin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..10]).await.unwrap();
    let mut answer = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(500), stream.read_buf(&mut answer)).await;
    assert!(early.is_err(), "answered before its body: {:?}", String::from_utf8_lossy(&answer));
    stream.write_all(&body.as_bytes()[10..]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Against `bulletin serve`: many connections posting the largest body to a
/// wrong token at once, each holding back its last byte until all have sent
/// the rest, leave the server's peak memory nearly where it was (buffering
/// those bodies would take `n × 512 KiB`). Prints the figures;
/// `BULLETIN_TEST_FLOOD_CONNECTIONS` sets `n` (200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_floods_cost_no_body_memory() {
    common::bounded(async {
        let db = common::TestDb::create(Backend::Sqlite).await.unwrap();
        let serve = Serve::start(&db.url, &webhooks_config()).await;
        let n: usize = std::env::var("BULLETIN_TEST_FLOOD_CONNECTIONS").map_or(200, |v| v.parse().unwrap());
        // Warm up: one refused post, so the figures below count the flood alone.
        common::bin::declare_body(&serve.base, "/webhooks/generic/wrong", &[], 2, b"[]", Duration::from_secs(3)).await;
        let (rss_before, peak_before) = serve.memory_kib();

        let body = std::sync::Arc::new(vec![b'x'; BODY_LIMIT]);
        let all_sent = std::sync::Arc::new(tokio::sync::Barrier::new(n + 1));
        let mut posts = tokio::task::JoinSet::new();
        for i in 0..n {
            let (body, all_sent, addr) = (body.clone(), all_sent.clone(), serve.base.trim_start_matches("http://").to_owned());
            posts.spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let head = format!(
                    "POST /webhooks/generic/wh-wrong-token-{i} HTTP/1.1\r\nHost: bulletin\r\nContent-Length: {BODY_LIMIT}\r\n\r\n"
                );
                let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
                // The server may answer and close before reading the body: a failed write is expected then.
                let send = async {
                    stream.write_all(head.as_bytes()).await?;
                    stream.write_all(&body[..BODY_LIMIT - 1]).await
                };
                let _ = tokio::time::timeout(Duration::from_secs(15), send).await;
                all_sent.wait().await;
                let _ = stream.write_all(&body[BODY_LIMIT - 1..]).await;
                let mut answer = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
            });
        }
        all_sent.wait().await;
        let (rss_flood, peak_flood) = serve.memory_kib();
        posts.join_all().await;
        let (rss_after, peak_after) = serve.memory_kib();
        eprintln!(
            "serve memory, {n} wrong-token posts of {BODY_LIMIT} bytes: resident {rss_before} KiB before, \
             {rss_flood} KiB with all bodies sent, {rss_after} KiB after; peak {peak_before} KiB before, {peak_after} KiB after"
        );
        let grew = peak_after.max(peak_flood) - peak_before;
        let bound = (n * BODY_LIMIT / 3 / 1024) as u64;
        assert!(grew < bound, "peak memory grew by {grew} KiB for {n} refused posts (bound {bound} KiB)");
        assert!(serve.log().contains("webhook refused: unknown path token"), "{}", serve.log());
    })
    .await;
}

/// `bulletin serve`'s request log names the route template, never the path token, right or wrong.
async fn the_log_never_shows_the_token(backend: Backend) {
    let Some(db) = common::TestDb::create(backend).await else { return };
    let serve = Serve::start(&db.url, &format!("[webhooks]\ntoken = \"{TOKEN}\"\n")).await;
    let (base, http) = (serve.base.clone(), reqwest::Client::new());
    let body = json!({"type": "soft_bounce", "email": "nobody@example.org"}).to_string();
    let wrong = "wh-9999999999abcdef0123456789";
    for (token, expected) in [(TOKEN, StatusCode::OK), (wrong, StatusCode::NOT_FOUND)] {
        let response = http.post(format!("{base}/webhooks/generic/{token}")).body(body.clone()).send().await.unwrap();
        assert_eq!(response.status(), expected);
    }
    let log = serve.stop().await;
    assert!(log.contains("route=\"/webhooks/{provider}/{token}\" status=200"), "{log}");
    assert!(log.contains("webhook refused: unknown path token"), "{log}");
    assert!(!log.contains(TOKEN) && !log.contains(wrong), "{log}");
    assert!(!log.contains("nobody@example.org"), "no address in the log: {log}");
}

/// One event of a provider may name several readers: entries of the generic
/// form that share an `id` each apply, and the same post again changes nothing.
async fn generic_entries_sharing_an_id(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, with_webhooks).await else { return };
    let readers: Vec<String> =
        ["first@example.org", "second@example.org", "third@example.org"].map(String::from).to_vec();
    send_issue(&app, &readers).await;
    let body = json!([
        {"type": "hard_bounce", "email": readers[0], "id": "batch-7"},
        {"type": "hard_bounce", "email": readers[1], "id": "batch-7"}
    ])
    .to_string();
    let (status, answer) = json_of(post_token(&app, "generic", body.clone()).await).await;
    assert_eq!(
        (status, &answer["suppressed"], &answer["duplicates"]),
        (StatusCode::OK, &json!(2), &json!(0)),
        "{answer}"
    );
    assert_eq!(standing(&app, &readers[0]).await, bounced());
    assert_eq!(standing(&app, &readers[1]).await, bounced());
    assert_eq!(standing(&app, &readers[2]).await, UNTOUCHED, "the bystander");
    let (status, answer) = json_of(post_token(&app, "generic", body).await).await;
    assert_eq!(
        (status, &answer["suppressed"], &answer["duplicates"]),
        (StatusCode::OK, &json!(0), &json!(2)),
        "{answer}"
    );
    app.stop().await;
}

on_both_backends!(
    ses_through_sns,
    ses_topics_are_an_allow_list,
    postmark_and_generic,
    generic_entries_sharing_an_id,
    who_may_post,
    the_log_never_shows_the_token,
    secrets_are_checked_before_the_body
);
