//! Abuse of the signup form: enumeration, subscription bombing, bots, floods.

mod common;

use std::time::Duration;

use bulletin::clock::Clock;
use bulletin::domain::{ConsentSource, EmailAddress, SubscriptionStatus};
use bulletin::signup::Visitor;
use common::{Backend, MailSink, TestApp, TestDb};

/// Every accepted-looking signup answers with the same bytes, so the form
/// cannot be used to learn whether an address is subscribed.
async fn responses_do_not_reveal_membership(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let nl = ["morning-briefing"];

    // confirmed@: confirmed; unsub@: confirmed then unsubscribed; pending@: pending.
    app.signup_form("confirmed@example.org", &nl).await;
    let link = app.confirmation_link("confirmed@example.org", 1).await;
    let confirmed_page = app.http.post(&link).send().await.unwrap().text().await.unwrap();
    app.signup_form("unsub@example.org", &nl).await;
    let link = app.confirmation_link("unsub@example.org", 1).await;
    let page = app.http.post(&link).send().await.unwrap().text().await.unwrap();
    let prefs = common::href(&page, "/preferences/");
    let prefs_page = app.http.get(&prefs).send().await.unwrap().text().await.unwrap();
    app.http.post(common::href(&prefs_page, "/unsubscribe/")).send().await.unwrap();
    app.signup_form("pending@example.org", &nl).await;
    assert!(confirmed_page.contains("Successfully subscribed"));

    let new = snapshot(app.signup_form("new@example.org", &nl).await).await;
    // pending@ is also capped: one mail per 15 minutes.
    let pending = snapshot(app.signup_form("pending@example.org", &nl).await).await;
    let confirmed = snapshot(app.signup_form("confirmed@example.org", &nl).await).await;
    let unsubscribed = snapshot(app.signup_form("unsub@example.org", &nl).await).await;
    let honeypot = snapshot(
        app.post_form(
            "/subscribe",
            &[("email", "bot@example.org"), ("newsletter", "morning-briefing"), ("website", "http://spam")],
            None,
        )
        .await,
    )
    .await;
    assert_eq!(new.0, 200);
    for (label, other) in
        [("pending", &pending), ("confirmed", &confirmed), ("unsubscribed", &unsubscribed), ("honeypot", &honeypot)]
    {
        assert_eq!(&new, other, "{label} answers exactly like a new address");
    }

    let new = snapshot(app.signup_api("new2@example.org", &nl).await).await;
    for email in ["pending@example.org", "confirmed@example.org", "unsub@example.org"] {
        assert_eq!(new, snapshot(app.signup_api(email, &nl).await).await, "API answer for {email}");
    }

    // The honeypot hit was dropped: no subscriber, no mail.
    assert_eq!(app.status_of("bot@example.org", "morning-briefing").await, None);
    app.mail.assert_stays_at("bot@example.org", 0).await;
    // A confirmed reader signing up again gets no new mail.
    assert_eq!(app.mail.mails_to("confirmed@example.org").len(), 1);
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

/// Subscription bombing: one address submitted from many IPs gets at most
/// one confirmation mail per 15 minutes and three a day, across restarts.
async fn per_address_cap_holds_across_ips_and_restarts(backend: Backend) {
    let Some(mut app) = TestApp::spawn_with(backend, |s| {
        s.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        s.signup.per_ip_per_minute = 2;
    })
    .await
    else {
        return;
    };
    let victim = "victim@example.org";
    burst(&app, victim, 1).await;
    app.mail.wait_for(victim, 1).await;
    app.mail.assert_stays_at(victim, 1).await;

    app.clock.advance(16 * 60);
    burst(&app, victim, 2).await;
    app.mail.wait_for(victim, 2).await;

    // The cap lives in the database: a restarted server still knows it.
    app.restart().await;
    burst(&app, victim, 3).await;
    app.mail.assert_stays_at(victim, 2).await;

    app.clock.advance(16 * 60);
    burst(&app, victim, 4).await;
    app.mail.wait_for(victim, 3).await;
    app.clock.advance(16 * 60);
    burst(&app, victim, 5).await;
    app.mail.assert_stays_at(victim, 3).await; // three a day

    app.clock.advance(24 * 3600);
    burst(&app, victim, 6).await;
    app.mail.wait_for(victim, 4).await;
    app.stop().await;
}

/// Ten signups of `victim`, each from its own IP behind the trusted proxy.
async fn burst(app: &TestApp, victim: &str, round: u8) {
    for i in 0..10u8 {
        let ip = format!("198.51.{round}.{i}");
        let r = app.post_form("/subscribe", &[("email", victim), ("newsletter", "morning-briefing")], Some(&ip)).await;
        assert_eq!(r.status(), 200, "each IP is within its own limit");
        // True whether this one sent a mail or the cap held it back.
        let page = common::visible(&r.text().await.unwrap());
        assert!(page.contains("We've sent you a confirmation email."), "{page}");
        assert!(page.contains("signing up again won't send another right away"), "{page}");
    }
}

/// Concurrent signups of one address cannot race past the cap.
async fn concurrent_signups_send_one_mail(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let request = app.http.post(app.url("/api/subscriptions")).json(&serde_json::json!({
            "email": "race@example.org", "newsletters": ["weekend-reads"]
        }));
        set.spawn(async move { request.send().await.unwrap().status() });
    }
    for status in set.join_all().await {
        assert_eq!(status, 202);
    }
    app.mail.wait_for("race@example.org", 1).await;
    app.mail.assert_stays_at("race@example.org", 1).await;
    app.stop().await;
}

/// A surge of different readers, several of them signing up twice at once
/// and some for two newsletters: signups are written together in batches,
/// and still every reader gets exactly one confirmation mail listing what
/// they asked for, and every signup is recorded.
async fn surge_of_signups_each_recorded_once(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut set = tokio::task::JoinSet::new();
    for i in 0..60 {
        let newsletters = if i % 3 == 0 { vec!["weekend-reads", "morning-briefing"] } else { vec!["weekend-reads"] };
        for _ in 0..(1 + i % 2) {
            let request = app.http.post(app.url("/api/subscriptions")).json(&serde_json::json!({
                "email": format!("surge{i}@example.org"), "newsletters": newsletters
            }));
            set.spawn(async move { request.send().await.unwrap().status() });
        }
    }
    for status in set.join_all().await {
        assert_eq!(status, 202);
    }
    for i in 0..60 {
        let to = format!("surge{i}@example.org");
        let mails = app.mail.wait_for(&to, 1).await;
        assert_eq!(app.status_of(&to, "weekend-reads").await, Some(SubscriptionStatus::Pending), "{to}");
        let both = i % 3 == 0;
        assert_eq!(app.status_of(&to, "morning-briefing").await.is_some(), both, "{to}");
        assert_eq!(mails[0].text().contains("Morning Briefing"), both, "{to}: the mail lists what was asked for");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..60 {
        assert_eq!(app.mail.mails_to(&format!("surge{i}@example.org")).len(), 1, "surge{i}: one mail only");
    }
    app.stop().await;
}

/// Signups are written in batches; one the database refuses fails alone,
/// with nothing of it kept, and the others of its batch are stored.
async fn a_refused_signup_fails_alone(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let sink = MailSink::start();
    let services = bulletin::app::services(&common::test_settings(&db.url, &sink), Clock::system()).await.unwrap();
    let weekend = services.signup.resolve(&["weekend-reads".to_owned()]).unwrap()[0];
    let mut set = tokio::task::JoinSet::new();
    let together = std::sync::Arc::new(tokio::sync::Barrier::new(20));
    for i in 0..20 {
        let (signup, together) = (services.signup.clone(), together.clone());
        // A newsletter id no form can produce: the database refuses it (foreign key).
        let newsletters = if i == 7 { vec![weekend, 999_999] } else { vec![weekend] };
        set.spawn(async move {
            let email = EmailAddress::parse(&format!("batch{i}@example.org")).unwrap();
            together.wait().await;
            if i == 7 {
                // Not first: the first signup to arrive is often written alone.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let outcome = signup.subscribe(&email, &newsletters, ConsentSource::Api, &Visitor::default()).await;
            (i, outcome.is_ok())
        });
    }
    for (i, ok) in set.join_all().await {
        assert_eq!(ok, i != 7, "signup {i}");
    }
    let counts = services.store.subscription_counts().await.unwrap();
    assert_eq!(counts.get(&(weekend, SubscriptionStatus::Pending)), Some(&19), "{counts:?}");
    assert_eq!(counts.values().sum::<i64>(), 19, "nothing of the refused signup is kept: {counts:?}");
}

/// The per-IP limit answers 429 with a Retry-After of at least a second, and
/// X-Forwarded-For from an untrusted peer does not buy a fresh bucket.
async fn per_ip_limit(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.signup.per_ip_per_minute = 3).await else {
        return;
    };
    for i in 0..3 {
        let r = app
            .post_form(
                "/subscribe",
                &[("email", &format!("r{i}@example.org")), ("newsletter", "weekend-reads")],
                Some(&format!("203.0.113.{i}")),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let limited = app
        .post_form("/subscribe", &[("email", "r9@example.org"), ("newsletter", "weekend-reads")], Some("203.0.113.99"))
        .await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    assert!(common::visible(&limited.text().await.unwrap()).contains("Too many"));

    let api = app.signup_api("r10@example.org", &["weekend-reads"]).await;
    assert_eq!(api.status(), 429);
    assert!(api.headers().contains_key("retry-after"));
    assert_eq!(api.json::<serde_json::Value>().await.unwrap()["error"]["code"], "rate_limited");

    // Reading pages is not limited.
    assert_eq!(app.http.get(app.url("/")).send().await.unwrap().status(), 200);
    app.stop().await;
}

/// At 60 a minute the wait after a burst is a second: the page says "1
/// second", as a person would, and the API gives the same wait.
async fn a_one_second_wait_reads_as_one(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.signup.per_ip_per_minute = 60).await else {
        return;
    };
    let mut limited = None;
    for i in 0..70 {
        let r = app
            .post_form("/subscribe", &[("email", &format!("nobody-{i}")), ("newsletter", "weekend-reads")], None)
            .await;
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("the 61st signup within a second is limited");
    assert_eq!(limited.headers()["retry-after"], "1");
    let text = common::visible(&limited.text().await.unwrap());
    assert!(text.contains("try again in 1 second.") && !text.contains("1 seconds"), "{text}");
    app.stop().await;
}

/// A signed time-trap: a form posted faster than a person can is dropped
/// silently; one posted at human speed goes through.
async fn time_trap(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.signup.min_submit_seconds = 2).await else {
        return;
    };
    let page = app.http.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    let stamp = page.split("name=\"ts\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("stamp").to_owned();

    let fast = app
        .post_form(
            "/subscribe",
            &[("email", "fast@example.org"), ("newsletter", "weekend-reads"), ("ts", &stamp)],
            None,
        )
        .await;
    assert_eq!(fast.status(), 200, "a bot sees the usual answer");
    let forged = app
        .post_form(
            "/subscribe",
            &[("email", "forged@example.org"), ("newsletter", "weekend-reads"), ("ts", "1.AAAAAAAAAAAAAAAAAAAAAA")],
            None,
        )
        .await;
    assert_eq!(forged.status(), 200);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let human = app
        .post_form(
            "/subscribe",
            &[("email", "human@example.org"), ("newsletter", "weekend-reads"), ("ts", &stamp)],
            None,
        )
        .await;
    assert_eq!(human.status(), 200);
    app.mail.wait_for("human@example.org", 1).await;
    assert_eq!(app.status_of("fast@example.org", "weekend-reads").await, None);
    assert_eq!(app.status_of("forged@example.org", "weekend-reads").await, None);
    app.mail.assert_stays_at("fast@example.org", 0).await;
    app.stop().await;
}

on_both_backends!(
    responses_do_not_reveal_membership,
    per_address_cap_holds_across_ips_and_restarts,
    concurrent_signups_send_one_mail,
    surge_of_signups_each_recorded_once,
    a_refused_signup_fails_alone,
    per_ip_limit,
    a_one_second_wait_reads_as_one,
    time_trap,
);
