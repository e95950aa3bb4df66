//! The `nextmark` binary's library: command line, model installation, the platform HTTP API,
//! the live interview server (transports, sessions, speech synthesis) and storage.

pub mod cli;
pub mod grader;
pub mod interview_cli;
pub mod live;
pub mod metrics;
pub mod models;
pub mod platform;
pub mod stt;
pub mod tts;
pub mod web;
