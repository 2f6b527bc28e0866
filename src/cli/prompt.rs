//! Questions on the terminal before a command does what cannot be taken back
//! (sending an issue, queueing confirmation mail); callers check first that
//! a terminal is there to answer.

use std::io::{BufRead, Write};

/// Asks `question` on standard error and reads the answer: only `y` or `yes` is yes.
pub(super) fn yes(question: &str) -> std::io::Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
