//! The reader's whole path, on both backends: sign up, confirm by mail,
//! manage preferences, leave with the RFC 8058 one-click POST.

mod common;

use bulletin::domain::SubscriptionStatus::{Confirmed, Pending, Unsubscribed};
use common::{Backend, TestApp};

async fn signup_confirm_unsubscribe(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };

    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for name in ["Morning Briefing", "Explaining Ukraine", "Weekend Reads", "Enter your email to subscribe"] {
        assert!(html.contains(name), "front page lists {name}");
    }

    let response = app.signup_form("Reader@Example.org", &["morning-briefing", "weekend-reads"]).await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(
        common::visible(&body).contains("Thank you for signing up. We've sent you a confirmation email."),
        "{body}"
    );
    assert_eq!(app.status_of("Reader@example.org", "morning-briefing").await, Some(Pending));

    // One mail covers both newsletters, as system mail.
    let mails = app.mail.wait_for("Reader@example.org", 1).await;
    let mail = &mails[0];
    let text = mail.text();
    assert!(text.contains("Morning Briefing") && text.contains("Weekend Reads"), "{text}");
    assert_eq!(mail.header("Auto-Submitted").as_deref(), Some("auto-generated"));
    assert!(mail.header("List-Unsubscribe-Post").is_none());
    assert!(mail.header("Message-ID").unwrap().ends_with("@example.com>"));
    let link = mail.link_to(&format!("{}/confirm/", app.base)).expect("link");
    assert!(mail.html().contains(&link), "the HTML part carries the same link");

    // Opening the link shows a button and changes nothing.
    let page = app.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Confirm subscription"));
    assert_eq!(app.status_of("Reader@example.org", "morning-briefing").await, Some(Pending));

    // Pressing it confirms both.
    let confirmed = app.http.post(&link).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);
    let html = confirmed.text().await.unwrap();
    assert!(html.contains("Successfully subscribed"), "{html}");
    assert_eq!(app.status_of("Reader@example.org", "morning-briefing").await, Some(Confirmed));
    assert_eq!(app.status_of("Reader@example.org", "weekend-reads").await, Some(Confirmed));
    assert_eq!(app.status_of("Reader@example.org", "explaining-ukraine").await, None);

    // Pressing again says so, and where to go from there (also when only opening the link).
    let again = app.http.post(&link).send().await.unwrap().text().await.unwrap();
    assert!(again.contains("already confirmed"), "{again}");
    assert!(again.contains("Manage your newsletters"), "{again}");
    let opened = app.http.get(&link).send().await.unwrap().text().await.unwrap();
    for page in [&again, &opened] {
        let preferences = app.http.get(common::href(page, "/preferences/")).send().await.unwrap();
        assert!(preferences.text().await.unwrap().contains("Newsletters for Reader@example.org"), "{page}");
    }

    // The preferences page (linked from the success page) lists every newsletter with its state.
    let preferences = common::href(&html, "/preferences/");
    let page = app.http.get(&preferences).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let prefs = page.text().await.unwrap();
    assert!(prefs.contains("Explaining Ukraine") && prefs.contains("Not subscribed"), "{prefs}");
    assert!(prefs.contains("Newsletters for Reader@example.org"), "the page says whose it is: {prefs}");
    let unsubscribe = common::href(&prefs, "/unsubscribe/");

    // A mail client's one-click unsubscribe: urlencoded, no cookies, no Origin, 200 without redirect.
    let one_click = app
        .http
        .post(&unsubscribe)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(one_click.status(), 200);
    let left = one_click.text().await.unwrap();
    let way_back = app.http.get(common::href(&left, "/preferences/")).send().await.unwrap().text().await.unwrap();
    assert!(way_back.contains("Newsletters for Reader@example.org"), "the way back is one link away: {way_back}");
    assert_eq!(app.status_of("Reader@example.org", "morning-briefing").await, Some(Unsubscribed));
    assert_eq!(app.status_of("Reader@example.org", "weekend-reads").await, Some(Confirmed), "only that newsletter");

    // The consent record holds the signup, the confirmation and the withdrawal.
    let subscriber = app.store.subscribers_page(1, None, 0, 10).await.unwrap();
    let events = app.store.consent_events(subscriber[0].subscriber_id).await.unwrap();
    let actions: Vec<(&str, &str)> = events.iter().map(|e| (e.action.as_str(), e.source.as_str())).collect();
    assert!(actions.contains(&("signup", "form")), "{actions:?}");
    assert!(actions.contains(&("confirm", "confirm-link")), "{actions:?}");
    assert!(actions.contains(&("unsubscribe", "one-click")), "{actions:?}");
    assert!(events.iter().all(|e| e.ip.as_deref() == Some("127.0.0.1")), "IP recorded");
    app.stop().await;
}

/// Gmail-style one-click arrives urlencoded; other providers send multipart/form-data.
async fn one_click_multipart_and_resubscribe(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup_api("multi@example.org", &["explaining-ukraine"]).await;
    let link = app.confirmation_link("multi@example.org", 1).await;
    let html = app.http.post(&link).send().await.unwrap().text().await.unwrap();
    let preferences = common::href(&html, "/preferences/");
    let prefs = app.http.get(&preferences).send().await.unwrap().text().await.unwrap();
    let unsubscribe = common::href(&prefs, "/unsubscribe/");

    let form = reqwest::multipart::Form::new().text("List-Unsubscribe", "One-Click");
    let response = app.http.post(&unsubscribe).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("unsubscribed from Explaining Ukraine"));
    assert_eq!(app.status_of("multi@example.org", "explaining-ukraine").await, Some(Unsubscribed));

    // A second POST is still a success (mail clients retry).
    assert_eq!(app.http.post(&unsubscribe).send().await.unwrap().status(), 200);

    // Back through the preferences page: tick two newsletters and save.
    let saved = app
        .post_form(
            &preferences.replace(&app.base, ""),
            &[("newsletter", "explaining-ukraine"), ("newsletter", "weekend-reads")],
            None,
        )
        .await;
    assert_eq!(saved.status(), 200);
    assert!(saved.text().await.unwrap().contains("Your preferences have been saved"));
    assert_eq!(app.status_of("multi@example.org", "explaining-ukraine").await, Some(Confirmed));
    assert_eq!(app.status_of("multi@example.org", "weekend-reads").await, Some(Confirmed));

    // Unticking everything leaves everything.
    app.post_form(&preferences.replace(&app.base, ""), &[("submitted", "1")], None).await;
    assert_eq!(app.status_of("multi@example.org", "weekend-reads").await, Some(Unsubscribed));
    app.stop().await;
}

async fn api_signup_and_case_insensitive_identity(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let response = app.signup_api("  Kim@Bücher.De ", &["morning-briefing"]).await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), serde_json::json!({"status": "pending"}));

    // The same reader in other letter case is the same subscriber.
    assert_eq!(app.signup_api("kim@BÜCHER.de", &["morning-briefing"]).await.status(), 202);
    let subscribers = app.subscribers("morning-briefing").await;
    assert_eq!(subscribers, vec![("Kim@xn--bcher-kva.de".to_owned(), Pending)], "stored once, domain in punycode");

    let link = app.confirmation_link("Kim@xn--bcher-kva.de", 1).await;
    assert_eq!(app.http.post(&link).send().await.unwrap().status(), 200);
    assert_eq!(app.status_of("Kim@xn--bcher-kva.de", "morning-briefing").await, Some(Confirmed));
    app.stop().await;
}

on_both_backends!(
    signup_confirm_unsubscribe,
    one_click_multipart_and_resubscribe,
    api_signup_and_case_insensitive_identity
);
