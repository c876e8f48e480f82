fn main() {
    // Adds `-undefined dynamic_lookup` on macOS and `-z nodelete` on glibc targets: the addon image must
    // stay mapped while runtime threads (shared by every worker_threads env) may still run its code.
    napi_build::setup();
}
