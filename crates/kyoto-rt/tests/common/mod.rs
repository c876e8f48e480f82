//! Helpers shared by the integration tests; a test file takes them with `mod common;`.
use kyoto_rt::runtime::Builder;
use std::future::Future;
use std::time::Duration;

/// How long one test may run before it fails instead of hanging the suite.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Runs `f` to completion on a fresh two-worker runtime; a test that outlives [`LIMIT`] panics.
pub fn run<F: Future>(f: F) -> F::Output {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("build a runtime");
    rt.block_on(async {
        kyoto_rt::time::timeout(LIMIT, f)
            .await
            .expect("the test finished within its time limit")
    })
}
