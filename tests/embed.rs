//! Signup boxes on a news site's pages, over HTTP (the browser tests drive
//! the same pages in Chromium): the framed box and its answers, who may frame
//! it, the script, the snippets an operator pastes, and the time-trap that
//! asks a too-quick reader to press once more instead of dropping them.

mod common;

use std::process::Command;

use bulletin::domain::SubscriptionStatus::Pending;
use common::{Backend, TestApp};

const SITE: &str = "https://news.example.org";
const MORNING: &str = "morning-briefing";

async fn spawn(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |s| s.server.allowed_origins = vec![SITE.into()]).await
}

/// The `value` of the form field named `name` in a page.
fn field(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\"")).unwrap_or_else(|| panic!("no field {name}: {html}"));
    let tag = &html[html[..at].rfind('<').unwrap()..];
    let tag = &tag[..tag.find('>').unwrap()];
    let value = tag.split("value=\"").nth(1).map_or("", |v| &v[..v.find('"').unwrap()]);
    common::visible(value)
}

fn csp(response: &reqwest::Response) -> String {
    response.headers()["content-security-policy"].to_str().unwrap().to_owned()
}

/// Only the boxes may be framed, and only by the configured sites; every
/// other page refuses any frame (its buttons change state: no clickjacking).
async fn only_the_boxes_are_framed_and_only_by_allowed_sites(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let embed = app.http.get(app.url(&format!("/embed/{MORNING}"))).send().await.unwrap();
    assert_eq!(embed.status(), 200);
    assert!(csp(&embed).ends_with(&format!("frame-ancestors 'self' {SITE}")), "{}", csp(&embed));
    let html = embed.text().await.unwrap();
    assert!(html.contains(&format!("data-bulletin=\"{MORNING}\"")), "{html}");
    assert!(html.contains("Morning Briefing") && html.contains("Enter your email to subscribe"), "{html}");
    assert!(html.contains("data-theme=\"light\""), "{html}");
    for src in html.split(" src=\"").skip(1) {
        assert!(src.starts_with(&app.base), "no third-party assets: {src}");
    }
    assert!(!html.contains("<link"), "no stylesheet to fetch: {html}");

    let dark = app.http.get(app.url(&format!("/embed/{MORNING}?theme=dark"))).send().await.unwrap();
    assert!(dark.text().await.unwrap().contains("data-theme=\"dark\""));

    let several = app.http.get(app.url("/embed?newsletters=morning-briefing,weekend-reads")).send().await.unwrap();
    assert_eq!(several.status(), 200);
    let html = several.text().await.unwrap();
    assert_eq!(html.matches("type=\"checkbox\"").count(), 2, "{html}");
    assert!(html.contains("Weekend Reads") && !html.contains("Explaining Ukraine"), "{html}");

    for missing in ["/embed/no-such-newsletter", "/embed?newsletters=morning-briefing,nope", "/embed/%FF"] {
        assert_eq!(app.http.get(app.url(missing)).send().await.unwrap().status(), 404, "{missing}");
    }
    for path in ["/", "/confirm/abc", "/unsubscribe/abc", "/preferences/abc", "/no-such-page"] {
        let page = app.http.get(app.url(path)).send().await.unwrap();
        assert!(csp(&page).ends_with("frame-ancestors 'none'"), "{path}: {}", csp(&page));
    }

    // The same list lets the site's scripts call the API (CORS).
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/subscriptions"))
        .header("origin", SITE)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.headers()["access-control-allow-origin"], SITE);
    app.stop().await;
}

/// Without JavaScript a framed box posts to /subscribe and is answered in
/// the box: the error under the field with what was typed, then the thank-you.
async fn a_box_without_javascript_answers_in_the_box(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let html = app.http.get(app.url(&format!("/embed/{MORNING}"))).send().await.unwrap().text().await.unwrap();
    let form = |email: &str| {
        vec![
            ("newsletter", MORNING.to_owned()),
            ("embed", field(&html, "embed")),
            ("form", field(&html, "form")),
            ("ts", field(&html, "ts")),
            ("timezone", String::new()),
            ("website", String::new()),
            ("email", email.to_owned()),
        ]
    };
    let post = |fields: Vec<(&'static str, String)>| {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = common::serde_urlencoded_pairs(&fields);
        app.http
            .post(app.url("/subscribe"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };

    let refused = post(form("not an address")).await.unwrap();
    assert_eq!(refused.status(), 422);
    assert!(csp(&refused).contains(SITE), "the answer is framed like the box: {}", csp(&refused));
    let page = refused.text().await.unwrap();
    assert!(page.contains("<title>Error: Subscribe to Morning Briefing</title>"), "{page}");
    assert!(page.contains("Please enter a correct email address"), "{page}");
    assert!(page.contains("aria-invalid=\"true\"") && page.contains("autofocus"), "{page}");
    assert_eq!(field(&page, "email"), "not an address", "what was typed stays");
    assert!(page.contains("data-bulletin=\"morning-briefing\""), "still the box: {page}");

    let accepted = post(form("boxed@example.org")).await.unwrap();
    assert_eq!(accepted.status(), 200);
    assert!(csp(&accepted).contains(SITE));
    let thanks = common::visible(&accepted.text().await.unwrap());
    assert!(
        thanks.contains("Thank you for signing up for this newsletter. We've sent you a confirmation email."),
        "{thanks}"
    );
    app.mail.wait_for("boxed@example.org", 1).await;
    assert_eq!(app.status_of("boxed@example.org", MORNING).await, Some(Pending));
    app.stop().await;
}

/// The address a box's form posts to, as the browser reads it from the page.
fn action(html: &str) -> String {
    let at = html.find("action=\"").unwrap_or_else(|| panic!("no form: {html}")) + "action=\"".len();
    common::visible(&html[at..at + html[at..].find('"').unwrap()])
}

/// Every refusal of a box's form is the box: a stale form, the per-IP
/// limit (429), a form too large (413) or unreadable answer with the box,
/// which the site may frame, with the typed address in its field and the
/// reason above it; never an error page that no site may frame.
async fn every_refusal_of_a_box_is_a_box(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.server.allowed_origins = vec![SITE.into()];
        s.signup.per_ip_per_minute = 3;
    })
    .await
    else {
        return;
    };
    let html = app.http.get(app.url(&format!("/embed/{MORNING}"))).send().await.unwrap().text().await.unwrap();
    let to = action(&html);
    assert_eq!(to, app.url(&format!("/subscribe?box={MORNING}&theme=light")), "the box says it is one before its body");
    let form = |email: &str, website: String| {
        let fields = [
            ("newsletter", MORNING.to_owned()),
            ("embed", field(&html, "embed")),
            ("form", field(&html, "form")),
            ("ts", field(&html, "ts")),
            ("timezone", String::new()),
            ("website", website),
            ("email", email.to_owned()),
        ];
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        common::serde_urlencoded_pairs(&fields)
    };
    let post = |url: &str, body: String| {
        app.http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body).send()
    };
    let assert_box = |page: &str, typed: &str, reason: &str| {
        assert!(page.contains(&format!("data-bulletin=\"{MORNING}\"")), "the box: {page}");
        assert_eq!(field(page, "email"), typed, "what was typed stays: {page}");
        assert!(common::visible(page).contains(reason), "{reason}: {page}");
    };
    let framable = |response: &reqwest::Response| {
        let policy = csp(response);
        assert!(policy.ends_with(&format!("frame-ancestors 'self' {SITE}")), "{policy}");
    };

    // A form left open past its age: asked once more, in the box.
    app.clock.advance(i64::try_from(app.settings.signup.max_form_age_hours * 3600 + 1).unwrap());
    let stale = post(&to, form("stale@example.org", String::new())).await.unwrap();
    assert_eq!(stale.status(), 200);
    framable(&stale);
    let page = stale.text().await.unwrap();
    assert_box(&page, "stale@example.org", "Please press Subscribe once more to finish signing up.");
    assert_eq!(app.status_of("stale@example.org", MORNING).await, None);

    // A form not sent as a form.
    let unreadable = app.http.post(&to).header("content-type", "text/plain").body("email=x").send().await.unwrap();
    assert_eq!(unreadable.status(), 415);
    framable(&unreadable);
    assert_box(&unreadable.text().await.unwrap(), "", "Please send the form as a web form.");

    // The last of three per minute, then the per-IP limit.
    let html = app.http.get(app.url(&format!("/embed/{MORNING}"))).send().await.unwrap().text().await.unwrap();
    let form = |email: &str, website: String| {
        let fields = [
            ("newsletter", MORNING.to_owned()),
            ("embed", field(&html, "embed")),
            ("form", field(&html, "form")),
            ("ts", field(&html, "ts")),
            ("website", website),
            ("email", email.to_owned()),
        ];
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        common::serde_urlencoded_pairs(&fields)
    };
    assert_eq!(post(&to, form("first@example.org", String::new())).await.unwrap().status(), 200);
    let limited = post(&to, form("kept@example.org", String::new())).await.unwrap();
    assert_eq!(limited.status(), 429);
    framable(&limited);
    assert!(limited.headers().contains_key("retry-after"));
    let page = limited.text().await.unwrap();
    assert_box(&page, "kept@example.org", "Too many signups from your network. Please try again in");
    assert!(page.contains("<title>Error: Subscribe to Morning Briefing</title>"), "{page}");
    assert!(page.contains("class=\"bulletin-notice\" role=\"alert\""), "announced: {page}");
    assert_eq!(app.status_of("kept@example.org", MORNING).await, None);

    // A form too large (here a bot-sized honeypot before the address).
    let large = post(&to, form("big@example.org", "x".repeat(20 * 1024))).await.unwrap();
    assert_eq!(large.status(), 413);
    framable(&large);
    assert_box(&large.text().await.unwrap(), "big@example.org", "The form you sent is too large.");

    // The same refusals for a page of ours stay pages that no site may frame.
    let page = app.url("/subscribe");
    let large = post(&page, form("big@example.org", "x".repeat(20 * 1024))).await.unwrap();
    assert_eq!(large.status(), 413);
    assert!(csp(&large).ends_with("frame-ancestors 'none'"), "{}", csp(&large));
    let limited = app.post_form("/subscribe", &[("newsletter", MORNING), ("email", "page@example.org")], None).await;
    assert_eq!(limited.status(), 429);
    assert!(csp(&limited).ends_with("frame-ancestors 'none'"), "{}", csp(&limited));
    app.stop().await;
}

/// A reader whose browser fills in the address and who presses Enter at
/// once beats the time-trap: they are asked to press once more on a fresh
/// form and end up signed up. The honeypot still drops a bot in silence.
async fn a_quick_reader_is_asked_again_never_dropped(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.signup.min_submit_seconds = 2).await else {
        return;
    };
    let index = app.http.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    let quick = [
        ("newsletter", MORNING),
        ("form", MORNING),
        ("ts", &field(&index, "ts")),
        ("website", ""),
        ("email", "quick@example.org"),
    ];
    let asked = app.post_form("/subscribe", &quick, None).await;
    assert_eq!(asked.status(), 200);
    let page = asked.text().await.unwrap();
    assert!(page.contains("<title>One more step</title>"), "{page}");
    assert!(page.contains("Please press Subscribe once more to finish signing up."), "{page}");
    assert_eq!(field(&page, "email"), "quick@example.org");
    assert_eq!(field(&page, "newsletter"), MORNING);
    assert_eq!(app.status_of("quick@example.org", MORNING).await, None, "nothing stored yet");

    // Pressing at once again is asked again; after a human's pause it goes through.
    let again = [
        ("newsletter", MORNING),
        ("form", MORNING),
        ("ts", &field(&page, "ts")),
        ("website", ""),
        ("email", "quick@example.org"),
    ];
    assert!(app.post_form("/subscribe", &again, None).await.text().await.unwrap().contains("One more step"));
    app.clock.advance(3);
    let done = app.post_form("/subscribe", &again, None).await.text().await.unwrap();
    assert!(common::visible(&done).contains("We've sent you a confirmation email."), "{done}");
    let link = app.confirmation_link("quick@example.org", 1).await;
    assert_eq!(app.http.post(&link).send().await.unwrap().status(), 200);

    // A form left open past its age is asked again too, not dropped.
    app.clock.advance(i64::try_from(app.settings.signup.max_form_age_hours * 3600).unwrap());
    let stale =
        [("newsletter", MORNING), ("form", MORNING), ("ts", &field(&page, "ts")), ("email", "late@example.org")];
    assert!(app.post_form("/subscribe", &stale, None).await.text().await.unwrap().contains("One more step"));

    // A framed box is asked again inside the box.
    let boxed = app.http.get(app.url(&format!("/embed/{MORNING}"))).send().await.unwrap().text().await.unwrap();
    let quick_box = [
        ("newsletter", MORNING),
        ("embed", "light"),
        ("form", MORNING),
        ("ts", &field(&boxed, "ts")),
        ("email", "box@example.org"),
    ];
    let asked = app.post_form("/subscribe", &quick_box, None).await;
    assert_eq!(asked.status(), 200);
    let page = asked.text().await.unwrap();
    assert!(page.contains("data-theme=\"light\"") && page.contains("once more"), "{page}");
    assert_eq!(field(&page, "email"), "box@example.org");

    // The bot that fills every field gets the same thank-you, and nothing happens.
    app.clock.advance(3);
    let bot =
        [("newsletter", MORNING), ("form", MORNING), ("website", "http://spam.example"), ("email", "bot@example.org")];
    let fooled = app.post_form("/subscribe", &bot, None).await.text().await.unwrap();
    assert!(common::visible(&fooled).contains("We've sent you a confirmation email."));
    assert_eq!(app.status_of("bot@example.org", MORNING).await, None);
    assert_eq!(app.status_of("late@example.org", MORNING).await, None);
    app.stop().await;
}

/// A refused form on our own page is announced: the title says so first,
/// the field takes the focus, the message is an alert tied to its field.
#[tokio::test]
async fn a_refused_form_is_announced() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let refused =
        app.post_form("/subscribe", &[("newsletter", MORNING), ("form", MORNING), ("email", "nope")], None).await;
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    assert!(html.contains("<title>Error: Please enter a correct email address - Newsletters</title>"), "{html}");
    let id = format!("email-{MORNING}");
    assert!(html.contains(&format!("aria-describedby=\"{id}-error\" autofocus")), "{html}");
    assert!(html.contains(&format!("<p class=\"error\" id=\"{id}-error\" role=\"alert\">")), "{html}");
    assert_eq!(html.matches("autofocus").count(), 1, "one field takes the focus");

    let none = app.post_form("/subscribe", &[("form", "several"), ("email", "a@example.org")], None).await;
    let html = none.text().await.unwrap();
    assert!(html.contains("<fieldset aria-describedby=\"several-choice-error\">"), "{html}");
    assert!(
        html.contains("id=\"several-choice-error\" role=\"alert\">Please choose at least one newsletter"),
        "{html}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_script_is_served_small_and_cached() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let script = app.http.get(app.url("/embed.js")).send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(script.headers()["cache-control"], "public, max-age=3600");
    let body = script.text().await.unwrap();
    // The budget the README states.
    assert!(body.len() <= 6 * 1024, "embed.js is {} bytes", body.len());
    assert!(body.contains("/api/subscriptions") || body.contains("api/subscriptions"));
    app.stop().await;
}

/// `bulletin newsletters snippet` prints what a site pastes, with our public URL.
#[test]
fn snippets_carry_the_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let db = dir.path().join("b.db");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_url = \"https://newsletters.example.org/\"\n[database]\nurl = \"sqlite://{}\"\n\
             [[newsletters]]\nslug = \"{MORNING}\"\nname = \"Morning <Briefing>\"\n",
            db.display()
        ),
    )
    .unwrap();
    let snippet = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_bulletin"))
            .arg("--config")
            .arg(&config)
            .args(["newsletters", "snippet"])
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .expect("run bulletin")
    };
    let script = snippet(&[MORNING]);
    assert!(script.status.success(), "{}", String::from_utf8_lossy(&script.stderr));
    let html = String::from_utf8(script.stdout).unwrap();
    assert!(html.contains("action=\"https://newsletters.example.org/subscribe\""), "{html}");
    assert!(html.contains(&format!("data-bulletin=\"{MORNING}\"")), "{html}");
    assert!(html.contains("<script src=\"https://newsletters.example.org/embed.js\" async></script>"), "{html}");
    assert!(
        html.contains("Morning &#60;Briefing&#62;") || html.contains("Morning &lt;Briefing&gt;"),
        "escaped: {html}"
    );
    assert_eq!(snippet(&[MORNING, "--script"]).stdout, html.as_bytes(), "--script is the default");

    let iframe = String::from_utf8(snippet(&[MORNING, "--iframe"]).stdout).unwrap();
    assert!(
        iframe.starts_with(&format!("<iframe src=\"https://newsletters.example.org/embed/{MORNING}\"")),
        "{iframe}"
    );
    // The frame sizes itself from messages of our origin and its own frame only (tests/frames.rs shows it).
    assert!(iframe.contains(&format!("name=\"bulletin-{MORNING}\"")), "{iframe}");
    assert!(iframe.contains("event.origin !== \"https://newsletters.example.org\""), "{iframe}");
    assert!(iframe.contains("event.source !== frame.contentWindow"), "{iframe}");

    let unknown = snippet(&["evening-news"]);
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("no newsletter \"evening-news\""), "{err}");
}

on_both_backends!(
    only_the_boxes_are_framed_and_only_by_allowed_sites,
    a_box_without_javascript_answers_in_the_box,
    a_quick_reader_is_asked_again_never_dropped,
    every_refusal_of_a_box_is_a_box
);
