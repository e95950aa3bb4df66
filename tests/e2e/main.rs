//! End-to-end tests: the real `nextmark` binary, the real Whisper model, the committed audio
//! fixtures. One test binary (ripgrep's layout); shared helpers live in `helpers`.

mod audio_fixtures;
mod browser;
mod grader;
mod helpers;
mod interview_cli;
mod live;
mod model;
mod platform;
mod platform_api;
mod platform_journey;
mod platform_storage;
mod reliability;
mod scale;
mod schemathesis;
mod security;
mod transcribe;
