//! The multi-thread, work-stealing scheduler (see [`worker`] for the design and the shutdown protocol).
mod idle;
mod park;
pub(crate) mod queue;
mod stats;
mod worker;

pub(crate) use worker::{Context, Handle};

use super::Config;
use crate::runtime::{blocking, driver};
use std::sync::Arc;

/// The worker threads of one runtime.
pub(crate) struct MultiThread {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl MultiThread {
    pub(crate) fn new(
        size: usize,
        driver: driver::Driver,
        driver_handle: Arc<driver::Handle>,
        blocking: blocking::Spawner,
        config: Config,
        thread_name: &str,
    ) -> std::io::Result<(MultiThread, Arc<Handle>)> {
        let (handle, cores) = worker::create(size, driver, driver_handle, blocking, config);
        let mut threads = Vec::with_capacity(size);
        for (i, core) in cores.into_iter().enumerate() {
            let h = handle.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{thread_name}-{i}"))
                .spawn(move || worker::run(h, core));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    // Stop the workers already started; the runtime is not built.
                    handle.close();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok((MultiThread { threads }, handle))
    }

    /// Shuts the workers down; waits at most `timeout` for them to finish (a worker stuck in a
    /// never-returning poll is abandoned, not joined).
    pub(crate) fn shutdown(&mut self, handle: &Handle, timeout: std::time::Duration) {
        handle.close();
        if handle.wait_shutdown(timeout) {
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        } else {
            self.threads.clear();
        }
    }
}
