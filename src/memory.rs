//! The daemon's memory: fewer glibc malloc arenas.
//!
//! glibc gives every thread that allocates while another holds the main
//! arena an arena of its own, up to eight per core. The daemon runs tokio's
//! workers, its blocking pool and sled's seven I/O threads, so an idle daemon
//! kept 7–12 MiB of freed memory spread over a dozen arenas: with a 100,000
//! invitation store its idle RSS was 32.7 MiB, 25.7 MiB with two arenas, and
//! its peak 39.0 against 27.5 MiB (BENCHMARKS.md, target 5h). Two arenas are
//! plenty for two busy threads at a time (tokio's workers; sled's I/O threads
//! mostly wait on the disk).

/// Limits glibc to two malloc arenas, unless `MALLOC_ARENA_MAX` is set in
/// the environment (then glibc has already applied the operator's choice).
/// Call it first thing, before any thread is started. Elsewhere than glibc
/// it does nothing.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt(3) only changes a malloc tunable; called before
        // any other thread exists, nothing allocates concurrently.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
