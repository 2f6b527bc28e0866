//! The file transport on a full disk: a message that does not fit fails
//! and leaves no `.eml` behind, empty or cut off.

mod common;

use bulletin::mail::{Outbound, SendFailure};
use lettre::Message;

#[tokio::test]
async fn full_disk_leaves_no_empty_or_partial_eml() {
    let Some(disk) = common::tmpfs::Tmpfs::mount("16k") else { return };
    let mut channel = Outbound::file(disk.path()).unwrap().channel();
    let body = format!("{}END OF MESSAGE\n", "Plenty of news today, line after line.\n".repeat(80));
    let (mut written, mut refused) = (0, 0);
    for i in 0..12 {
        let message = Message::builder()
            .from("News <news@example.org>".parse().unwrap())
            .to(format!("reader{i}@example.org").parse().unwrap())
            .subject("A long issue")
            .body(body.clone())
            .unwrap();
        match channel.send(&message).await {
            Ok(_) => written += 1,
            Err(SendFailure::Connection(e)) => {
                assert!(e.contains("No space left"), "{e}");
                refused += 1;
            }
            Err(other) => panic!("unexpected failure: {other:?}"),
        }
    }
    assert!(written >= 1 && refused >= 1, "the disk filled up part way: {written} written, {refused} refused");
    let mut files = 0;
    for entry in std::fs::read_dir(disk.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(".eml") && !name.starts_with('.'), "left behind: {name}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.trim_end().ends_with("END OF MESSAGE"), "{name} is cut off ({} bytes)", text.len());
        files += 1;
    }
    assert_eq!(files, written, "one complete file per message written, none for those refused");
}
