//! What each column of an imported list means.
//!
//! Lists move between systems as their export files, so the common export
//! headers are recognised by name: Mailchimp (`Email Address`, `First Name`,
//! `Last Name`, `OPTIN_TIME`, `CONFIRM_TIME`, and `UNSUB_TIME` or
//! `CLEAN_TIME` in its unsubscribed and cleaned exports), Substack (`email`,
//! `created_at`, `email_disabled`), listmonk (`email`, `name`, `status`,
//! `created_at`), Ghost (`email`, `name`, `subscribed_to_emails`,
//! `created_at`) and Bulletin's own export. Names are compared without case,
//! spaces, dashes or underscores mattering. Every other column is reported
//! as ignored.

use csv::StringRecord;

use super::dates;
use crate::clock::Timestamp;
use crate::domain::EmailAddress;

/// The system a list was exported from, told by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exporter {
    Mailchimp,
    Substack,
    Listmonk,
    Ghost,
    Bulletin,
}

impl Exporter {
    /// As the editor knows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mailchimp => "Mailchimp",
            Self::Substack => "Substack",
            Self::Listmonk => "listmonk",
            Self::Ghost => "Ghost",
            Self::Bulletin => "Bulletin",
        }
    }

    /// As the consent record names it: `import:mailchimp`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Mailchimp => "mailchimp",
            Self::Substack => "substack",
            Self::Listmonk => "listmonk",
            Self::Ghost => "ghost",
            Self::Bulletin => "bulletin",
        }
    }

    fn recognise(names: &[String]) -> Option<Self> {
        let has = |name: &str| names.iter().any(|n| n == name);
        if ["leid", "euid", "memberrating", "optintime", "confirmtime", "unsubtime", "cleantime"].iter().any(|n| has(n))
        {
            Some(Self::Mailchimp)
        } else if has("subscribedtoemails") {
            Some(Self::Ghost)
        } else if has("emaildisabled") || has("activesubscription") {
            Some(Self::Substack)
        } else if has("uuid") && has("attributes") && has("status") {
            Some(Self::Listmonk)
        } else if names == ["email", "status", "createdat", "confirmedat"] {
            Some(Self::Bulletin)
        } else {
            None
        }
    }
}

/// Where the reader stands in the source list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Subscribed,
    /// Signed up there but never confirmed (or never opted in at all).
    Unconfirmed,
    Unsubscribed,
    /// Removed there because mail to the address bounced.
    Cleaned,
}

impl Standing {
    /// Whether the reader left the source list, one way or another.
    pub fn left(self) -> bool {
        matches!(self, Self::Unsubscribed | Self::Cleaned)
    }

    /// The words export files use in a status column.
    fn from_word(word: &str) -> Option<Self> {
        Some(match normalise(word).as_str() {
            "" | "subscribed" | "confirmed" | "active" | "enabled" => Self::Subscribed,
            "pending" | "unconfirmed" | "transactional" => Self::Unconfirmed,
            "unsubscribed" | "blocklisted" | "blacklisted" | "disabled" | "archived" | "optedout" => Self::Unsubscribed,
            "cleaned" | "bounced" => Self::Cleaned,
            _ => return None,
        })
    }
}

/// How a status column says where the reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusKind {
    /// `subscribed`, `unsubscribed`, `cleaned`, …
    Words,
    /// Ghost's `subscribed_to_emails`: true when subscribed.
    Subscribed,
    /// Substack's `email_disabled`: true when the reader gets no mail.
    Disabled,
}

/// One row of a list, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRow {
    pub email: EmailAddress,
    pub name: Option<String>,
    /// When the reader signed up or confirmed there, if the list says.
    pub consented_at: Option<Timestamp>,
    /// When the reader unsubscribed or was cleaned there, if the list says.
    pub left_at: Option<Timestamp>,
    pub standing: Standing,
    /// The row's own `source` value, if it has one.
    pub source: Option<String>,
}

/// A consent date is refused when it is further ahead than this (clocks and zones differ).
const FUTURE_SLACK: i64 = 86_400;
/// Names longer than this are cut: they go into a header and a greeting.
const NAME_CHARS: usize = 100;
/// Sources longer than this are cut: they go into the consent record.
const SOURCE_CHARS: usize = 60;

/// The meaning of a list's columns, by position.
#[derive(Debug, Clone)]
pub struct Columns {
    pub exporter: Option<Exporter>,
    headers: Vec<String>,
    email: usize,
    name: Option<usize>,
    first_name: Option<usize>,
    last_name: Option<usize>,
    /// Consent dates, the most telling first: the first filled one counts.
    consented: Vec<usize>,
    /// Dates of leaving, with what leaving there meant.
    left: Vec<(usize, Standing)>,
    status: Option<(usize, StatusKind)>,
    source: Option<usize>,
}

/// Why a header cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the header has no `email` column (found: {found}){hint}")]
    NoEmailColumn { found: String, hint: String },
    #[error("--column {name:?}: the header has no such column (found: {found})")]
    NoSuchColumn { name: String, found: String },
}

const EMAIL: &[&str] = &["email", "emailaddress"];
const NAME: &[&str] = &["name", "fullname", "displayname"];
const FIRST_NAME: &[&str] = &["firstname", "fname", "givenname"];
const LAST_NAME: &[&str] = &["lastname", "lname", "surname", "familyname"];
const CONSENTED: &[&str] = &[
    "confirmtime",
    "confirmedat",
    "optintime",
    "subscribedat",
    "signupdate",
    "signedupat",
    "subscriptiondate",
    "createdat",
    "dateadded",
];
const UNSUBSCRIBED: &[&str] = &["unsubtime", "unsubscribedat"];
const CLEANED: &[&str] = &["cleantime", "cleanedat"];
const STATUS: &[&str] = &["status", "subscriptionstatus", "memberstatus"];
const SOURCE: &[&str] = &["source", "signupsource", "subscriptionsource"];

/// A header name as compared: lower case, without a byte-order mark, spaces,
/// dashes, underscores or dots (`Email Address`, `email_address` and
/// `E-mail address` are one name).
fn normalise(name: &str) -> String {
    name.trim_start_matches('\u{feff}')
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

impl Columns {
    /// Reads a header row; `column` names the address column when the header's own names do not.
    pub fn recognise(headers: &StringRecord, column: Option<&str>) -> Result<Self, HeaderError> {
        let headers: Vec<String> = headers.iter().map(|h| h.trim_start_matches('\u{feff}').to_owned()).collect();
        let names: Vec<String> = headers.iter().map(|h| normalise(h)).collect();
        let found = || super::cut(&headers.join(", "), 200);
        let email = match column {
            Some(wanted) => names
                .iter()
                .position(|n| *n == normalise(wanted))
                .ok_or_else(|| HeaderError::NoSuchColumn { name: wanted.to_owned(), found: found() })?,
            None => first_of(&names, EMAIL, None).ok_or_else(|| HeaderError::NoEmailColumn {
                found: found(),
                hint: if headers.iter().any(|h| h.contains('@')) {
                    "; the first line holds an address: put a header line such as `email` above the list".to_owned()
                } else {
                    "; name the column that holds the addresses with --column".to_owned()
                },
            })?,
        };
        let taken = Some(email);
        let status = [(STATUS, StatusKind::Words), (&["subscribedtoemails"], StatusKind::Subscribed)]
            .into_iter()
            .chain([(&["emaildisabled"][..], StatusKind::Disabled)])
            .find_map(|(candidates, kind)| Some((first_of(&names, candidates, taken)?, kind)));
        let all_of = |candidates: &[&str]| -> Vec<usize> {
            candidates.iter().filter_map(|c| names.iter().position(|n| n == c)).filter(|i| Some(*i) != taken).collect()
        };
        let left = all_of(UNSUBSCRIBED)
            .into_iter()
            .map(|i| (i, Standing::Unsubscribed))
            .chain(all_of(CLEANED).into_iter().map(|i| (i, Standing::Cleaned)))
            .collect();
        Ok(Self {
            exporter: Exporter::recognise(&names),
            email,
            name: first_of(&names, NAME, taken),
            first_name: first_of(&names, FIRST_NAME, taken),
            last_name: first_of(&names, LAST_NAME, taken),
            consented: all_of(CONSENTED),
            left,
            status,
            source: first_of(&names, SOURCE, taken),
            headers,
        })
    }

    /// The columns used, by what they are used for: ("address", "Email Address").
    pub fn used(&self) -> Vec<(&'static str, String)> {
        let names = |columns: &[usize], joiner: &str| -> String {
            columns.iter().map(|i| self.headers[*i].as_str()).collect::<Vec<_>>().join(joiner)
        };
        let mut used = vec![("address", self.headers[self.email].clone())];
        let name: Vec<usize> = match self.name {
            Some(i) => vec![i],
            None => self.first_name.into_iter().chain(self.last_name).collect(),
        };
        if !name.is_empty() {
            used.push(("name", names(&name, " + ")));
        }
        if !self.consented.is_empty() {
            used.push(("consent date", names(&self.consented, " or ")));
        }
        if let Some((i, _)) = self.status {
            used.push(("status", self.headers[i].clone()));
        }
        if !self.left.is_empty() {
            let left: Vec<usize> = self.left.iter().map(|(i, _)| *i).collect();
            used.push(("left on", names(&left, " or ")));
        }
        if let Some(i) = self.source {
            used.push(("source", self.headers[i].clone()));
        }
        used
    }

    /// The header names of the columns nothing reads.
    pub fn ignored(&self) -> Vec<&str> {
        let mut used = vec![self.email];
        used.extend(self.name.or(self.first_name));
        used.extend(if self.name.is_some() { None } else { self.last_name });
        used.extend(&self.consented);
        used.extend(self.left.iter().map(|(i, _)| *i));
        used.extend(self.status.map(|(i, _)| i));
        used.extend(self.source);
        (0..self.headers.len()).filter(|i| !used.contains(i)).map(|i| self.headers[i].as_str()).collect()
    }

    /// One record as a list row, or what is wrong with it.
    pub fn read(&self, record: &StringRecord, now: Timestamp) -> Result<ListRow, String> {
        if record.iter().all(str::is_empty) {
            return Err("the row is empty".to_owned());
        }
        let Some(raw) = record.get(self.email) else {
            return Err(format!(
                "the row has {} field(s), but the address belongs in field {} (`{}`): is the delimiter right?",
                record.len(),
                self.email + 1,
                self.headers[self.email]
            ));
        };
        let raw = crate::spreadsheet::restore(raw);
        if raw.is_empty() {
            return Err(format!("the `{}` column is empty", self.headers[self.email]));
        }
        let email = EmailAddress::parse(raw).map_err(|e| format!("{:?}: {e}", super::cut(raw, super::QUOTED)))?;
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).map(crate::spreadsheet::restore).unwrap_or("");
        let name = match self.name {
            Some(i) => one_line(cell(Some(i)), NAME_CHARS),
            None => one_line(&format!("{} {}", cell(self.first_name), cell(self.last_name)), NAME_CHARS),
        };
        let date = |columns: &[usize]| -> Result<Option<Timestamp>, String> {
            let Some(&i) = columns.iter().find(|i| !cell(Some(**i)).is_empty()) else { return Ok(None) };
            let (header, text) = (&self.headers[i], cell(Some(i)));
            match dates::parse(text) {
                Some(at) if at > now + FUTURE_SLACK => {
                    Err(format!("the date {:?} in `{header}` is in the future", super::cut(text, super::QUOTED)))
                }
                Some(at) => Ok(Some(at)),
                None => Err(format!(
                    "the date {:?} in `{header}` is not one Bulletin reads (write {})",
                    super::cut(text, super::QUOTED),
                    dates::ACCEPTED
                )),
            }
        };
        let consented_at = date(&self.consented)?;
        let left_at = date(&self.left.iter().map(|(i, _)| *i).collect::<Vec<_>>())?;
        let left = self.left.iter().find(|(i, _)| !cell(Some(*i)).is_empty()).map(|(_, standing)| *standing);
        let standing = match self.status {
            Some((i, kind)) if !cell(Some(i)).is_empty() => {
                let word = cell(Some(i));
                let standing = match kind {
                    StatusKind::Words => Standing::from_word(word),
                    StatusKind::Subscribed => yes_or_no(word)
                        .map(|subscribed| if subscribed { Standing::Subscribed } else { Standing::Unsubscribed }),
                    StatusKind::Disabled => yes_or_no(word)
                        .map(|disabled| if disabled { Standing::Unsubscribed } else { Standing::Subscribed }),
                };
                standing.ok_or_else(|| {
                    format!(
                        "the status {:?} in `{}` is not one Bulletin knows (subscribed, pending, unsubscribed, cleaned, true, false)",
                        super::cut(word, super::QUOTED),
                        self.headers[i]
                    )
                })?
            }
            _ => left.unwrap_or(Standing::Subscribed),
        };
        let source = one_line(cell(self.source), SOURCE_CHARS);
        Ok(ListRow { email, name, consented_at, left_at, standing, source })
    }
}

/// The first of `candidates` (in their order) among `names`, other than `taken`.
fn first_of(names: &[String], candidates: &[&str], taken: Option<usize>) -> Option<usize> {
    candidates.iter().find_map(|c| names.iter().position(|n| n == c).filter(|i| Some(*i) != taken))
}

fn yes_or_no(word: &str) -> Option<bool> {
    match word.to_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// A cell as one line of at most `max` characters (control characters and
/// runs of spaces become one space), or `None` when nothing is left.
fn one_line(cell: &str, max: usize) -> Option<String> {
    let spaced: String = cell.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let line: String = spaced.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(max).collect();
    let line = line.trim_end().to_owned();
    (!line.is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(header: &[&str]) -> Columns {
        Columns::recognise(&StringRecord::from(header.to_vec()), None).unwrap()
    }

    const NOW: Timestamp = 1_800_000_000;

    #[test]
    fn mailchimp_exports_are_recognised() {
        let header = [
            "Email Address",
            "First Name",
            "Last Name",
            "Address",
            "MEMBER_RATING",
            "OPTIN_TIME",
            "OPTIN_IP",
            "CONFIRM_TIME",
            "UNSUB_TIME",
            "UNSUB_REASON",
        ];
        let c = columns(&header);
        assert_eq!(c.exporter, Some(Exporter::Mailchimp));
        assert_eq!(
            c.used(),
            vec![
                ("address", "Email Address".to_owned()),
                ("name", "First Name + Last Name".to_owned()),
                ("consent date", "CONFIRM_TIME or OPTIN_TIME".to_owned()),
                ("left on", "UNSUB_TIME".to_owned()),
            ]
        );
        assert_eq!(c.ignored(), ["Address", "MEMBER_RATING", "OPTIN_IP", "UNSUB_REASON"]);
        let row = StringRecord::from(vec![
            "ada@example.org",
            "Ada",
            "Lovelace",
            "",
            "2",
            "2019-03-04 12:00:00",
            "",
            "",
            "2021-01-01 00:00:00",
            "",
        ]);
        let read = c.read(&row, NOW).unwrap();
        assert_eq!(read.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(read.consented_at, Some(1_551_700_800), "OPTIN_TIME when CONFIRM_TIME is empty");
        assert_eq!((read.standing, read.left_at), (Standing::Unsubscribed, Some(1_609_459_200)));

        let cleaned = columns(&["Email Address", "CLEAN_TIME", "CLEAN_CAMPAIGN_TITLE"]);
        let read = cleaned.read(&StringRecord::from(vec!["b@example.org", "2021-01-01", "Spring"]), NOW).unwrap();
        assert_eq!((read.standing, read.left_at), (Standing::Cleaned, Some(1_609_459_200)));
    }

    #[test]
    fn ghost_substack_and_listmonk_say_who_left() {
        let ghost = columns(&["id", "email", "name", "note", "subscribed_to_emails", "created_at", "labels"]);
        assert_eq!(ghost.exporter, Some(Exporter::Ghost));
        let row = |cells: &[&str]| StringRecord::from(cells.to_vec());
        let read = ghost.read(&row(&["1", "g@example.org", "Grace", "", "false", "2024-01-15T10:00:00.000Z", ""]), NOW);
        assert_eq!(read.unwrap().standing, Standing::Unsubscribed);

        let substack = columns(&["email", "active_subscription", "expiry", "email_disabled", "created_at"]);
        assert_eq!(substack.exporter, Some(Exporter::Substack));
        let read = substack.read(&row(&["s@example.org", "", "", "true", "2018-08-27T15:06:27.713Z"]), NOW).unwrap();
        assert_eq!(read.standing, Standing::Unsubscribed);
        assert_eq!(substack.ignored(), ["active_subscription", "expiry"]);

        let listmonk = columns(&["uuid", "email", "name", "attributes", "status", "created_at", "updated_at"]);
        assert_eq!(listmonk.exporter, Some(Exporter::Listmonk));
        let cells = ["u", "l@example.org", "Lin", "{}", "blocklisted", "2020-07-02 09:21:37.446546 +0000 +0000", ""];
        assert_eq!(listmonk.read(&row(&cells), NOW).unwrap().standing, Standing::Unsubscribed);
    }

    #[test]
    fn a_row_says_what_is_wrong_with_it() {
        let c = columns(&["name", "signup_date", "email"]);
        let row = |cells: &[&str]| c.read(&StringRecord::from(cells.to_vec()), NOW).unwrap_err();
        assert_eq!(
            row(&["Ada"]),
            "the row has 1 field(s), but the address belongs in field 3 (`email`): is the delimiter right?"
        );
        assert_eq!(row(&["", "", ""]), "the row is empty");
        assert_eq!(row(&["Ada", "", ""]), "the `email` column is empty");
        assert!(row(&["Ada", "03/04/2019", "a@example.org"]).starts_with("the date \"03/04/2019\" in `signup_date`"));
        assert!(row(&["Ada", "2099-01-01", "a@example.org"]).ends_with("is in the future"));
    }

    #[test]
    fn headers_without_an_address_column_say_what_to_do() {
        let header = |cells: &[&str], column| Columns::recognise(&StringRecord::from(cells.to_vec()), column);
        let err = header(&["address", "name"], None).unwrap_err().to_string();
        assert!(err.contains("no `email` column (found: address, name)") && err.contains("--column"), "{err}");
        let err = header(&["ada@example.org"], None).unwrap_err().to_string();
        assert!(err.contains("header line"), "{err}");
        let c = header(&["Name", "Mail Address"], Some("mail address")).unwrap();
        assert_eq!(c.used()[0], ("address", "Mail Address".to_owned()));
        assert!(header(&["Name"], Some("Courriel")).unwrap_err().to_string().contains("no such column"));
    }

    #[test]
    fn names_are_one_short_line() {
        assert_eq!(one_line("  Ada\r\nBcc: x@example.org\t ", 100).as_deref(), Some("Ada Bcc: x@example.org"));
        assert_eq!(one_line(" ", 100), None);
        assert_eq!(one_line(&"é".repeat(150), 100).map(|n| n.chars().count()), Some(100));
    }
}
