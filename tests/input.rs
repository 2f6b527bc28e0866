//! Bad input gets a clear 4xx and loses nothing; addresses are judged the
//! same way on every route.

mod common;

use bulletin::domain::SubscriptionStatus::Pending;
use common::{Backend, TestApp};
use serde_json::{Value, json};

/// (address as typed, address as stored) — `None` when it must be refused.
const ADDRESSES: &[(&str, Option<&str>)] = &[
    ("reader@example.org", Some("reader@example.org")),
    ("  spaced@example.org  ", Some("spaced@example.org")),
    ("Mixed.Case@EXAMPLE.ORG", Some("Mixed.Case@example.org")),
    ("tag+news@example.co.uk", Some("tag+news@example.co.uk")),
    ("kim@bücher.de", Some("kim@xn--bcher-kva.de")),
    ("ivan@ПРИМЕР.РФ", Some("ivan@xn--e1afmkfd.xn--p1ai")),
    ("a/b%c!d@example.org", Some("a/b%c!d@example.org")),
    ("", None),
    ("plainaddress", None),
    ("a@b", None),
    ("a@localhost", None),
    ("a@[192.0.2.1]", None),
    ("a@192.0.2.1", None),
    ("\"quoted\"@example.org", None),
    (".dot@example.org", None),
    ("dot.@example.org", None),
    ("two..dots@example.org", None),
    ("a@under_score.example.org", None),
    // Special-use names (RFC 6761, RFC 6762), a TLD no registry delegates, a symbol IDNA2008 refuses.
    ("reader@news.test", None),
    ("reader@printer.local", None),
    ("reader@bücher.example", None),
    ("reader@example.com-2", None),
    ("reader@domain.com©", None),
    ("a@example.org\r\nBcc: victim@example.org", None),
    ("jürgen@example.de", None),
];

async fn addresses_through_the_api(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for (typed, stored) in ADDRESSES {
        let response = app.signup_api(typed, &["weekend-reads"]).await;
        match stored {
            Some(stored) => {
                assert_eq!(response.status(), 202, "{typed:?}");
                assert_eq!(app.status_of(stored, "weekend-reads").await, Some(Pending), "{typed:?} stored as {stored}");
            }
            None => {
                assert_eq!(response.status(), 422, "{typed:?}");
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "invalid_email", "{typed:?}");
                assert!(body["error"]["message"].as_str().unwrap().contains("Please enter a correct email address"));
            }
        }
    }
    let accepted = ADDRESSES.iter().filter(|(_, s)| s.is_some()).count();
    assert_eq!(app.subscribers("weekend-reads").await.len(), accepted, "nothing refused was stored");
    // The API's message says why, in one sentence.
    let body: Value = app.signup_api("reader@news.test", &["weekend-reads"]).await.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Please enter a correct email address: the domain is reserved and cannot receive mail"
    );
    app.stop().await;
}

async fn addresses_through_the_form(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for (typed, stored) in ADDRESSES {
        let response = app
            .post_form(
                "/subscribe",
                &[("email", typed), ("newsletter", "explaining-ukraine"), ("form", "explaining-ukraine")],
                None,
            )
            .await;
        let status = response.status();
        let html = response.text().await.unwrap();
        match stored {
            Some(_) => assert_eq!(status, 200, "{typed:?}"),
            None => {
                assert_eq!(status, 422, "{typed:?}");
                assert!(html.contains("Please enter a correct email address"), "{typed:?}");
                // The typed value comes back in the field, escaped.
                if !typed.contains('\r') && !typed.is_empty() {
                    let escaped = typed.replace('&', "&amp;").replace('"', "&#34;").replace('<', "&lt;");
                    assert!(
                        html.contains(&format!("value=\"{escaped}\""))
                            || html.contains(&format!("value=\"{}\"", typed.replace('"', "&quot;"))),
                        "{typed:?} kept in the field"
                    );
                }
            }
        }
    }
    app.stop().await;
}

async fn form_errors_are_explained(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    // No newsletter ticked on the several-at-once form.
    let r = app.post_form("/subscribe", &[("email", "a@example.org"), ("form", "several")], None).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("Please choose at least one newsletter"));

    // An unknown newsletter.
    let r = app.post_form("/subscribe", &[("email", "a@example.org"), ("newsletter", "nope")], None).await;
    assert_eq!(r.status(), 422);
    assert!(common::visible(&r.text().await.unwrap()).contains("no newsletter called \"nope\""));

    // Markup in the typed value is escaped, never rendered.
    let r =
        app.post_form("/subscribe", &[("email", "<script>x</script>"), ("newsletter", "weekend-reads")], None).await;
    assert_eq!(r.status(), 422);
    assert!(!r.text().await.unwrap().contains("<script>x"));

    // Broken UTF-8 in the body.
    let r = app
        .http
        .post(app.url("/subscribe"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(b"email=%FF%FE@example.org&newsletter=weekend-reads".to_vec())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());

    // Wrong content type and an oversized body.
    let r =
        app.http.post(app.url("/subscribe")).header("content-type", "text/plain").body("email=a").send().await.unwrap();
    assert_eq!(r.status(), 415);
    let big = format!("email={}&newsletter=weekend-reads", "a".repeat(100_000));
    let r = app
        .http
        .post(app.url("/subscribe"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("too large"));
    assert!(app.subscribers("weekend-reads").await.is_empty(), "nothing stored from bad requests");
    app.stop().await;
}

async fn api_errors_are_explained(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let send = |body: &'static str, content_type: &'static str| {
        app.http.post(app.url("/api/subscriptions")).header("content-type", content_type).body(body).send()
    };
    let cases: &[(&str, &str, u16, &str)] = &[
        ("{\"email\": \"a@example.org\", ", "application/json", 400, "invalid_json"),
        ("not json", "application/json", 400, "invalid_json"),
        ("{\"email\": 5, \"newsletters\": []}", "application/json", 422, "invalid_request"),
        ("{\"email\": \"a@example.org\"}", "application/json", 422, "invalid_request"),
        ("{\"email\": \"a@example.org\", \"newsletters\": [\"nope\"]}", "application/json", 422, "unknown_newsletter"),
        ("{\"email\": \"a@example.org\", \"newsletters\": []}", "application/json", 422, "no_newsletter"),
        (
            "{\"email\": \"a@example.org\", \"newsletters\": [\"weekend-reads\"]}",
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            "{\"email\": \"a\\u0000@example.org\", \"newsletters\": [\"weekend-reads\"]}",
            "application/json",
            422,
            "invalid_email",
        ),
    ];
    for (body, content_type, status, code) in cases {
        let r = send(body, content_type).await.unwrap();
        assert_eq!(r.status().as_u16(), *status, "{body}");
        let json: Value = r.json().await.unwrap();
        assert_eq!(json["error"]["code"], *code, "{body}");
        assert!(!json["error"]["message"].as_str().unwrap().is_empty());
    }
    let big = json!({"email": "a@example.org", "newsletters": vec!["weekend-reads"; 5000]}).to_string();
    let r = app
        .http
        .post(app.url("/api/subscriptions"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(app.subscribers("weekend-reads").await.is_empty(), "nothing stored from bad requests");

    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let missing = app.http.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    app.stop().await;
}

/// Browsers may call the JSON API only from configured origins; the forms need no CORS.
async fn json_api_cors(backend: Backend) {
    let Some(app) =
        TestApp::spawn_with(backend, |s| s.server.allowed_origins = vec!["https://news.example.org".into()]).await
    else {
        return;
    };
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/api/subscriptions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://news.example.org").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://news.example.org");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let r = app
        .http
        .post(app.url("/api/subscriptions"))
        .header("origin", "https://news.example.org")
        .json(&json!({"email": "cors@example.org", "newsletters": ["weekend-reads"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://news.example.org");
    app.stop().await;
}

on_both_backends!(
    json_api_cors,
    addresses_through_the_api,
    addresses_through_the_form,
    form_errors_are_explained,
    api_errors_are_explained
);
