//! Test helpers crate (tests live in e2e/).
