//! Upgrading a database that holds readers: nothing is lost, and ids freed
//! by an erasure are never handed out again.

mod common;

use common::db::Pool;
use common::{Backend, TestDb};

/// Applies only the migrations before `0003` (the schema as shipped before
/// ids were made never to repeat), from a copy of the migrations folder.
async fn migrate_to_before_0003(backend: Backend, url: &str) {
    migrate_to_before(backend, url, "0003").await;
}

/// Applies only the migrations numbered before `number`, from a copy of the migrations folder.
async fn migrate_to_before(backend: Backend, url: &str, number: &str) {
    let folder = match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    };
    let old = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < number {
            std::fs::copy(&path, old.path().join(name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(old.path()).await.unwrap();
    let store = bulletin::store::Store::connect(url, 1).await.unwrap();
    store.close().await; // creates the SQLite file
    match Pool::connect(url).await {
        Pool::Sqlite(pool) => migrator.run(&pool).await.unwrap(),
        Pool::Postgres(pool) => migrator.run(&pool).await.unwrap(),
    }
}

async fn upgrade_keeps_everything_and_ids_never_repeat(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    migrate_to_before_0003(backend, &db.url).await;
    let pool = Pool::connect(&db.url).await;
    pool.run(
        "INSERT INTO newsletters (id, slug, name, description, created_at) VALUES (1, 'morning-briefing', 'Morning', '', 1);
         INSERT INTO subscribers (id, email, email_key, created_at) VALUES
            (1, 'a@example.org', 'a@example.org', 10), (2, 'b@example.org', 'b@example.org', 11),
            (3, 'c@example.org', 'c@example.org', 12);
         INSERT INTO subscriptions (subscriber_id, newsletter_id, status, created_at) VALUES
            (1, 1, 'confirmed', 10), (2, 1, 'pending', 11), (3, 1, 'confirmed', 12);
         INSERT INTO consent_events (subscriber_id, newsletter_id, action, source, created_at) VALUES (1, 1, 'signup', 'form', 10);
         INSERT INTO issues (id, newsletter_id, subject, body_markdown, content_hash, status, created_at)
            VALUES (7, 1, 'Hello', 'Hi', 'h', 'done', 20);
         INSERT INTO deliveries (id, kind, issue_id, subscriber_id, status, next_attempt_at, created_at) VALUES
            (40, 'issue', 7, 1, 'sent', 20, 20), (41, 'issue', 7, 3, 'sent', 20, 20);",
    )
    .await;
    if backend == Backend::Postgres {
        // Rows inserted with explicit ids, as the identity columns would have numbered them.
        pool.run(
            "SELECT setval(pg_get_serial_sequence('subscribers', 'id'), 3);
             SELECT setval(pg_get_serial_sequence('issues', 'id'), 7);
             SELECT setval(pg_get_serial_sequence('deliveries', 'id'), 41);",
        )
        .await;
    }
    pool.close().await;

    let store = bulletin::store::Store::connect(&db.url, 2).await.unwrap();
    store.migrate().await.expect("the upgrade applies to a database with readers in it");
    let pool = Pool::connect(&db.url).await;
    assert_eq!(pool.count("SELECT COUNT(*) FROM subscribers").await, 3);
    assert_eq!(
        pool.count("SELECT COUNT(*) FROM subscriptions s JOIN subscribers r ON r.id = s.subscriber_id").await,
        3
    );
    assert_eq!(pool.count("SELECT COUNT(*) FROM consent_events").await, 1);
    assert_eq!(pool.count("SELECT COUNT(*) FROM deliveries d JOIN issues i ON i.id = d.issue_id").await, 2);
    assert_eq!(
        pool.count("SELECT COUNT(DISTINCT link_salt) FROM subscribers").await,
        3,
        "every reader has its own link salt"
    );
    if backend == Backend::Sqlite {
        assert_eq!(pool.count("SELECT COUNT(*) FROM pragma_foreign_key_check").await, 0);
        assert_eq!(pool.count("PRAGMA foreign_keys").await, 1, "foreign keys are on again");
    }

    // The newest reader leaves; the next one never gets their id.
    pool.run("DELETE FROM deliveries WHERE subscriber_id = 3; DELETE FROM subscribers WHERE id = 3").await;
    assert_eq!(pool.count("SELECT COUNT(*) FROM subscriptions WHERE subscriber_id = 3").await, 0, "erasure cascades");
    pool.run("INSERT INTO subscribers (email, email_key, created_at) VALUES ('d@example.org', 'd@example.org', 30)")
        .await;
    assert_eq!(pool.count("SELECT id FROM subscribers WHERE email_key = 'd@example.org'").await, 4);
    pool.run("DELETE FROM deliveries WHERE id = 41").await;
    pool.run(
        "INSERT INTO deliveries (kind, subscriber_id, status, next_attempt_at, created_at) VALUES ('confirmation', 1, 'queued', 30, 30)",
    )
    .await;
    assert!(pool.count("SELECT MAX(id) FROM deliveries").await > 41, "delivery ids (in Message-IDs) never repeat");
    pool.close().await;
    store.close().await;
}

/// Readers stored under an old name of their zone (Chromium says `Europe/Kiev`)
/// are moved to its canonical name, and their rhythm's past runs with them,
/// unless a run of the same period is already there.
async fn upgrade_moves_zone_aliases_to_their_canonical_names(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    migrate_to_before(backend, &db.url, "0011").await;
    let pool = Pool::connect(&db.url).await;
    pool.run(
        "INSERT INTO newsletters (id, slug, name, description, created_at) VALUES (1, 'morning-briefing', 'Morning', '', 1);
         INSERT INTO subscribers (id, email, email_key, created_at) VALUES
            (1, 'a@example.org', 'a@example.org', 10), (2, 'b@example.org', 'b@example.org', 11),
            (3, 'c@example.org', 'c@example.org', 12), (4, 'd@example.org', 'd@example.org', 13),
            (5, 'e@example.org', 'e@example.org', 14);
         INSERT INTO subscriptions (subscriber_id, newsletter_id, status, created_at, rhythm, timezone) VALUES
            (1, 1, 'confirmed', 10, 'daily', 'Europe/Kiev'), (2, 1, 'confirmed', 11, 'daily', 'Europe/Kyiv'),
            (3, 1, 'confirmed', 12, '', 'Asia/Calcutta'), (4, 1, 'confirmed', 13, '', ''),
            (5, 1, 'confirmed', 14, 'weekly', 'Europe/Amsterdam');
         INSERT INTO digest_runs (id, newsletter_id, stream, period_start, period_label, status, created_at) VALUES
            (1, 1, 'daily:Europe/Kiev', 100, 'd', 'issued', 100),
            (2, 1, 'daily:Europe/Kiev', 200, 'd', 'issued', 200),
            (3, 1, 'daily:Europe/Kyiv', 200, 'd', 'issued', 200),
            (4, 1, 'immediate:Europe/Kiev', 300, 'd', 'issued', 300),
            (5, 1, 'immediate:Europe/Zaporozhye', 300, 'd', 'issued', 300),
            (6, 1, 'schedule', 300, 'd', 'issued', 300);",
    )
    .await;
    pool.close().await;

    let store = bulletin::store::Store::connect(&db.url, 2).await.unwrap();
    store.migrate().await.expect("the upgrade applies");
    let pool = Pool::connect(&db.url).await;
    for (sql, why) in [
        (
            "SELECT COUNT(*) FROM subscriptions WHERE subscriber_id = 1 AND timezone = 'Europe/Kyiv'",
            "Europe/Kiev is Kyiv",
        ),
        ("SELECT COUNT(*) FROM subscriptions WHERE subscriber_id = 2 AND timezone = 'Europe/Kyiv'", "Kyiv stays"),
        (
            "SELECT COUNT(*) FROM subscriptions WHERE subscriber_id = 3 AND timezone = 'Asia/Kolkata'",
            "Calcutta is Kolkata",
        ),
        (
            "SELECT COUNT(*) FROM subscriptions WHERE subscriber_id = 4 AND timezone = ''",
            "the default stays the default",
        ),
        (
            "SELECT COUNT(*) FROM subscriptions WHERE subscriber_id = 5 AND timezone = 'Europe/Amsterdam'",
            "a zone.tab zone",
        ),
        ("SELECT COUNT(*) FROM digest_runs WHERE id = 1 AND stream = 'daily:Europe/Kyiv'", "a lone run moves"),
        ("SELECT COUNT(*) FROM digest_runs WHERE id = 2 AND stream = 'daily:Europe/Kiev'", "a period both ran stays"),
        ("SELECT COUNT(*) FROM digest_runs WHERE id = 3 AND stream = 'daily:Europe/Kyiv'", "and so does the other"),
        (
            "SELECT COUNT(*) FROM digest_runs WHERE id = 4 AND stream = 'immediate:Europe/Kiev'",
            "two aliases meeting stay",
        ),
        ("SELECT COUNT(*) FROM digest_runs WHERE id = 5 AND stream = 'immediate:Europe/Zaporozhye'", "both of them"),
        ("SELECT COUNT(*) FROM digest_runs WHERE id = 6 AND stream = 'schedule'", "the schedule's stream"),
    ] {
        assert_eq!(pool.count(sql).await, 1, "{why}: {sql}");
    }
    pool.close().await;
    store.close().await;
}

on_both_backends!(upgrade_keeps_everything_and_ids_never_repeat, upgrade_moves_zone_aliases_to_their_canonical_names);
