//! The editor's path on both backends: an issue goes to every confirmed
//! reader exactly once, through a real SMTP server, and survives faults.

mod common;

use bulletin::domain::SubscriptionStatus::{Confirmed, Unsubscribed};
use common::{Backend, TestApp};
use mail_parser::MimeHeaders;

const ISSUE: &str = "# Good morning\n\nToday: **three stories** you need.\n\n- one\n- two\n";

fn readers(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}@example.org")).collect()
}

async fn issue_arrives_once_with_list_headers(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let all = readers("reader", 25);
    app.import_confirmed("morning-briefing", &all).await;
    // Not confirmed, or on another newsletter: not an audience.
    app.signup_api("pending@example.org", &["morning-briefing"]).await;
    app.import_confirmed("weekend-reads", &["other@example.org".to_owned()]).await;

    let id = app.queue_issue("morning-briefing", "Tuesday briefing", ISSUE).await;
    app.wait_issue(id, "done").await;
    assert_eq!(app.delivery_counts(id).await.get("sent"), Some(&25));

    let mut message_ids = std::collections::HashSet::new();
    for email in &all {
        let mails: Vec<_> = app
            .mail
            .mails_to(email)
            .into_iter()
            .filter(|m| m.header("Subject").as_deref() == Some("Tuesday briefing"))
            .collect();
        assert_eq!(mails.len(), 1, "{email} gets exactly one copy");
        let mail = &mails[0];
        let parsed = mail.parsed();
        let unsubscribe = mail.header("List-Unsubscribe").expect("List-Unsubscribe");
        assert!(
            unsubscribe.starts_with(&format!("<{}/unsubscribe/", app.base)) && unsubscribe.ends_with('>'),
            "{unsubscribe}"
        );
        assert_eq!(mail.header("List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
        assert_eq!(mail.header("List-Id").as_deref(), Some("Morning Briefing <morning-briefing.example.com>"));
        assert_eq!(mail.header("Precedence").as_deref(), Some("bulk"));
        assert!(mail.header("Auto-Submitted").is_none(), "an issue is not system mail");
        let message_id = mail.header("Message-ID").expect("Message-ID");
        assert!(message_id.ends_with("@example.com>"), "{message_id}");
        assert!(message_ids.insert(message_id));
        // multipart/alternative: text first, HTML last, both with the unsubscribe link.
        let content_type = mail.header("Content-Type").unwrap();
        assert!(content_type.starts_with("multipart/alternative"), "{content_type}");
        let parts: Vec<String> = parsed
            .parts
            .iter()
            .filter_map(|p| p.content_type().map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default())))
            .filter(|t| t.starts_with("text/"))
            .collect();
        assert_eq!(parts, vec!["text/plain", "text/html"]);
        let link = unsubscribe.trim_matches(['<', '>']);
        assert!(mail.text().contains(link) && mail.html().contains(link), "unsubscribe link in both parts");
        assert!(mail.html().contains("<strong>three stories</strong>"), "Markdown rendered");
    }
    assert!(
        app.mail
            .mails_to("pending@example.org")
            .iter()
            .all(|m| m.header("Subject").as_deref() != Some("Tuesday briefing"))
    );
    assert!(app.mail.mails_to("other@example.org").is_empty());

    // The header's one-click POST works as a mail client sends it.
    let mail = &app.mail.mails_to("reader3@example.org")[0];
    let r = app.one_click_unsubscribe(mail).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.status_of("reader3@example.org", "morning-briefing").await, Some(Unsubscribed));
    app.stop().await;
}

/// 451 is retried and delivered later; 550 5.1.1 ends bounced and suppresses the address.
async fn soft_and_hard_failures(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let mut all = readers("fine", 3);
    all.push("soft@example.org".into());
    all.push("gone@example.org".into());
    app.import_confirmed("weekend-reads", &all).await;
    app.mail.reply_to_rcpt("soft@example.org", 451, "4.7.1 Try again later");
    app.mail.reply_to_rcpt("gone@example.org", 550, "5.1.1 No such user");

    let id = app.queue_issue("weekend-reads", "Saturday", ISSUE).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !app.delivery_counts(id).await.contains_key("retry") {
        assert!(std::time::Instant::now() < deadline, "{:?}", app.delivery_counts(id).await);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(app.mail.mails_to("soft@example.org").is_empty());
    app.mail.clear_reply("soft@example.org");
    app.wait_issue(id, "done").await;

    let counts = app.delivery_counts(id).await;
    assert_eq!(counts.get("sent"), Some(&4), "{counts:?}");
    assert_eq!(counts.get("bounced"), Some(&1), "{counts:?}");
    assert_eq!(app.mail.mails_to("soft@example.org").len(), 1, "retried and delivered once");
    assert!(app.mail.mails_to("gone@example.org").is_empty());

    // The bounced address is suppressed: the next issue does not go to it.
    let newsletter = app.newsletter("weekend-reads").await;
    assert_eq!(app.store.audience_size(newsletter.id).await.unwrap(), 4);
    let next = app.queue_issue("weekend-reads", "Next Saturday", "More news.").await;
    app.wait_issue(next, "done").await;
    assert_eq!(app.delivery_counts(next).await.get("sent"), Some(&4));
    app.stop().await;
}

/// "User unknown" after the server took the recipient and the body is a
/// filter's disguise (NTT docomo, au): the delivery fails, the reader stays;
/// the same words in reply to RCPT suppress.
async fn an_unknown_user_after_data_is_not_suppressed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let all = ["filtered@example.org".to_owned(), "gone@example.org".to_owned(), "fine@example.org".to_owned()];
    app.import_confirmed("weekend-reads", &all).await;
    app.mail.reply_to_end_of_data("filtered@example.org", 550, "Unknown user filtered@example.org");
    app.mail.reply_to_rcpt("gone@example.org", 550, "Unknown user gone@example.org");

    let id = app.queue_issue("weekend-reads", "Saturday", ISSUE).await;
    app.wait_issue(id, "done").await;
    let counts = app.delivery_counts(id).await;
    assert_eq!(
        (counts.get("sent"), counts.get("bounced"), counts.get("failed")),
        (Some(&1), Some(&1), Some(&1)),
        "{counts:?}"
    );
    assert!(app.mail.mails_to("filtered@example.org").is_empty(), "refused at the end of data");

    // The next issue goes to the filtered reader again (now taken), not to the gone one.
    app.mail.clear_reply("filtered@example.org");
    let newsletter = app.newsletter("weekend-reads").await;
    assert_eq!(app.store.audience_size(newsletter.id).await.unwrap(), 2);
    let next = app.queue_issue("weekend-reads", "Next Saturday", "More news.").await;
    app.wait_issue(next, "done").await;
    assert_eq!(app.mail.mails_to("filtered@example.org").len(), 1);
    assert!(app.mail.mails_to("gone@example.org").is_empty());
    app.stop().await;
}

/// 5.7.x (policy, reputation) is not the reader's fault: no suppression, but
/// repeated refusals pause the issue until an editor resumes it.
async fn policy_refusals_pause_the_issue(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.sending.pause_after_policy_failures = 2;
        s.sending.concurrency = 1;
    })
    .await
    else {
        return;
    };
    let mut all = vec!["blocked0@example.org".to_owned(), "blocked1@example.org".to_owned()];
    all.extend(readers("later", 6));
    app.import_confirmed("explaining-ukraine", &all).await;
    app.mail.reply_to_rcpt("blocked0@example.org", 554, "5.7.1 Message rejected due to local policy");
    app.mail.reply_to_rcpt("blocked1@example.org", 554, "5.7.1 Message rejected due to local policy");

    let id = app.queue_issue("explaining-ukraine", "Weekly", ISSUE).await;
    app.wait_issue(id, "paused").await;
    let issue = app.store.issue(id).await.unwrap().unwrap();
    assert!(issue.paused_reason.unwrap().contains("5.7.1"));
    let counts = app.delivery_counts(id).await;
    assert_eq!(counts.get("failed"), Some(&2), "{counts:?}");
    let newsletter = app.newsletter("explaining-ukraine").await;
    assert_eq!(app.store.audience_size(newsletter.id).await.unwrap(), 8, "policy refusals suppress nobody");

    // Paused means paused: nothing more leaves.
    let sent_while_paused = app.mail.count();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(app.mail.count(), sent_while_paused);

    assert!(app.store.resume_issue(id).await.unwrap());
    app.wait_issue(id, "done").await;
    for email in readers("later", 6) {
        assert_eq!(app.mail.mails_to(&email).len(), 1, "{email}");
    }
    app.stop().await;
}

/// An unsubscribe takes effect for every message not yet handed to SMTP, mid-issue.
async fn unsubscribe_during_a_send(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.sending.rate_per_second = 5;
        s.sending.concurrency = 1;
    })
    .await
    else {
        return;
    };
    let all = readers("slow", 12);
    app.import_confirmed("morning-briefing", &all).await;
    let id = app.queue_issue("morning-briefing", "Slowly", ISSUE).await;
    app.mail.wait_for("slow0@example.org", 1).await;

    // The last reader leaves with the one-click link their copy would carry.
    let last = app.subscribers("morning-briefing").await;
    assert_eq!(last.len(), 12);
    let newsletter = app.newsletter("morning-briefing").await;
    let page = app.store.subscribers_page(newsletter.id, None, 0, 100).await.unwrap();
    let leaving = page.iter().find(|r| r.email == "slow11@example.org").unwrap();
    let link_ref = app.store.link_ref(leaving.subscriber_id).await.unwrap().unwrap();
    let link = app.links().unsubscribe_url(link_ref, newsletter.id);
    let r = app.http.post(&link).body("List-Unsubscribe=One-Click").send().await.unwrap();
    assert_eq!(r.status(), 200);

    app.wait_issue(id, "done").await;
    assert!(app.mail.mails_to("slow11@example.org").is_empty(), "not sent after the unsubscribe");
    let counts = app.delivery_counts(id).await;
    assert_eq!(counts.get("sent"), Some(&11), "{counts:?}");
    assert_eq!(counts.get("skipped"), Some(&1), "{counts:?}");
    assert_eq!(app.status_of("slow10@example.org", "morning-briefing").await, Some(Confirmed));
    app.stop().await;
}

/// With `[mail.dkim]`, every copy is signed over the RFC 8058 headers too.
async fn dkim_signs_the_list_headers(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.mail.dkim = Some(bulletin::config::DkimSettings {
            selector: "test".into(),
            domain: "example.com".into(),
            key_file: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dkim-test.pem").into(),
        });
    })
    .await
    else {
        return;
    };
    app.import_confirmed("weekend-reads", &["signed@example.org".to_owned()]).await;
    let id = app.queue_issue("weekend-reads", "Signed", ISSUE).await;
    app.wait_issue(id, "done").await;
    let mail = &app.mail.wait_for("signed@example.org", 1).await[0];
    let signature = mail.header("DKIM-Signature").expect("signed").replace(['\r', '\n', ' ', '\t'], "");
    assert!(signature.contains("d=example.com;") && signature.contains("s=test;"), "{signature}");
    let signed: Vec<String> = signature
        .split(';')
        .find_map(|tag| tag.strip_prefix("h="))
        .expect("h= tag")
        .split(':')
        .map(str::to_lowercase)
        .collect();
    for header in ["from", "subject", "list-unsubscribe", "list-unsubscribe-post", "list-id", "message-id"] {
        assert!(signed.contains(&header.to_owned()), "{header} not signed: {signed:?}");
    }
    app.stop().await;
}

/// The plain-text part reads as text: no Markdown markup, links and images
/// as numbered references, tables drawn, raw HTML gone; the HTML part keeps
/// the formatting. `bulletin issue preview` shows the same text.
async fn the_text_part_is_text_not_markdown(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    app.import_confirmed("morning-briefing", &["plain@example.org".to_owned()]).await;
    let markdown = "# Tuesday\n\n**Kyiv** wakes up. Read [the story](https://news.example.org/a) \
                    ![Chart](https://news.example.org/c.png)\n\n| City | Trams |\n|---|---|\n| Kyiv | 22 |\n\n\
                    <script>alert(1)</script>\n";
    let id = app.queue_issue("morning-briefing", "Plain", markdown).await;
    app.wait_issue(id, "done").await;
    let mail = &app.mail.wait_for("plain@example.org", 1).await[0];
    let text = mail.text();
    assert!(text.contains("Kyiv wakes up. Read [the story][1]"), "{text}");
    assert!(text.contains("[1]: https://news.example.org/a"), "{text}");
    assert!(text.contains("Kyiv│22"), "the table is drawn: {text}");
    for markup in ["**", "](", "![", "|---", "<script>", "alert(1)"] {
        assert!(!text.contains(markup), "{markup} in the text part: {text}");
    }
    assert!(mail.html().contains("<strong>Kyiv</strong>"), "{}", mail.html());

    let dir = tempfile::tempdir().unwrap();
    let config = common::bin::write_config(dir.path(), app.database_url(), "");
    let file = dir.path().join("issue.md");
    std::fs::write(&file, markdown).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .arg("--config")
        .arg(&config)
        .args(["issue", "preview", "--newsletter", "morning-briefing", "--subject", "Plain", "--text"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let preview = String::from_utf8(out.stdout).unwrap();
    let body = |t: &str| t.replace("\r\n", "\n").split("\n--\n").next().unwrap().trim().to_owned();
    assert_eq!(body(&preview), body(&text), "the preview is the mail's text part");
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(warned.contains("raw HTML (<script>)"), "{warned}");
    app.stop().await;
}

/// The site's logo and postal address come from `[mail]`, around every issue.
async fn the_layout_shows_the_logo_and_postal_address(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.mail.logo_url = "https://news.example.org/logo.png".into();
        s.mail.postal_address = "The Daily, 1 Khreshchatyk St, Kyiv 01001, Ukraine".into();
    })
    .await
    else {
        return;
    };
    app.import_confirmed("morning-briefing", &["layout@example.org".to_owned()]).await;
    // An issue with a preview line: hidden at the top of the HTML part, not in the text part.
    let newsletter = app.newsletter("morning-briefing").await;
    let draft = bulletin::delivery::Draft::new(newsletter, "Laid out", "# Hello\n".to_owned())
        .unwrap()
        .with_preheader(Some("  Kyiv's trams,\n and more  "));
    let (id, _) = draft.queue(&app.store, app.clock.now()).await.unwrap();
    app.wait_issue(id, "done").await;
    let mail = &app.mail.wait_for("layout@example.org", 1).await[0];
    let html = mail.html();
    assert!(html.contains("<img src=\"https://news.example.org/logo.png\" alt=\"Morning Briefing\""), "{html}");
    assert!(html.contains("The Daily, 1 Khreshchatyk St, Kyiv 01001, Ukraine"), "{html}");
    assert!(mail.text().contains("The Daily, 1 Khreshchatyk St, Kyiv 01001, Ukraine"), "{}", mail.text());
    let hidden = "<div style=\"display: none; max-height: 0; overflow: hidden; mso-hide: all;\">Kyiv&#39;s trams, and more</div>";
    assert!(common::visible(&html).contains(&common::visible(hidden)), "{html}");
    assert!(!mail.text().contains("trams"), "{}", mail.text());
    app.stop().await;
}

on_both_backends!(
    the_layout_shows_the_logo_and_postal_address,
    the_text_part_is_text_not_markdown,
    dkim_signs_the_list_headers,
    issue_arrives_once_with_list_headers,
    soft_and_hard_failures,
    an_unknown_user_after_data_is_not_suppressed,
    policy_refusals_pause_the_issue,
    unsubscribe_during_a_send,
);
