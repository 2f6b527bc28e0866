//! Answers go compressed to clients that ask for it (a reader on a slow phone
//! network loads the box and `embed.js` in a fraction of the bytes), read back
//! as the same page; the pages behind emailed tokens never are (BREACH).

mod common;

use std::io::Read;

use common::{Backend, TestApp};

/// The body as the client reads it, inflated when the server said gzip.
async fn fetch(request: reqwest::RequestBuilder) -> (Option<String>, usize, String) {
    let response = request.header("accept-encoding", "gzip").send().await.unwrap();
    let encoding = response.headers().get("content-encoding").map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.bytes().await.unwrap();
    let text = match encoding.as_deref() {
        Some("gzip") => {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).expect("valid gzip");
            text
        }
        None => String::from_utf8(bytes.to_vec()).unwrap(),
        Some(other) => panic!("asked for gzip, got {other}"),
    };
    (encoding, bytes.len(), text)
}

async fn pages_boxes_script_and_json_are_compressed_when_asked(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    for path in ["/", "/embed/morning-briefing", "/embed.js"] {
        let (encoding, sent, text) = fetch(app.http.get(app.url(path))).await;
        assert_eq!(encoding.as_deref(), Some("gzip"), "{path}");
        let plain = app.http.get(app.url(path)).send().await.unwrap();
        assert!(plain.headers().get("content-encoding").is_none(), "{path}: only when asked");
        let plain = plain.text().await.unwrap();
        assert_eq!(text, plain, "{path}: the same page once inflated");
        assert!(sent * 2 < plain.len(), "{path}: {sent} bytes sent for {}", plain.len());
    }
    // The JSON API's answers, compressed too when they are worth it (a bare
    // {"status":"pending"} is under the 32 bytes where it pays, so it is sent as is).
    let signup = app
        .http
        .post(app.url("/api/subscriptions"))
        .json(&serde_json::json!({"email": "not an address", "newsletters": ["morning-briefing"]}));
    let (encoding, _, text) = fetch(signup).await;
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(body["error"]["message"].as_str().is_some_and(|e| e.contains("correct email address")), "{text}");
    assert_eq!(encoding.as_deref(), Some("gzip"), "{text}");
    // A page behind an emailed token: never compressed, even when asked.
    let (encoding, _, text) = fetch(app.http.get(app.url("/unsubscribe/not-a-real-token"))).await;
    assert!(encoding.is_none(), "token pages are not compressed: {encoding:?}");
    assert!(text.contains("<html"), "{text}");
    app.stop().await;
}

on_both_backends!(pages_boxes_script_and_json_are_compressed_when_asked);
