//! Scheduled digests: stories from feeds become one digest per period,
//! sent once to every confirmed reader, never twice, nothing when nothing
//! is new, skipped when the box was down at the hour.

mod common;

use std::time::Duration;

use bulletin::app;
use bulletin::config::{DigestSettings, Settings};
use bulletin::digest::{Story, Trigger, Upcoming};
use bulletin::store::{DigestOutcome, DigestRunRow, DigestRunStatus};
use common::bin::bulletin;
use common::feed_server::{Entry, FeedServer};
use common::{Backend, MailSink, TestApp, TestDb};

/// A daily schedule whose next slot is about five minutes from `now` (UTC), and that slot.
fn schedule_soon(now: i64) -> (String, i64) {
    let slot = (now + 300).div_euclid(60) * 60 + 60;
    let (hour, minute) = (slot.rem_euclid(86_400) / 3600, slot.rem_euclid(3600) / 60);
    (format!("{minute} {hour} * * *"), slot)
}

fn digest(schedule: Option<String>, feeds: Vec<String>) -> DigestSettings {
    DigestSettings { schedule, feeds, ..DigestSettings::default() }
}

fn with_digest(settings: &mut Settings, digest: DigestSettings) {
    settings.newsletters[0].digest = Some(digest);
}

/// Waits (up to 30 s) until the newsletter's run for the period starting at `slot` exists.
async fn wait_run(app: &TestApp, slot: i64) -> DigestRunRow {
    let newsletter = app.newsletter("morning-briefing").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(run) = app.store.digest_run(newsletter.id, "schedule", slot).await.unwrap() {
            return run;
        }
        assert!(std::time::Instant::now() < deadline, "no digest run for slot {slot}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn readers(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("reader{i}@example.org")).collect()
}

async fn feeds_become_one_digest_per_period(backend: Backend) {
    let site = FeedServer::start().await;
    let now = chrono::Utc::now().timestamp();
    site.publish_rss(Entry {
        guid: "story-1".into(),
        title: "<b>Kyiv</b> &amp; Lviv wake up".into(),
        link: "https://news.test/kyiv".into(),
        summary: "<p>Trams run again.<script>alert(1)</script></p>".into(),
        published: now - 3600,
    });
    site.publish_atom(Entry {
        guid: "urn:story-2".into(),
        title: "Markets open calm".into(),
        link: "https://news.test/markets".into(),
        summary: "Nothing to see.".into(),
        published: now - 1800,
    });
    let (schedule, slot) = schedule_soon(now);
    let feeds = vec![site.url("/rss.xml"), site.url("/atom.xml")];
    let Some(app) = TestApp::spawn_with(backend, |s| with_digest(s, digest(Some(schedule.clone()), feeds))).await
    else {
        return;
    };
    app.import_confirmed("morning-briefing", &readers(3)).await;

    // On start, yesterday's slot is long past: recorded as late, not sent.
    let yesterday = wait_run(&app, slot - 86_400).await;
    assert_eq!(yesterday.status, DigestRunStatus::Skipped);
    assert!(yesterday.reason.as_deref().unwrap_or_default().starts_with("late"), "{yesterday:?}");
    assert_eq!(yesterday.issue_id, None);

    // The slot comes: one digest with both stories, to every reader.
    app.clock.advance(slot - app.clock.now() + 5);
    let run = wait_run(&app, slot).await;
    assert_eq!((run.status, run.items, run.recipients), (DigestRunStatus::Issued, 2, 3), "{run:?}");
    let issue = run.issue_id.expect("an issue");
    app.wait_issue(issue, "done").await;
    let label = chrono::DateTime::from_timestamp(slot, 0).unwrap().format("%-d %B %Y").to_string();
    for reader in readers(3) {
        let mails = app.mail.wait_for(&reader, 1).await;
        let mail = &mails[0];
        assert_eq!(mail.parsed().subject().unwrap(), format!("Morning Briefing — {label}"));
        let text = mail.text();
        assert!(text.contains("Kyiv & Lviv wake up"), "{text}");
        assert!(text.contains("https://news.test/kyiv") && text.contains("Trams run again."), "{text}");
        assert!(text.contains("Markets open calm"), "{text}");
        assert!(!text.contains('<') || !text.contains("<b>"), "markup in the text part: {text}");
        assert!(!text.contains("alert(1)"), "script text in the digest: {text}");
        // Newest first.
        assert!(text.find("Markets open calm") < text.find("Kyiv & Lviv"), "{text}");
        let html = mail.html();
        assert!(common::visible(&html).contains("Kyiv & Lviv wake up") && !html.contains("<b>"), "{html}");
        assert!(mail.header("List-Unsubscribe").is_some());
    }
    // The fetch just before the run asked with the ETag and was told nothing changed.
    let (requests, not_modified) = site.rss_requests();
    assert!(requests >= 2 && not_modified >= 1, "{requests} requests, {not_modified} answered 304");
    let newsletter = app.newsletter("morning-briefing").await;
    assert_eq!(app.store.items(newsletter.id, false, 100).await.unwrap().len(), 2, "each story stored once");

    // Another instance trying the same period sends nothing and says which issue it was.
    let other = app::services(&app.settings, app.clock.clone()).await.unwrap();
    match other.digests.run(&newsletter, Trigger::Editor).await.unwrap() {
        DigestOutcome::AlreadyRan(again) => assert_eq!(again.issue_id, Some(issue)),
        made => panic!("a second digest in one period: {made:?}"),
    }
    other.store.close().await;

    // Next day, nothing new: the run is recorded as skipped and nobody gets mail.
    app.clock.advance(86_400);
    let empty = wait_run(&app, slot + 86_400).await;
    assert_eq!(empty.status, DigestRunStatus::Skipped);
    assert_eq!(empty.reason.as_deref(), Some("nothing new"));
    assert_eq!(app.store.issues(Some(newsletter.id)).await.unwrap().len(), 1);
    for reader in readers(3) {
        assert_eq!(app.mail.mails_to(&reader).len(), 1, "{reader}");
    }
    app.stop().await;
}

async fn two_schedulers_make_one_digest(backend: Backend) {
    let now = chrono::Utc::now().timestamp();
    let (schedule, slot) = schedule_soon(now);
    let Some(app) = TestApp::spawn_with(backend, |s| with_digest(s, digest(Some(schedule.clone()), vec![]))).await
    else {
        return;
    };
    app.import_confirmed("morning-briefing", &readers(4)).await;
    let newsletter = app.newsletter("morning-briefing").await;
    let story = Story::new("Parliament votes", "https://news.test/vote", None, None).unwrap();
    app.store.add_items(newsletter.id, &[story], "cli", app.clock.now()).await.unwrap();
    // A second instance on the same database, running its own schedules.
    let second = app::services(&app.settings, app.clock.clone()).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(second.digests.clone().schedule(second.mail_queued.clone(), stopped));
    wait_run(&app, slot - 86_400).await;

    app.clock.advance(slot - app.clock.now() + 5);
    let run = wait_run(&app, slot).await;
    let issue = run.issue_id.expect("an issue");
    app.wait_issue(issue, "done").await;
    let _ = stop.send(true);
    scheduler.await.unwrap();
    let runs = app.store.digest_runs(Some(newsletter.id), 100).await.unwrap();
    assert_eq!(runs.iter().filter(|r| r.period_start == slot).count(), 1, "{runs:?}");
    assert_eq!(app.store.issues(Some(newsletter.id)).await.unwrap().len(), 1);
    for reader in readers(4) {
        let mails = app.mail.mails_to(&reader);
        assert_eq!(mails.len(), 1, "{reader}");
        assert!(mails[0].text().contains("Parliament votes"));
    }
    second.store.close().await;
    app.stop().await;
}

async fn a_broken_feed_stops_nothing_else(backend: Backend) {
    let site = FeedServer::start().await;
    let now = chrono::Utc::now().timestamp();
    site.publish_rss(Entry {
        guid: "g1".into(),
        title: "Good story".into(),
        link: "https://news.test/good".into(),
        summary: String::new(),
        published: now - 60,
    });
    let feeds = vec![site.url("/500"), site.url("/page.html"), site.url("/broken.xml"), site.url("/rss.xml")];
    let Some(app) = TestApp::spawn_with(backend, |s| with_digest(s, digest(None, feeds))).await else {
        return;
    };
    let newsletter = app.newsletter("morning-briefing").await;
    let earlier = Story::new("Stored before", "https://news.test/earlier", None, None).unwrap();
    app.store.add_items(newsletter.id, &[earlier], "cli", app.clock.now()).await.unwrap();

    // The running instance fetches too (on start, then every few minutes): whoever
    // stores the good story first, it is stored once, and the broken feeds fail here.
    let services = app::services(&app.settings, app.clock.clone()).await.unwrap();
    let gathered = services.digests.gather(&newsletter).await;
    assert_eq!(gathered.feeds, 4);
    let failed: Vec<&str> = gathered.failed.iter().map(|(url, _)| url.as_str()).collect();
    assert_eq!(failed, [site.url("/500"), site.url("/broken.xml"), site.url("/page.html")], "{gathered:?}");
    for (url, reason) in &gathered.failed {
        assert!(!reason.is_empty() && !reason.contains('\n') && !reason.contains(url.as_str()), "{url}: {reason}");
    }
    let state = app.store.feed_state(newsletter.id, &site.url("/500")).await.unwrap().expect("recorded");
    assert!(state.last_error.as_deref().unwrap_or_default().contains("500"), "{state:?}");
    let titles: Vec<String> =
        app.store.items(newsletter.id, true, 100).await.unwrap().into_iter().map(|i| i.title).collect();
    assert_eq!(titles.len(), 2, "{titles:?}");
    assert!(titles.contains(&"Good story".to_owned()) && titles.contains(&"Stored before".to_owned()));
    services.store.close().await;
    app.stop().await;
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An editor's day with a digest run from cron (no `schedule`): preview, run, run again, list.
async fn an_editor_previews_runs_and_lists_digests(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let mail = MailSink::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nsecret = \"{}\"\n[database]\nurl = \"{}\"\n[mail]\ntransport = \"smtp\"\nsmtp_url = \"smtp://{}\"\n\
             [[newsletters]]\nslug = \"morning-briefing\"\nname = \"Morning Briefing\"\n\
             [newsletters.digest]\ntimezone = \"Europe/Kyiv\"\n\
             [[newsletters]]\nslug = \"weekend-reads\"\nname = \"Weekend Reads\"\n",
            common::TEST_SECRET,
            db.url,
            mail.addr
        ),
    )
    .unwrap();
    let csv = dir.path().join("readers.csv");
    std::fs::write(&csv, "email\nada@example.org\nbob@example.org\n").unwrap();
    let import = bulletin(
        &config,
        &["subscribers", "import", "--newsletter", "morning-briefing", "--confirmed"]
            .iter()
            .copied()
            .chain([csv.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert!(import.status.success(), "{}", text(&import.stderr));
    let store = bulletin::store::Store::connect(&db.url, 2).await.unwrap();
    let newsletter =
        store.list_newsletters().await.unwrap().into_iter().find(|n| n.slug.as_str() == "morning-briefing").unwrap();
    let story =
        Story::new("Trains run <on time>", "https://news.test/trains", Some("A first since 2022."), None).unwrap();
    store.add_items(newsletter.id, &[story], "cli", chrono::Utc::now().timestamp()).await.unwrap();

    let html = dir.path().join("preview.html");
    let preview =
        bulletin(&config, &["digest", "preview", "--newsletter", "morning-briefing", "--html", html.to_str().unwrap()]);
    assert!(preview.status.success(), "{}", text(&preview.stderr));
    let shown = text(&preview.stdout);
    assert!(shown.contains("Trains run <on time>") && shown.contains("Recipients: 2"), "{shown}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Trains run &#60;on time&#62;") && page.contains("A first since 2022."), "{page}");
    assert_eq!(mail.count(), 0, "a preview sends nothing");

    let run = bulletin(&config, &["digest", "run", "--newsletter", "morning-briefing", "--yes"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    for reader in ["ada@example.org", "bob@example.org"] {
        let mails = mail.wait_for(reader, 1).await;
        assert!(mails[0].text().contains("Trains run <on time>"), "{}", mails[0].text());
    }

    // The same day again: nothing sent, exit 1, and the editor is told which issue it was.
    let again = bulletin(&config, &["digest", "run", "--newsletter", "morning-briefing", "--yes"]);
    assert_eq!(again.status.code(), Some(1));
    let said = text(&again.stderr);
    assert!(said.contains("already went out as issue #1"), "{said}");
    assert_eq!(said.lines().filter(|l| l.starts_with("error:")).count(), 1, "{said}");
    assert_eq!(mail.count(), 2, "nobody got a second digest");

    let list = bulletin(&config, &["digest", "list"]);
    let listed = text(&list.stdout);
    assert!(list.status.success() && listed.contains("issued") && listed.contains("#1"), "{listed}");

    let not_a_digest = bulletin(&config, &["digest", "run", "--newsletter", "weekend-reads", "--yes"]);
    assert_eq!(not_a_digest.status.code(), Some(1));
    assert!(text(&not_a_digest.stderr).contains("is not a digest"), "{}", text(&not_a_digest.stderr));
    store.close().await;
}

/// `max_items = 10000` is honoured as `digest preview` promises: one digest
/// of 10 000 stories, on SQLite too (at most 32 766 binds a statement).
async fn ten_thousand_stories_make_one_digest(backend: Backend) {
    let plan = DigestSettings { max_items: 10_000, ..digest(None, vec![]) };
    let Some(app) = TestApp::spawn_with(backend, |s| with_digest(s, plan)).await else {
        return;
    };
    let newsletter = app.newsletter("morning-briefing").await;
    let stories: Vec<Story> = (0..10_000)
        .map(|n| Story::new(&format!("Story {n}"), &format!("https://news.test/{n}"), None, None).unwrap())
        .collect();
    app.store.add_items(newsletter.id, &stories, "cli", app.clock.now()).await.unwrap();
    let services = app::services(&app.settings, app.clock.clone()).await.unwrap();
    let preview = services.digests.preview(&newsletter, Upcoming::Current).await.unwrap();
    assert_eq!(preview.stories.len(), 10_000);
    let DigestOutcome::Made(run) = services.digests.run(&newsletter, Trigger::Editor).await.unwrap() else {
        panic!("a new run")
    };
    assert_eq!((run.status, run.items), (DigestRunStatus::Issued, 10_000), "{run:?}");
    assert_eq!(app.store.items(newsletter.id, true, 10).await.unwrap().len(), 0, "every story went out");
    services.store.close().await;
    app.stop().await;
}

on_both_backends!(
    feeds_become_one_digest_per_period,
    two_schedulers_make_one_digest,
    a_broken_feed_stops_nothing_else,
    an_editor_previews_runs_and_lists_digests,
    ten_thousand_stories_make_one_digest
);
