//! Framed boxes on a news site's page, in headless Chromium: a pasted
//! `--iframe` snippet sizes its frame to every state of the box (the form,
//! an error, the thank-you, "one more step", the per-IP limit), on a phone
//! and on a desktop; where the site runs no script the frame's default
//! height fits every state 320 px wide; two frames on a page each take
//! their own box's height, and no other origin's message moves them; and
//! without JavaScript the per-IP limit answers in the frame with the box and
//! the address kept.
//!
//! `cargo test --test frames -- --nocapture` prints the heights it measured.

mod common;

use bulletin::domain::SubscriptionStatus::Pending;
use common::boxes::{Snippet, email_field, site_and_app_with, snippet, snippet_configured, submit_box};
use common::browser::{Browser, DESKTOP, PHONE, Window};
use common::{Backend, TestApp};
use fantoccini::Locator;
use serde_json::json;

const SLUG: &str = "morning-briefing";
const INVALID: &str = "Please enter a correct email address";
const BOX_THANKS: &str = "Thank you for signing up for this newsletter. We've sent you a confirmation email.";
const ONCE_MORE: &str = "Please press Subscribe once more to finish signing up.";
const RATE_LIMITED: &str = "Too many signups from your network.";
/// Not an address: no `@`.
const BAD: &str = "reader.example.org";
/// Signups per minute from one address: exactly the posts the walk makes before it meets the limit.
const PER_MINUTE: u32 = 5;
/// Longer than any busy machine takes from serving a form to the press that sends it: a plain post is "one more step".
const MIN_SUBMIT: u64 = 60;

/// How tall one state of the box is, and how tall its frame.
struct Measured {
    state: &'static str,
    content: u64,
    frame: u64,
}

/// Waits (in the frame) until the box shows all of itself: the framed
/// document scrolls no further than the frame is tall. With the snippet's
/// script on the page the frame must also have taken the box's height; without
/// it (`sized: Some(default)`), the frame keeps the snippet's default.
async fn fits(browser: &Browser, slug: &str, state: &'static str, sized: Option<u64>) -> Measured {
    let css = frame_of(slug);
    let seen = browser
        .wait_until(&format!("the {state} to fit its frame"), |client| {
            let css = css.clone();
            async move {
                let inner = client
                    .execute(
                        "return [document.documentElement.scrollHeight, \
                     Math.ceil(document.body.getBoundingClientRect().height), document.readyState];",
                        vec![],
                    )
                    .await?;
                client.clone().enter_parent_frame().await?;
                let frame = client.find(Locator::Css(&css)).await?;
                let outer = client.execute("return arguments[0].clientHeight;", vec![json!(frame)]).await?;
                frame.enter_frame().await?;
                let (scroll, content) = (inner[0].as_u64().unwrap_or(u64::MAX), inner[1].as_u64().unwrap_or(0));
                let frame = outer.as_u64().unwrap_or(0);
                let ready = inner[2] == "complete";
                let fitted = sized.map_or(frame == content, |default| frame == default);
                let seen = format!("document {scroll} px (content {content} px) in a frame {frame} px tall");
                Ok(if ready && scroll <= frame && fitted { Ok((content, frame)) } else { Err(seen) })
            }
        })
        .await;
    Measured { state, content: seen.0, frame: seen.1 }
}

/// The frame of `slug`'s box, as the snippet names it.
fn frame_of(slug: &str) -> String {
    format!("iframe[name=\"bulletin-{slug}\"]")
}

/// Posts the box's form as a browser without its script would (`submit()` fires no submit event).
async fn post_plainly(browser: &Browser, slug: &str, address: &str) {
    let form = browser.element(&format!("form[data-bulletin=\"{slug}\"]")).await;
    let field = browser.element(&email_field(slug)).await;
    browser
        .js(
            "arguments[0].value = arguments[1]; arguments[2].submit();",
            vec![json!(field), json!(address), json!(form)],
        )
        .await;
}

/// Takes every signup the per-IP limit has left for this machine (the browser's address too).
async fn spend_the_limit(app: &TestApp, slug: &str) {
    for n in 0..=PER_MINUTE {
        if app.signup_api(&format!("spent{n}@example.org"), &[slug]).await.status() == 429 {
            return;
        }
    }
    panic!("the per-IP limit never answered 429");
}

/// Walks the box through every state in its frame and measures each. The
/// frame's page runs its script throughout; the site's does unless `sized` gives the frame's fixed height.
async fn walk(browser: &Browser, app: &TestApp, site_url: &str, slug: &str, sized: Option<u64>) -> Vec<Measured> {
    let mut measured = vec![];
    browser.goto(site_url).await.unwrap();
    browser.element(&frame_of(slug)).await.enter_frame().await.unwrap();
    browser.element(&format!("form[data-bulletin=\"{slug}\"]")).await;
    measured.push(fits(browser, slug, "box", sized).await);

    // Answered in place by the box's script, through the API.
    submit_box(browser, slug, BAD).await;
    browser.text_containing(&format!("#bulletin-{slug}-email-error"), INVALID).await;
    measured.push(fits(browser, slug, "error", sized).await);
    submit_box(browser, slug, "framed@example.org").await;
    browser.text_containing(&format!("form[data-bulletin=\"{slug}\"] [data-bulletin-status]"), BOX_THANKS).await;
    measured.push(fits(browser, slug, "thank-you", sized).await);
    assert_eq!(app.status_of("framed@example.org", slug).await, Some(Pending));

    // Answered by the server with a new page in the frame, as without the box's script.
    post_plainly(browser, slug, "step@example.org").await;
    browser.text_containing("main", ONCE_MORE).await;
    measured.push(fits(browser, slug, "one more step", sized).await);
    app.clock.advance(MIN_SUBMIT as i64 + 1);
    post_plainly(browser, slug, "step@example.org").await;
    browser.text_containing("main", BOX_THANKS).await;
    measured.push(fits(browser, slug, "thank-you page", sized).await);
    assert_eq!(app.status_of("step@example.org", slug).await, Some(Pending));
    browser.js("location.assign(arguments[0]);", vec![json!(app.url(&format!("/embed/{slug}")))]).await;
    browser.element(&format!("form[data-bulletin=\"{slug}\"] input[name=email][value=\"\"]")).await;
    app.clock.advance(MIN_SUBMIT as i64 + 1);
    post_plainly(browser, slug, BAD).await;
    browser.text_containing(&format!("#bulletin-{slug}-email-error"), INVALID).await;
    measured.push(fits(browser, slug, "error page", sized).await);

    // The per-IP limit, in place and as a page.
    spend_the_limit(app, slug).await;
    submit_box(browser, slug, "limited@example.org").await;
    browser.text_containing(&format!("#bulletin-{slug}-email-error"), RATE_LIMITED).await;
    measured.push(fits(browser, slug, "rate limit", sized).await);
    post_plainly(browser, slug, "limited@example.org").await;
    browser.text_containing("main .bulletin-notice", RATE_LIMITED).await;
    measured.push(fits(browser, slug, "rate limit page", sized).await);
    let field = browser.element(&email_field(slug)).await;
    assert_eq!(field.prop("value").await.unwrap().as_deref(), Some("limited@example.org"));
    assert_eq!(app.status_of("limited@example.org", slug).await, None);

    browser.enter_parent_frame().await.unwrap();
    assert_eq!(browser.current_url().await.unwrap().as_str(), site_url, "the news page stays");
    measured
}

fn settings(s: &mut bulletin::config::Settings) {
    s.signup.per_ip_per_minute = PER_MINUTE;
    s.signup.min_submit_seconds = MIN_SUBMIT;
}

fn report(width: &str, measured: &[Measured]) {
    for m in measured {
        eprintln!("frame {width}: {:<16} content {:>3} px, frame {:>3} px", m.state, m.content, m.frame);
    }
}

/// A pasted `--iframe` snippet on a phone and on a desktop: every state of
/// the box shows whole, the frame following it up and down.
async fn a_pasted_frame_fits_every_state(backend: Backend) {
    for window in [PHONE, DESKTOP] {
        let Some((site, app)) = site_and_app_with(backend, settings).await else { return };
        let Some(browser) = Browser::start(window).await else { return };
        site.publish(&format!("<aside>{}</aside>", snippet(&app, SLUG, Snippet::Iframe)));
        let measured = walk(&browser, &app, &site.url(), SLUG, None).await;
        report(&format!("{} px", window.width), &measured);
        let heights: std::collections::BTreeSet<u64> = measured.iter().map(|m| m.frame).collect();
        assert!(heights.len() > 1, "the frame follows the box: {heights:?}");
        browser.close().await;
        app.stop().await;
    }
}

on_both_backends!(a_pasted_frame_fits_every_state);

/// A site that strips the snippet's script: the frame keeps its default
/// height, which fits every state of every seed newsletter's box 320 px wide.
async fn default_height() {
    let Some(browser) = Browser::start(Window { width: 800, ..DESKTOP }).await else { return };
    let (mut tallest, mut default) = (0, 0);
    for slug in ["morning-briefing", "explaining-ukraine", "weekend-reads"] {
        let Some((site, app)) = site_and_app_with(Backend::Sqlite, settings).await else { return };
        let pasted = snippet(&app, slug, Snippet::Iframe);
        let frame_only = &pasted[..pasted.find("<script>").expect("the snippet's script")];
        let at = frame_only.find(" height=\"").expect("the frame's height") + " height=\"".len();
        default = frame_only[at..at + frame_only[at..].find('"').unwrap()].parse().expect("a height in pixels");
        assert!(frame_only.contains(&format!("height:{default}px")), "{frame_only}");
        site.publish(&format!("<div style=\"width:320px\">{frame_only}</div>"));
        let measured = walk(&browser, &app, &site.url(), slug, Some(default)).await;
        report(&format!("320 px, no script on the site, {slug}"), &measured);
        tallest = tallest.max(measured.iter().map(|m| m.content).max().unwrap());
        app.stop().await;
    }
    eprintln!("the tallest state 320 px wide: {tallest} px; the default height: {default} px");
    assert!(tallest <= default, "the tallest state is {tallest} px");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_height_fits_every_state_at_320_px() {
    common::bounded(default_height()).await;
}

/// Every newsletter offers rhythms, Explaining Ukraine's box (the tallest) has them.
fn rhythm_settings(s: &mut bulletin::config::Settings) {
    settings(s);
    for n in &mut s.newsletters {
        n.digest = Some(bulletin::config::DigestSettings {
            rhythms: vec!["daily".into(), "immediate".into(), "weekly".into()],
            ..Default::default()
        });
    }
}

/// The same for a box that offers rhythms: its snippet's taller default fits every state.
async fn rhythm_default_height() {
    let slug = "explaining-ukraine";
    let Some(browser) = Browser::start(Window { width: 800, ..DESKTOP }).await else { return };
    let Some((site, app)) = site_and_app_with(Backend::Sqlite, rhythm_settings).await else { return };
    let offer = format!(
        "[[newsletters]]\nslug = \"{slug}\"\nname = \"Explaining Ukraine\"\n\
         [newsletters.digest]\nrhythms = [\"daily\", \"immediate\", \"weekly\"]\n"
    );
    let pasted = snippet_configured(&app, slug, Snippet::Iframe, &offer);
    let frame_only = &pasted[..pasted.find("<script>").expect("the snippet's script")];
    let at = frame_only.find(" height=\"").expect("the frame's height") + " height=\"".len();
    let default: u64 = frame_only[at..at + frame_only[at..].find('"').unwrap()].parse().expect("a height in pixels");
    assert!(default > 420, "taller than a box without rhythms: {frame_only}");
    site.publish(&format!("<div style=\"width:320px\">{frame_only}</div>"));
    let measured = walk(&browser, &app, &site.url(), slug, Some(default)).await;
    report(&format!("320 px, no script on the site, {slug} with rhythms"), &measured);
    assert!(measured.iter().any(|m| m.content > 420), "the rhythm choice makes the box taller: {default}");
    app.stop().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_height_of_a_rhythm_box_fits_every_state_at_320_px() {
    common::bounded(rhythm_default_height()).await;
}

/// Without JavaScript, the per-IP limit answers inside the frame with the
/// box: the address kept, the reason announced, the news page still there.
async fn rate_limited_without_javascript(backend: Backend) {
    let Some((site, app)) = site_and_app_with(backend, |s| s.signup.per_ip_per_minute = 1).await else { return };
    let Some(browser) = Browser::without_javascript(PHONE).await else { return };
    site.publish(&format!("<aside>{}</aside>", snippet(&app, SLUG, Snippet::Iframe)));
    browser.goto(&site.url()).await.unwrap();
    browser.element(&frame_of(SLUG)).await.enter_frame().await.unwrap();
    submit_box(&browser, SLUG, BAD).await;
    browser.text_containing(&format!("#bulletin-{SLUG}-email-error"), INVALID).await;

    submit_box(&browser, SLUG, "kept@example.org").await;
    browser.text_containing("main .bulletin-notice[role=alert]", RATE_LIMITED).await;
    let url = browser.js("return document.URL;", vec![]).await;
    assert!(url.as_str().unwrap_or_default().starts_with(&app.url("/subscribe?box=")), "the box's answer: {url}");
    let title = browser.js("return document.title;", vec![]).await;
    assert_eq!(title, "Error: Subscribe to Morning Briefing", "the frame's title says so first");
    let field = browser.element(&email_field(SLUG)).await;
    assert_eq!(field.prop("value").await.unwrap().as_deref(), Some("kept@example.org"));
    assert_eq!(browser.find_all(Locator::Css("form")).await.unwrap().len(), 1, "the box, not a page");
    assert_eq!(app.status_of("kept@example.org", SLUG).await, None);
    browser.enter_parent_frame().await.unwrap();
    assert_eq!(browser.current_url().await.unwrap().as_str(), site.url(), "the news page stays");
    browser.close().await;
    app.stop().await;
}

on_both_backends!(rate_limited_without_javascript);

/// Two framed boxes on one page each take their own box's height, and a
/// message that does not come from Bulletin's origin moves neither.
async fn two_frames() {
    let Some((site, app)) = site_and_app_with(Backend::Sqlite, |_| {}).await else { return };
    let Some(browser) = Browser::start(PHONE).await else { return };
    let slugs = ["morning-briefing", "explaining-ukraine"];
    // The second in a narrow column, where its box is taller.
    let pasted = format!(
        "<aside>{}</aside><div style=\"width:320px\">{}</div>",
        snippet(&app, slugs[0], Snippet::Iframe),
        snippet(&app, slugs[1], Snippet::Iframe)
    );
    site.publish(&pasted);
    browser.goto(&site.url()).await.unwrap();
    let mut heights = vec![];
    for slug in slugs {
        browser.element(&frame_of(slug)).await.enter_frame().await.unwrap();
        heights.push(fits(&browser, slug, "box", None).await.frame);
        browser.enter_parent_frame().await.unwrap();
    }
    assert_ne!(heights[0], heights[1], "two boxes of different heights: {heights:?}");

    // The site's own page (or anything on it) posts a height: it is not Bulletin's origin.
    let forged = "window.addEventListener('message', function (e) { if (e.data === 'after') window.after = true; });\
                  window.postMessage({ bulletin: 'frame-height', frame: 'bulletin-morning-briefing', height: 40 }, '*');\
                  window.postMessage('after', '*');";
    browser.js(forged, vec![]).await;
    browser
        .wait_until("the message after the forged one", |client| async move {
            let seen = client.execute("return window.after === true;", vec![]).await?;
            Ok(if seen == true { Ok(()) } else { Err(format!("{seen}")) })
        })
        .await;
    let frame = browser.element(&frame_of(slugs[0])).await;
    let height = browser.js("return arguments[0].clientHeight;", vec![json!(frame)]).await;
    assert_eq!(height.as_u64(), Some(heights[0]), "a forged message moved the frame");
    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_frames_on_one_page_take_their_own_heights() {
    common::bounded(two_frames()).await;
}
