//! Upgrading a database that holds readers: nothing is lost, and ids freed
//! by an erasure are never handed out again.

mod common;

use common::db::Pool;
use common::{Backend, TestDb};

/// Applies only the migrations before `0003` (the schema as shipped before
/// ids were made never to repeat), from a copy of the migrations folder.
async fn migrate_to_before_0003(backend: Backend, url: &str) {
    let folder = match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    };
    let old = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0003" {
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

on_both_backends!(upgrade_keeps_everything_and_ids_never_repeat);
