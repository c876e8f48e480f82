//! `Builder`: configures and builds a [`Runtime`].
use super::blocking::BlockingPool;
use super::runtime::{Kind, Runtime, RuntimeFlavor};
use super::scheduler::{self, current_thread::CurrentThread, multi_thread::MultiThread, Config};
use super::{driver, Handle};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Builds a runtime with custom settings.
///
/// ```
/// let rt = kyoto_rt::runtime::Builder::new_multi_thread()
///     .worker_threads(2)
///     .thread_name("my-worker")
///     .build()
///     .unwrap();
/// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    flavor: RuntimeFlavor,
    worker_threads: Option<usize>,
    thread_name: String,
    event_interval: u32,
    global_queue_interval: Option<u32>,
    max_blocking_threads: usize,
    thread_keep_alive: Duration,
    max_io_events_per_tick: usize,
    start_paused: bool,
    disable_lifo_slot: bool,
}

/// The environment variable that sets the default worker count.
pub const WORKER_THREADS_ENV: &str = "KYOTO_WORKER_THREADS";

/// The largest worker count [`WORKER_THREADS_ENV`] may ask for (the JS `workerThreads` cap).
pub const MAX_WORKER_THREADS_FROM_ENV: usize = 1024;

/// The worker count [`WORKER_THREADS_ENV`] asks for, if it is set to an integer in
/// `1..=MAX_WORKER_THREADS_FROM_ENV`. Other values are ignored: a typo must not make the process
/// try to start billions of threads (and abort on the allocation).
pub fn worker_threads_from_env() -> Option<usize> {
    std::env::var(WORKER_THREADS_ENV)
        .ok()
        .and_then(|v| parse_worker_threads(&v))
}

fn parse_worker_threads(v: &str) -> Option<usize> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|&n| (1..=MAX_WORKER_THREADS_FROM_ENV).contains(&n))
}

impl Builder {
    /// A multi-thread, work-stealing runtime (one worker per core unless set).
    pub fn new_multi_thread() -> Builder {
        Builder::new(RuntimeFlavor::MultiThread)
    }

    /// A runtime whose tasks all run on the thread that drives it.
    pub fn new_current_thread() -> Builder {
        Builder::new(RuntimeFlavor::CurrentThread)
    }

    fn new(flavor: RuntimeFlavor) -> Builder {
        Builder {
            flavor,
            worker_threads: None,
            thread_name: "kyoto-rt-worker".to_string(),
            event_interval: 61,
            global_queue_interval: None,
            max_blocking_threads: 512,
            thread_keep_alive: Duration::from_secs(10),
            max_io_events_per_tick: 1024,
            start_paused: false,
            disable_lifo_slot: false,
        }
    }

    /// Number of worker threads (multi-thread only). Defaults to `KYOTO_WORKER_THREADS`, else one per
    /// core.
    ///
    /// # Panics
    /// When `n` is 0.
    pub fn worker_threads(&mut self, n: usize) -> &mut Self {
        assert!(n > 0, "worker_threads must be at least 1");
        self.worker_threads = Some(n);
        self
    }

    /// Prefix of the worker and blocking thread names (default `kyoto-rt-worker`).
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.thread_name = name.into();
        self
    }

    /// Tasks polled between two non-blocking polls of the I/O and timer driver (default 61).
    ///
    /// # Panics
    /// When `n` is 0.
    pub fn event_interval(&mut self, n: u32) -> &mut Self {
        assert!(n > 0, "event_interval must be at least 1");
        self.event_interval = n;
        self
    }

    /// Tasks polled between two checks of the global queue ahead of the local one (default 31
    /// current-thread, 61 multi-thread).
    ///
    /// # Panics
    /// When `n` is 0.
    pub fn global_queue_interval(&mut self, n: u32) -> &mut Self {
        assert!(n > 0, "global_queue_interval must be at least 1");
        self.global_queue_interval = Some(n);
        self
    }

    /// Cap of the blocking pool (default 512).
    ///
    /// # Panics
    /// When `n` is 0.
    pub fn max_blocking_threads(&mut self, n: usize) -> &mut Self {
        assert!(n > 0, "max_blocking_threads must be at least 1");
        self.max_blocking_threads = n;
        self
    }

    /// How long an idle blocking thread waits for work before exiting (default 10 s).
    pub fn thread_keep_alive(&mut self, d: Duration) -> &mut Self {
        self.thread_keep_alive = d;
        self
    }

    /// Readiness events taken from the OS per driver poll (default 1024).
    pub fn max_io_events_per_tick(&mut self, n: usize) -> &mut Self {
        self.max_io_events_per_tick = n.max(1);
        self
    }

    /// Starts with the test clock paused (see [`crate::time::pause`]).
    pub fn start_paused(&mut self, paused: bool) -> &mut Self {
        self.start_paused = paused;
        self
    }

    /// Turns off the LIFO slot (multi-thread): every wake goes to the back of the queue.
    pub fn disable_lifo_slot(&mut self) -> &mut Self {
        self.disable_lifo_slot = true;
        self
    }

    /// Enables the I/O and time drivers. They are always on in kyoto; kept for Tokio familiarity.
    pub fn enable_all(&mut self) -> &mut Self {
        self
    }

    fn resolved_worker_threads(&self) -> usize {
        if let Some(n) = self.worker_threads {
            return n;
        }
        worker_threads_from_env().unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// Builds the runtime; for multi-thread this starts the worker threads.
    pub fn build(&mut self) -> io::Result<Runtime> {
        if self.start_paused && self.flavor == RuntimeFlavor::MultiThread {
            // The paused clock auto-advances when the runtime is idle, which only a single thread
            // can know for sure (as in Tokio).
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "start_paused requires a current-thread runtime",
            ));
        }
        let (driver, driver_handle) = driver::Driver::new(driver::Cfg {
            nevents: self.max_io_events_per_tick,
            start_paused: self.start_paused,
        })?;
        let driver_handle = Arc::new(driver_handle);
        let blocking_pool = BlockingPool::new(
            self.thread_name.clone(),
            self.max_blocking_threads,
            self.thread_keep_alive,
            Arc::downgrade(&driver_handle),
        );
        let spawner = blocking_pool.spawner().clone();
        match self.flavor {
            RuntimeFlavor::CurrentThread => {
                let config = Config {
                    event_interval: self.event_interval,
                    global_queue_interval: self.global_queue_interval.unwrap_or(31),
                    disable_lifo_slot: true,
                };
                let (scheduler, handle) =
                    CurrentThread::new(driver, driver_handle, spawner, config);
                Ok(Runtime::from_parts(
                    Kind::CurrentThread(scheduler),
                    Handle {
                        inner: scheduler::Handle::CurrentThread(handle),
                    },
                    blocking_pool,
                ))
            }
            RuntimeFlavor::MultiThread => {
                let config = Config {
                    event_interval: self.event_interval,
                    global_queue_interval: self.global_queue_interval.unwrap_or(61),
                    disable_lifo_slot: self.disable_lifo_slot,
                };
                let (scheduler, handle) = MultiThread::new(
                    self.resolved_worker_threads(),
                    driver,
                    driver_handle,
                    spawner,
                    config,
                    &self.thread_name,
                )?;
                Ok(Runtime::from_parts(
                    Kind::MultiThread(scheduler),
                    Handle {
                        inner: scheduler::Handle::MultiThread(handle),
                    },
                    blocking_pool,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_worker_threads;

    #[test]
    fn worker_threads_env_values_out_of_range_are_ignored() {
        assert_eq!(parse_worker_threads(" 3 "), Some(3));
        assert_eq!(parse_worker_threads("1024"), Some(1024));
        assert_eq!(parse_worker_threads("1025"), None);
        assert_eq!(parse_worker_threads("99999999999"), None);
        assert_eq!(parse_worker_threads("0"), None);
        assert_eq!(parse_worker_threads("x"), None);
    }
}
