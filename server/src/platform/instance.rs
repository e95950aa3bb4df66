//! This server among several behind one load balancer: its id (the owner name of its interview
//! leases), how many live interviews it runs against its capacity, and whether it is draining.
//! `/healthz` reports it; the live socket admits new interviews against it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::Serialize;
use utoipa::ToSchema;

/// The instance's identity and load. Shared by the platform routes and the live server.
#[derive(Debug)]
pub struct Instance {
    /// Unique among the instances sharing a database; stable across restarts of the same
    /// instance, so a restarted instance takes its own leases back at once.
    pub id: String,
    /// Live interviews this instance runs within its latency targets (the bench's figure).
    pub capacity: usize,
    live: AtomicUsize,
    draining: AtomicBool,
}

/// What `/healthz` says about the instance's load.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Load {
    /// The instance id.
    pub instance: String,
    /// Live interviews running here.
    pub live_interviews: usize,
    /// Live interviews this instance takes.
    pub capacity: usize,
    /// `live_interviews / capacity`.
    pub load: f64,
    /// Whether a new interview would be taken here now.
    pub accepting_interviews: bool,
    /// Shutting down: finishing answers in flight, taking nothing new.
    pub draining: bool,
}

impl Instance {
    /// An instance named `id` taking `capacity` live interviews.
    pub fn new(id: impl Into<String>, capacity: usize) -> Self {
        Self {
            id: id.into(),
            capacity: capacity.max(1),
            live: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
        }
    }

    /// The default id: host name and port, which two instances on one machine do not share
    /// and a restarted instance keeps.
    pub fn default_id(port: u16) -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}:{port}")
    }

    /// Records the number of live interviews running here.
    pub fn set_live(&self, n: usize) {
        self.live.store(n, Ordering::Relaxed);
    }

    /// Marks the instance as shutting down.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the instance is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The load as `/healthz` reports it.
    pub fn load(&self) -> Load {
        let live = self.live.load(Ordering::Relaxed);
        let draining = self.is_draining();
        Load {
            instance: self.id.clone(),
            live_interviews: live,
            capacity: self.capacity,
            load: live as f64 / self.capacity as f64,
            accepting_interviews: !draining && live < self.capacity,
            draining,
        }
    }
}
