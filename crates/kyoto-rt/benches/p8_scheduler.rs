//! Benchmark P8 (`shared/PERFORMANCE.md`): kyoto's multi-thread scheduler against tokio's, same
//! worker count, side by side in one run.
//!
//! Run with `cargo bench -p kyoto-rt --bench p8_scheduler`. Environment knobs:
//! `P8_WORKERS` (default 2), `P8_ROUNDS` (default 11, at least 5), `P8_SAMPLE_MS` (target length of
//! one timed sample, default 100), `P8_ONLY` (comma-separated benchmark names), `P8_RUNTIMES`
//! (`kyoto`, `tokio` or both), `P8_JSON=1` (one JSON line at the end, for `bench/run.mjs`),
//! `P8_ITERS` (fixed iterations per sample instead of calibrating; for profilers).
//!
//! Method:
//! - The benchmark bodies are written once, in [`suite!`], and instantiated for each runtime with that
//!   runtime's `spawn`, `yield_now` and `oneshot`: both sides run the same code.
//! - Each runtime is built once and reused; the first (untimed) sample of each benchmark warms it.
//! - A sample runs `iters` iterations inside **one** spawned root task and is timed there with
//!   `Instant`, so neither `block_on`'s cross-thread wake nor thread start-up is in the number. `iters`
//!   is calibrated once (on tokio) so one sample lasts about `P8_SAMPLE_MS`; both runtimes then run the
//!   same `iters`.
//! - Rounds interleave the runtimes and alternate which goes first, so drift in machine load hits both.
//! - The figure is the median over rounds of time per iteration; min and max are shown to expose noise.
use std::time::{Duration, Instant};

/// Spawns from inside the runtime, then awaits every handle.
const SPAWN_MANY: usize = 10_000;
/// Tasks × `yield_now` calls each.
const YIELD_TASKS: usize = 200;
const YIELDS_PER_TASK: usize = 1_000;
/// Round trips between two tasks over oneshot channels.
const PING_PONGS: usize = 1_000;
/// Length of the recursive spawn chain.
const CHAIN: usize = 1_000;

const BENCHES: [&str; 4] = ["spawn_many", "yield_many", "ping_pong", "chained_spawn"];

/// Generates the benchmark bodies for one runtime. `$spawn`, `$yield_now` and `$oneshot` are that
/// runtime's own items.
macro_rules! suite {
    ($name:ident, spawn = $($spawn:ident)::+, yield_now = $($yield_now:ident)::+, oneshot = $($oneshot:ident)::+) => {
        mod $name {
            use super::*;
            use $($oneshot)::+ as oneshot;

            pub async fn spawn_many() {
                let mut handles = Vec::with_capacity(SPAWN_MANY);
                for _ in 0..SPAWN_MANY {
                    handles.push($($spawn)::+(async {}));
                }
                for h in handles {
                    h.await.expect("spawned task failed");
                }
            }

            pub async fn yield_many() {
                let mut handles = Vec::with_capacity(YIELD_TASKS);
                for _ in 0..YIELD_TASKS {
                    handles.push($($spawn)::+(async {
                        for _ in 0..YIELDS_PER_TASK {
                            $($yield_now)::+().await;
                        }
                    }));
                }
                for h in handles {
                    h.await.expect("yielding task failed");
                }
            }

            /// Each message carries the sender for the reply: a oneshot is single-use.
            struct Ping(oneshot::Sender<Pong>);
            struct Pong(oneshot::Sender<Ping>);

            pub async fn ping_pong() {
                let (mut ping_tx, mut ping_rx) = oneshot::channel::<Ping>();
                let pinger = $($spawn)::+(async move {
                    for _ in 0..PING_PONGS {
                        let (pong_tx, pong_rx) = oneshot::channel();
                        if ping_tx.send(Ping(pong_tx)).is_err() {
                            panic!("ponger gone");
                        }
                        let Pong(next) = pong_rx.await.expect("ponger dropped the reply");
                        ping_tx = next;
                    }
                });
                let ponger = $($spawn)::+(async move {
                    for _ in 0..PING_PONGS {
                        let Ping(pong_tx) = ping_rx.await.expect("pinger dropped the ping");
                        let (next_tx, next_rx) = oneshot::channel();
                        ping_rx = next_rx;
                        if pong_tx.send(Pong(next_tx)).is_err() {
                            panic!("pinger gone");
                        }
                    }
                });
                pinger.await.expect("pinger failed");
                ponger.await.expect("ponger failed");
            }

            fn chain(left: usize, done: oneshot::Sender<()>) {
                if left == 0 {
                    let _ = done.send(());
                    return;
                }
                // Detached: the chain reports through `done`, like a fire-and-forget pipeline.
                drop($($spawn)::+(async move { chain(left - 1, done) }));
            }

            pub async fn chained_spawn() {
                let (tx, rx) = oneshot::channel();
                chain(CHAIN, tx);
                rx.await.expect("the chain was dropped");
            }

            /// Runs `iters` iterations of `bench` in one root task; returns the time they took.
            pub async fn sample(bench: &str, iters: usize) -> Duration {
                let bench = bench.to_string();
                let root = $($spawn)::+(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        match bench.as_str() {
                            "spawn_many" => spawn_many().await,
                            "yield_many" => yield_many().await,
                            "ping_pong" => ping_pong().await,
                            "chained_spawn" => chained_spawn().await,
                            other => panic!("unknown benchmark {other}"),
                        }
                    }
                    start.elapsed()
                });
                root.await.expect("benchmark root task failed")
            }
        }
    };
}

suite!(
    on_kyoto,
    spawn = kyoto_rt::spawn,
    yield_now = kyoto_rt::task::yield_now,
    oneshot = kyoto_rt::sync::oneshot
);
suite!(
    on_tokio,
    spawn = tokio::spawn,
    yield_now = tokio::task::yield_now,
    oneshot = tokio::sync::oneshot
);

enum Rt {
    Kyoto(kyoto_rt::Runtime),
    Tokio(tokio::runtime::Runtime),
}

impl Rt {
    fn name(&self) -> &'static str {
        match self {
            Rt::Kyoto(_) => "kyoto",
            Rt::Tokio(_) => "tokio",
        }
    }

    fn sample(&self, bench: &str, iters: usize) -> Duration {
        match self {
            Rt::Kyoto(rt) => rt.block_on(on_kyoto::sample(bench, iters)),
            Rt::Tokio(rt) => rt.block_on(on_tokio::sample(bench, iters)),
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Formats nanoseconds with a unit that keeps 3–4 significant digits.
fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let parts: Vec<&str> = s.split_whitespace().take(3).collect();
            (parts.len() == 3).then(|| parts.join(" "))
        })
        .unwrap_or_else(|| "n/a".to_string())
}

struct Row {
    bench: &'static str,
    iters: usize,
    /// Per runtime: nanoseconds per iteration, one entry per round.
    samples: Vec<(&'static str, Vec<f64>)>,
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument (as with libtest) selects benchmarks.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let workers = env_usize("P8_WORKERS", 2).max(1);
    // `cargo test --all-targets` runs this binary without `--bench`: then it is a smoke test (every
    // benchmark once, tiny samples) rather than a minute of measurement.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rounds = if smoke {
        1
    } else {
        env_usize("P8_ROUNDS", 11).max(5)
    };
    let sample_ms = if smoke {
        1.0
    } else {
        env_usize("P8_SAMPLE_MS", 100).max(1) as f64
    };
    let only: Vec<String> = std::env::var("P8_ONLY")
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
        .unwrap_or_default();
    let which = std::env::var("P8_RUNTIMES").unwrap_or_else(|_| "kyoto,tokio".to_string());
    let json = std::env::var("P8_JSON").is_ok_and(|v| v == "1");
    // For profilers (callgrind): a fixed iteration count instead of the time-based calibration.
    let fixed_iters: Option<usize> = std::env::var("P8_ITERS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(|n: usize| n.max(1));

    let mut runtimes = Vec::new();
    if which.contains("kyoto") {
        let rt = kyoto_rt::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .build()
            .expect("building the kyoto runtime");
        runtimes.push(Rt::Kyoto(rt));
    }
    if which.contains("tokio") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("building the tokio runtime");
        runtimes.push(Rt::Tokio(rt));
    }
    assert!(!runtimes.is_empty(), "P8_RUNTIMES selects no runtime");

    let load_before = load_average();
    let started = Instant::now();
    let mut rows = Vec::new();
    for bench in BENCHES {
        if !only.is_empty() && !only.iter().any(|o| o == bench) {
            continue;
        }
        if !filter.is_empty() && !filter.iter().any(|f| bench.contains(f.as_str())) {
            continue;
        }
        // Warm-up (one iteration each), then calibrate on the last runtime (tokio when present).
        for rt in &runtimes {
            rt.sample(bench, 1);
        }
        let probe = runtimes[runtimes.len() - 1].sample(bench, 3).as_secs_f64() / 3.0;
        let iters = match fixed_iters {
            Some(n) => n,
            None => ((sample_ms / 1e3) / probe.max(1e-9))
                .round()
                .clamp(1.0, 100_000.0) as usize,
        };
        for rt in &runtimes {
            rt.sample(bench, iters.div_ceil(4));
        }
        let mut samples: Vec<(&'static str, Vec<f64>)> =
            runtimes.iter().map(|rt| (rt.name(), Vec::new())).collect();
        for round in 0..rounds {
            for k in 0..runtimes.len() {
                // Alternate which runtime goes first.
                let i = if round % 2 == 0 {
                    k
                } else {
                    runtimes.len() - 1 - k
                };
                let d = runtimes[i].sample(bench, iters);
                samples[i].1.push(d.as_nanos() as f64 / iters as f64);
            }
        }
        rows.push(Row {
            bench,
            iters,
            samples,
        });
    }
    let load_after = load_average();

    println!(
        "\n### P8 — scheduler, {workers} workers, median of {rounds} rounds (time per iteration, lower is better)\n"
    );
    println!(
        "load average before: {load_before}, after: {load_after}; {:.1} s total; cores: {}\n",
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    if smoke {
        println!(
            "SMOKE RUN (no `--bench` flag, e.g. `cargo test --all-targets`): not a measurement.\n"
        );
    }
    let names: Vec<&str> = runtimes.iter().map(|r| r.name()).collect();
    let mut header = "| benchmark | iters/sample |".to_string();
    let mut rule = "|---|---:|".to_string();
    for n in &names {
        header.push_str(&format!(" {n} median | {n} min–max |"));
        rule.push_str("---:|---:|");
    }
    let both = names.len() == 2;
    if both {
        header.push_str(" kyoto/tokio | target |");
        rule.push_str("---:|---|");
    }
    println!("{header}\n{rule}");
    let mut json_rows = Vec::new();
    for row in &mut rows {
        let mut line = format!("| {} | {} |", row.bench, row.iters);
        let mut medians = Vec::new();
        for (name, xs) in row.samples.iter_mut() {
            let min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = xs.iter().cloned().fold(0.0, f64::max);
            let m = median(xs);
            medians.push((*name, m));
            line.push_str(&format!(
                " {} | {}–{} |",
                fmt_ns(m),
                fmt_ns(min),
                fmt_ns(max)
            ));
        }
        let mut ratio = None;
        if both {
            let r = medians[0].1 / medians[1].1;
            ratio = Some(r);
            let verdict = if r <= 1.0 {
                "≤ 1.0× ✓"
            } else {
                "≤ 1.0× ✗"
            };
            line.push_str(&format!(" {r:.2}× | {verdict} |"));
        }
        println!("{line}");
        let meds: Vec<String> = medians
            .iter()
            .map(|(n, m)| format!("\"{n}_ns\":{m:.1}"))
            .collect();
        json_rows.push(format!(
            "{{\"bench\":\"{}\",\"iters\":{},{}{}}}",
            row.bench,
            row.iters,
            meds.join(","),
            ratio
                .map(|r| format!(",\"ratio\":{r:.4}"))
                .unwrap_or_default()
        ));
    }
    println!(
        "\nspawn_many = {SPAWN_MANY} spawns from a task + await all; yield_many = {YIELD_TASKS} tasks × \
         {YIELDS_PER_TASK} yield_now; ping_pong = {PING_PONGS} oneshot round trips between two tasks; \
         chained_spawn = a chain of {CHAIN} spawns."
    );
    if json {
        println!(
            "P8_JSON {{\"workers\":{workers},\"rounds\":{rounds},\"load_before\":\"{load_before}\",\"load_after\":\"{load_after}\",\"rows\":[{}]}}",
            json_rows.join(",")
        );
    }
    for rt in runtimes {
        match rt {
            Rt::Kyoto(rt) => rt.shutdown_timeout(Duration::from_secs(5)),
            Rt::Tokio(rt) => rt.shutdown_timeout(Duration::from_secs(5)),
        }
    }
}
