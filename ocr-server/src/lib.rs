//! `ocr-server`: the OCR.chat-compatible REST server and the `ocr` command line's server-side
//! commands, a thin layer over `ocr-core`, `ocr-formats` and `ocr-chat`.
//!
//! [`api::app`] builds the axum router from an [`state::AppState`], so tests drive it without
//! a socket; [`serve`] runs it with the queue workers; [`db`] keeps accounts, tokens, the usage
//! ledger, jobs and results in SQLite or PostgreSQL.

pub mod admin;
pub mod api;
pub mod auth;
pub mod chat;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod openapi;
pub mod serve;
pub mod state;
