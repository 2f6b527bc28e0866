//! Stories for digests arriving from a CMS (`POST /api/items`, bearer token)
//! and from an editor (`bulletin items add`), checked by what was stored.

mod common;

use std::process::Output;

use bulletin::config::DigestSettings;
use bulletin::digest::SCHEDULE_STREAM;
use bulletin::store::{DigestOutcome, DigestRequest, ItemRow};
use common::bin::bulletin;
use common::{Backend, TestApp};
use secrecy::SecretString;
use serde_json::{Value, json};

const TOKEN: &str = "cms-token-0123456789abcdef";
const OTHER_TOKEN: &str = "second-token-fedcba9876543210";
const NEWSLETTERS: [&str; 3] = ["morning-briefing", "explaining-ukraine", "weekend-reads"];

/// Stories go to digest newsletters only: these tests' newsletters all are.
async fn spawn_with_tokens(backend: Backend) -> Option<TestApp> {
    spawn_with_digests(backend, &NEWSLETTERS).await
}

/// An instance with the API tokens where the newsletters `digests` names are digests.
async fn spawn_with_digests(backend: Backend, digests: &[&str]) -> Option<TestApp> {
    TestApp::spawn_with(backend, |s| {
        s.server.api_tokens = vec![SecretString::from(TOKEN), SecretString::from(OTHER_TOKEN)];
        for newsletter in s.newsletters.iter_mut().filter(|n| digests.contains(&n.slug.as_str())) {
            newsletter.digest = Some(DigestSettings::default());
        }
    })
    .await
}

/// The CLI's newsletters: the test instance's, Morning Briefing a digest.
const CLI_NEWSLETTERS: &str = "[[newsletters]]\nslug = \"morning-briefing\"\nname = \"Morning Briefing\"\n\
     [newsletters.digest]\n\
     [[newsletters]]\nslug = \"explaining-ukraine\"\nname = \"Explaining Ukraine\"\n\
     [[newsletters]]\nslug = \"weekend-reads\"\nname = \"Weekend Reads\"\n";

async fn post_item(app: &TestApp, authorization: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = app.http.post(app.url("/api/items")).json(body);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.expect("request")
}

fn story(url: &str) -> Value {
    json!({"newsletter": "morning-briefing", "title": "Kyiv wakes up", "url": url})
}

async fn stored(app: &TestApp, slug: &str) -> Vec<ItemRow> {
    let newsletter = app.newsletter(slug).await;
    app.store.items(newsletter.id, false, 1000).await.expect("items")
}

async fn stored_anywhere(app: &TestApp) -> usize {
    let mut count = 0;
    for slug in NEWSLETTERS {
        count += stored(app, slug).await.len();
    }
    count
}

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON error");
    let field = |k: &str| body["error"][k].as_str().unwrap_or_default().to_owned();
    (status, field("code"), field("message"))
}

async fn api_stores_a_story_once(backend: Backend) {
    let Some(app) = spawn_with_tokens(backend).await else {
        return;
    };
    let body = json!({"newsletter": "morning-briefing", "title": "  Kyiv\n wakes up ", "url": "https://news.example.org/a",
                      "summary": "The city at dawn."});
    let response = post_item(&app, Some(&format!("Bearer {TOKEN}")), &body).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"status": "added"}));

    let again =
        json!({"newsletter": "morning-briefing", "title": "Another title", "url": "https://news.example.org/a"});
    let response = post_item(&app, Some(&format!("bearer {OTHER_TOKEN}")), &again).await;
    assert_eq!(response.status(), 200, "the second token works too, and the scheme is case-insensitive");
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"status": "already stored"}));

    let items = stored(&app, "morning-briefing").await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(
        (item.title.as_str(), item.url.as_str(), item.summary.as_deref(), item.source.as_str()),
        ("Kyiv wakes up", "https://news.example.org/a", Some("The city at dawn."), "api")
    );
    assert_eq!((item.run_id, item.issue_id), (None, None), "pending until a digest carries it");
    assert_eq!(stored(&app, "weekend-reads").await.len(), 0);

    let elsewhere =
        json!({"newsletter": "weekend-reads", "title": "Kyiv wakes up", "url": "https://news.example.org/a"});
    let response = post_item(&app, Some(&format!("Bearer {TOKEN}")), &elsewhere).await;
    assert_eq!(response.status(), 201, "the same link is a new story for another newsletter");
    assert_eq!(stored(&app, "weekend-reads").await.len(), 1);
    app.stop().await;
}

/// Server to server: no CORS headers for browsers and no per-IP signup limit,
/// both of which still apply to the signup API beside it.
async fn api_is_not_a_browser_route(backend: Backend) {
    let origin = "https://cms.example.org";
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.server.api_tokens = vec![SecretString::from(TOKEN)];
        s.server.allowed_origins = vec![origin.to_owned()];
        s.signup.per_ip_per_minute = 1;
        s.newsletters[0].digest = Some(DigestSettings::default());
    })
    .await
    else {
        return;
    };
    for n in 0..5 {
        let response = app
            .http
            .post(app.url("/api/items"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("origin", origin)
            .json(&story(&format!("https://news.example.org/{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "story {n}");
        assert!(response.headers().get("access-control-allow-origin").is_none(), "no CORS on /api/items");
    }
    assert_eq!(stored(&app, "morning-briefing").await.len(), 5);

    let signup = |email: &'static str| {
        app.http
            .post(app.url("/api/subscriptions"))
            .header("origin", origin)
            .json(&json!({"email": email, "newsletters": ["weekend-reads"]}))
            .send()
    };
    let first = signup("one@example.org").await.unwrap();
    assert_eq!(first.status(), 202);
    assert_eq!(first.headers()["access-control-allow-origin"], origin, "the signup API keeps its CORS");
    assert_eq!(signup("two@example.org").await.unwrap().status(), 429, "and its per-IP limit");
    app.stop().await;
}

async fn api_refuses_without_the_token(backend: Backend) {
    let Some(app) = spawn_with_tokens(backend).await else {
        return;
    };
    let prefix = &TOKEN[..TOKEN.len() - 1];
    let refused = [
        None,
        Some(format!("Bearer {prefix}")),
        Some(format!("Bearer {TOKEN}x")),
        Some("Bearer wrong-token-0123456789abcdef".to_owned()),
        Some(format!("Bearer {}", TOKEN.to_uppercase())),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_owned()),
        Some("Bearer ".to_owned()),
    ];
    for (n, authorization) in refused.iter().enumerate() {
        let response =
            post_item(&app, authorization.as_deref(), &story(&format!("https://news.example.org/{n}"))).await;
        let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        assert!(challenge.as_deref().is_some_and(|c| c.starts_with("Bearer")), "{authorization:?}: {challenge:?}");
        let (status, code, message) = error_of(response).await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{authorization:?}: {message}");
        assert!(!message.contains(TOKEN) && !message.contains(prefix), "the answer never echoes a token");
    }
    let bad_body = app
        .http
        .post(app.url("/api/items"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_body.status(), 401, "the token is checked before the body is looked at");
    // ...and before it is read: a wrong token announcing the largest body is answered from the head.
    let headers = ["Authorization: Bearer wrong-token-0123456789abcdef".to_owned()];
    let within = std::time::Duration::from_secs(3);
    let (status, body) = common::bin::declare_body(&app.base, "/api/items", &headers, 16 * 1024, b"{", within).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(stored_anywhere(&app).await, 0, "nothing refused was stored");
    app.stop().await;
}

async fn api_absent_without_tokens(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ask = |path: &'static str| {
        app.http
            .post(app.url(path))
            .header("authorization", "Bearer any-token-0123456789abcdef")
            .json(&story("https://news.example.org/a"))
            .send()
    };
    let items = ask("/api/items").await.unwrap();
    let unknown = ask("/api/no-such-route").await.unwrap();
    assert_eq!(items.status(), 404);
    assert_eq!(items.status(), unknown.status());
    assert_eq!(items.headers().get("content-type"), unknown.headers().get("content-type"));
    assert!(items.headers().get("www-authenticate").is_none());
    assert_eq!(items.text().await.unwrap(), unknown.text().await.unwrap(), "answered as an unknown route");
    assert_eq!(stored_anywhere(&app).await, 0);
    app.stop().await;
}

async fn api_bad_input_names_the_field(backend: Backend) {
    let Some(app) = spawn_with_tokens(backend).await else {
        return;
    };
    let ok = |extra: Value| {
        let mut body =
            json!({"newsletter": "morning-briefing", "title": "Kyiv wakes up", "url": "https://news.example.org/a"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (ok(json!({"newsletter": "no-such-newsletter"})), 422, "unknown_newsletter", "newsletter"),
        (ok(json!({"newsletter": "Not A Slug!"})), 422, "unknown_newsletter", "newsletter"),
        (ok(json!({"title": " \n "})), 422, "invalid_title", "title"),
        (ok(json!({"title": "t".repeat(501)})), 422, "invalid_title", "title"),
        (ok(json!({"url": "ftp://news.example.org/a"})), 422, "invalid_url", "url"),
        (ok(json!({"url": "javascript:alert(1)"})), 422, "invalid_url", "url"),
        (ok(json!({"url": "/relative/path"})), 422, "invalid_url", "url"),
        (ok(json!({"summary": "s".repeat(5001)})), 422, "invalid_summary", "summary"),
        (ok(json!({"published_at": "yesterday"})), 422, "invalid_published_at", "published_at"),
        (ok(json!({"published_at": "2026-11-28 07:00"})), 422, "invalid_published_at", "published_at"),
        (ok(json!({"published_at": 1764313200})), 422, "invalid_request", "published_at"),
        (ok(json!({"title": 5})), 422, "invalid_request", "title"),
        (ok(json!({"publishedAt": "2026-11-28T07:00:00Z"})), 422, "invalid_request", "publishedAt"),
        (
            json!({"newsletter": "morning-briefing", "url": "https://news.example.org/a"}),
            422,
            "invalid_request",
            "title",
        ),
        (json!({"newsletter": "morning-briefing", "title": "Kyiv wakes up"}), 422, "invalid_request", "url"),
        (json!({"title": "Kyiv wakes up", "url": "https://news.example.org/a"}), 422, "invalid_request", "newsletter"),
        (json!({}), 422, "invalid_request", "newsletter"),
    ];
    for (body, status, code, field) in cases {
        let response = post_item(&app, Some(&format!("Bearer {TOKEN}")), &body).await;
        let (got_status, got_code, message) = error_of(response).await;
        assert_eq!((got_status, got_code.as_str()), (status, code), "{body}: {message}");
        assert!(message.contains(field), "{body}: the message names {field}: {message}");
    }

    let raw = |content_type: &'static str, body: String| {
        app.http
            .post(app.url("/api/items"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (status, code, _) = error_of(raw("application/json", "{\"newsletter\": ".into()).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_json"));
    let form = "newsletter=morning-briefing&title=t&url=https://news.example.org/a".to_owned();
    let (status, code, _) = error_of(raw("application/x-www-form-urlencoded", form).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
    let huge = ok(json!({"summary": "s".repeat(20_000)})).to_string();
    let (status, code, _) = error_of(raw("application/json", huge).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"), "the usual body limit applies");

    assert_eq!(stored_anywhere(&app).await, 0, "nothing refused was stored");
    app.stop().await;
}

async fn api_honours_published_at(backend: Backend) {
    let Some(app) = spawn_with_tokens(backend).await else {
        return;
    };
    let bearer = format!("Bearer {TOKEN}");
    let before = app.clock.now();
    for (url, published_at) in [
        ("https://news.example.org/old", Some("2024-03-05T06:07:08+02:00")),
        ("https://news.example.org/older", Some("2024-03-01T00:00:00Z")),
        ("https://news.example.org/now", None),
        ("https://news.example.org/future", Some("2999-01-01T00:00:00Z")),
    ] {
        let mut body = story(url);
        if let Some(at) = published_at {
            body["published_at"] = json!(at);
        }
        assert_eq!(post_item(&app, Some(&bearer), &body).await.status(), 201, "{url}");
    }
    let after = app.clock.now();
    let items = stored(&app, "morning-briefing").await;
    let urls: Vec<&str> = items.iter().map(|i| i.url.as_str()).collect();
    assert_eq!(urls[2..], ["https://news.example.org/old", "https://news.example.org/older"], "newest first: {urls:?}");
    assert_eq!(items[2].published_at, 1_709_611_628, "2024-03-05T04:07:08Z");
    assert_eq!(items[3].published_at, 1_709_251_200, "2024-03-01T00:00:00Z");
    for item in &items[..2] {
        assert!(
            (before..=after).contains(&item.published_at),
            "{}: no time, or one in the future, is when it arrived ({} not in {before}..={after})",
            item.url,
            item.published_at
        );
    }
    app.stop().await;
}

fn succeeded(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

async fn cli_adds_and_lists(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = common::bin::write_config(dir.path(), app.database_url(), CLI_NEWSLETTERS);
    let add = |title: &str, url: &str, extra: &[&str]| {
        let mut args = vec!["items", "add", "--newsletter", "morning-briefing", "--title", title, "--url", url];
        args.extend(extra);
        bulletin(&config, &args)
    };

    let out = succeeded(&add("Kyiv wakes up", "https://news.example.org/a", &["--summary", "The city at dawn."]));
    assert_eq!(out, "Added to morning-briefing: Kyiv wakes up\n");
    let again = succeeded(&add("Kyiv wakes up, again", "https://news.example.org/a", &[]));
    assert!(again.contains("Already stored"), "{again}");
    let items = stored(&app, "morning-briefing").await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(
        (items[0].title.as_str(), items[0].summary.as_deref(), items[0].source.as_str()),
        ("Kyiv wakes up", Some("The city at dawn."), "cli")
    );

    let newsletter = app.newsletter("morning-briefing").await;
    let now = app.clock.now();
    let request = DigestRequest {
        newsletter_id: newsletter.id,
        stream: SCHEDULE_STREAM,
        period_start: now,
        period_label: "today",
        subject: "Morning Briefing — today",
        max_items: 10,
        oldest: 0,
        skip: None,
        skip_if_empty: true,
        now,
    };
    let Ok(DigestOutcome::Made(run)) = app.store.make_digest_run(&request).await else { panic!("a digest run") };
    let issue = run.issue_id.expect("the digest became an issue");

    succeeded(&add("Older story", "https://news.example.org/b", &["--published-at", "2024-03-05T06:07:08+02:00"]));
    let csv = succeeded(&bulletin(&config, &["items", "list", "--newsletter", "morning-briefing", "--format", "csv"]));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "published,source,digest,title,url", "{csv}");
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1].starts_with("20")
            && lines[1].ends_with(&format!(",cli,issue #{issue},Kyiv wakes up,https://news.example.org/a")),
        "{csv}"
    );
    assert_eq!(lines[2], "2024-03-05T04:07:08Z,cli,pending,Older story,https://news.example.org/b", "{csv}");

    let pending = succeeded(&bulletin(&config, &["items", "list", "--newsletter", "morning-briefing", "--pending"]));
    let lines: Vec<&str> = pending.lines().collect();
    assert_eq!(lines.len(), 3, "header, one story, count: {pending}");
    assert!(lines[0].starts_with("published") && lines[0].ends_with("url"), "{pending}");
    assert!(lines[1].contains("Older story") && lines[1].contains("pending"), "{pending}");
    assert_eq!(lines[2], "1 item(s)");

    let json = succeeded(&bulletin(&config, &["items", "list", "--newsletter", "weekend-reads", "--format", "json"]));
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), json!([]));
    app.stop().await;
}

async fn cli_refuses_bad_input(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = common::bin::write_config(dir.path(), app.database_url(), CLI_NEWSLETTERS);
    let cases: [(&[&str], &str); 5] = [
        (
            &["--newsletter", "morning-briefing", "--title", "T", "--url", "ftp://x"],
            r#"--url "ftp://x": the URL must be an absolute http:// or https:// URL"#,
        ),
        (
            &["--newsletter", "morning-briefing", "--title", "  ", "--url", "https://x.org/"],
            r#"--title "  ": the title is empty"#,
        ),
        (
            &["--newsletter", "morning-briefing", "--title", "T", "--url", "https://x.org/", "--published-at", "today"],
            r#"--published-at "today": expected RFC 3339"#,
        ),
        (&["--newsletter", "nope", "--title", "T", "--url", "https://x.org/"], r#"there is no newsletter "nope""#),
        (&["--newsletter", "Not A Slug", "--title", "T", "--url", "https://x.org/"], r#"--newsletter "Not A Slug""#),
    ];
    for (args, expected) in cases {
        let out = bulletin(&config, &[&["items", "add"], args].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert_eq!(stored_anywhere(&app).await, 0, "nothing refused was stored");
    app.stop().await;
}

/// What a CMS sends is cleaned as a feed's stories are: terminal escapes,
/// bells and NUL (which PostgreSQL refuses in text) become spaces, and MIME
/// encoded-words copied from a mail header are decoded, on both backends.
async fn api_stories_are_cleaned_like_feed_stories(backend: Backend) {
    let Some(app) = spawn_with_tokens(backend).await else {
        return;
    };
    let body = json!({"newsletter": "morning-briefing", "url": "https://news.example.org/clean",
                      "title": "\u{1b}]0;owned\u{7}Breaking:\0 =?UTF-8?Q?Caf=C3=A9?= =?UTF-8?Q?_opens?=",
                      "summary": "Line one\r\nline two\0\u{1b}[2J done"});
    let response = post_item(&app, Some(&format!("Bearer {TOKEN}")), &body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
    let items = stored(&app, "morning-briefing").await;
    let [item] = items.as_slice() else { panic!("{items:?}") };
    assert_eq!(item.title, "]0;owned Breaking: Café opens");
    assert_eq!(item.summary.as_deref(), Some("Line one line two [2J done"));

    let dir = tempfile::tempdir().unwrap();
    let config = common::bin::write_config(dir.path(), app.database_url(), CLI_NEWSLETTERS);
    let out = bulletin(
        &config,
        &["items", "add", "--newsletter", "morning-briefing", "--url", "https://news.example.org/cli"]
            .into_iter()
            .chain(["--title", "=?utf-8?B?0JrQuNGX0LI=?=\u{7} wakes", "--summary", "bell\u{7}\u{1b}[31m red"])
            .collect::<Vec<_>>(),
    );
    assert_eq!(succeeded(&out), "Added to morning-briefing: Київ wakes\n");
    let listed = succeeded(&bulletin(&config, &["items", "list", "--newsletter", "morning-briefing"]));
    assert!(
        !listed.chars().any(|c| c.is_control() && c != '\n'),
        "no control characters reach the terminal: {listed:?}"
    );
    let items = stored(&app, "morning-briefing").await;
    let cli = items.iter().find(|i| i.source == "cli").expect("the CLI's story");
    assert_eq!((cli.title.as_str(), cli.summary.as_deref()), ("Київ wakes", Some("bell [31m red")));
    app.stop().await;
}

/// A newsletter without `[newsletters.digest]` never sends stories: they are
/// refused, through the API and the CLI, instead of being kept for ever.
async fn stories_for_a_newsletter_that_is_not_a_digest_are_refused(backend: Backend) {
    let Some(app) = spawn_with_digests(backend, &["morning-briefing"]).await else {
        return;
    };
    let body = json!({"newsletter": "weekend-reads", "title": "Long read", "url": "https://news.example.org/long"});
    let (status, code, message) = error_of(post_item(&app, Some(&format!("Bearer {TOKEN}")), &body).await).await;
    assert_eq!((status, code.as_str()), (422, "not_a_digest"), "{message}");
    assert!(message.contains("weekend-reads") && message.contains("[newsletters.digest]"), "{message}");
    assert_eq!(
        post_item(&app, Some(&format!("Bearer {TOKEN}")), &story("https://news.example.org/ok")).await.status(),
        201
    );

    let dir = tempfile::tempdir().unwrap();
    let config = common::bin::write_config(dir.path(), app.database_url(), CLI_NEWSLETTERS);
    let out = bulletin(
        &config,
        &[
            "items",
            "add",
            "--newsletter",
            "weekend-reads",
            "--title",
            "Long read",
            "--url",
            "https://news.example.org/l",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("\"weekend-reads\" is not a digest"), "{stderr}");
    assert_eq!(stored(&app, "weekend-reads").await.len(), 0, "nothing refused was stored");
    assert_eq!(stored(&app, "morning-briefing").await.len(), 1);
    app.stop().await;
}

on_both_backends!(
    api_stores_a_story_once,
    api_is_not_a_browser_route,
    api_refuses_without_the_token,
    api_absent_without_tokens,
    api_bad_input_names_the_field,
    api_honours_published_at,
    cli_adds_and_lists,
    cli_refuses_bad_input,
    api_stories_are_cleaned_like_feed_stories,
    stories_for_a_newsletter_that_is_not_a_digest_are_refused,
);
