//! The `nextmark` binary's library: command line, model installation, and (later) the HTTP
//! API, transports and storage.

pub mod cli;
pub mod grader;
pub mod interview_cli;
pub mod models;
pub mod platform;
