//! Looking after one reader from the command line (`subscribers show`,
//! `add`, `unsubscribe`, `resend-confirmation`, `erase`), the whole list as
//! one file (`subscribers export`), and the suppression list.
//!
//! An address that matches nothing ends the command with [`NoSuchAddress`]
//! (exit code 5) and changes nothing, so a typo is seen and harmless.

use std::io::Write;

use anyhow::{Context, bail};
use clap::{ArgGroup, Subcommand, ValueEnum};

use super::output::{self, Format};
use super::reader;
use crate::app::{self, Services};
use crate::clock::{Clock, Timestamp, format_timestamp};
use crate::config::Settings;
use crate::domain::EmailAddress;
use crate::signup::suppression::review::{self, ReviewFilter};
use crate::signup::{Added, CapHeld, Resent, roster, suppression};

/// An address that matches no subscriber (or, for `suppressions remove`,
/// no entry): the command said so and changed nothing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoSuchAddress(String);

impl NoSuchAddress {
    /// The exit code that tells scripts (see README, "Exit codes").
    pub const EXIT_CODE: u8 = 5;
}

#[derive(Debug, Subcommand)]
pub enum ReaderCommand {
    /// Everything stored about one address: each newsletter with its status
    /// and dates, rhythm and zone, and the consent record (time, action,
    /// source, IP, user agent), as an access request needs it.
    Show {
        /// The reader's address (compared without regard to case).
        email: String,
        /// How to print: a table for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = ShowFormat::Table)]
        format: ShowFormat,
    },
    /// Sign an address up for a newsletter, as the web form does: pending,
    /// and a confirmation mail queued (under the per-address cap).
    Add {
        /// The reader's address.
        email: String,
        /// The newsletter's slug, as in `bulletin newsletters list`.
        #[arg(long)]
        newsletter: String,
        /// The reader gave you their consent (by mail, in person): confirm
        /// now and send nothing. An address erased before still gets the
        /// opt-in mail instead.
        #[arg(long)]
        confirmed: bool,
    },
    /// Take a reader off one newsletter, or off all of them; recorded as a
    /// withdrawal of consent with source `operator`.
    #[command(group(ArgGroup::new("which").required(true).args(["newsletter", "all"])))]
    Unsubscribe {
        /// The reader's address.
        email: String,
        /// The newsletter's slug, as in `bulletin newsletters list`.
        #[arg(long)]
        newsletter: Option<String>,
        /// Every newsletter the reader is on.
        #[arg(long)]
        all: bool,
    },
    /// Queue the confirmation mail again for what the reader has pending;
    /// refused (exit 1, with the reason) when the per-address cap holds it.
    ResendConfirmation {
        /// The reader's address.
        email: String,
    },
    /// Export subscribers as CSV to standard output: one newsletter, or every
    /// newsletter (a row per subscription).
    ///
    /// Columns: email,status,created_at,confirmed_at (as `subscribers list`),
    /// then newsletter, unsubscribed_at, suppression (`bounced`, `erased` or empty) and name.
    Export {
        /// The newsletter's slug; without it, every newsletter.
        #[arg(long)]
        newsletter: Option<String>,
    },
    /// Erase an address: its personal data and consent record go, a keyed
    /// hash stays on the suppression list so a later import needs a new opt-in.
    /// Asks first on a terminal.
    Erase {
        /// The reader's address.
        email: String,
        /// Do not ask (required when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum SuppressionsCommand {
    /// Addresses that get no mail (bounced, complained) or need a new opt-in (erased):
    /// reason, since when, and the address where it is still stored.
    List {
        /// How to print: a table for people, CSV or JSON for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Take an address off the suppression list: its keyed hash and any
    /// bounce. Mail to it goes out again; an import may confirm it directly.
    Remove {
        /// The address, as the reader gives it.
        email: String,
    },
    /// Bounce suppressions whose recorded bounce no longer reads as "the
    /// address is gone" (a full mailbox, a blocklist, DMARC: the old rule
    /// suppressed on any 5.x.x): address, since when, the recorded bounce
    /// and what it reads as now. `--lift` lifts them, as `remove` does.
    Review {
        /// Only those whose bounce reads as this: a cause (`soft`, `sender`) or
        /// a reason (`mailbox_full`, `blocked`, `auth_failure`, `policy`, …).
        /// Without it, every bounce suppression that no longer reads as gone.
        #[arg(long, value_name = "REASON")]
        reason: Option<ReviewFilter>,
        /// Lift the suppressions listed: mail to them goes out again (a bounce
        /// that repeats counts toward `bounces.soft_bounce_limit`).
        #[arg(long)]
        lift: bool,
        /// How to print: a table for people, CSV or JSON for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

pub async fn run(settings: &Settings, command: ReaderCommand) -> anyhow::Result<()> {
    let services = app::services(settings, Clock::system()).await?;
    let mut out = std::io::stdout().lock();
    match command {
        ReaderCommand::Show { email, format } => {
            let email = parse(&email)?;
            let Some(reader) = services.signup.look_up(&email).await? else {
                return Err(no_subscriber(&services, &email, "").await?.into());
            };
            match format {
                ShowFormat::Table => reader::table_of(&mut out, &reader)?,
                ShowFormat::Json => reader::json_of(&mut out, &reader)?,
            }
        }
        ReaderCommand::Add { email, newsletter, confirmed } => {
            let email = parse(&email)?;
            let newsletter = super::newsletter_by_slug(&services, &newsletter)?;
            let (address, slug) = (email.as_str(), &newsletter.slug);
            match services.signup.add(&email, &newsletter, confirmed).await? {
                Added::Confirmed => writeln!(out, "Confirmed {address} on {slug} (consent source: operator).")?,
                Added::AlreadyConfirmed => writeln!(out, "{address} is already confirmed on {slug}; nothing changed.")?,
                Added::Pending { held_back, erased_before } => {
                    if erased_before {
                        writeln!(out, "{address} was erased before: it needs a new opt-in, so it was not confirmed.")?;
                    }
                    match held_back {
                        None => writeln!(
                            out,
                            "{address} is pending on {slug}; a confirmation mail is queued \
                             (`bulletin serve` or `bulletin worker` sends it)."
                        )?,
                        Some(held) => writeln!(
                            out,
                            "{address} is pending on {slug}; no confirmation mail was queued: {}.",
                            cap_reason(settings, &held)
                        )?,
                    }
                }
            }
            if let Some(reader) = services.signup.look_up(&email).await?
                && let Some(at) = reader.bounced_at
            {
                writeln!(
                    out,
                    "Note: {}: issues are not sent to it until `bulletin suppressions remove {address}`.",
                    why_suppressed(address, at, reader.complained)
                )?;
            }
        }
        ReaderCommand::Unsubscribe { email, newsletter, all: _ } => {
            let email = parse(&email)?;
            let target = newsletter.map(|slug| super::newsletter_by_slug(&services, &slug)).transpose()?;
            let Some(reader) = services.signup.look_up(&email).await? else {
                return Err(no_subscriber(&services, &email, "; nothing changed").await?.into());
            };
            let left = services.signup.unsubscribe_reader(&reader, target.as_ref().map(|n| n.id)).await?;
            let address = &reader.address;
            if !left.is_empty() {
                let slugs: Vec<&str> = reader
                    .subscriptions
                    .iter()
                    .filter(|s| left.contains(&s.state.newsletter_id))
                    .map(|s| s.newsletter.as_str())
                    .collect();
                writeln!(out, "Unsubscribed {address} from {} (withdrawn by the operator).", slugs.join(", "))?;
            } else if let Some(newsletter) = target {
                let on = reader.subscriptions.iter().any(|s| s.state.newsletter_id == newsletter.id);
                let was = if on { "had already left" } else { "is not on" };
                writeln!(out, "{address} {was} {}; nothing changed.", newsletter.slug)?;
            } else {
                writeln!(out, "{address} is on no newsletter; nothing changed.")?;
            }
        }
        ReaderCommand::ResendConfirmation { email } => {
            let email = parse(&email)?;
            let Some(reader) = services.signup.look_up(&email).await? else {
                return Err(no_subscriber(&services, &email, "; nothing sent").await?.into());
            };
            let address = &reader.address;
            match services.signup.resend_confirmation(&reader).await? {
                Resent::Queued { newsletters } => writeln!(
                    out,
                    "Confirmation mail queued for {address} ({}); `bulletin serve` or `bulletin worker` sends it.",
                    newsletters.join(", ")
                )?,
                Resent::NothingPending => {
                    let states: Vec<String> =
                        reader.subscriptions.iter().map(|s| format!("{} {}", s.newsletter, s.state.status)).collect();
                    let states = if states.is_empty() { "on no newsletter".to_owned() } else { states.join(", ") };
                    bail!(
                        "not sent: {address} has nothing waiting for confirmation ({states}); \
                         `bulletin subscribers add {address} --newsletter SLUG` signs it up again"
                    )
                }
                Resent::Bounced { at, complained } => bail!(
                    "not sent: {}; if the reader asks for mail again, `bulletin suppressions remove {address}` first",
                    why_suppressed(address, at, complained)
                ),
                Resent::Held(held) => bail!("not sent: {}", cap_reason(settings, &held)),
            }
        }
        ReaderCommand::Export { newsletter } => {
            let newsletters = match newsletter {
                Some(slug) => vec![super::newsletter_by_slug(&services, &slug)?],
                None => services.store.list_newsletters().await?,
            };
            let erased = suppression::ErasedAddresses::load(&services.store, services.signup.links().keys()).await?;
            let mut out = std::io::BufWriter::new(out);
            output::export(&mut out, &services.store, &newsletters, &erased).await?;
            out.flush()?;
        }
        ReaderCommand::Erase { email, yes } => {
            let email = parse(&email)?;
            let Some(reader) = services.signup.look_up(&email).await? else {
                let nothing = "; nothing was erased or added to the suppression list";
                return Err(no_subscriber(&services, &email, nothing).await?.into());
            };
            if !yes {
                let question = format!(
                    "Erase {} and its consent history ({} subscription(s), {} consent record(s))?",
                    email.masked(),
                    reader.subscriptions.len(),
                    reader.consent.len()
                );
                super::issue::confirm(&question, "erase", "nothing erased")?;
            }
            let clock = Clock::system();
            roster::erase(&services.store, services.signup.links().keys(), &clock, &email).await?;
            writeln!(
                out,
                "Erased {}: personal data and consent record removed, the address kept only as a keyed hash \
                 on the suppression list.",
                email.as_str()
            )?;
        }
    }
    Ok(())
}

pub async fn suppressions(settings: &Settings, command: SuppressionsCommand) -> anyhow::Result<()> {
    let services = app::services(settings, Clock::system()).await?;
    let keys = services.signup.links().keys();
    let mut out = std::io::stdout().lock();
    match command {
        SuppressionsCommand::List { format } => {
            let list = suppression::list(&services.store, keys).await?;
            output::suppressions(&mut out, format, &list)?;
        }
        SuppressionsCommand::Remove { email } => {
            let email = parse(&email)?;
            let lifted = suppression::remove(&services.store, keys, &email).await?;
            let address = email.as_str();
            match (lifted.erased, lifted.bounced) {
                (false, false) => {
                    return Err(
                        NoSuchAddress(format!("{address} is not on the suppression list; nothing changed")).into()
                    );
                }
                (erased, bounced) => {
                    if erased {
                        writeln!(
                            out,
                            "Removed {address} from the suppression list: an import or `subscribers add \
                             --confirmed` may now confirm it without a new opt-in."
                        )?;
                    }
                    if bounced {
                        writeln!(out, "Cleared the bounce of {address}: mail to it goes out again.")?;
                    }
                }
            }
        }
        SuppressionsCommand::Review { reason, lift, format } => {
            let filter = reason.unwrap_or(ReviewFilter::NotGone);
            let reviewed = review::review(&services.store, filter).await?;
            output::reviewed(&mut out, format, &reviewed)?;
            let closing = if lift && !reviewed.is_empty() {
                let lifted = review::lift(&services.store, keys, &reviewed).await?;
                format!(
                    "Lifted {lifted} suppression(s): mail to them goes out again; a bounce that repeats \
                     counts toward bounces.soft_bounce_limit."
                )
            } else if lift {
                "Nothing to lift.".to_owned()
            } else if reviewed.is_empty() {
                return Ok(());
            } else {
                "`bulletin suppressions review --lift` (with the same --reason) lifts them.".to_owned()
            };
            // A script's CSV or JSON stays whole: the closing line goes to standard error then.
            match format {
                Format::Table => writeln!(out, "{closing}")?,
                Format::Csv | Format::Json => eprintln!("{closing}"),
            }
        }
    }
    Ok(())
}

fn parse(email: &str) -> anyhow::Result<EmailAddress> {
    EmailAddress::parse(email).with_context(|| format!("{email:?}"))
}

/// "No subscriber has the address …", saying whether it was erased before
/// (its hash is on the suppression list), then `consequence`.
async fn no_subscriber(services: &Services, email: &EmailAddress, consequence: &str) -> anyhow::Result<NoSuchAddress> {
    let erased = suppression::erased_at(&services.store, services.signup.links().keys(), email).await?;
    let history = match erased {
        Some(at) => format!(" (it was erased on {}: its keyed hash is on the suppression list)", format_timestamp(at)),
        None => String::new(),
    };
    Ok(NoSuchAddress(format!("no subscriber has the address {}{history}{consequence}", email.as_str())))
}

/// Why the per-address cap held a confirmation mail back, in the config's words.
fn cap_reason(settings: &Settings, held: &CapHeld) -> String {
    let next = |at: Timestamp| format!("the next may go from {}", format_timestamp(at));
    match held {
        CapHeld::Interval { last, next: at } => format!(
            "one was queued at {} and at most one goes every {} minute(s) (signup.confirm_mail_interval_minutes); {}",
            format_timestamp(*last),
            settings.signup.confirm_mail_interval_minutes,
            next(*at)
        ),
        CapHeld::PerDay { count, next: at } => format!(
            "{count} went to it in the last 24 hours, and signup.confirm_mails_per_day allows {}; {}",
            settings.signup.confirm_mails_per_day,
            at.map_or_else(|| "no more may go".to_owned(), next)
        ),
    }
}

/// Why an address gets no mail, as the start of a sentence.
fn why_suppressed(address: &str, at: Timestamp, complained: bool) -> String {
    if complained {
        format!("{address} reported our mail as spam on {}", format_timestamp(at))
    } else {
        format!("mail to {address} bounced on {} (the mailbox did not exist)", format_timestamp(at))
    }
}
