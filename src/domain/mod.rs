//! Pure types of the newsletter world. No I/O here.

pub mod bounce_cause;
pub mod delivery_tag;
pub mod email;
mod mail_domain;
pub mod newsletter;
pub mod rhythm;
pub mod sender_refusal;
pub mod smtp_stage;
pub mod status;
pub mod token;
mod zone_aliases;

pub use bounce_cause::{Bounce, BounceCause, BounceReason};
pub use delivery_tag::{ReturnPath, Tagged};
pub use email::{EmailAddress, EmailError};
pub use newsletter::{Newsletter, NewsletterSlug};
pub use rhythm::{Rhythm, RhythmError, Zone, ZoneError};
pub use sender_refusal::{DomainRefusals, RefusalWarning};
pub use smtp_stage::SmtpStage;
pub use status::{ConsentSource, IssueStatus, SubscriptionStatus};
pub use token::{ConfirmationToken, LinkClaim, LinkKeys, LinkPurpose, LinkRef, LinkSubject, TokenHash};
