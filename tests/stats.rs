//! `bulletin stats`: an editor sees growth, churn and bounces per UTC day and
//! how each issue went, as exact numbers and as a page with charts.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Instant;

use bulletin::clock::Clock;
use bulletin::config::Settings;
use bulletin::domain::{ConsentSource, LinkKeys, SubscriptionStatus};
use bulletin::signup::roster;
use bulletin::stats::Day;
use bulletin::store::{Consent, DAY, MailCap, Store};
use common::bin::bulletin;
use common::browser::{Browser, DESKTOP};
use common::{Backend, TestApp, TestDb};
use serde_json::{Value, json};

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Moves an adjustable clock to noon (UTC) of the next day, so that what a
/// test does "on a day" cannot straddle midnight.
fn to_next_noon(clock: &Clock) -> Day {
    let now = clock.now();
    let next = Day(Day::of(now).0 + 1);
    clock.advance(next.start() + DAY / 2 - now);
    next
}

fn emails(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("{n}@example.org")).collect()
}

/// Four readers join, one address bounces the first issue, one reader leaves
/// the day after it and another ten days later, when a fifth joins.
async fn counts_a_known_history(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let d0 = to_next_noon(&app.clock);
    app.import_confirmed("morning-briefing", &emails(&["ada", "bo", "cy", "dee"])).await;
    app.import_confirmed("weekend-reads", &emails(&["ada"])).await;
    app.mail.reply_to_rcpt("dee@example.org", 550, "5.1.1 no such user");

    app.clock.advance(DAY);
    let issue = app.queue_issue("morning-briefing", "First light", "Hello, readers.").await;
    app.wait_issue(issue, "done").await;

    app.clock.advance(DAY);
    let mail = app.mail.wait_for("ada@example.org", 1).await;
    assert_eq!(app.one_click_unsubscribe(&mail[0]).await.status(), 200);

    app.clock.advance(10 * DAY);
    let mail = app.mail.wait_for("bo@example.org", 1).await;
    assert_eq!(app.one_click_unsubscribe(&mail[0]).await.status(), 200);
    app.import_confirmed("morning-briefing", &emails(&["eve"])).await;

    let dir = tempfile::tempdir().unwrap();
    let config = common::bin::write_config(dir.path(), app.database_url(), "");
    let day = |n: i64| Day(d0.0 + n).to_string();
    let report = json_of(&bulletin(&config, &["stats", "--format", "json"]));
    assert_eq!(report["days_are"], "UTC");
    let morning = &report["newsletters"].as_array().unwrap().iter().find(|n| n["slug"] == "morning-briefing").unwrap();
    assert_eq!(
        morning["days"],
        json!([
            {"day": day(0), "joined": 4, "unsubscribed": 0, "bounced": 0, "list_size": 4},
            {"day": day(1), "joined": 0, "unsubscribed": 0, "bounced": 1, "list_size": 4},
            {"day": day(2), "joined": 0, "unsubscribed": 1, "bounced": 0, "list_size": 3},
            {"day": day(12), "joined": 1, "unsubscribed": 1, "bounced": 0, "list_size": 3},
        ]),
        "{report:#}"
    );
    let issues = report["issues"].as_array().unwrap();
    assert_eq!(issues.len(), 1, "{report:#}");
    assert_eq!(issues[0]["subject"], "First light");
    assert_eq!(issues[0]["newsletter"], "morning-briefing");
    assert_eq!(
        [&issues[0]["delivered"], &issues[0]["bounced"], &issues[0]["failed"]],
        [&json!(3), &json!(1), &json!(0)],
        "{report:#}"
    );
    // ada left the day after the issue; bo ten days after: outside the week.
    assert_eq!(issues[0]["unsubscribed_within_7_days"], 1, "{report:#}");
    assert_eq!(issues[0]["complaints"], 0, "nobody reported it as spam: {report:#}");

    // One newsletter, from a day on: the list size still counts everyone who joined before.
    let since = json_of(&bulletin(
        &config,
        &["stats", "--newsletter", "morning-briefing", "--since", &day(2), "--format", "json"],
    ));
    let newsletters = since["newsletters"].as_array().unwrap();
    assert_eq!(newsletters.len(), 1, "{since:#}");
    let sizes: Vec<(&str, i64)> = newsletters[0]["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["day"].as_str().unwrap(), d["list_size"].as_i64().unwrap()))
        .collect();
    assert_eq!(sizes, vec![(day(2).as_str(), 3), (day(12).as_str(), 3)], "{since:#}");
    assert_eq!(since["issues"], json!([]), "the issue went out before --since");

    let weekend = json_of(&bulletin(&config, &["stats", "--newsletter", "weekend-reads", "--format", "json"]));
    assert_eq!(
        weekend["newsletters"][0]["days"],
        json!([{"day": day(0), "joined": 1, "unsubscribed": 0, "bounced": 0, "list_size": 1}])
    );
    assert_eq!(weekend["issues"], json!([]));

    let table = bulletin(&config, &["stats"]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("UTC") && text.contains("First light"), "{text}");

    let csv = bulletin(&config, &["stats", "--newsletter", "morning-briefing", "--format", "csv"]);
    let csv = String::from_utf8(csv.stdout).unwrap();
    let (days, issues) = csv.split_once("\n\n").expect("the days, a blank line, the issues");
    assert_eq!(days.lines().next(), Some("day (UTC),newsletter,joined,unsubscribed,bounced,list size"), "{csv}");
    assert_eq!(days.lines().nth(2), Some(format!("{},morning-briefing,0,0,1,4", day(1)).as_str()), "{csv}");
    assert_eq!(issues.lines().count(), 2, "{csv}");
    assert!(issues.lines().nth(1).unwrap().contains(",First light,"), "{csv}");

    let unknown = bulletin(&config, &["stats", "--newsletter", "nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no newsletter \"nope\""), "{unknown:?}");
    let bad_date = bulletin(&config, &["stats", "--since", "last week"]);
    assert!(!bad_date.status.success());
    assert!(String::from_utf8_lossy(&bad_date.stderr).contains("YYYY-MM-DD"), "{bad_date:?}");

    let page = dir.path().join("stats.html");
    let out = bulletin(&config, &["stats", "--html", page.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<svg").count(), 4, "list size, two newsletters' joins and leaves, deliveries");
    assert!(html.contains("First light") && html.contains("does not track opens or clicks"));
    assert!(!html.contains("http://") && !html.contains("https://"), "the page must fetch nothing");
    assert!(!html.contains("<script") && !html.contains("<link"), "one self-contained file");
    app.stop().await;
}

on_both_backends!(counts_a_known_history);

/// Readers joining a newsletter on one day, as an `--confirmed` import does.
async fn join(store: &Store, clock: &Clock, slug: &str, emails: &[String]) {
    let keys = LinkKeys::new(common::TEST_SECRET.as_bytes().to_vec(), vec![]);
    let newsletter = store.list_newsletters().await.unwrap().into_iter().find(|n| n.slug.as_str() == slug).unwrap();
    let csv = format!("email\n{}\n", emails.join("\n"));
    let cap = MailCap { min_interval_secs: 900, per_day: 3 };
    roster::import_csv(store, &keys, clock, &newsletter, csv.as_bytes(), true, cap).await.expect("import");
}

/// A year of a three-newsletter site, written through the store on SQLite:
/// steady growth with a spike, churn that rises after each issue, a weekly
/// issue every two or four weeks with a few bounces and failures. Then `bulletin
/// stats` on it (timed) and a screenshot of its page.
async fn generate_a_year() {
    use rand::{Rng, SeedableRng};
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let store = Store::connect(&db.url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let clock = Clock::adjustable();
    clock.advance(-366 * DAY);
    to_next_noon(&clock);
    let newsletters = store.sync_newsletters(&Settings::default().newsletters, clock.now()).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut readers = 0;
    let mut churn_boost = vec![0.0_f64; newsletters.len()];
    let ledger = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    for day in 0..365 {
        for (i, newsletter) in newsletters.iter().enumerate() {
            let (base, spike) = match i {
                0 => (5.0 + day as f64 / 45.0, if (150..154).contains(&day) { 60.0 / (day - 149) as f64 } else { 0.0 }),
                1 => (1.5, if (60..66).contains(&day) { 90.0 / (day - 59) as f64 } else { 0.0 }),
                _ => (2.0 + day as f64 / 120.0, 0.0),
            };
            let weekend = if day % 7 >= 5 { 0.6 } else { 1.0 };
            let joins = ((base + spike) * weekend * rng.random_range(0.5..1.5)).round() as usize;
            let names: Vec<String> = (0..joins).map(|k| format!("reader{}@example.org", readers + k)).collect();
            readers += joins;
            if !names.is_empty() {
                join(&store, &clock, newsletter.slug.as_str(), &names).await;
            }
            let confirmed =
                store.subscribers_page(newsletter.id, Some(SubscriptionStatus::Confirmed), 0, 100_000).await.unwrap();
            let rate = 0.0012 + churn_boost[i];
            churn_boost[i] *= 0.5;
            for row in confirmed.iter().filter(|_| rng.random_bool(rate)) {
                let consent = Consent { source: ConsentSource::OneClick, ip: None, user_agent: None, at: clock.now() };
                store.unsubscribe(row.subscriber_id, newsletter.id, &consent).await.unwrap();
            }
            let every = if i == 0 { 14 } else { 28 };
            if day % every == 3 + 4 * i {
                let subject = format!("{} no. {}", newsletter.name, day / every + 1);
                let (issue, _) = store
                    .create_issue(&bulletin::store::NewIssue {
                        newsletter_id: newsletter.id,
                        subject: &subject,
                        body_markdown: "Hello.",
                        content_hash: &format!("{day}-{i}"),
                        created_at: clock.now(),
                        send_at: clock.now(),
                        preheader: None,
                    })
                    .await
                    .unwrap();
                let bounce_every = rng.random_range(150..400);
                sqlx::query(
                    "UPDATE deliveries SET \
                     status = CASE WHEN (id * 7919) % $2 = 0 THEN 'bounced' WHEN (id * 104729) % 1300 = 0 THEN 'failed' ELSE 'sent' END, \
                     sent_at = $3, next_attempt_at = $3 WHERE issue_id = $1",
                )
                .bind(issue)
                .bind(bounce_every)
                .bind(clock.now() + 3600)
                .execute(&ledger)
                .await
                .unwrap();
                store.complete_issues(clock.now() + 3600).await.unwrap();
                churn_boost[i] = 0.004;
            }
        }
        clock.advance(DAY);
    }
    ledger.close().await;

    let dir = tempfile::tempdir().unwrap();
    let config = common::bin::write_config(dir.path(), &db.url, "");
    let started = Instant::now();
    let table = bulletin(&config, &["stats"]);
    let table_time = started.elapsed();
    assert!(table.status.success());
    let page = dir.path().join("stats.html");
    let started = Instant::now();
    let out = bulletin(&config, &["stats", "--html", page.to_str().unwrap(), "--format", "json"]);
    let html_time = started.elapsed();
    let report = json_of(&out);
    eprintln!(
        "a year: {readers} readers, {} issues; `bulletin stats` {table_time:?}, `bulletin stats --html` {html_time:?}",
        report["issues"].as_array().unwrap().len()
    );

    let Some(browser) = Browser::start(DESKTOP).await else { return };
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    browser.goto(&format!("file://{}", page.display())).await.unwrap();
    browser.element("main h1").await;
    browser.screenshot_page(&shots.join("stats-desktop.png")).await;
    browser.close().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/screenshots/stats-desktop.png: cargo test --test stats a_year -- --ignored --nocapture"]
async fn a_year() {
    tokio::time::timeout(std::time::Duration::from_secs(600), generate_a_year()).await.expect("within 10 minutes");
}
