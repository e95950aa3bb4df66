//! A bounded pool of whisper workers shared by all sessions: one model, one decoding state per
//! worker thread, two queues. Finals always go first; partial captions are dropped (and
//! counted) when the queue is full, never finals. A job whose
//! [`CancelToken`](super::CancelToken) is cancelled is skipped if it has not started, and
//! stopped part-way if it has.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{AsrError, DecodeOptions, Segment, WhisperModel, filter};
use crate::audio::TARGET_RATE;

/// Whether a job is a final transcript or a partial caption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// The text of a finished utterance: never dropped, served first.
    Final,
    /// A caption of an utterance in progress: best effort.
    Partial,
}

/// What a worker produced.
#[derive(Debug, Clone)]
pub struct AsrOutput {
    /// Cleaned segments, times relative to the job's audio.
    pub segments: Vec<Segment>,
    /// Time spent decoding.
    pub compute: Duration,
    /// Time the job waited in the queue.
    pub queued: Duration,
    /// Local threads the decode ran on (0 for a remote endpoint): `compute × threads` is the
    /// CPU time it took.
    pub threads: usize,
}

/// Called once with the job's result, on the worker thread; keep it short (send on a channel).
pub type Reply = Box<dyn FnOnce(Result<AsrOutput, AsrError>) + Send>;

/// One unit of work.
pub struct AsrJob {
    /// Final or partial.
    pub kind: JobKind,
    /// 16 kHz mono audio.
    pub samples: Vec<f32>,
    /// Decoder options (vocabulary prompt).
    pub options: DecodeOptions,
    /// Where the result goes.
    pub reply: Reply,
}

impl std::fmt::Debug for AsrJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsrJob")
            .field("kind", &self.kind)
            .field(
                "seconds",
                &(self.samples.len() as f64 / f64::from(TARGET_RATE)),
            )
            .finish_non_exhaustive()
    }
}

/// Pool sizing.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Worker threads (each with its own whisper state).
    pub workers: usize,
    /// Threads whisper uses inside one call.
    pub threads_per_worker: usize,
    /// Finals that may wait; past this, submitting a final fails (back-pressure, not loss).
    pub max_queued_finals: usize,
    /// Partials that may wait; past this the oldest waiting partial is dropped.
    pub max_queued_partials: usize,
    /// A final that finds every worker idle and nothing else waiting runs on all the pool's
    /// cores (`workers × threads_per_worker` threads), and the other workers take no job until
    /// it is done: on an idle machine the end of an answer is decoded about twice as fast on
    /// two cores, and since nothing else runs beside it, whisper's spinning threads do not
    /// fight anyone. Under load every call keeps one worker's threads. Off in
    /// [`for_cores`](Self::for_cores): measured on one stream it lowers the final lag by
    /// ~0.1 s and costs ~20 % more CPU (two threads are less than twice as fast as one).
    pub boost_idle_finals: bool,
}

impl PoolConfig {
    /// Cores the pool decodes on: every worker's threads.
    pub fn cores(&self) -> usize {
        self.workers.max(1) * self.threads_per_worker.max(1)
    }

    /// Sized to the machine: one single-threaded worker per core. whisper.cpp's threads wait
    /// for each other by spinning, so a multi-threaded call slows down badly whenever anything
    /// else runs (another session, the server, a build): measured here, one 11 s clip took
    /// 1.6 s on one thread and 7.7 s on two while the other core was busy. One thread per
    /// worker keeps decode time predictable and lets a final run beside a partial.
    pub fn for_cores(cores: usize) -> Self {
        let workers = cores.max(1);
        PoolConfig {
            workers,
            threads_per_worker: 1,
            max_queued_finals: 256,
            max_queued_partials: workers,
            boost_idle_finals: false,
        }
    }
}

/// A job the pool did not accept, handed back so the caller can retry it.
#[derive(Debug)]
pub struct Rejected {
    /// Why.
    pub error: SubmitError,
    /// The job, untouched.
    pub job: AsrJob,
}

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The final queue is full: the caller should retry shortly.
    #[error("transcription queue is full")]
    Full,
    /// The pool is shutting down.
    #[error("transcription pool is closed")]
    Closed,
}

struct Queued {
    job: AsrJob,
    at: Instant,
}

struct Queues {
    finals: VecDeque<Queued>,
    partials: VecDeque<Queued>,
    closed: bool,
    /// Cores not in use by a running decode (a boosted final takes them all).
    free_cores: usize,
}

/// Counters exported as metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Partials dropped because the machine was saturated.
    pub dropped_partials: AtomicU64,
    /// Finals decoded.
    pub finals_done: AtomicU64,
    /// Partials decoded.
    pub partials_done: AtomicU64,
    /// Decodes called off through their [`CancelToken`](super::CancelToken) (before they
    /// started or part-way), so their results were never used.
    pub cancelled: AtomicU64,
}

struct Shared {
    queues: Mutex<Queues>,
    wake: Condvar,
    stats: PoolStats,
    config: PoolConfig,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // A worker that panicked while holding the lock leaves the queues consistent (only
        // push/pop happen under it), so the poison can be ignored.
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The worker pool. Cloning shares it.
#[derive(Clone)]
pub struct WorkerPool {
    shared: Arc<Shared>,
    handles: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl WorkerPool {
    /// Starts `config.workers` named threads, each with its own whisper state.
    pub fn start(model: &WhisperModel, config: PoolConfig) -> Result<Self, AsrError> {
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues {
                finals: VecDeque::new(),
                partials: VecDeque::new(),
                closed: false,
                free_cores: config.cores(),
            }),
            wake: Condvar::new(),
            stats: PoolStats::default(),
            config,
        });
        let mut handles = Vec::new();
        for index in 0..config.workers.max(1) {
            let mut worker = model.worker(config.threads_per_worker)?;
            let shared = Arc::clone(&shared);
            let name = format!("asr-worker-{index}");
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        worker_loop(&shared, &mut worker);
                    }));
                    match outcome {
                        Ok(()) => tracing::debug!(worker = %name, "stopped: pool closed"),
                        Err(_) => tracing::error!(worker = %name, "stopped: panicked"),
                    }
                })
                .map_err(|e| AsrError::Inference(format!("spawning a worker: {e}")))?;
            handles.push(handle);
        }
        Ok(WorkerPool {
            shared,
            handles: Arc::new(Mutex::new(handles)),
        })
    }

    /// The pool's sizing.
    pub fn config(&self) -> PoolConfig {
        self.shared.config
    }

    /// Counters.
    pub fn stats(&self) -> &PoolStats {
        &self.shared.stats
    }

    /// Jobs waiting (finals, partials).
    pub fn queued(&self) -> (usize, usize) {
        let q = self.shared.lock();
        (q.finals.len(), q.partials.len())
    }

    /// Queues a job. A final fails only when the final queue is full or the pool is closed; a
    /// partial never fails: while finals are waiting it is dropped at once, and when its queue
    /// is full the oldest waiting partial is dropped (their replies get [`AsrError::Dropped`]),
    /// after the waiting partials already cancelled have left the queue (their replies get
    /// [`AsrError::Cancelled`]), all counted.
    pub fn submit(&self, job: AsrJob) -> Result<(), Rejected> {
        let mut q = self.shared.lock();
        if q.closed {
            return Err(Rejected {
                error: SubmitError::Closed,
                job,
            });
        }
        let queued = Queued {
            job,
            at: Instant::now(),
        };
        match queued.job.kind {
            JobKind::Final => {
                if q.finals.len() >= self.shared.config.max_queued_finals {
                    return Err(Rejected {
                        error: SubmitError::Full,
                        job: queued.job,
                    });
                }
                q.finals.push_back(queued);
            }
            JobKind::Partial if !q.finals.is_empty() => {
                // Finals are waiting: the machine is behind, and a caption would only delay
                // them further.
                drop(q);
                self.shared
                    .stats
                    .dropped_partials
                    .fetch_add(1, Ordering::Relaxed);
                (queued.job.reply)(Err(AsrError::Dropped));
                return Ok(());
            }
            JobKind::Partial => {
                // Captions called off while waiting give their places back first.
                let mut cancelled = Vec::new();
                let mut index = 0;
                while index < q.partials.len() {
                    if q.partials[index].job.options.cancel.is_cancelled() {
                        if let Some(gone) = q.partials.remove(index) {
                            cancelled.push(gone.job.reply);
                        }
                    } else {
                        index += 1;
                    }
                }
                self.shared
                    .stats
                    .cancelled
                    .fetch_add(cancelled.len() as u64, Ordering::Relaxed);
                let mut dropped = Vec::new();
                while q.partials.len() >= self.shared.config.max_queued_partials.max(1) {
                    if let Some(old) = q.partials.pop_front() {
                        dropped.push(old.job.reply);
                    }
                    self.shared
                        .stats
                        .dropped_partials
                        .fetch_add(1, Ordering::Relaxed);
                }
                q.partials.push_back(queued);
                drop(q);
                self.shared.wake.notify_one();
                for reply in dropped {
                    reply(Err(AsrError::Dropped));
                }
                for reply in cancelled {
                    reply(Err(AsrError::cancelled_unstarted()));
                }
                return Ok(());
            }
        }
        drop(q);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Stops accepting jobs, lets the workers finish the finals already queued, drops queued
    /// partials, and joins the threads.
    pub fn shutdown(&self) {
        {
            let mut q = self.shared.lock();
            q.closed = true;
            let dropped: Vec<Queued> = q.partials.drain(..).collect();
            self.shared
                .stats
                .dropped_partials
                .fetch_add(dropped.len() as u64, Ordering::Relaxed);
            drop(q);
            for d in dropped {
                (d.job.reply)(Err(AsrError::Dropped));
            }
        }
        self.shared.wake.notify_all();
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

/// Gives a decode's cores back to the pool when dropped, even if the decode panicked.
struct CoresHeld<'a> {
    shared: &'a Shared,
    cores: usize,
}

impl Drop for CoresHeld<'_> {
    fn drop(&mut self) {
        self.shared.lock().free_cores += self.cores;
        // Workers waiting for cores (while a boosted final ran) may go on now.
        self.shared.wake.notify_all();
    }
}

fn worker_loop(shared: &Shared, worker: &mut super::WhisperWorker) {
    let config = shared.config;
    let own = config.threads_per_worker.max(1);
    loop {
        let next = {
            let mut q = shared.lock();
            loop {
                if q.free_cores >= own {
                    if let Some(job) = q.finals.pop_front() {
                        let alone = q.free_cores == config.cores()
                            && q.finals.is_empty()
                            && q.partials.is_empty();
                        let threads = if config.boost_idle_finals && alone {
                            config.cores()
                        } else {
                            own
                        };
                        q.free_cores -= threads;
                        break Some((job, threads));
                    }
                    if let Some(job) = q.partials.pop_front() {
                        q.free_cores -= own;
                        break Some((job, own));
                    }
                }
                if q.closed && q.finals.is_empty() && q.partials.is_empty() {
                    break None;
                }
                q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Some((Queued { job, at }, threads)) = next else {
            return;
        };
        let held = CoresHeld {
            shared,
            cores: threads,
        };
        let queued = at.elapsed();
        let started = Instant::now();
        let result = match worker.transcribe_on(&job.samples, &job.options, threads) {
            Ok(segments) => Ok(AsrOutput {
                segments: filter::clean_segments(segments),
                compute: started.elapsed(),
                queued,
                threads,
            }),
            // What a decode stopped part-way had cost still counts.
            Err(AsrError::Cancelled { .. }) => Err(AsrError::Cancelled {
                compute: started.elapsed(),
                threads,
            }),
            Err(e) => Err(e),
        };
        drop(held);
        let counter = match (&result, job.kind) {
            (Err(AsrError::Cancelled { .. }), _) => &shared.stats.cancelled,
            (_, JobKind::Final) => &shared.stats.finals_done,
            (_, JobKind::Partial) => &shared.stats.partials_done,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        (job.reply)(result);
    }
}

impl super::Transcriber for WorkerPool {
    fn submit(&self, job: AsrJob) -> Result<(), Rejected> {
        WorkerPool::submit(self, job)
    }

    fn name(&self) -> &str {
        "whisper.cpp"
    }

    fn queue_depth(&self) -> usize {
        let (finals, partials) = self.queued();
        finals + partials
    }
}
