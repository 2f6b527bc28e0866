//! Emailed links: scanners that open them change nothing, tokens expire, are
//! single use, and bad ones get a clear page.

mod common;

use bulletin::domain::SubscriptionStatus::{Confirmed, Pending};
use common::{Backend, TestApp};

/// A confirmed reader, their confirmation link and their preferences and unsubscribe links.
async fn confirmed_reader(app: &TestApp, email: &str) -> (String, String, String) {
    app.signup_api(email, &["morning-briefing"]).await;
    let confirm = app.confirmation_link(email, 1).await;
    let page = app.http.post(&confirm).send().await.unwrap().text().await.unwrap();
    let preferences = common::href(&page, "/preferences/");
    let prefs = app.http.get(&preferences).send().await.unwrap().text().await.unwrap();
    (confirm, preferences, common::href(&prefs, "/unsubscribe/"))
}

/// Outlook Safe Links and friends GET and HEAD every link in a mail.
async fn scanners_change_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup_api("pending@example.org", &["morning-briefing"]).await;
    let confirm = app.confirmation_link("pending@example.org", 1).await;
    let (_, preferences, unsubscribe) = confirmed_reader(&app, "confirmed@example.org").await;

    for link in [&confirm, &preferences, &unsubscribe] {
        for _ in 0..3 {
            let get = app.http.get(link).send().await.unwrap();
            assert_eq!(get.status(), 200, "{link}");
            assert_eq!(get.headers()["cache-control"], "no-store");
            assert_eq!(get.headers()["referrer-policy"], "no-referrer");
            let head = app.http.head(link).send().await.unwrap();
            assert_eq!(head.status(), 200);
        }
    }
    assert_eq!(app.status_of("pending@example.org", "morning-briefing").await, Some(Pending));
    assert_eq!(app.status_of("confirmed@example.org", "morning-briefing").await, Some(Confirmed));
    app.stop().await;
}

async fn expired_link_says_so(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup_api("late@example.org", &["weekend-reads"]).await;
    let link = app.confirmation_link("late@example.org", 1).await;
    app.clock.advance(73 * 3600);

    for response in [app.http.get(&link).send().await.unwrap(), app.http.post(&link).send().await.unwrap()] {
        assert_eq!(response.status(), 410);
        let html = response.text().await.unwrap();
        assert!(html.contains("expired"), "{html}");
        assert!(html.contains("href=\"/\""), "offers the form again");
    }
    assert_eq!(app.status_of("late@example.org", "weekend-reads").await, Some(Pending));

    // Signing up again sends a fresh link that works.
    app.signup_api("late@example.org", &["weekend-reads"]).await;
    let fresh = app.confirmation_link("late@example.org", 2).await;
    assert_ne!(fresh, link);
    assert_eq!(app.http.post(&fresh).send().await.unwrap().status(), 200);
    assert_eq!(app.status_of("late@example.org", "weekend-reads").await, Some(Confirmed));
    app.stop().await;
}

async fn tokens_are_single_use_and_hashed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (confirm, _, _) = confirmed_reader(&app, "once@example.org").await;
    let again = app.http.post(&confirm).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert!(again.text().await.unwrap().contains("already confirmed"));

    // Only a hash of the token is in the database.
    let token = confirm.rsplit('/').next().unwrap();
    let url = app.database_url().to_owned();
    let stored: Vec<String> = match url.starts_with("sqlite") {
        true => {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query_scalar("SELECT token_hash FROM confirmation_tokens").fetch_all(&pool).await.unwrap()
        }
        false => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query_scalar("SELECT token_hash FROM confirmation_tokens").fetch_all(&pool).await.unwrap()
        }
    };
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(token) && stored[0].len() == 64, "stored {stored:?}");
    app.stop().await;
}

async fn bad_tokens_get_a_clear_404(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (_, preferences, unsubscribe) = confirmed_reader(&app, "real@example.org").await;
    let tampered_unsub = {
        // Change one character inside the signature (never the same character).
        let mut chars: Vec<char> = unsubscribe.chars().collect();
        let i = chars.len() - 6;
        chars[i] = if chars[i] == 'x' { 'y' } else { 'x' };
        chars.into_iter().collect::<String>()
    };
    let swapped = preferences.replace("/preferences/", "/unsubscribe/");
    let bad = [
        "/confirm/nonsense".to_owned(),
        format!("/confirm/{}", "A".repeat(43)),
        format!("/confirm/{}", "%FF".repeat(20)),
        "/unsubscribe/AAAA".to_owned(),
        "/preferences/!!".to_owned(),
        tampered_unsub.replace(&app.base, ""),
        swapped.replace(&app.base, ""),
    ];
    for path in &bad {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let r = app.http.request(method.clone(), app.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 404, "{method} {path}");
            assert!(r.text().await.unwrap().contains("This link is not valid"));
        }
    }
    assert_eq!(app.status_of("real@example.org", "morning-briefing").await, Some(Confirmed));
    app.stop().await;
}

/// Links keep working after the secret is rotated, as long as the old one is listed.
async fn links_survive_key_rotation(backend: Backend) {
    let Some(mut app) = TestApp::spawn_with(backend, |s| s.server.secret = "first-secret".to_owned().into()).await
    else {
        return;
    };
    let (_, preferences, _) = confirmed_reader(&app, "rotate@example.org").await;
    let path = preferences.replace(&app.base, "");
    app.settings.server.secret = "second-secret".to_owned().into();
    app.restart().await;
    assert_eq!(app.http.get(app.url(&path)).send().await.unwrap().status(), 404, "unknown key");
    app.settings.server.previous_secrets = vec!["first-secret".to_owned().into()];
    app.restart().await;
    assert_eq!(app.http.get(app.url(&path)).send().await.unwrap().status(), 200, "old key still verifies");
    app.stop().await;
}

/// An erased reader's links die with them, and never act on whoever signs up
/// next: SQLite once handed the erased reader's id to the next signup, and
/// the old preferences link then showed and changed the newcomer's list.
async fn erased_readers_links_never_reach_the_next_reader(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    confirmed_reader(&app, "earlier@example.org").await;
    let (_, preferences, unsubscribe) = confirmed_reader(&app, "first@example.org").await;
    let first_id = subscriber_id(&app, "first@example.org").await;
    let email = bulletin::domain::EmailAddress::parse("first@example.org").unwrap();
    assert!(bulletin::signup::roster::erase(&app.store, &app.keys(), &app.clock, &email).await.unwrap());

    app.signup_api("second@example.org", &["weekend-reads"]).await;
    app.confirmation_link("second@example.org", 1).await;
    let second_id = subscriber_id(&app, "second@example.org").await;
    assert_ne!(second_id, first_id, "ids never repeat");

    for link in [&preferences, &unsubscribe] {
        let r = app.http.get(link).send().await.unwrap();
        assert_eq!(r.status(), 404, "{link}");
        let page = r.text().await.unwrap();
        assert!(!page.contains("Weekend Reads"), "shows nothing of anyone: {page}");
    }
    let fields = [("newsletter", "morning-briefing"), ("newsletter", "weekend-reads")];
    let r = app.post_form(&preferences.replace(&app.base, ""), &fields, None).await;
    assert_eq!(r.status(), 404);
    let r = app.http.post(&unsubscribe).body("List-Unsubscribe=One-Click").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        app.status_of("second@example.org", "weekend-reads").await,
        Some(Pending),
        "not confirmed by a stranger"
    );
    assert_eq!(app.status_of("second@example.org", "morning-briefing").await, None);

    // Links are sealed: nothing in them counts subscribers.
    let token = preferences.rsplit('/').next().unwrap();
    let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token).unwrap();
    let id = first_id.to_be_bytes();
    assert!(!raw.windows(8).any(|w| w == id), "the id is not readable in the link");
    app.stop().await;
}

/// Links in mail sent before the link format changed (version 1, naming the
/// row id) keep working for the readers they were sent to, and for nobody
/// stored after the change.
async fn links_of_the_first_format_still_work_for_their_readers(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    confirmed_reader(&app, "veteran@example.org").await;
    let veteran = subscriber_id(&app, "veteran@example.org").await;
    // The veteran was stored before the upgrade: move the format change after them.
    let url = app.database_url().to_owned();
    let cutoff = app.clock.now() + 1;
    let pool = common::db::Pool::connect(&url).await;
    pool.run(&format!("UPDATE settings SET value = '{cutoff}' WHERE name = 'legacy_links_before'")).await;
    pool.close().await;
    app.clock.advance(5);
    app.signup_api("newcomer@example.org", &["morning-briefing"]).await;
    let link = app.confirmation_link("newcomer@example.org", 1).await;
    assert_eq!(app.http.post(&link).send().await.unwrap().status(), 200);
    let newcomer = subscriber_id(&app, "newcomer@example.org").await;

    let veterans = app.http.get(app.url(&format!("/preferences/{}", legacy_link(2, veteran, 0)))).send().await.unwrap();
    assert_eq!(veterans.status(), 200, "an old link keeps working for its reader");
    let newcomers = legacy_link(1, newcomer, app.newsletter("morning-briefing").await.id);
    let r = app.http.post(app.url(&format!("/unsubscribe/{newcomers}"))).body("List-Unsubscribe=One-Click").send();
    assert_eq!(r.await.unwrap().status(), 404, "an old-format link never names a reader stored after the change");
    assert_eq!(app.status_of("newcomer@example.org", "morning-briefing").await, Some(Confirmed));
    app.stop().await;
}

/// A version 1 link as mail sent before the change carried it: version,
/// purpose, subscriber id, newsletter id, and 16 bytes of HMAC-SHA256.
fn legacy_link(purpose: u8, subscriber_id: i64, newsletter_id: i64) -> String {
    use hmac::Mac;
    let mut token = vec![1, purpose];
    token.extend_from_slice(&subscriber_id.to_be_bytes());
    token.extend_from_slice(&newsletter_id.to_be_bytes());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(common::TEST_SECRET.as_bytes()).unwrap();
    mac.update(b"link");
    mac.update(&token);
    token.extend_from_slice(&mac.finalize().into_bytes()[..16]);
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token)
}

async fn subscriber_id(app: &TestApp, email: &str) -> i64 {
    for slug in ["morning-briefing", "weekend-reads"] {
        let newsletter = app.newsletter(slug).await;
        let page = app.store.subscribers_page(newsletter.id, None, 0, 1000).await.unwrap();
        if let Some(row) = page.iter().find(|r| r.email == email) {
            return row.subscriber_id;
        }
    }
    panic!("{email} is not stored");
}

on_both_backends!(
    erased_readers_links_never_reach_the_next_reader,
    links_of_the_first_format_still_work_for_their_readers,
    scanners_change_nothing,
    expired_link_says_so,
    tokens_are_single_use_and_hashed,
    bad_tokens_get_a_clear_404,
    links_survive_key_rotation,
);
