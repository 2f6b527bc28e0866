//! The signup boxes a news site pastes, for the browser tests: the
//! snippets as `bulletin newsletters snippet` prints them, the site that
//! publishes them (on another loopback origin, listed in `allowed_origins`),
//! and a reader typing into a box.

use std::process::Command;

use super::browser::{Browser, NewsSite};
use super::{Backend, TestApp};

#[derive(Clone, Copy)]
pub enum Snippet {
    Iframe,
    Script,
}

/// What `bulletin --config FILE newsletters snippet SLUG` prints for this app (its public URL).
pub fn snippet(app: &TestApp, slug: &str, kind: Snippet) -> String {
    snippet_configured(app, slug, kind, "")
}

/// [`snippet`] with more configuration (TOML, such as `[[newsletters]]` tables) after the app's.
pub fn snippet_configured(app: &TestApp, slug: &str, kind: Snippet, more: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let text = format!(
        "[server]\nsecret = \"{}\"\npublic_url = \"{}\"\n[database]\nurl = \"{}\"\n{more}",
        super::TEST_SECRET,
        app.base,
        app.database_url()
    );
    std::fs::write(&config, text).unwrap();
    let flag = match kind {
        Snippet::Iframe => "--iframe",
        Snippet::Script => "--script",
    };
    let out = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .arg("--config")
        .arg(&config)
        .args(["newsletters", "snippet", slug, flag])
        .env("RUST_LOG", "error")
        .output()
        .expect("run bulletin newsletters snippet");
    assert!(out.status.success(), "snippet {slug} {flag}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A news site whose origin Bulletin lists in `allowed_origins`, and Bulletin.
pub async fn site_and_app(backend: Backend) -> Option<(NewsSite, TestApp)> {
    site_and_app_with(backend, |_| {}).await
}

/// [`site_and_app`] with more settings.
pub async fn site_and_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut bulletin::config::Settings),
) -> Option<(NewsSite, TestApp)> {
    let site = NewsSite::start().await;
    let origin = site.origin.clone();
    let app = TestApp::spawn_with(backend, |s| {
        s.server.allowed_origins = vec![origin];
        configure(s);
    })
    .await?;
    Some((site, app))
}

/// Publishes the site's article with these boxes pasted in, each in its own aside.
pub fn publish_boxes(site: &NewsSite, app: &TestApp, boxes: &[(&str, Snippet)]) {
    let body: String =
        boxes.iter().map(|(slug, kind)| format!("<aside>{}</aside>\n", snippet(app, slug, *kind))).collect();
    site.publish(&body);
}

/// The first box's email field: by its form, since a pasted box has ids only once embed.js gave it some.
pub fn email_field(slug: &str) -> String {
    format!("form[data-bulletin=\"{slug}\"] input[name=email]")
}

/// Types `address` into a box (in the current frame) and presses its button.
pub async fn submit_box(browser: &Browser, slug: &str, address: &str) {
    let field = browser.element(&email_field(slug)).await;
    field.clear().await.unwrap();
    field.send_keys(address).await.unwrap();
    browser.element(&format!("form[data-bulletin=\"{slug}\"] button[type=submit]")).await.click().await.unwrap();
}
