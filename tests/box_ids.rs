//! The same script box twice on one page (in the article and in the
//! footer, both pasted exactly as `bulletin newsletters snippet --script`
//! prints them): no id is on the page twice, with JavaScript on or off;
//! each field is named by its own label; and each box answers in itself
//! only, its error tied to its own field.

mod common;

use bulletin::domain::SubscriptionStatus::Pending;
use common::Backend;
use common::boxes::{Snippet, publish_boxes, site_and_app};
use common::browser::{Browser, DESKTOP};
use serde_json::{Value, json};

const MORNING: &str = "morning-briefing";
const INVALID: &str = "Please enter a correct email address";
const BOX_THANKS: &str = "Thank you for signing up for this newsletter. We've sent you a confirmation email.";
/// Not an address: no `@`.
const BAD: &str = "reader.example.org";

/// The n-th pasted box (1-based): each snippet sits in its own aside.
fn pasted(n: usize) -> String {
    format!("aside:nth-of-type({n}) form[data-bulletin]")
}

/// What the page says of its ids and of each box's field: the ids used more
/// than once, and per box whether its field is named by a label of its own
/// (by `for` or by wrapping it) and no label of another box points at it.
const SURVEY: &str = "
    const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
    const repeated = ids.filter((id, i) => ids.indexOf(id) !== i);
    const boxes = [...document.querySelectorAll('form[data-bulletin]')].map(form => {
      const field = form.querySelector('input[name=email]');
      const labels = [...document.querySelectorAll('label')].filter(label =>
        label.htmlFor ? document.getElementById(label.htmlFor) === field : label.contains(field));
      return {
        named: labels.map(l => l.textContent.replace(/\\s+/g, ' ').trim()),
        own: labels.every(l => form.contains(l)),
      };
    });
    return { repeated, boxes };";

/// Asserts no repeated ids and two boxes, each field named by its own label.
async fn assert_two_labelled_boxes(browser: &Browser) {
    let survey = browser.js(SURVEY, vec![]).await;
    assert_eq!(survey["repeated"], json!([]), "ids on the page twice: {survey}");
    let boxes = survey["boxes"].as_array().expect("boxes");
    assert_eq!(boxes.len(), 2, "{survey}");
    for (n, b) in boxes.iter().enumerate() {
        let named: Vec<&str> = b["named"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(named, ["Enter your email to subscribe to Morning Briefing"], "box {}: {survey}", n + 1);
        assert_eq!(b["own"], true, "box {} is named from another box: {survey}", n + 1);
    }
}

/// Of the n-th box: its field's `aria-describedby`, the text of the element
/// it names and whether that element is in the same box, the error's text,
/// the status's text, and whether the field has the focus.
async fn state_of(browser: &Browser, n: usize) -> Value {
    let script = "
        const form = document.querySelector(arguments[0]);
        const field = form.querySelector('input[name=email]');
        const describedby = field.getAttribute('aria-describedby');
        const described = describedby && document.getElementById(describedby);
        return {
          describedby,
          described: described ? described.textContent : null,
          described_here: !!described && form.contains(described),
          invalid: field.getAttribute('aria-invalid'),
          error: form.querySelector('.bulletin-error').textContent,
          status: form.querySelector('[data-bulletin-status]').textContent,
          focused: document.activeElement === field,
        };";
    browser.js(script, vec![json!(pasted(n))]).await
}

/// Types `address` into the n-th box and presses its button.
async fn submit_in(browser: &Browser, n: usize, address: &str) {
    let field = browser.element(&format!("{} input[name=email]", pasted(n))).await;
    field.clear().await.unwrap();
    field.send_keys(address).await.unwrap();
    browser.element(&format!("{} button[type=submit]", pasted(n))).await.click().await.unwrap();
}

/// A news page with the morning box in the article and again in the footer:
/// each is labelled, each answers in itself.
async fn the_same_box_twice(backend: Backend) {
    let Some((site, app)) = site_and_app(backend).await else { return };
    let Some(browser) = Browser::start(DESKTOP).await else { return };
    publish_boxes(&site, &app, &[(MORNING, Snippet::Script), (MORNING, Snippet::Script)]);
    browser.goto(&site.url()).await.unwrap();
    // The script has run once both fields carry an id.
    browser.element(&format!("{} input[name=email][id]", pasted(2))).await;
    browser.element(&format!("{} input[name=email][id]", pasted(1))).await;
    assert_two_labelled_boxes(&browser).await;

    // The second box's label focuses the second field, not the first.
    browser.element(&format!("{} .bulletin-row label", pasted(2))).await.click().await.unwrap();
    browser
        .wait_until("focus in the second field", |_| async {
            let state = state_of(&browser, 2).await;
            Ok(if state["focused"] == true { Ok(()) } else { Err(state.to_string()) })
        })
        .await;

    submit_in(&browser, 2, BAD).await;
    browser.text_containing(&format!("{} .bulletin-error", pasted(2)), INVALID).await;
    let second = state_of(&browser, 2).await;
    assert_eq!(second["invalid"], "true", "{second}");
    assert_eq!(second["described"], INVALID, "{second}");
    assert_eq!(second["described_here"], true, "the second field names its own error: {second}");
    assert_eq!(second["focused"], true, "{second}");
    let first = state_of(&browser, 1).await;
    assert_eq!(first["error"], "", "the first box shows no error: {first}");
    assert_eq!(first["invalid"], Value::Null, "{first}");
    assert_eq!(first["describedby"], Value::Null, "{first}");
    assert_ne!(first["describedby"], second["describedby"]);

    submit_in(&browser, 1, "reader@example.org").await;
    browser.text_containing(&format!("{} [data-bulletin-status]", pasted(1)), BOX_THANKS).await;
    let second = state_of(&browser, 2).await;
    assert_eq!(second["status"], "", "the thank-you is in the first box only: {second}");
    assert_eq!(second["error"], INVALID, "the second box keeps its own answer: {second}");
    assert_eq!(app.status_of("reader@example.org", MORNING).await, Some(Pending));
    assert_eq!(browser.current_url().await.unwrap().as_str(), site.url(), "the news page stays");
    assert_two_labelled_boxes(&browser).await;

    browser.close().await;
    app.stop().await;
}

on_both_backends!(the_same_box_twice);

/// The snippet as it was printed before it dropped its ids: sites pasted it, twice on some pages.
fn older_snippet(base: &str) -> String {
    let id = format!("bulletin-{MORNING}-email");
    format!(
        "<form class=\"bulletin\" data-bulletin=\"{MORNING}\" method=\"post\" action=\"{base}/subscribe\" novalidate>\
         <input type=\"hidden\" name=\"newsletter\" value=\"{MORNING}\">\
         <label for=\"{id}\">Enter your email to subscribe<span class=\"visually-hidden\"> to Morning Briefing</span></label>\
         <div class=\"bulletin-row\"><input type=\"email\" id=\"{id}\" name=\"email\" autocomplete=\"email\" required>\
         <button type=\"submit\">Subscribe<span class=\"visually-hidden\"> to Morning Briefing</span></button></div>\
         <p class=\"bulletin-error\" id=\"{id}-error\" role=\"alert\" hidden></p>\
         <p class=\"bulletin-status\" data-bulletin-status role=\"status\" aria-live=\"polite\"></p></form>\
         <script src=\"{base}/embed.js\" async></script>"
    )
}

/// A page that pasted the older snippet twice (the same ids in both) is
/// mended by the script it loads: the second copy takes ids of its own.
async fn older_snippets_twice() {
    let Some((site, app)) = site_and_app(Backend::Sqlite).await else { return };
    let Some(browser) = Browser::start(DESKTOP).await else { return };
    let older = older_snippet(&app.base);
    site.publish(&format!("<aside>{older}</aside>\n<aside>{older}</aside>\n"));
    browser.goto(&site.url()).await.unwrap();
    browser
        .wait_until("the second box renumbered", |_| async {
            let survey = browser.js(SURVEY, vec![]).await;
            Ok(if survey["repeated"] == json!([]) { Ok(()) } else { Err(survey.to_string()) })
        })
        .await;
    assert_two_labelled_boxes(&browser).await;

    submit_in(&browser, 2, BAD).await;
    browser.text_containing(&format!("{} .bulletin-error", pasted(2)), INVALID).await;
    let second = state_of(&browser, 2).await;
    assert_eq!(second["described_here"], true, "the second field names its own error: {second}");
    let first = state_of(&browser, 1).await;
    assert_eq!(first["error"], "", "the first box shows no error: {first}");

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_snippets_pasted_twice_are_renumbered() {
    common::bounded(older_snippets_twice()).await;
}

/// Without JavaScript the two pasted boxes carry no ids at all, so none
/// repeats, and each field is still named by the label around it.
async fn twice_without_javascript() {
    let Some((site, app)) = site_and_app(Backend::Sqlite).await else { return };
    let Some(browser) = Browser::without_javascript(DESKTOP).await else { return };
    publish_boxes(&site, &app, &[(MORNING, Snippet::Script), (MORNING, Snippet::Script)]);
    browser.goto(&site.url()).await.unwrap();
    browser.element(&format!("{} input[name=email]", pasted(2))).await;
    assert_two_labelled_boxes(&browser).await;

    // The second box still posts its own address to Bulletin's page.
    submit_in(&browser, 2, "footer@example.org").await;
    browser.title_where("Bulletin's thank-you page", |t| t == "Thank you for signing up").await;
    assert_eq!(app.status_of("footer@example.org", MORNING).await, Some(Pending));

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_box_twice_without_javascript() {
    common::bounded(twice_without_javascript()).await;
}
