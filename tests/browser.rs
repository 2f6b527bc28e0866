//! A reader in a real browser: headless Chromium (tests/common/browser.rs)
//! signs up in the boxes a news site embeds (by iframe and by script, as
//! `bulletin newsletters snippet` prints them) and on Bulletin's own page,
//! with JavaScript on and off, and confirms from the mail it receives.
//!
//! `cargo test --test browser screenshots -- --ignored` writes the pages'
//! screenshots to docs/screenshots/.

mod common;

use std::path::Path;

use bulletin::domain::Rhythm;
use bulletin::domain::SubscriptionStatus::{Confirmed, Pending};
use common::boxes::{Snippet, email_field, publish_boxes, site_and_app, submit_box};
use common::browser::{Browser, DESKTOP, NewsSite, PHONE};
use common::{Backend, TestApp};
use fantoccini::key::Key;

const INVALID: &str = "Please enter a correct email address";
/// The error's colour in the light theme, #b00020.
const RED: &str = "rgb(176, 0, 32)";
const BOX_THANKS: &str = "Thank you for signing up for this newsletter. We've sent you a confirmation email.";
const PAGE_THANKS: &str = "Thank you for signing up. We've sent you a confirmation email.";
/// Not an address: no `@`.
const BAD: &str = "reader.example.org";

/// The element's computed colour, as the page's own `getComputedStyle` gives it.
async fn colour(browser: &Browser, element: &fantoccini::elements::Element) -> String {
    let value =
        browser.js("return getComputedStyle(arguments[0]).color;", vec![serde_json::to_value(element).unwrap()]);
    value.await.as_str().unwrap_or_default().to_owned()
}

/// A refused address in a box: the error shows under the field, in red, tied to the field, and what was typed stays.
async fn assert_box_refused(browser: &Browser, slug: &str, typed: &str) {
    let error_id = format!("bulletin-{slug}-email-error");
    browser.text_containing(&format!("#{error_id}"), INVALID).await;
    let error = browser.element(&format!("#{error_id}")).await;
    assert_eq!(colour(browser, &error).await, RED);
    let field = browser.element(&email_field(slug)).await;
    assert_eq!(field.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
    assert_eq!(field.attr("aria-describedby").await.unwrap().as_deref(), Some(error_id.as_str()));
    assert_eq!(field.prop("value").await.unwrap().as_deref(), Some(typed));
}

/// With JavaScript the box answers in place: the reader's focus is back in the field.
async fn assert_focus_in(browser: &Browser, slug: &str) {
    let id = format!("bulletin-{slug}-email");
    browser
        .wait_until("focus in the email field", |client| {
            let id = id.clone();
            async move {
                let active = client.active_element().await?.attr("id").await?.unwrap_or_default();
                Ok(if active == id { Ok(()) } else { Err(format!("focus on #{active}")) })
            }
        })
        .await;
}

/// The box's inline thank-you, with the error gone.
async fn assert_box_thanks(browser: &Browser, slug: &str) {
    browser.text_containing(&format!("form[data-bulletin=\"{slug}\"] [data-bulletin-status]"), BOX_THANKS).await;
    let field = browser.element(&email_field(slug)).await;
    assert_eq!(field.attr("aria-invalid").await.unwrap(), None);
    let error = browser.element(&format!("#bulletin-{slug}-email-error")).await;
    assert!(!error.is_displayed().await.unwrap(), "the error is hidden after a good address");
}

/// Opens the mail's confirmation link, presses the button, and reads the answer.
async fn confirm_in_browser(browser: &Browser, app: &TestApp, to: &str) {
    let link = app.confirmation_link(to, 1).await;
    browser.goto(&link).await.unwrap();
    browser.element("main form button[type=submit]").await.click().await.unwrap();
    browser.text_containing("main", "Successfully subscribed").await;
}

/// The story: a news site embeds two boxes by iframe and two by script; a
/// reader mistypes, corrects, and signs up in a script box and in an iframe
/// box without the page moving, then confirms from the mail.
async fn embedded_boxes_with_javascript(backend: Backend) {
    let Some((site, app)) = site_and_app(backend).await else { return };
    let Some(browser) = Browser::start(DESKTOP).await else { return };
    publish_boxes(
        &site,
        &app,
        &[
            ("morning-briefing", Snippet::Iframe),
            ("explaining-ukraine", Snippet::Iframe),
            ("weekend-reads", Snippet::Script),
            ("morning-briefing", Snippet::Script),
        ],
    );
    browser.goto(&site.url()).await.unwrap();
    for slug in ["morning-briefing", "explaining-ukraine"] {
        browser.element(&format!("iframe[src$=\"/embed/{slug}\"]")).await.enter_frame().await.unwrap();
        browser.element(&format!("form[data-bulletin=\"{slug}\"]")).await;
        browser.enter_parent_frame().await.unwrap();
    }

    submit_box(&browser, "weekend-reads", BAD).await;
    assert_box_refused(&browser, "weekend-reads", BAD).await;
    assert_focus_in(&browser, "weekend-reads").await;
    submit_box(&browser, "weekend-reads", "reader@example.org").await;
    assert_box_thanks(&browser, "weekend-reads").await;
    assert_eq!(browser.current_url().await.unwrap().as_str(), site.url(), "the news page stays");
    assert_eq!(app.status_of("reader@example.org", "weekend-reads").await, Some(Pending));

    browser.element("iframe[src$=\"/embed/morning-briefing\"]").await.enter_frame().await.unwrap();
    submit_box(&browser, "morning-briefing", BAD).await;
    assert_box_refused(&browser, "morning-briefing", BAD).await;
    assert_focus_in(&browser, "morning-briefing").await;
    submit_box(&browser, "morning-briefing", "framed@example.org").await;
    assert_box_thanks(&browser, "morning-briefing").await;
    browser.enter_parent_frame().await.unwrap();
    assert_eq!(app.status_of("framed@example.org", "morning-briefing").await, Some(Pending));

    confirm_in_browser(&browser, &app, "reader@example.org").await;
    assert_eq!(app.status_of("reader@example.org", "weekend-reads").await, Some(Confirmed));

    browser.close().await;
    app.stop().await;
}

on_both_backends!(embedded_boxes_with_javascript);

/// A reader without JavaScript, on a phone: the iframe box answers inside
/// the frame at its own size, a pasted box hands over to Bulletin's page,
/// and Bulletin's own page shows a refused post so that it is heard and seen.
async fn without_javascript() {
    let Some((site, app)) = site_and_app(Backend::Sqlite).await else { return };
    let Some(browser) = Browser::without_javascript(PHONE).await else { return };
    publish_boxes(&site, &app, &[("morning-briefing", Snippet::Iframe), ("weekend-reads", Snippet::Script)]);
    browser.goto(&site.url()).await.unwrap();

    browser.element("iframe[src$=\"/embed/morning-briefing\"]").await.enter_frame().await.unwrap();
    submit_box(&browser, "morning-briefing", BAD).await;
    assert_box_refused(&browser, "morning-briefing", BAD).await;
    assert_eq!(browser.find_all(fantoccini::Locator::Css("form")).await.unwrap().len(), 1, "the box, not a page");
    submit_box(&browser, "morning-briefing", "framed@example.org").await;
    browser.text_containing("body", BOX_THANKS).await;
    assert!(!browser.has("#several").await, "an answer the size of the box, not Bulletin's page");
    browser.enter_parent_frame().await.unwrap();
    assert_eq!(browser.current_url().await.unwrap().as_str(), site.url(), "the news page stays");
    assert_eq!(app.status_of("framed@example.org", "morning-briefing").await, Some(Pending));

    submit_box(&browser, "weekend-reads", "pasted@example.org").await;
    browser.title_where("Bulletin's thank-you page", |t| t == "Thank you for signing up").await;
    browser.text_containing("main", PAGE_THANKS).await;
    assert!(browser.current_url().await.unwrap().as_str().starts_with(&app.base));
    assert_eq!(app.status_of("pasted@example.org", "weekend-reads").await, Some(Pending));

    // Bulletin's own page refuses an address: the title says so first, the
    // field has focus and names its error, which is red and announced.
    browser.goto(&app.url("/")).await.unwrap();
    let form = "form:has(input[type=hidden][name=newsletter][value=\"morning-briefing\"])";
    browser.element(&format!("{form} input[type=email]")).await.send_keys(BAD).await.unwrap();
    browser.element(&format!("{form} button[type=submit]")).await.click().await.unwrap();
    browser.title_where("a title starting with Error: ", |t| t.starts_with("Error: ")).await;
    let active = browser.active_element().await.unwrap();
    assert_eq!(active.attr("type").await.unwrap().as_deref(), Some("email"));
    assert_eq!(active.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
    assert_eq!(active.prop("value").await.unwrap().as_deref(), Some(BAD));
    let error_id = active.attr("aria-describedby").await.unwrap().expect("the field names its error");
    let error = browser.element(&format!("#{error_id}")).await;
    assert_eq!(error.text().await.unwrap(), INVALID);
    assert_eq!(error.attr("role").await.unwrap().as_deref(), Some("alert"));
    assert_eq!(colour(&browser, &error).await, RED);

    // The form for several newsletters, with none ticked: the choice's fieldset names its error.
    let several = "form:has(input[type=checkbox][name=newsletter])";
    browser.element(&format!("{several} input[type=email]")).await.send_keys("several@example.org").await.unwrap();
    browser.element(&format!("{several} button[type=submit]")).await.click().await.unwrap();
    let fieldset = browser.element("fieldset[aria-describedby]").await;
    let error_id = fieldset.attr("aria-describedby").await.unwrap().unwrap();
    let error = fieldset.find(fantoccini::Locator::Id(&error_id)).await.expect("the error sits in the fieldset");
    assert_eq!(error.text().await.unwrap(), "Please choose at least one newsletter");
    assert_eq!(colour(&browser, &error).await, RED);

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxes_and_pages_without_javascript() {
    common::bounded(without_javascript()).await;
}

/// Only a listed site may frame a box: Chromium refuses to show it on another.
async fn framing() {
    let unlisted = NewsSite::start().await;
    let Some((listed, app)) = site_and_app(Backend::Sqlite).await else { return };
    let Some(browser) = Browser::start(DESKTOP).await else { return };
    publish_boxes(&listed, &app, &[("morning-briefing", Snippet::Iframe)]);
    publish_boxes(&unlisted, &app, &[("morning-briefing", Snippet::Iframe)]);

    browser.goto(&listed.url()).await.unwrap();
    browser.element("iframe").await.enter_frame().await.unwrap();
    browser.element("form[data-bulletin=\"morning-briefing\"]").await;

    browser.goto(&unlisted.url()).await.unwrap();
    browser.element("iframe").await.enter_frame().await.unwrap();
    // The frame has finished with something (an error page), not still blank.
    let shown = browser
        .wait_until("the frame to finish loading", |client| async move {
            let state = client.execute("return [document.readyState, document.URL];", vec![]).await?;
            let (ready, url) = (state[0].as_str().unwrap_or_default(), state[1].as_str().unwrap_or_default());
            Ok(if ready == "complete" && url != "about:blank" { Ok(url.to_owned()) } else { Err(format!("{state}")) })
        })
        .await;
    assert!(shown.starts_with("chrome-error://"), "Chromium shows its refusal, not {shown}");
    assert!(!browser.has("form[data-bulletin]").await, "the box rendered on an unlisted site");
    assert!(!browser.has("input[type=email]").await);

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_from_an_unlisted_origin_is_refused() {
    common::bounded(framing()).await;
}

/// A reader whose browser autofills the address and who presses Enter at
/// once looks like a bot to the time-trap: they are asked to press once
/// more, and that second press signs them up.
async fn fast_autofill() {
    // Longer than the time from serving the page to the Enter press on a busy machine.
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| s.signup.min_submit_seconds = 5).await else { return };
    let Some(browser) = Browser::start(DESKTOP).await else { return };
    browser.goto(&app.url("/")).await.unwrap();
    let form = "form:has(input[type=hidden][name=newsletter][value=\"morning-briefing\"])";
    let field = browser.element(&format!("{form} input[type=email]")).await;
    browser.js("arguments[0].value = 'quick@example.org';", vec![serde_json::to_value(&field).unwrap()]).await;
    field.send_keys(&Key::Enter).await.unwrap();

    browser.title_where("One more step", |t| t == "One more step").await;
    browser.text_containing("main", "Please press Subscribe once more to finish signing up.").await;
    let again = browser.element("input[type=email][name=email]").await;
    assert_eq!(again.prop("value").await.unwrap().as_deref(), Some("quick@example.org"));
    assert_eq!(app.status_of("quick@example.org", "morning-briefing").await, None, "not signed up yet");

    app.clock.advance(6);
    browser.element("main form button[type=submit]").await.click().await.unwrap();
    // The page's script answers the second press in place; without it, the thank-you page says the same.
    browser.text_containing("main", "We've sent you a confirmation email.").await;
    assert_eq!(app.status_of("quick@example.org", "morning-briefing").await, Some(Pending));
    confirm_in_browser(&browser, &app, "quick@example.org").await;
    assert_eq!(app.status_of("quick@example.org", "morning-briefing").await, Some(Confirmed));

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_autofill_is_asked_to_press_once_more() {
    common::bounded(fast_autofill()).await;
}

/// Morning Briefing offers every rhythm (daily first) in Kyiv; Weekend Reads daily and weekly.
fn offer_rhythms(settings: &mut bulletin::config::Settings) {
    for n in &mut settings.newsletters {
        let rhythms: Vec<String> = match n.slug.as_str() {
            "morning-briefing" => vec!["daily".into(), "immediate".into(), "weekly".into()],
            "weekend-reads" => vec!["daily".into(), "weekly".into()],
            _ => continue,
        };
        n.digest =
            Some(bulletin::config::DigestSettings { timezone: "Europe/Kyiv".into(), rhythms, ..Default::default() });
    }
}

/// Where the reader lives: not the newsletters' own zone, so a lost zone shows.
const READER_ZONE: &str = "America/New_York";

/// A reader picks weekly on Bulletin's page (one newsletter's form, then the
/// form for several) and presses Subscribe before the time-trap's minimum:
/// the second press on "One more step" stores exactly weekly and their zone.
async fn second_press(backend: Backend, javascript: bool) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        offer_rhythms(s);
        // Longer than any busy machine takes between serving a page and the press that sends it.
        s.signup.min_submit_seconds = 60;
    })
    .await
    else {
        return;
    };
    let browser = if javascript { Browser::start(DESKTOP).await } else { Browser::without_javascript(DESKTOP).await };
    let Some(browser) = browser else { return };
    browser.set_time_zone(READER_ZONE).await;
    let forms = [
        ("one@example.org", "#morning-briefing", vec!["#rhythm-morning-briefing-weekly"], vec!["morning-briefing"]),
        (
            "several@example.org",
            "#several",
            vec!["#pick-morning-briefing", "#pick-weekend-reads", "#rhythm-several-weekly"],
            vec!["morning-briefing", "weekend-reads"],
        ),
    ];
    for (email, section, clicks, slugs) in forms {
        browser.goto(&app.url("/")).await.unwrap();
        let zone = browser.element(&format!("{section} input[name=timezone]")).await;
        if javascript {
            // The page's script fills the zone in from the browser.
            let filled = zone.prop("value").await.unwrap();
            assert_eq!(filled.as_deref(), Some(READER_ZONE));
        } else {
            // Without JavaScript the page cannot learn the zone; it stands here for one the
            // reader typed into the field the page shows after a zone it did not know.
            browser
                .js(
                    "arguments[0].value = arguments[1];",
                    vec![serde_json::to_value(&zone).unwrap(), READER_ZONE.into()],
                )
                .await;
        }
        for css in clicks {
            browser.element(css).await.click().await.unwrap();
        }
        browser.element(&format!("{section} input[type=email]")).await.send_keys(email).await.unwrap();
        // The clock stands still: this press comes before the minimum.
        browser.element(&format!("{section} button[type=submit]")).await.click().await.unwrap();
        browser.title_where("One more step", |t| t == "One more step").await;
        for slug in &slugs {
            assert_eq!(app.rhythm_of(email, slug).await, None, "nothing stored before the second press");
        }

        app.clock.advance(61);
        browser.element("main form button[type=submit]").await.click().await.unwrap();
        if javascript {
            // The page's script sends the second press to the API and answers in place.
            browser.text_containing("main [data-bulletin-status]", BOX_THANKS).await;
        } else {
            browser.title_where("the thank-you page", |t| t == "Thank you for signing up").await;
            browser.text_containing("main", PAGE_THANKS).await;
        }
        for slug in &slugs {
            let choice = Some((Some(Rhythm::Weekly), Some(READER_ZONE.to_owned())));
            assert_eq!(app.rhythm_of(email, slug).await, choice, "{email} on {slug}");
        }
    }
    browser.close().await;
    app.stop().await;
}

async fn second_press_with_javascript(backend: Backend) {
    second_press(backend, true).await;
}

async fn second_press_without_javascript(backend: Backend) {
    second_press(backend, false).await;
}

on_both_backends!(second_press_with_javascript, second_press_without_javascript);

/// The pages a reader sees, at desktop and phone width, as PNGs in docs/screenshots/.
async fn take_screenshots() {
    let Some((site, app)) = site_and_app(Backend::Sqlite).await else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    publish_boxes(&site, &app, &[("morning-briefing", Snippet::Iframe), ("weekend-reads", Snippet::Script)]);

    // One reader who confirmed (for the preferences page), one about to (for the confirm page).
    assert_eq!(app.signup_form("reader@example.org", &["morning-briefing"]).await.status(), 200);
    let confirmed = app.confirmation_link("reader@example.org", 1).await;
    let confirmed = app.http.post(&confirmed).send().await.unwrap().text().await.unwrap();
    let preferences = common::href(&confirmed, "/preferences/");
    assert_eq!(app.signup_form("new.reader@example.org", &["morning-briefing", "weekend-reads"]).await.status(), 200);
    let confirm = app.confirmation_link("new.reader@example.org", 1).await;

    for (window, name) in [(DESKTOP, "desktop"), (PHONE, "phone")] {
        let Some(browser) = Browser::start(window).await else { return };
        let shot = |page: &str| dir.join(format!("{page}-{name}.png"));
        shoot(&browser, &app.url("/"), "main h1", &shot("index")).await;
        shoot(&browser, &site.url(), "aside", &shot("embed")).await;

        browser.goto(&app.url("/")).await.unwrap();
        let form = "form:has(input[type=hidden][name=newsletter][value=\"morning-briefing\"])";
        browser.element(&format!("{form} input[type=email]")).await.send_keys(BAD).await.unwrap();
        browser.element(&format!("{form} button[type=submit]")).await.click().await.unwrap();
        browser.title_where("the refused post", |t| t.starts_with("Error: ")).await;
        browser.screenshot_page(&shot("error")).await;

        shoot(&browser, &confirm, "main form button", &shot("confirm")).await;
        shoot(&browser, &preferences, "main form", &shot("preferences")).await;
        browser.close().await;
    }
    app.stop().await;
}

async fn shoot(browser: &Browser, url: &str, ready: &str, path: &Path) {
    browser.goto(url).await.unwrap();
    browser.element(ready).await;
    browser.screenshot_page(path).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/screenshots/*.png: cargo test --test browser screenshots -- --ignored"]
async fn screenshots() {
    common::bounded(take_screenshots()).await;
}
