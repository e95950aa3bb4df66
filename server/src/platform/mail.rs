//! Outgoing messages (sign-in links, interview links) behind a [`Mailer`] trait: the default
//! writes them to the log for local use; tests keep them in memory and read the links back; a
//! real email sender plugs in here.

use std::sync::{Mutex, PoisonError};

/// One message to an applicant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Recipient email.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// The link the message carries.
    pub link: String,
}

/// Delivers messages. Must not block for long: called from request handlers.
pub trait Mailer: Send + Sync + 'static {
    /// Sends (or queues) a message.
    fn send(&self, message: Message);
}

/// Writes messages to the log at INFO (development and `make run`; not for production, since
/// links are credentials).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogMailer;

impl Mailer for LogMailer {
    fn send(&self, message: Message) {
        tracing::info!(to = %message.to, subject = %message.subject, link = %message.link, "mail");
    }
}

/// Keeps messages in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryMailer {
    /// Everything sent, oldest first.
    sent: Mutex<Vec<Message>>,
}

impl MemoryMailer {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything sent so far.
    pub fn messages(&self) -> Vec<Message> {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The link of the latest message to `to`.
    pub fn last_link_to(&self, to: &str) -> Option<String> {
        self.messages()
            .into_iter()
            .rev()
            .find(|m| m.to == to)
            .map(|m| m.link)
    }
}

impl Mailer for MemoryMailer {
    fn send(&self, message: Message) {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(message);
    }
}
