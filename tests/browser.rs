//! A reader in a real browser: headless Chromium (tests/common/browser.rs)
//! signs up on Bulletin's own page and in the boxes a news site embeds,
//! with JavaScript on and off, and confirms from the mail it receives.

mod common;

use bulletin::domain::SubscriptionStatus::{Confirmed, Pending};
use common::browser::{Browser, DESKTOP, PHONE};
use common::{Backend, TestApp};

/// Today's main page, with and without JavaScript: sign up, then confirm from the mail.
async fn main_page_signup(backend: Backend, javascript: bool) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let browser = if javascript { Browser::start(PHONE).await } else { Browser::without_javascript(DESKTOP).await };
    let Some(browser) = browser else { return };

    browser.goto(&app.url("/")).await.unwrap();
    browser.element("#email-morning-briefing").await.send_keys("reader@example.org").await.unwrap();
    browser.element("#morning-briefing button[type=submit]").await.click().await.unwrap();
    browser.text_containing("main", "We've sent you a confirmation email.").await;
    assert_eq!(app.status_of("reader@example.org", "morning-briefing").await, Some(Pending));

    let link = app.confirmation_link("reader@example.org", 1).await;
    browser.goto(&link).await.unwrap();
    browser.element("main form button[type=submit]").await.click().await.unwrap();
    browser.text_containing("main", "Successfully subscribed").await;
    assert_eq!(app.status_of("reader@example.org", "morning-briefing").await, Some(Confirmed));

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_page_signup_with_javascript() {
    common::bounded(main_page_signup(Backend::Sqlite, true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_page_signup_without_javascript() {
    common::bounded(main_page_signup(Backend::Sqlite, false)).await;
}
