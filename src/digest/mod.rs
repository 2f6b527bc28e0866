//! Scheduled digests: a newsletter gathers the stories published since its
//! last digest and sends them once per schedule period.

pub mod feed;
