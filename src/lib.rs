//! Bulletin: a self-hosted newsletter subscription manager.
//!
//! Readers sign up on web forms and confirm by mail (double opt-in);
//! editors and operators use the `bulletin` CLI. Storage is SQLite by
//! default or PostgreSQL for several instances. The library holds all of
//! it; the binary only parses the command line and calls [`cli::run`].

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod digest;
pub mod domain;
pub mod feedback;
pub mod mail;
pub mod metrics;
pub mod signup;
pub mod spreadsheet;
pub mod stats;
pub mod store;
pub mod web;
