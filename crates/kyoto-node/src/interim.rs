//! A minimal stand-in for `kyoto_rt` while its scheduler and time driver are being written: a pool
//! of plain threads for jobs, one timer thread per runtime (a binary heap) and a process-global
//! pausable clock. It has the same shape as the calls `runtime.rs` makes, so switching to `kyoto_rt`
//! touches only that file. Nothing here is on the final hot path.
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use crate::bridge::Op;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Clock: milliseconds since a process-wide origin, pausable.

struct ClockState {
    paused: bool,
    base_real: StdInstant,
    base_virtual: f64,
}

fn clock() -> &'static Mutex<ClockState> {
    static CLOCK: OnceLock<Mutex<ClockState>> = OnceLock::new();
    CLOCK.get_or_init(|| {
        Mutex::new(ClockState {
            paused: false,
            base_real: StdInstant::now(),
            base_virtual: 0.0,
        })
    })
}

fn now_locked(c: &ClockState) -> f64 {
    if c.paused {
        c.base_virtual
    } else {
        c.base_virtual + c.base_real.elapsed().as_secs_f64() * 1000.0
    }
}

/// Now, in ms since the process-wide origin, quantised to 1/1024 ms: a dyadic fraction, so
/// adding whole (or binary-fraction) milliseconds to an instant is exact in an f64.
pub fn now_ms() -> f64 {
    (now_locked(&lock(clock())) * 1024.0).floor() / 1024.0
}

/// Freezes the clock. Returns false if it was already paused.
pub fn pause() -> bool {
    let mut c = lock(clock());
    if c.paused {
        return false;
    }
    c.base_virtual = (now_locked(&c) * 1024.0).floor() / 1024.0;
    c.paused = true;
    drop(c);
    wake_all_timers();
    true
}

/// Lets the clock run again from its frozen value. Returns false if it was not paused.
pub fn resume() -> bool {
    let mut c = lock(clock());
    if !c.paused {
        return false;
    }
    c.base_real = StdInstant::now();
    c.paused = false;
    drop(c);
    wake_all_timers();
    true
}

/// Whether the clock is paused.
pub fn is_paused() -> bool {
    lock(clock()).paused
}

/// Moves the paused clock forward. Returns false if it is not paused.
pub fn advance(ms: f64) -> bool {
    let mut c = lock(clock());
    if !c.paused {
        return false;
    }
    c.base_virtual += ms;
    drop(c);
    wake_all_timers();
    true
}

/// On a paused clock: when no timer is due (none is in flight), jumps to the earliest timer of
/// any runtime and fires it. Returns whether the clock moved.
pub fn auto_advance() -> bool {
    let mut next = f64::INFINITY;
    {
        let mut all = lock(all_timers());
        all.retain(|w| w.strong_count() > 0);
        for t in all.iter().filter_map(|w| w.upgrade()) {
            let q = lock(&t.q);
            if let Some(d) = q
                .heap
                .iter()
                .filter(|e| !e.op.is_cancelled())
                .map(|e| e.deadline)
                .reduce(f64::min)
            {
                next = next.min(d);
            }
        }
    }
    let mut c = lock(clock());
    if !c.paused || !next.is_finite() || next <= c.base_virtual {
        return false;
    }
    c.base_virtual = next;
    drop(c);
    wake_all_timers();
    true
}

// ---------------------------------------------------------------------------------------------
// Timers

struct Entry {
    deadline: f64,
    seq: u64,
    op: Op,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap and we want the earliest deadline on top.
    fn cmp(&self, o: &Self) -> CmpOrdering {
        o.deadline
            .total_cmp(&self.deadline)
            .then(o.seq.cmp(&self.seq))
    }
}

struct TimerQ {
    heap: BinaryHeap<Entry>,
    seq: u64,
    shutdown: bool,
}

struct Timers {
    q: Mutex<TimerQ>,
    cv: Condvar,
}

fn all_timers() -> &'static Mutex<Vec<std::sync::Weak<Timers>>> {
    static ALL: OnceLock<Mutex<Vec<std::sync::Weak<Timers>>>> = OnceLock::new();
    ALL.get_or_init(|| Mutex::new(Vec::new()))
}

fn wake_all_timers() {
    let mut all = lock(all_timers());
    all.retain(|w| w.strong_count() > 0);
    for t in all.iter().filter_map(|w| w.upgrade()) {
        let _g = lock(&t.q);
        t.cv.notify_all();
    }
}

fn timer_loop(t: Arc<Timers>) {
    let mut due = Vec::new();
    let mut g = lock(&t.q);
    loop {
        if g.shutdown {
            let rest: Vec<Entry> = g.heap.drain().collect();
            drop(g);
            drop(rest); // each Op completes with ERR_RUNTIME_SHUTDOWN
            return;
        }
        let now = now_ms();
        while let Some(top) = g.heap.peek() {
            if top.op.is_cancelled() {
                g.heap.pop();
            } else if top.deadline <= now {
                due.push(g.heap.pop().map(|e| e.op));
            } else {
                break;
            }
        }
        if !due.is_empty() {
            drop(g);
            for op in due.drain(..).flatten() {
                op.complete(crate::bridge::Value::Undefined);
            }
            g = lock(&t.q);
            continue;
        }
        let next = g.heap.peek().map(|e| e.deadline);
        match next {
            None => g = t.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
            // A paused clock only moves by `advance` / `auto_advance` (called from the JS thread
            // when it is idle), which notify this condvar.
            Some(_) if is_paused() => g = t.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                let wait = Duration::from_secs_f64(((d - now) / 1000.0).max(0.0));
                g =
                    t.cv.wait_timeout(g, wait)
                        .map(|r| r.0)
                        .unwrap_or_else(|e| e.into_inner().0);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Runtime

type Job = Box<dyn FnOnce() + Send>;

struct PoolQ {
    jobs: VecDeque<Job>,
    shutdown: bool,
}

struct Shared {
    q: Mutex<PoolQ>,
    cv: Condvar,
    timers: Arc<Timers>,
    workers: usize,
    spawned: AtomicU64,
    alive: AtomicU64,
    polls: Vec<AtomicU64>,
    parks: Vec<AtomicU64>,
}

/// Runtime configuration (mirrors `kyoto_rt::runtime::Builder`).
pub struct Config {
    pub multi_thread: bool,
    pub workers: usize,
    pub thread_name: String,
}

/// A pool of job threads plus a timer thread.
pub struct Runtime {
    shared: Arc<Shared>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
}

/// Metrics snapshot.
pub struct Metrics {
    pub workers: usize,
    pub alive_tasks: u64,
    pub spawned_tasks: u64,
    pub global_queue_depth: usize,
    pub worker_poll_count: Vec<u64>,
    pub worker_park_count: Vec<u64>,
}

impl Runtime {
    pub fn new(cfg: Config) -> std::io::Result<Runtime> {
        let workers = if cfg.multi_thread {
            cfg.workers.max(1)
        } else {
            1
        };
        let timers = Arc::new(Timers {
            q: Mutex::new(TimerQ {
                heap: BinaryHeap::new(),
                seq: 0,
                shutdown: false,
            }),
            cv: Condvar::new(),
        });
        lock(all_timers()).push(Arc::downgrade(&timers));
        let shared = Arc::new(Shared {
            q: Mutex::new(PoolQ {
                jobs: VecDeque::new(),
                shutdown: false,
            }),
            cv: Condvar::new(),
            timers: timers.clone(),
            workers,
            spawned: AtomicU64::new(0),
            alive: AtomicU64::new(0),
            polls: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            parks: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        });
        let mut threads = Vec::new();
        for i in 0..workers {
            let s = shared.clone();
            threads.push(
                thread::Builder::new()
                    .name(format!("{}-{i}", cfg.thread_name))
                    .spawn(move || worker_loop(s, i))?,
            );
        }
        threads.push(
            thread::Builder::new()
                .name(format!("{}-timer", cfg.thread_name))
                .spawn(move || timer_loop(timers))?,
        );
        Ok(Runtime {
            shared,
            threads: Mutex::new(threads),
        })
    }

    /// Runs `f` on a worker thread.
    pub fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        let mut q = lock(&self.shared.q);
        if q.shutdown {
            return; // dropping `f` drops its Op: completes with ERR_RUNTIME_SHUTDOWN
        }
        self.shared.spawned.fetch_add(1, Ordering::Relaxed);
        self.shared.alive.fetch_add(1, Ordering::Relaxed);
        q.jobs.push_back(Box::new(f));
        drop(q);
        self.shared.cv.notify_one();
    }

    /// Completes `op` at `deadline` (ms on the clock; timers with equal deadlines fire in order).
    pub fn sleep_until(&self, op: Op, deadline: f64) {
        let t = &self.shared.timers;
        let mut q = lock(&t.q);
        if q.shutdown {
            return;
        }
        q.seq += 1;
        let seq = q.seq;
        q.heap.push(Entry { deadline, seq, op });
        drop(q);
        t.cv.notify_one();
    }

    pub fn metrics(&self) -> Metrics {
        let s = &self.shared;
        Metrics {
            workers: s.workers,
            alive_tasks: s.alive.load(Ordering::Relaxed) + lock(&s.timers.q).heap.len() as u64,
            spawned_tasks: s.spawned.load(Ordering::Relaxed),
            global_queue_depth: lock(&s.q).jobs.len(),
            worker_poll_count: s.polls.iter().map(|a| a.load(Ordering::Relaxed)).collect(),
            worker_park_count: s.parks.iter().map(|a| a.load(Ordering::Relaxed)).collect(),
        }
    }

    /// Stops every thread; pending jobs and timers are dropped (their ops complete with
    /// `ERR_RUNTIME_SHUTDOWN`). Waits at most `timeout` for the threads.
    pub fn shutdown(&self, timeout: Duration) {
        {
            let mut q = lock(&self.shared.q);
            q.shutdown = true;
            q.jobs.clear();
        }
        self.shared.cv.notify_all();
        {
            let mut t = lock(&self.shared.timers.q);
            t.shutdown = true;
        }
        self.shared.timers.cv.notify_all();
        let threads = std::mem::take(&mut *lock(&self.threads));
        let start = StdInstant::now();
        for th in threads {
            while !th.is_finished() && start.elapsed() < timeout {
                thread::sleep(Duration::from_millis(1));
            }
            if th.is_finished() {
                let _ = th.join();
            }
        }
    }
}

fn worker_loop(s: Arc<Shared>, i: usize) {
    loop {
        let job = {
            let mut q = lock(&s.q);
            loop {
                if q.shutdown {
                    return;
                }
                if let Some(j) = q.jobs.pop_front() {
                    break j;
                }
                s.parks[i].fetch_add(1, Ordering::Relaxed);
                q = s.cv.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        s.polls[i].fetch_add(1, Ordering::Relaxed);
        // A panicking job drops its Op while unwinding, which rejects the JS promise.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        s.alive.fetch_sub(1, Ordering::Relaxed);
    }
}
