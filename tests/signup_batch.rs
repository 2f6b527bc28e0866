//! One batch of signups, as the group commit writes it, holding every case
//! at once: each backend records it with its own statements, and both must
//! come to the same outcomes and the same rows.

mod common;

use bulletin::clock::Clock;
use bulletin::domain::{ConsentSource, EmailAddress, Rhythm, SubscriptionStatus, Zone};
use bulletin::store::{Consent, MailCap, RequestedSubscription, SignupOutcome, SignupRequest, Store};
use common::{Backend, MailSink, TestDb};

const CAP: MailCap = MailCap { min_interval_secs: 60, per_day: 3 };
const NOW: i64 = 1_800_000_000;

fn signup(email: &str, newsletters: &[RequestedSubscription], at: i64) -> SignupRequest {
    let consent = Consent {
        source: ConsentSource::Form,
        ip: Some(format!("192.0.2.{}", email.len())),
        user_agent: email.len().is_multiple_of(2).then(|| format!("agent of {email}")),
        at,
    };
    SignupRequest { email: EmailAddress::parse(email).unwrap(), newsletters: newsletters.to_vec(), consent }
}

async fn record(store: &Store, signups: &[SignupRequest], now: i64) -> Vec<SignupOutcome> {
    store.record_signups(signups, now, CAP).await.unwrap()
}

/// (newsletter, action, created_at) of each consent event, oldest first.
async fn consent(store: &Store, subscriber_id: i64) -> Vec<(i64, String, i64)> {
    let events = store.consent_events(subscriber_id).await.unwrap();
    events.into_iter().map(|e| (e.newsletter_id, e.action, e.created_at)).collect()
}

/// (newsletter, status) of each subscription, by newsletter.
async fn statuses(store: &Store, subscriber_id: i64) -> Vec<(i64, SubscriptionStatus)> {
    let subscriptions = store.subscriptions_of(subscriber_id).await.unwrap();
    subscriptions.into_iter().map(|s| (s.newsletter_id, s.status)).collect()
}

fn by_newsletter(mut subscriptions: Vec<(i64, SubscriptionStatus)>) -> Vec<(i64, SubscriptionStatus)> {
    subscriptions.sort_by_key(|(newsletter_id, _)| *newsletter_id);
    subscriptions
}

async fn mails(store: &Store, subscriber_id: i64) -> usize {
    store.confirmation_mails_since(subscriber_id, 0).await.unwrap().len()
}

/// New addresses, a repeat within the mail interval, a repeat after it, a
/// reader coming back after unsubscribing, a confirmed subscription asked
/// for again beside a new one, and an address at its daily mail cap, all in
/// one batch; then the same batch again a second later.
async fn a_batch_of_every_case(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let sink = MailSink::start();
    let services = bulletin::app::services(&common::test_settings(&db.url, &sink), Clock::system()).await.unwrap();
    let store = services.store.clone();
    let ids = services.signup.resolve(&["weekend-reads".to_owned(), "morning-briefing".to_owned()]).unwrap();
    let (weekend, morning) = (RequestedSubscription::plain(ids[0]), RequestedSubscription::plain(ids[1]));
    let consent_at = |at| Consent { source: ConsentSource::ConfirmLink, ip: None, user_agent: None, at };

    // Before the batch.
    let repeat = record(&store, &[signup("repeat@example.org", &[weekend], NOW - 10)], NOW - 10).await[0].clone();
    assert!(repeat.mail_queued);
    let later = record(&store, &[signup("later@example.org", &[weekend], NOW - 600)], NOW - 600).await[0].clone();
    let back = record(&store, &[signup("back@example.org", &[weekend], NOW - 7200)], NOW - 7200).await[0].clone();
    store.set_subscriptions(back.subscriber_id, &[ids[0]], &consent_at(NOW - 7000)).await.unwrap();
    store.unsubscribe(back.subscriber_id, ids[0], &consent_at(NOW - 6000)).await.unwrap();
    let kept = record(&store, &[signup("kept@example.org", &[weekend], NOW - 7200)], NOW - 7200).await[0].clone();
    store.set_subscriptions(kept.subscriber_id, &[ids[0]], &consent_at(NOW - 7000)).await.unwrap();
    for ago in [3000, 2000, 1000] {
        let capped = record(&store, &[signup("capped@example.org", &[weekend], NOW - ago)], NOW - ago).await;
        assert!(capped[0].mail_queued);
    }

    let daily = RequestedSubscription {
        newsletter_id: ids[1],
        rhythm: Some(Rhythm::Daily),
        zone: Some(Zone::parse("Europe/Paris").unwrap()),
    };
    let batch = [
        signup("new@example.org", &[weekend, daily], NOW),
        signup("repeat@example.org", &[weekend], NOW),
        signup("later@example.org", &[weekend], NOW),
        signup("back@example.org", &[weekend], NOW),
        signup("kept@example.org", &[weekend, morning], NOW),
        signup("capped@example.org", &[weekend], NOW),
        signup("Other.New@Example.org", &[morning], NOW),
    ];
    let outcomes = record(&store, &batch, NOW).await;
    let expected = [
        (vec![ids[0], ids[1]], true),
        (vec![ids[0]], false),
        (vec![ids[0]], true),
        (vec![ids[0]], true),
        (vec![ids[1]], true),
        (vec![ids[0]], false),
        (vec![ids[1]], true),
    ];
    let got: Vec<(Vec<i64>, bool)> = outcomes.iter().map(|o| (o.pending.clone(), o.mail_queued)).collect();
    let mut want: Vec<(Vec<i64>, bool)> = expected.to_vec();
    for (pending, _) in &mut want {
        pending.sort_unstable();
    }
    assert_eq!(got, want);
    assert_eq!(outcomes[1].subscriber_id, repeat.subscriber_id);
    assert_eq!(outcomes[2].subscriber_id, later.subscriber_id);
    assert_eq!(outcomes[3].subscriber_id, back.subscriber_id);
    assert_eq!(outcomes[4].subscriber_id, kept.subscriber_id);
    let [new, _, _, _, _, capped, other] = [0, 1, 2, 3, 4, 5, 6].map(|i| outcomes[i].subscriber_id);
    assert!(new != other && new > 0 && other > 0);

    use SubscriptionStatus::{Confirmed, Pending};
    assert_eq!(statuses(&store, new).await, by_newsletter(vec![(ids[0], Pending), (ids[1], Pending)]));
    let chosen = store.subscriptions_of(new).await.unwrap();
    let choice_of = |id| chosen.iter().find(|s| s.newsletter_id == id).map(|s| (s.rhythm, s.zone.map(|z| z.name())));
    assert_eq!(choice_of(ids[1]), Some((Some(Rhythm::Daily), Some("Europe/Paris"))));
    assert_eq!(choice_of(ids[0]), Some((None, None)));
    assert_eq!(statuses(&store, back.subscriber_id).await, vec![(ids[0], Pending)]);
    assert_eq!(statuses(&store, kept.subscriber_id).await, by_newsletter(vec![(ids[0], Confirmed), (ids[1], Pending)]));
    assert_eq!(store.subscriber_email(other).await.unwrap().as_deref(), Some("Other.New@example.org"));

    let signed = |n: &RequestedSubscription, at| (n.newsletter_id, "signup".to_owned(), at);
    let confirmed = |at| (ids[0], "confirm".to_owned(), at);
    let left = |at| (ids[0], "unsubscribe".to_owned(), at);
    assert_eq!(consent(&store, new).await.len(), 2);
    assert!(consent(&store, new).await.contains(&signed(&daily, NOW)));
    assert_eq!(consent(&store, repeat.subscriber_id).await, vec![signed(&weekend, NOW - 10)]);
    assert_eq!(consent(&store, later.subscriber_id).await, vec![signed(&weekend, NOW - 600), signed(&weekend, NOW)]);
    assert_eq!(
        consent(&store, back.subscriber_id).await,
        vec![signed(&weekend, NOW - 7200), confirmed(NOW - 7000), left(NOW - 6000), signed(&weekend, NOW)]
    );
    assert_eq!(
        consent(&store, kept.subscriber_id).await,
        vec![signed(&weekend, NOW - 7200), confirmed(NOW - 7000), signed(&morning, NOW)]
    );
    assert_eq!(consent(&store, capped).await.len(), 4, "a capped signup is still recorded");
    assert_eq!(consent(&store, other).await, vec![signed(&morning, NOW)]);

    let mails_of =
        [new, repeat.subscriber_id, later.subscriber_id, back.subscriber_id, kept.subscriber_id, capped, other];
    let mut counts = vec![];
    for id in mails_of {
        counts.push(mails(&store, id).await);
    }
    assert_eq!(counts, vec![1, 1, 2, 2, 2, 3, 1]);

    // The same batch a second later: every one a repeat within the interval.
    let again = record(&store, &batch, NOW + 1).await;
    assert!(again.iter().all(|o| !o.mail_queued), "{again:?}");
    assert_eq!(
        again.iter().map(|o| (o.subscriber_id, o.pending.clone())).collect::<Vec<_>>(),
        outcomes.iter().map(|o| (o.subscriber_id, o.pending.clone())).collect::<Vec<_>>()
    );
    let mut after = vec![];
    for id in mails_of {
        after.push((consent(&store, id).await.len(), mails(&store, id).await));
    }
    assert_eq!(after, vec![(2, 1), (1, 1), (2, 2), (4, 2), (3, 2), (4, 3), (1, 1)]);
    store.close().await;
}

on_both_backends!(a_batch_of_every_case);
