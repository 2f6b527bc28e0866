//! A reader of a digest newsletter that offers rhythms picks how often and
//! in which zone: on the signup form, through the API, on the preferences
//! page. Bad choices are refused next to their field and never stored; a
//! signup of an address that exists changes nothing and says nothing.

mod common;

use std::collections::HashMap;

use bulletin::config::{DigestSettings, Settings};
use bulletin::domain::{Rhythm, SubscriptionStatus};
use common::boxes::{Snippet, site_and_app_with, snippet_configured, submit_box};
use common::browser::{Browser, DESKTOP};
use common::{Backend, TestApp};
use serde_json::json;

const MORNING: &str = "morning-briefing";
const WEEKEND: &str = "weekend-reads";

/// Morning Briefing offers every rhythm (daily first) in Kyiv; Weekend Reads only weekly, in UTC.
fn configure(settings: &mut Settings) {
    for n in &mut settings.newsletters {
        if n.slug == MORNING {
            n.digest = Some(DigestSettings {
                timezone: "Europe/Kyiv".into(),
                rhythms: vec!["daily".into(), "immediate".into(), "weekly".into()],
                ..DigestSettings::default()
            });
        } else if n.slug == WEEKEND {
            n.digest = Some(DigestSettings { rhythms: vec!["weekly".into()], ..DigestSettings::default() });
        }
    }
}

async fn spawn(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, configure).await
}

/// The attributes of every `<tag …>` in a page, in order.
fn tags(html: &str, tag: &str) -> Vec<HashMap<String, String>> {
    let open = format!("<{tag}");
    html.match_indices(&open)
        .filter(|(at, _)| html[at + open.len()..].starts_with([' ', '>', '\n']))
        .map(|(at, _)| {
            let rest = &html[at + open.len()..];
            attributes(&rest[..rest.find('>').expect("tag closes")])
        })
        .collect()
}

fn attributes(mut s: &str) -> HashMap<String, String> {
    let mut found = HashMap::new();
    loop {
        s = s.trim_start();
        let Some(end) = s.find(|c: char| c == '=' || c.is_whitespace()).or(Some(s.len())).filter(|e| *e > 0) else {
            return found;
        };
        let name = s[..end].to_owned();
        s = &s[end..];
        if let Some(quoted) = s.strip_prefix("=\"") {
            let close = quoted.find('"').expect("attribute closes");
            found.insert(name, common::visible(&quoted[..close]));
            s = &quoted[close + 1..];
        } else {
            found.insert(name, String::new());
        }
    }
}

fn input<'a>(inputs: &'a [HashMap<String, String>], id: &str) -> &'a HashMap<String, String> {
    inputs.iter().find(|i| i.get("id").map(String::as_str) == Some(id)).unwrap_or_else(|| panic!("no input #{id}"))
}

/// The text of the `<label for="id">`.
fn label(html: &str, id: &str) -> String {
    let start = html.find(&format!("<label for=\"{id}\">")).unwrap_or_else(|| panic!("no label for #{id}"));
    let text = &html[start..];
    let text = &text[text.find('>').unwrap() + 1..text.find("</label>").unwrap()];
    common::visible(text).trim().to_owned()
}

/// Every input people see has a label bound to it (the honeypot wraps its own).
fn assert_labelled(html: &str) {
    for i in tags(html, "input") {
        if i.get("type").map(String::as_str) == Some("hidden") || i.get("name").map(String::as_str) == Some("website") {
            continue;
        }
        let id = i.get("id").unwrap_or_else(|| panic!("input without id: {i:?}"));
        label(html, id);
    }
}

async fn the_form_offers_rhythms_and_a_zone(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let html = app.http.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    let inputs = tags(&html, "input");
    assert_labelled(&html);

    for rhythm in [Rhythm::Daily, Rhythm::Immediate, Rhythm::Weekly] {
        let id = format!("rhythm-{MORNING}-{rhythm}");
        let radio = input(&inputs, &id);
        assert_eq!(radio["type"], "radio");
        assert_eq!(radio["name"], "rhythm");
        assert_eq!(radio["value"], rhythm.as_str());
        assert_eq!(radio.contains_key("checked"), rhythm == Rhythm::Daily, "only the default is checked: {radio:?}");
        assert_eq!(label(&html, &id), rhythm.label());
    }
    assert!(html.contains("Digests arrive at 07:00 in your time zone, weekly ones on Mondays."), "{html}");
    let zone = input(&inputs, &format!("timezone-{MORNING}"));
    assert_eq!((zone["type"].as_str(), zone["name"].as_str(), zone["value"].as_str()), ("hidden", "timezone", ""));
    assert!(zone.contains_key("data-browser-zone"));
    assert!(html.contains("<script src=\"/embed.js\""), "the page loads the script that fills the zone in");
    let script = app.http.get(app.url("/embed.js")).send().await.unwrap().text().await.unwrap();
    assert!(script.contains("Intl.DateTimeFormat().resolvedOptions().timeZone"), "{script}");

    // Weekend Reads offers one rhythm; Explaining Ukraine none, so its form has neither field.
    let weekly = input(&inputs, &format!("rhythm-{WEEKEND}-weekly"));
    assert!(weekly.contains_key("checked"));
    assert!(!inputs.iter().any(|i| i.get("id").is_some_and(
        |id| id.ends_with("explaining-ukraine") && (id.starts_with("rhythm-") || id.starts_with("timezone-"))
    )));

    // The form for several: their offers differ, so "each newsletter's usual" comes first, checked.
    let usual = input(&inputs, "rhythm-several-usual");
    assert_eq!((usual["value"].as_str(), usual.contains_key("checked")), ("", true));
    assert_eq!(label(&html, "rhythm-several-usual"), "Each newsletter's usual rhythm");
    assert!(
        html.contains("<legend class=\"muted\">How often would you like Morning Briefing and Weekend Reads?</legend>")
    );
    for rhythm in ["immediate", "daily", "weekly"] {
        assert!(!input(&inputs, &format!("rhythm-several-{rhythm}")).contains_key("checked"));
    }
    input(&inputs, "timezone-several");
    app.stop().await;
}

/// What `bulletin subscribers list` prints for the test app's database and newsletters.
fn subscribers_list(app: &TestApp, dir: &std::path::Path, format: &str) -> String {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[mail]\ntransport = \"file\"\nfile_dir = \"{}\"\n\
             [[newsletters]]\nslug = \"{MORNING}\"\nname = \"Morning Briefing\"\n\
             [newsletters.digest]\ntimezone = \"Europe/Kyiv\"\nrhythms = [\"daily\", \"immediate\", \"weekly\"]\n\
             [[newsletters]]\nslug = \"{WEEKEND}\"\nname = \"Weekend Reads\"\n",
            app.database_url(),
            dir.join("outbox").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .arg("--config")
        .arg(&config)
        .args(["subscribers", "list", "--newsletter", MORNING, "--format", format])
        .env_remove("BULLETIN_CONFIG")
        .env("RUST_LOG", "error")
        .output()
        .expect("run bulletin");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

async fn signups_store_rhythm_and_zone(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let form = app
        .post_form(
            "/subscribe",
            &[
                ("email", "form@example.org"),
                ("form", MORNING),
                ("newsletter", MORNING),
                ("rhythm", "weekly"),
                ("timezone", "America/New_York"),
            ],
            None,
        )
        .await;
    assert_eq!(form.status(), 200);
    let api = app
        .http
        .post(app.url("/api/subscriptions"))
        .json(&json!({"email": "api@example.org", "newsletters": [MORNING, "explaining-ukraine"],
                      "rhythm": "immediate", "timezone": "Asia/Tokyo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 202);
    // No JavaScript: the zone field comes empty, and the newsletter's applies.
    let plain = app
        .post_form(
            "/subscribe",
            &[
                ("email", "plain@example.org"),
                ("form", MORNING),
                ("newsletter", MORNING),
                ("rhythm", "daily"),
                ("timezone", ""),
            ],
            None,
        )
        .await;
    assert_eq!(plain.status(), 200);
    assert_eq!(app.signup_api("nochoice@example.org", &[MORNING]).await.status(), 202);

    let kyiv = None;
    assert_eq!(
        app.rhythm_of("form@example.org", MORNING).await,
        Some((Some(Rhythm::Weekly), Some("America/New_York".into())))
    );
    assert_eq!(
        app.rhythm_of("api@example.org", MORNING).await,
        Some((Some(Rhythm::Immediate), Some("Asia/Tokyo".into())))
    );
    assert_eq!(app.rhythm_of("plain@example.org", MORNING).await, Some((Some(Rhythm::Daily), kyiv.clone())));
    assert_eq!(app.rhythm_of("nochoice@example.org", MORNING).await, Some((None, kyiv)));
    // A newsletter without rhythms ignores them.
    assert_eq!(app.rhythm_of("api@example.org", "explaining-ukraine").await, Some((None, None)));

    let dir = tempfile::tempdir().unwrap();
    let listed: serde_json::Value = serde_json::from_str(&subscribers_list(&app, dir.path(), "json")).unwrap();
    let by_email = |email: &str| listed.as_array().unwrap().iter().find(|r| r["email"] == email).unwrap().clone();
    let form = by_email("form@example.org");
    assert_eq!((&form["rhythm"], &form["rhythm_is_default"]), (&json!("weekly"), &json!(false)));
    assert_eq!((&form["timezone"], &form["timezone_is_default"]), (&json!("America/New_York"), &json!(false)));
    let nochoice = by_email("nochoice@example.org");
    assert_eq!((&nochoice["rhythm"], &nochoice["rhythm_is_default"]), (&json!("daily"), &json!(true)));
    assert_eq!((&nochoice["timezone"], &nochoice["timezone_is_default"]), (&json!("Europe/Kyiv"), &json!(true)));

    let table = subscribers_list(&app, dir.path(), "table");
    let header = table.lines().next().unwrap();
    assert!(header.split_whitespace().eq([
        "email",
        "status",
        "rhythm",
        "timezone",
        "created_at",
        "confirmed_at",
        "name"
    ]));
    let row = table.lines().find(|l| l.starts_with("nochoice@")).unwrap();
    assert!(row.contains("daily (default)") && row.contains("Europe/Kyiv (default)"), "{table}");
    let row = table.lines().find(|l| l.starts_with("api@")).unwrap();
    assert!(row.contains("immediate ") && row.contains("Asia/Tokyo ") && !row.contains("(default)"), "{table}");

    let csv = subscribers_list(&app, dir.path(), "csv");
    assert_eq!(csv.lines().next(), Some("email,status,created_at,confirmed_at,name"), "no rhythm columns in the CSV");
    app.stop().await;
}

async fn api_error(response: reqwest::Response) -> serde_json::Value {
    assert_eq!(response.status(), 422);
    response.json::<serde_json::Value>().await.unwrap()["error"].clone()
}

async fn bad_choices_are_refused_and_not_stored(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let post = |email: &str, body: serde_json::Value| {
        let mut body = body;
        body["email"] = json!(email);
        app.http.post(app.url("/api/subscriptions")).json(&body).send()
    };
    let e =
        api_error(post("a@example.org", json!({"newsletters": [MORNING], "rhythm": "hourly"})).await.unwrap()).await;
    assert_eq!((&e["code"], &e["field"]), (&json!("invalid_rhythm"), &json!("rhythm")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("immediate, daily or weekly"), "{e}");
    let e =
        api_error(post("b@example.org", json!({"newsletters": [MORNING], "timezone": "Mars/Olympus"})).await.unwrap())
            .await;
    assert_eq!((&e["code"], &e["field"]), (&json!("invalid_timezone"), &json!("timezone")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("Mars/Olympus"), "{e}");
    // Weekend Reads is weekly only: a daily choice for both is refused, naming it.
    let e =
        api_error(post("c@example.org", json!({"newsletters": [MORNING, WEEKEND], "rhythm": "daily"})).await.unwrap())
            .await;
    assert_eq!((&e["code"], &e["field"]), (&json!("rhythm_not_offered"), &json!("rhythm")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("Weekend Reads does not offer daily"), "{e}");

    // The form: the page again, the message next to the field, what was typed kept.
    let page = app
        .post_form(
            "/subscribe",
            &[
                ("email", "d@example.org"),
                ("form", MORNING),
                ("newsletter", MORNING),
                ("rhythm", "hourly"),
                ("timezone", "Europe/Kyiv"),
            ],
            None,
        )
        .await;
    assert_eq!(page.status(), 422);
    let html = page.text().await.unwrap();
    let error = format!("<p class=\"error\" id=\"rhythm-{MORNING}-error\" role=\"alert\">");
    assert!(common::visible(&html).contains(&format!("{error}\"hourly\" is not a rhythm")), "{html}");
    assert!(html.contains(&format!("aria-describedby=\"rhythm-{MORNING}-error\"")), "{html}");
    assert_eq!(input(&tags(&html, "input"), &format!("email-{MORNING}"))["value"], "d@example.org");

    let page = app
        .post_form(
            "/subscribe",
            &[
                ("email", "e@example.org"),
                ("form", MORNING),
                ("newsletter", MORNING),
                ("rhythm", "weekly"),
                ("timezone", "Europe/Atlantis"),
            ],
            None,
        )
        .await;
    assert_eq!(page.status(), 422);
    let html = page.text().await.unwrap();
    let inputs = tags(&html, "input");
    let zone = input(&inputs, &format!("timezone-{MORNING}"));
    // Shown now, so the reader can put it right, and not overwritten by the script.
    assert_eq!((zone["type"].as_str(), zone["value"].as_str()), ("text", "Europe/Atlantis"));
    assert_eq!(zone["aria-invalid"], "true");
    assert!(!zone.contains_key("data-browser-zone"));
    assert!(label(&html, &format!("timezone-{MORNING}")).contains("time zone"));
    assert!(common::visible(&html).contains("\"Europe/Atlantis\" is not a time zone"), "{html}");
    assert!(input(&inputs, &format!("rhythm-{MORNING}-weekly")).contains_key("checked"), "the reader's pick is kept");
    assert_labelled(&html);

    let page = app
        .post_form(
            "/subscribe",
            &[
                ("email", "f@example.org"),
                ("form", "several"),
                ("newsletter", MORNING),
                ("newsletter", WEEKEND),
                ("rhythm", "immediate"),
            ],
            None,
        )
        .await;
    assert_eq!(page.status(), 422);
    let html = common::visible(&page.text().await.unwrap());
    assert!(
        html.contains("id=\"rhythm-several-error\" role=\"alert\">Weekend Reads does not offer immediate"),
        "{html}"
    );

    for email in ["a", "b", "c", "d", "e", "f"].map(|e| format!("{e}@example.org")) {
        for slug in [MORNING, WEEKEND] {
            assert_eq!(app.rhythm_of(&email, slug).await, None, "{email} is not stored");
        }
    }
    assert!(app.mail.mails_to("a@example.org").is_empty());
    app.stop().await;
}

/// Status, headers but Date, and body: what must not differ between answers.
async fn snapshot(r: reqwest::Response) -> (reqwest::StatusCode, Vec<(String, String)>, Vec<u8>) {
    let mut headers: Vec<_> = r
        .headers()
        .iter()
        .filter(|(k, _)| *k != "date")
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    headers.sort();
    (r.status(), headers, r.bytes().await.unwrap().to_vec())
}

/// The Morning Briefing form as a browser with JavaScript sends it.
async fn form_signup(app: &TestApp, email: &str, rhythm: &str, zone: &str) -> reqwest::Response {
    let fields = [("email", email), ("form", MORNING), ("newsletter", MORNING), ("rhythm", rhythm), ("timezone", zone)];
    app.post_form("/subscribe", &fields, None).await
}

async fn a_second_signup_changes_nothing(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let api = |email: &str, rhythm: &str, zone: &str| {
        app.http
            .post(app.url("/api/subscriptions"))
            .json(&json!({"email": email, "newsletters": [MORNING], "rhythm": rhythm, "timezone": zone}))
            .send()
    };
    assert_eq!(api("reader@example.org", "weekly", "America/New_York").await.unwrap().status(), 202);
    let link = app.confirmation_link("reader@example.org", 1).await;
    assert_eq!(app.http.post(&link).send().await.unwrap().status(), 200);
    let theirs = Some((Some(Rhythm::Weekly), Some("America/New_York".to_owned())));

    let new = snapshot(api("new@example.org", "immediate", "Asia/Tokyo").await.unwrap()).await;
    let again = snapshot(api("reader@example.org", "immediate", "Asia/Tokyo").await.unwrap()).await;
    assert_eq!(new, again, "the API answers an existing reader like a new one");
    let new = snapshot(form_signup(&app, "new2@example.org", "daily", "Europe/Kyiv").await).await;
    let again = snapshot(form_signup(&app, "reader@example.org", "daily", "Europe/Kyiv").await).await;
    assert_eq!(new.0, 200);
    assert_eq!(new, again, "the form answers an existing reader like a new one");

    assert_eq!(app.rhythm_of("reader@example.org", MORNING).await, theirs, "only the signed link changes a rhythm");
    assert_eq!(app.status_of("reader@example.org", MORNING).await, Some(SubscriptionStatus::Confirmed));
    assert_eq!(
        app.rhythm_of("new@example.org", MORNING).await,
        Some((Some(Rhythm::Immediate), Some("Asia/Tokyo".into())))
    );
    app.stop().await;
}

async fn preferences_show_and_change_the_rhythm(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let email = "kyiv@example.org";
    app.signup_form(email, &[MORNING, WEEKEND]).await;
    let link = app.confirmation_link(email, 1).await;
    let done = app.http.post(&link).send().await.unwrap().text().await.unwrap();
    let preferences = common::href(&done, "/preferences/");

    let page = app.http.get(&preferences).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        common::visible(&html).contains("You get: A daily digest at 07:00, Europe/Kyiv time (our usual)."),
        "{html}"
    );
    assert!(common::visible(&html).contains("You get: A weekly digest on Mondays at 07:00, UTC time (our usual)."));
    let inputs = tags(&html, "input");
    let radio_name = format!("rhythm-{MORNING}");
    assert!(input(&inputs, &format!("rhythm-{MORNING}-daily")).contains_key("checked"));
    assert_eq!(input(&inputs, &format!("rhythm-{MORNING}-weekly"))["name"], radio_name);
    let zone = input(&inputs, &format!("timezone-{MORNING}"));
    assert_eq!((zone["type"].as_str(), zone["value"].as_str()), ("text", "Europe/Kyiv"));
    assert_labelled(&html);
    assert_eq!(app.rhythm_of(email, MORNING).await, Some((None, None)), "showing changes nothing");

    let save = |fields: Vec<(&'static str, &'static str)>| {
        let mut all = vec![("newsletter", MORNING), ("newsletter", WEEKEND)];
        all.extend(fields);
        let body = common::serde_urlencoded_pairs(&all);
        app.http.post(&preferences).header("content-type", "application/x-www-form-urlencoded").body(body).send()
    };
    let changed = save(vec![
        ("rhythm-morning-briefing", "weekly"),
        ("timezone-morning-briefing", "America/New_York"),
        ("rhythm-weekend-reads", "weekly"),
        ("timezone-weekend-reads", "UTC"),
    ])
    .await
    .unwrap();
    assert_eq!(changed.status(), 200);
    let html = common::visible(&changed.text().await.unwrap());
    assert!(html.contains("Your preferences have been saved."), "{html}");
    assert!(html.contains("You get: A weekly digest on Mondays at 07:00, America/New_York time."), "{html}");
    assert_eq!(app.rhythm_of(email, MORNING).await, Some((Some(Rhythm::Weekly), Some("America/New_York".into()))));
    // Weekend Reads was sent as it was shown: its defaults stay defaults.
    assert_eq!(app.rhythm_of(email, WEEKEND).await, Some((None, None)));

    // A zone that does not exist: the message next to the field, nothing changed.
    let refused =
        save(vec![("rhythm-morning-briefing", "immediate"), ("timezone-morning-briefing", "Europe/Atlantis")])
            .await
            .unwrap();
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    let zone = input(&tags(&html, "input"), &format!("timezone-{MORNING}")).clone();
    assert_eq!((zone["value"].as_str(), zone["aria-invalid"].as_str()), ("Europe/Atlantis", "true"));
    assert_eq!(zone["aria-describedby"], format!("timezone-{MORNING}-error"));
    assert!(common::visible(&html).contains(&format!(
        "<p class=\"error\" id=\"timezone-{MORNING}-error\" role=\"alert\">\"Europe/Atlantis\" is not a time zone"
    )));
    assert!(!html.contains("have been saved"));
    // A rhythm the newsletter does not offer: the same.
    let refused = save(vec![("rhythm-weekend-reads", "daily"), ("timezone-weekend-reads", "UTC")]).await.unwrap();
    assert_eq!(refused.status(), 422);
    let html = common::visible(&refused.text().await.unwrap());
    assert!(
        html.contains(&format!("id=\"rhythm-{WEEKEND}-error\" role=\"alert\">Weekend Reads does not offer daily")),
        "{html}"
    );
    assert_eq!(app.rhythm_of(email, MORNING).await, Some((Some(Rhythm::Weekly), Some("America/New_York".into()))));
    assert_eq!(app.rhythm_of(email, WEEKEND).await, Some((None, None)));
    assert_eq!(app.status_of(email, WEEKEND).await, Some(SubscriptionStatus::Confirmed));

    // Emptying the zone goes back to the newsletter's.
    let back = save(vec![("rhythm-morning-briefing", "weekly"), ("timezone-morning-briefing", "")]).await.unwrap();
    assert_eq!(back.status(), 200);
    assert!(
        common::visible(&back.text().await.unwrap()).contains("A weekly digest on Mondays at 07:00, Europe/Kyiv time.")
    );
    assert_eq!(app.rhythm_of(email, MORNING).await, Some((Some(Rhythm::Weekly), None)));
    app.stop().await;
}

/// The HTML of the first form after `marker` in a page.
fn form_after<'a>(html: &'a str, marker: &str) -> &'a str {
    let start = html.find(marker).unwrap_or_else(|| panic!("no {marker} in {html}"));
    let form = &html[start..];
    let form = &form[form.find("<form").unwrap_or_else(|| panic!("no form after {marker}"))..];
    &form[..form.find("</form>").expect("form closes")]
}

/// What a browser without JavaScript posts from `form` after the reader
/// typed and picked `set`: a text, email or hidden field named there takes
/// that value; radios and checkboxes named there are ticked where their value
/// is listed, and only there; every other field goes as the page drew it.
fn posted(form: &str, set: &[(&str, &str)]) -> Vec<(String, String)> {
    let named = |name: &str| set.iter().any(|(n, _)| *n == name);
    let mut fields = vec![];
    for i in tags(form, "input") {
        let Some(name) = i.get("name").cloned() else { continue };
        let value = i.get("value").cloned().unwrap_or_default();
        match i.get("type").map(String::as_str) {
            Some("radio" | "checkbox") => {
                let value = if i.contains_key("value") { value } else { "on".to_owned() };
                let ticked = if named(&name) {
                    set.contains(&(name.as_str(), value.as_str()))
                } else {
                    i.contains_key("checked")
                };
                if ticked {
                    fields.push((name, value));
                }
            }
            _ => {
                let typed = set.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned());
                fields.push((name, typed.unwrap_or(value)));
            }
        }
    }
    fields
}

async fn post_fields(app: &TestApp, fields: &[(String, String)]) -> reqwest::Response {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    app.post_form("/subscribe", &pairs, None).await
}

/// A reader who picks weekly and their zone and presses Subscribe within
/// `signup.min_submit_seconds` is asked to press once more; that second
/// press, as a browser without JavaScript sends the page it got, stores
/// exactly their choice: on one newsletter's form and on the form for several.
async fn the_second_press_keeps_the_choice(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        configure(s);
        // Longer than any busy machine takes between serving a page and the press that sends it.
        s.signup.min_submit_seconds = 60;
    })
    .await
    else {
        return;
    };
    let cases = [
        ("one@example.org", format!("id=\"{MORNING}\""), vec![("newsletter", MORNING)], "America/New_York"),
        (
            "several@example.org",
            "id=\"several\"".to_owned(),
            vec![("newsletter", MORNING), ("newsletter", WEEKEND)],
            "Asia/Tokyo",
        ),
    ];
    for (email, section, picked, zone) in &cases {
        let index = app.http.get(app.url("/")).send().await.unwrap().text().await.unwrap();
        let mut set = vec![("email", *email), ("rhythm", "weekly"), ("timezone", *zone)];
        set.extend(picked.iter().copied());
        // Sent at once: the clock has not moved since the page was served.
        let first = post_fields(&app, &posted(form_after(&index, section), &set)).await;
        assert_eq!(first.status(), 200);
        let again = first.text().await.unwrap();
        assert!(again.contains("<title>One more step</title>"), "{again}");
        assert!(common::visible(&again).contains("Please press Subscribe once more to finish signing up."));
        for slug in [MORNING, WEEKEND] {
            assert_eq!(app.rhythm_of(email, slug).await, None, "nothing is stored before the second press");
        }

        app.clock.advance(61);
        let second = post_fields(&app, &posted(form_after(&again, "One more step</h1>"), &[])).await;
        let status = second.status();
        let done = common::visible(&second.text().await.unwrap());
        assert_eq!(status, 200, "{done}");
        assert!(done.contains("We've sent you a confirmation email."), "{done}");
        let choice = Some((Some(Rhythm::Weekly), Some((*zone).to_owned())));
        for (_, slug) in picked {
            assert_eq!(app.rhythm_of(email, slug).await, choice, "{email} on {slug}");
        }
    }
    app.stop().await;
}

/// Chromium names Kyiv's zone `Europe/Kiev`: it is stored and shown by its
/// canonical name, from the form and the API alike, and its readers share
/// one stream with those whose browser said `Europe/Kyiv`.
async fn a_zone_alias_is_stored_by_its_canonical_name(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    assert_eq!(form_signup(&app, "chromium@example.org", "daily", "Europe/Kiev").await.status(), 200);
    assert_eq!(form_signup(&app, "firefox@example.org", "daily", "Europe/Kyiv").await.status(), 200);
    let api = app
        .http
        .post(app.url("/api/subscriptions"))
        .json(&json!({"email": "api@example.org", "newsletters": [MORNING], "rhythm": "daily", "timezone": "Asia/Calcutta"}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 202);
    for email in ["chromium@example.org", "firefox@example.org", "api@example.org"] {
        let link = app.confirmation_link(email, 1).await;
        assert_eq!(app.http.post(&link).send().await.unwrap().status(), 200, "{email}");
    }
    let daily = |zone: &str| Some((Some(Rhythm::Daily), Some(zone.to_owned())));
    assert_eq!(app.rhythm_of("chromium@example.org", MORNING).await, daily("Europe/Kyiv"));
    assert_eq!(app.rhythm_of("api@example.org", MORNING).await, daily("Asia/Kolkata"));
    let newsletter = app.newsletter(MORNING).await;
    let slots = app.store.rhythm_slots(newsletter.id).await.unwrap();
    let pair = |zone: &str| ("daily".to_owned(), zone.to_owned());
    assert_eq!(slots, [pair("Asia/Kolkata"), pair("Europe/Kyiv")], "as stored: one stream for Kyiv");
    app.stop().await;
}

on_both_backends!(
    a_zone_alias_is_stored_by_its_canonical_name,
    the_form_offers_rhythms_and_a_zone,
    signups_store_rhythm_and_zone,
    bad_choices_are_refused_and_not_stored,
    a_second_signup_changes_nothing,
    preferences_show_and_change_the_rhythm,
    the_second_press_keeps_the_choice,
    a_framed_box_offers_rhythms_and_stores_the_pick,
    a_rhythm_picked_in_a_script_box_is_stored,
);

/// The options of the first `<select>` in `html`: (value, selected, label).
fn select_options(html: &str) -> Vec<(String, bool, String)> {
    let start = html.find("<select").unwrap_or_else(|| panic!("no select in {html}"));
    let select = &html[start..start + html[start..].find("</select>").expect("select closes")];
    select
        .split("<option")
        .skip(1)
        .map(|o| {
            let (attrs, rest) = o.split_once('>').expect("option opens");
            let a = attributes(attrs);
            let label = common::visible(&rest[..rest.find("</option>").expect("option closes")]);
            (a["value"].clone(), a.contains_key("selected"), label)
        })
        .collect()
}

/// The text of the label that wraps the box's `<select>`.
fn select_label(html: &str) -> String {
    let select = html.find("<select").expect("a select");
    let start = html[..select].rfind("<label").expect("a label wraps the select");
    assert!(!html[start..select].contains("</label>"), "the label wraps the select: {html}");
    let mut text = String::new();
    for piece in html[start..select].split('<').skip(1) {
        text.push_str(piece.split_once('>').expect("tag closes").1);
    }
    common::visible(&text).trim().to_owned()
}

/// The address a box's form posts to, as the browser reads it from the page.
fn action(html: &str) -> String {
    let at = html.find("action=\"").unwrap_or_else(|| panic!("no form: {html}")) + "action=\"".len();
    common::visible(&html[at..at + html[at..].find('"').unwrap()])
}

/// A framed box of a newsletter that offers rhythms shows them in a
/// labelled select, the default first and picked; a reader without
/// JavaScript who picks weekly gets weekly stored, with the zone a script
/// would have filled. The box for several offers "each newsletter's usual"
/// first; a newsletter without rhythms shows no choice.
async fn a_framed_box_offers_rhythms_and_stores_the_pick(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let a = &app;
    let get = |path: String| async move { a.http.get(a.url(&path)).send().await.unwrap().text().await.unwrap() };
    let html = get(format!("/embed/{MORNING}")).await;
    let options = select_options(&html);
    let shown: Vec<(&str, bool)> = options.iter().map(|(v, s, _)| (v.as_str(), *s)).collect();
    assert_eq!(shown, [("daily", true), ("immediate", false), ("weekly", false)], "{html}");
    assert_eq!(select_options(&html)[2].2, Rhythm::Weekly.label());
    assert_eq!(select_label(&html), "How often would you like to hear from us?");
    assert!(html.contains("name=\"rhythm\""), "{html}");
    let zone = tags(&html, "input").into_iter().find(|i| i.get("name").map(String::as_str) == Some("timezone"));
    assert!(zone.expect("a zone field").contains_key("data-browser-zone"), "filled by embed.js");

    let mut fields =
        posted(form_after(&html, "<main>"), &[("email", "box@example.org"), ("timezone", "America/New_York")]);
    fields.push(("rhythm".into(), "weekly".into()));
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let post = |to: String, body: String| {
        app.http.post(to).header("content-type", "application/x-www-form-urlencoded").body(body).send()
    };
    let done = post(action(&html), common::serde_urlencoded_pairs(&pairs)).await.unwrap();
    assert_eq!(done.status(), 200);
    assert!(common::visible(&done.text().await.unwrap()).contains("We've sent you a confirmation email."));
    assert_eq!(
        app.rhythm_of("box@example.org", MORNING).await,
        Some((Some(Rhythm::Weekly), Some("America/New_York".into())))
    );

    let several = get(format!("/embed?newsletters={MORNING},{WEEKEND}")).await;
    let options = select_options(&several);
    assert_eq!((options[0].0.as_str(), options[0].1), ("", true), "{several}");
    assert_eq!(options[0].2, "Each newsletter's usual rhythm");
    assert!(options.iter().any(|(v, s, _)| v == "weekly" && !s));
    assert_eq!(select_label(&several), "How often would you like Morning Briefing and Weekend Reads?");
    let set = [("email", "both@example.org"), ("newsletter", MORNING), ("newsletter", WEEKEND)];
    let mut fields = posted(form_after(&several, "<main>"), &set);
    fields.push(("rhythm".into(), "weekly".into()));
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(post(action(&several), common::serde_urlencoded_pairs(&pairs)).await.unwrap().status(), 200);
    for slug in [MORNING, WEEKEND] {
        assert_eq!(app.rhythm_of("both@example.org", slug).await, Some((Some(Rhythm::Weekly), None)), "{slug}");
    }

    let plain = get("/embed/explaining-ukraine".to_owned()).await;
    assert!(plain.contains("data-bulletin=\"explaining-ukraine\""), "{plain}");
    assert!(!plain.contains("<select") && !plain.contains("How often"), "no rhythms, no choice: {plain}");
    app.stop().await;
}

/// `bulletin newsletters snippet` for a newsletter with rhythms prints the
/// choice with no ids (a site may paste the box twice); without, none.
#[test]
fn the_script_snippet_offers_rhythms() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_url = \"https://newsletters.example.org/\"\n[database]\nurl = \"sqlite://{}\"\n\
             [[newsletters]]\nslug = \"{MORNING}\"\nname = \"Morning Briefing\"\n\
             [newsletters.digest]\ntimezone = \"Europe/Kyiv\"\nrhythms = [\"daily\", \"immediate\", \"weekly\"]\n\
             [[newsletters]]\nslug = \"{WEEKEND}\"\nname = \"Weekend Reads\"\n",
            dir.path().join("b.db").display()
        ),
    )
    .unwrap();
    let snippet = |slug: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bulletin"))
            .arg("--config")
            .arg(&config)
            .args(["newsletters", "snippet", slug, "--script"])
            .env_remove("BULLETIN_CONFIG")
            .env("RUST_LOG", "error")
            .output()
            .expect("run bulletin");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let html = snippet(MORNING);
    let options: Vec<(String, bool)> = select_options(&html).into_iter().map(|(v, s, _)| (v, s)).collect();
    let expected: Vec<(String, bool)> =
        [("daily", true), ("immediate", false), ("weekly", false)].map(|(v, s)| (v.to_owned(), s)).into();
    assert_eq!(options, expected, "{html}");
    assert_eq!(select_label(&html), "How often would you like to hear from us?");
    assert!(html.contains("<select name=\"rhythm\">"), "{html}");
    assert!(!html.contains(" id=") && !html.contains(" for="), "no fixed ids in a pasted box: {html}");
    assert!(html.contains("name=\"timezone\"") && html.contains("data-browser-zone"), "{html}");

    let plain = snippet(WEEKEND);
    assert!(plain.contains(&format!("data-bulletin=\"{WEEKEND}\"")), "{plain}");
    assert!(!plain.contains("<select") && !plain.contains("How often"), "no rhythms, no choice: {plain}");
}

/// A reader in New York picks weekly in a script box pasted on a news site:
/// it answers in place, and weekly in their browser's zone is stored.
async fn a_rhythm_picked_in_a_script_box_is_stored(backend: Backend) {
    let Some((site, app)) = site_and_app_with(backend, configure).await else { return };
    let Some(browser) = Browser::start(DESKTOP).await else { return };
    browser.set_time_zone("America/New_York").await;
    let offer = format!(
        "[[newsletters]]\nslug = \"{MORNING}\"\nname = \"Morning Briefing\"\n\
         [newsletters.digest]\ntimezone = \"Europe/Kyiv\"\nrhythms = [\"daily\", \"immediate\", \"weekly\"]\n"
    );
    site.publish(&format!("<aside>{}</aside>", snippet_configured(&app, MORNING, Snippet::Script, &offer)));
    browser.goto(&site.url()).await.unwrap();
    let select = format!("form[data-bulletin=\"{MORNING}\"] select[name=rhythm]");
    browser.element(&format!("{select} option[value=weekly]")).await.click().await.unwrap();
    submit_box(&browser, MORNING, "picker@example.org").await;
    browser
        .text_containing(
            &format!("form[data-bulletin=\"{MORNING}\"] [data-bulletin-status]"),
            "We've sent you a confirmation email.",
        )
        .await;
    assert_eq!(
        app.rhythm_of("picker@example.org", MORNING).await,
        Some((Some(Rhythm::Weekly), Some("America/New_York".into())))
    );
    assert_eq!(browser.current_url().await.unwrap().as_str(), site.url(), "the news page stays");
    browser.close().await;
    app.stop().await;
}
