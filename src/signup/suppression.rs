//! The suppression list as an operator sees it: addresses Bulletin does not
//! mail, or does not take back without a new opt-in.
//!
//! Two kinds are kept. An erased address leaves only keyed hashes (one per
//! link key, so rotating the secret keeps them), never the address: the list
//! can name it only while the address is stored again (it signed up anew and
//! has not confirmed yet). A bounced address, or one whose reader reported
//! our mail as spam, is still a subscriber, marked, and named.

pub mod review;

use std::collections::HashMap;

use crate::clock::Timestamp;
use crate::domain::{EmailAddress, LinkKeys};
use crate::store::{Store, StoreError};

/// Subscribers read per query while naming erased addresses.
const PAGE: i64 = 1000;

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Erased on request: only its keyed hash is kept.
    Erased,
    /// Mail to it bounced for good (the mailbox does not exist).
    Bounced,
    /// Its reader reported our mail as spam (a complaint through a feedback loop).
    Complained,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Erased => "erased",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
        }
    }
}

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    /// The address where it is still stored; `None` for an erased one.
    pub address: Option<String>,
    pub reason: Reason,
    pub since: Timestamp,
}

/// What `remove` took off the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifted {
    /// The address had been erased: its keyed hash went.
    pub erased: bool,
    /// Mail to it had bounced, or its reader had complained: its subscriber gets mail again.
    pub bounced: bool,
}

/// The keyed hashes of erased addresses, in memory, to tell of many
/// addresses (a list, an export) whether each was erased before.
pub struct ErasedAddresses {
    keys: LinkKeys,
    since: HashMap<String, Timestamp>,
}

impl ErasedAddresses {
    pub async fn load(store: &Store, keys: &LinkKeys) -> Result<Self, StoreError> {
        let since = store.suppressions().await?.into_iter().map(|s| (s.email_hash, s.created_at)).collect();
        Ok(Self { keys: keys.clone(), since })
    }

    /// When the stored address `address` was erased, if it was.
    pub fn erased_at(&self, address: &str) -> Option<Timestamp> {
        if self.since.is_empty() {
            return None;
        }
        self.keys.suppression_hashes(&address.to_lowercase()).iter().filter_map(|h| self.since.get(h)).min().copied()
    }
}

/// When `email` was erased, if its keyed hash is on the list.
pub async fn erased_at(store: &Store, keys: &LinkKeys, email: &EmailAddress) -> Result<Option<Timestamp>, StoreError> {
    let found = store.suppressions_of(&keys.suppression_hashes(&email.key())).await?;
    Ok(found.iter().map(|s| s.created_at).min())
}

/// The whole list, oldest first: erased addresses named where they are
/// stored again, bounced and complained ones by their subscriber.
pub async fn list(store: &Store, keys: &LinkKeys) -> Result<Vec<Suppressed>, StoreError> {
    let entries = store.suppressions().await?;
    let mut named: HashMap<String, String> = HashMap::new();
    if !entries.is_empty() {
        let hashes: std::collections::HashSet<&str> = entries.iter().map(|e| e.email_hash.as_str()).collect();
        let mut after = 0;
        // Every subscriber is hashed with every key; it stops once each entry is named.
        while named.len() < entries.len() {
            let page = store.addresses_page(after, PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = *last;
            for (_, address) in page {
                for hash in keys.suppression_hashes(&address.to_lowercase()) {
                    if hashes.contains(hash.as_str()) {
                        named.insert(hash, address.clone());
                    }
                }
            }
        }
    }
    let mut list: Vec<Suppressed> = entries
        .into_iter()
        .map(|e| Suppressed {
            address: named.get(&e.email_hash).cloned(),
            reason: if e.reason == "bounced" { Reason::Bounced } else { Reason::Erased },
            since: e.created_at,
        })
        .collect();
    list.extend(store.suppressed_subscribers().await?.into_iter().map(|(address, since, reason)| Suppressed {
        address: Some(address),
        reason: if reason == "complained" { Reason::Complained } else { Reason::Bounced },
        since,
    }));
    list.sort_by_key(|s| s.since);
    Ok(list)
}

/// Takes `email` off the list: its keyed hashes under every key, and the
/// bounce on its subscriber. A later `import --confirmed` or `add
/// --confirmed` may then confirm it directly, and mail to it goes out again.
pub async fn remove(store: &Store, keys: &LinkKeys, email: &EmailAddress) -> Result<Lifted, StoreError> {
    let (hashes, bounced) = store.remove_suppression(email, &keys.suppression_hashes(&email.key())).await?;
    Ok(Lifted { erased: hashes > 0, bounced })
}
