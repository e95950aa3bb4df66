//! The Nextmark interview engine: everything between audio in and decisions out, with no
//! network or database I/O, so that a test, a file, a socket or a benchmark can drive it.

pub mod asr;
pub mod audio;
pub mod interview;
pub mod irt;
pub mod model;
pub mod report;
pub mod rubric;
pub mod scoring;
pub mod text;
pub mod turn;
