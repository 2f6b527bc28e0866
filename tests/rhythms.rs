//! Each reader's rhythm: daily and weekly digests at 07:00 in the reader's
//! own zone (across a change of daylight saving time), immediate mail per
//! story with bursts grouped, a change of rhythm that loses and repeats
//! nothing, and two schedulers that never send anything twice.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bulletin::app;
use bulletin::config::{DigestSettings, Settings};
use bulletin::digest::Story;
use bulletin::store::{DigestRunRow, DigestRunStatus};
use chrono::TimeZone;
use common::{Backend, TestApp};

fn rhythms(settings: &mut Settings) {
    settings.newsletters[0].digest = Some(DigestSettings {
        rhythms: vec!["daily".into(), "immediate".into(), "weekly".into()],
        send_hour: 7,
        weekly_day: "mon".into(),
        timezone: "UTC".into(),
        ..DigestSettings::default()
    });
}

fn utc(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

/// 07:00 on `date` in `zone`, as the reader's clock on the wall says it.
fn seven_am(zone: &str, (y, m, d): (i32, u32, u32)) -> i64 {
    let tz: chrono_tz::Tz = zone.parse().unwrap();
    tz.with_ymd_and_hms(y, m, d, 7, 0, 0).single().unwrap().timestamp()
}

/// Moves the clock once nothing is in flight: a message being handed to the
/// mail server when hours pass in a step would outlive its lease.
async fn move_to(app: &TestApp, at: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let counts: HashMap<String, i64> = app.store.delivery_counts(None).await.unwrap().into_iter().collect();
        if ["queued", "sending", "retry"].iter().all(|s| counts.get(*s).copied().unwrap_or(0) == 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "deliveries still in flight: {counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let now = app.clock.now();
    assert!(at >= now, "the clock only moves forward");
    app.clock.advance(at - now);
}

async fn wait_run(app: &TestApp, stream: &str, period_start: i64) -> DigestRunRow {
    let newsletter = app.newsletter("morning-briefing").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(run) = app.store.digest_run(newsletter.id, stream, period_start).await.unwrap() {
            if let Some(issue) = run.issue_id {
                app.wait_issue(issue, "done").await;
            }
            return run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {stream} run for {}",
            bulletin::clock::format_timestamp(period_start)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn add_story(app: &TestApp, title: &str) {
    let newsletter = app.newsletter("morning-briefing").await;
    let url = format!("https://news.test/{}", title.to_lowercase().replace(' ', "-"));
    let story = Story::new(title, &url, None, None).unwrap();
    app.store.add_items(newsletter.id, &[story], "cli", app.clock.now()).await.unwrap();
}

/// Confirmed readers with their rhythm and zone (`None`: the newsletter's default).
async fn readers(app: &TestApp, readers: &[(&str, Option<&str>, Option<&str>)]) {
    let emails: Vec<String> = readers.iter().map(|(e, _, _)| e.to_string()).collect();
    app.import_confirmed("morning-briefing", &emails).await;
    for (email, rhythm, zone) in readers {
        set_rhythm(app, email, *rhythm, *zone).await;
    }
}

async fn set_rhythm(app: &TestApp, email: &str, rhythm: Option<&str>, zone: Option<&str>) {
    let newsletter = app.newsletter("morning-briefing").await;
    let row = app
        .store
        .subscribers_page(newsletter.id, None, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.email == email)
        .expect("subscriber");
    assert!(app.store.set_rhythm(row.subscriber_id, newsletter.id, rhythm, zone).await.unwrap());
}

/// Every (reader, story) pair sent, straight from the ledger and the digests' story lists.
async fn delivered(db_url: &str) -> HashMap<(String, String), i64> {
    use sqlx::Connection;
    const SQL: &str = "SELECT s.email || ' ' || d.status, i.title, COUNT(*) FROM deliveries d \
         JOIN subscribers s ON s.id = d.subscriber_id JOIN issue_items ii ON ii.issue_id = d.issue_id \
         JOIN items i ON i.id = ii.item_id GROUP BY s.email, d.status, i.title";
    let rows: Vec<(String, String, i64)> = if db_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(db_url).await.unwrap();
        sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
        sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
    };
    let unsent: Vec<_> = rows.iter().filter(|(e, _, _)| !e.ends_with(" sent")).collect();
    assert!(unsent.is_empty(), "not sent: {unsent:?}");
    rows.into_iter().map(|(e, t, n)| ((e.trim_end_matches(" sent").to_owned(), t), n)).collect()
}

fn titles_of(mail: &common::smtp::ReceivedMail) -> String {
    mail.text()
}

async fn daily_and_weekly_digests_at_each_readers_seven_am(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, rhythms).await else {
        return;
    };
    readers(
        &app,
        &[
            ("kyiv@example.org", Some("daily"), Some("Europe/Kyiv")),
            ("ny@example.org", Some("daily"), Some("America/New_York")),
            ("utc@example.org", None, None),
            ("weekly@example.org", Some("weekly"), None),
        ],
    )
    .await;
    // A second instance on the same database runs its own schedules all week.
    let second = app::services(&app.settings, app.clock.clone()).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(second.digests.clone().schedule(second.mail_queued.clone(), stopped));

    // New York moves its clocks forward on Sunday 14 March 2027: 07:00 there is 12:00 UTC before, 11:00 after.
    move_to(&app, utc("2027-03-10T00:30:00Z")).await;
    assert_eq!(seven_am("America/New_York", (2027, 3, 13)), utc("2027-03-13T12:00:00Z"));
    assert_eq!(seven_am("America/New_York", (2027, 3, 15)), utc("2027-03-15T11:00:00Z"));
    // The runs missed before (the clock jumped) are skipped as late, and lose nothing.
    let missed = wait_run(&app, "daily:America/New_York", seven_am("America/New_York", (2027, 3, 9))).await;
    assert_eq!(missed.status, DigestRunStatus::Skipped);

    let zones =
        [("kyiv@example.org", "Europe/Kyiv"), ("utc@example.org", "UTC"), ("ny@example.org", "America/New_York")];
    for (n, day) in (10..=16).enumerate() {
        move_to(&app, utc(&format!("2027-03-{day}T01:00:00Z"))).await;
        add_story(&app, &format!("Story of March {day}")).await;
        for (reader, zone) in zones {
            let slot = seven_am(zone, (2027, 3, day));
            assert_eq!(app.mail.mails_to(reader).len(), n, "{reader} before 07:00 on {day} March");
            move_to(&app, slot + 30).await;
            let run = wait_run(&app, &format!("daily:{zone}"), slot).await;
            assert_eq!((run.status, run.items), (DigestRunStatus::Issued, 1), "{zone} {day}: {run:?}");
            let mails = app.mail.wait_for(reader, n + 1).await;
            let text = titles_of(&mails[n]);
            assert!(text.contains(&format!("Story of March {day}")), "{reader} {day}: {text}");
            assert_eq!(text.matches("Story of March").count(), 1, "{reader} {day}: {text}");
        }
        if day == 15 {
            let run = wait_run(&app, "weekly:UTC", seven_am("UTC", (2027, 3, 15))).await;
            assert_eq!(run.items, 6, "{run:?}");
        }
    }
    let _ = stop.send(true);
    scheduler.await.unwrap();
    let weekly = app.mail.mails_to("weekly@example.org");
    assert_eq!(weekly.len(), 1, "one weekly digest");
    for day in 10..=15 {
        assert!(weekly[0].text().contains(&format!("Story of March {day}")), "{}", weekly[0].text());
    }
    let pairs = delivered(app.database_url()).await;
    for (reader, _) in zones {
        for day in 10..=16 {
            assert_eq!(pairs.get(&(reader.to_owned(), format!("Story of March {day}"))), Some(&1), "{reader} {day}");
        }
    }
    assert!(pairs.values().all(|n| *n == 1), "a story went twice: {pairs:?}");
    second.store.close().await;
    app.stop().await;
}

async fn immediate_readers_get_each_story_once_and_a_switch_loses_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, rhythms).await else {
        return;
    };
    readers(
        &app,
        &[
            ("now@example.org", Some("immediate"), None),
            ("switch@example.org", Some("daily"), None),
            ("witness@example.org", Some("immediate"), None),
        ],
    )
    .await;
    move_to(&app, utc("2027-03-10T05:00:00Z")).await;
    wait_run(&app, "daily:UTC", utc("2027-03-09T07:00:00Z")).await;

    add_story(&app, "Alpha").await;
    move_to(&app, utc("2027-03-10T05:06:00Z")).await;
    let first = app.mail.wait_for("now@example.org", 1).await;
    assert_eq!(first[0].parsed().subject(), Some("Alpha"));

    // A burst within the grouping window: one mail.
    move_to(&app, utc("2027-03-10T05:10:00Z")).await;
    for title in ["Bravo", "Charlie", "Delta"] {
        add_story(&app, title).await;
        app.clock.advance(20);
    }
    move_to(&app, utc("2027-03-10T05:17:00Z")).await;
    let burst = app.mail.wait_for("now@example.org", 2).await;
    assert_eq!(burst[1].parsed().subject(), Some("Morning Briefing: 3 new stories"));

    // The daily reader switches to immediate a minute before 07:00: what waited goes now, once.
    move_to(&app, utc("2027-03-10T06:30:00Z")).await;
    add_story(&app, "Echo").await;
    move_to(&app, utc("2027-03-10T06:59:00Z")).await;
    set_rhythm(&app, "switch@example.org", Some("immediate"), None).await;
    move_to(&app, utc("2027-03-10T07:05:30Z")).await;
    let switched = app.mail.wait_for("switch@example.org", 1).await;
    for title in ["Alpha", "Bravo", "Charlie", "Delta", "Echo"] {
        assert!(switched[0].text().contains(title), "{}", switched[0].text());
    }
    // No daily reader is left at 07:00, so no daily run either (the pairs below show nothing went twice).

    // Back to daily: the next daily digest starts where the last mail stopped.
    move_to(&app, utc("2027-03-10T07:30:00Z")).await;
    set_rhythm(&app, "switch@example.org", Some("daily"), None).await;
    add_story(&app, "Foxtrot").await;
    move_to(&app, utc("2027-03-11T07:01:00Z")).await;
    wait_run(&app, "daily:UTC", utc("2027-03-11T07:00:00Z")).await;
    let daily = app.mail.wait_for("switch@example.org", 2).await;
    assert!(daily[1].text().contains("Foxtrot") && !daily[1].text().contains("Echo"), "{}", daily[1].text());
    app.mail.wait_for("now@example.org", 4).await;

    // Leaving and coming back: nothing from the weeks away, everything after.
    let last = app.mail.mails_to("now@example.org").pop().unwrap();
    assert_eq!(app.one_click_unsubscribe(&last).await.status(), 200);
    move_to(&app, utc("2027-03-12T09:00:00Z")).await;
    add_story(&app, "Golf").await;
    move_to(&app, utc("2027-03-12T09:06:00Z")).await;
    app.mail.wait_for("witness@example.org", 5).await;
    move_to(&app, utc("2027-03-20T08:00:00Z")).await;
    // The daily reader's digest with Golf has gone before Hotel exists (the
    // scheduler catches up after the jump; Hotel must not race into that run).
    let caught_up = app.mail.wait_for("switch@example.org", 3).await;
    assert!(caught_up[2].text().contains("Golf"), "{}", caught_up[2].text());
    app.signup_api("now@example.org", &["morning-briefing"]).await;
    let confirm = app.confirmation_link("now@example.org", 5).await;
    assert_eq!(app.http.post(&confirm).send().await.unwrap().status(), 200);
    move_to(&app, utc("2027-03-20T08:01:00Z")).await;
    add_story(&app, "Hotel").await;
    move_to(&app, utc("2027-03-20T08:07:00Z")).await;
    let back = app.mail.wait_for("now@example.org", 6).await;
    assert_eq!(back[5].parsed().subject(), Some("Hotel"), "{}", back[5].text());
    app.mail.wait_for("witness@example.org", 6).await;
    move_to(&app, utc("2027-03-20T08:08:00Z")).await;

    let pairs = delivered(app.database_url()).await;
    let once = |reader: &str, title: &str| pairs.get(&(reader.to_owned(), title.to_owned())) == Some(&1);
    for title in ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel"] {
        assert!(once("witness@example.org", title), "witness {title}: {pairs:?}");
        assert_eq!(once("now@example.org", title), title != "Golf", "now {title}: {pairs:?}");
        assert_eq!(once("switch@example.org", title), title != "Hotel", "switch {title}: {pairs:?}");
    }
    assert!(pairs.values().all(|n| *n == 1), "a story went twice: {pairs:?}");
    app.stop().await;
}

/// An operator takes "weekly" out of `rhythms`: its readers get the default
/// (daily) from the next start, with nothing lost, instead of nothing at all.
async fn a_rhythm_taken_off_the_offer_falls_back_to_the_default(backend: Backend) {
    let Some(mut app) = TestApp::spawn_with(backend, rhythms).await else {
        return;
    };
    readers(&app, &[("weekly@example.org", Some("weekly"), None)]).await;
    app.settings.newsletters[0].digest.as_mut().unwrap().rhythms = vec!["daily".into(), "immediate".into()];
    app.restart().await;
    move_to(&app, utc("2027-03-10T05:00:00Z")).await;
    wait_run(&app, "daily:UTC", utc("2027-03-09T07:00:00Z")).await;
    add_story(&app, "Still here").await;
    move_to(&app, utc("2027-03-10T07:00:30Z")).await;
    let run = wait_run(&app, "daily:UTC", utc("2027-03-10T07:00:00Z")).await;
    assert_eq!(run.recipients, 1, "{run:?}");
    let mails = app.mail.wait_for("weekly@example.org", 1).await;
    assert!(mails[0].text().contains("Still here"), "{}", mails[0].text());
    app.stop().await;
}

/// By hand: the work of one day's runs for 1 000 000 daily readers spread
/// over 50 zones, hour by hour as the scheduler does it
/// (`cargo test --release --test rhythms plan -- --ignored --nocapture`).
async fn plan_a_day_for_a_million_readers(backend: Backend) {
    use bulletin::clock::Clock;
    let Some(db) = common::TestDb::create(backend).await else { return };
    let sink = common::MailSink::start();
    let mut settings = common::test_settings(&db.url, &sink);
    rhythms(&mut settings);
    let clock = Clock::adjustable();
    let services = app::services(&settings, clock.clone()).await.unwrap();
    let newsletter = services.signup.catalog().all()[0].clone();
    let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).step_by(7).take(50).collect();
    let values: Vec<String> = zones.iter().enumerate().map(|(k, z)| format!("({k}, '{z}')")).collect();
    let numbers = match backend {
        Backend::Sqlite => "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) ",
        Backend::Postgres => "WITH n(i) AS (SELECT generate_series(1, 1000000)) ",
    };
    let started = std::time::Instant::now();
    common::db::Pool::connect(&db.url)
        .await
        .run(&format!(
            "{numbers}INSERT INTO subscribers (email, email_key, created_at) \
             SELECT 'r' || i || '@example.org', 'r' || i || '@example.org', 0 FROM n"
        ))
        .await;
    common::db::Pool::connect(&db.url)
        .await
        .run(&format!(
            "WITH z(k, name) AS (VALUES {}) INSERT INTO subscriptions \
             (subscriber_id, newsletter_id, status, created_at, confirmed_at, rhythm, timezone) \
             SELECT s.id, {}, 'confirmed', 0, 0, 'daily', z.name FROM subscribers s JOIN z ON z.k = s.id % 50",
            values.join(", "),
            newsletter.id
        ))
        .await;
    eprintln!("{backend:?}: 1 000 000 readers in 50 zones stored in {:?}", started.elapsed());
    let plan = services.digests.plan(&newsletter).unwrap().clone();
    clock.advance(utc("2027-03-09T23:58:00Z") - clock.now());
    let started = std::time::Instant::now();
    let streams = services.digests.rhythm_streams(&newsletter, &plan).await.unwrap();
    eprintln!("{backend:?}: listing {} streams took {:?}", streams.len(), started.elapsed());
    for stream in &streams {
        services.digests.run_stream(&newsletter, &plan, stream).await.unwrap();
    }
    let story = Story::new("The day's story", "https://news.test/day", None, None).unwrap();
    services.store.add_items(newsletter.id, &[story], "cli", clock.now()).await.unwrap();
    let (mut total, mut worst, mut runs) = (Duration::ZERO, Duration::ZERO, 0);
    for hour in 0..24 {
        clock.advance(utc(&format!("2027-03-10T{hour:02}:59:00Z")) - clock.now());
        let started = std::time::Instant::now();
        for stream in &streams {
            if services.digests.run_stream(&newsletter, &plan, stream).await.unwrap().is_some() {
                runs += 1;
            }
        }
        let took = started.elapsed();
        total += took;
        worst = worst.max(took);
    }
    let queued: i64 = services.store.delivery_counts(None).await.unwrap().into_iter().map(|(_, n)| n).sum();
    eprintln!(
        "{backend:?}: one day of runs for 1 000 000 readers: {runs} runs, {queued} messages queued, {total:?} in all, \
         the busiest hour {worst:?}"
    );
    services.store.close().await;
}

mod measure {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, run by hand"]
    async fn plan_sqlite() {
        plan_a_day_for_a_million_readers(Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, run by hand"]
    async fn plan_postgres() {
        plan_a_day_for_a_million_readers(Backend::Postgres).await;
    }
}

/// An immediate mail is dated by its reader's day: at 17:02 on 7 December in
/// New York it is already the 8th in Kyiv, the newsletter's zone.
async fn an_immediate_mail_is_dated_by_the_readers_day(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        rhythms(s);
        s.newsletters[0].digest.as_mut().unwrap().timezone = "Europe/Kyiv".into();
    })
    .await
    else {
        return;
    };
    readers(&app, &[("ny@example.org", Some("immediate"), Some("America/New_York"))]).await;
    move_to(&app, utc("2027-12-07T21:55:00Z")).await;
    add_story(&app, "Evening news").await;
    move_to(&app, utc("2027-12-07T22:02:00Z")).await;
    let mail = app.mail.wait_for("ny@example.org", 1).await;
    let text = mail[0].text();
    assert!(text.contains("Evening news") && text.contains("7 December 2027"), "{text}");
    assert!(!text.contains("8 December"), "{text}");
    app.stop().await;
}

on_both_backends!(
    an_immediate_mail_is_dated_by_the_readers_day,
    a_rhythm_taken_off_the_offer_falls_back_to_the_default,
    daily_and_weekly_digests_at_each_readers_seven_am,
    immediate_readers_get_each_story_once_and_a_switch_loses_nothing
);
