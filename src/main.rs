//! `tessera` binary entry point; see [`tessera::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tune_allocator();
    let cli = tessera::cli::Cli::parse();
    actix_web::rt::System::new().block_on(tessera::cli::run(cli))
}

/// Keeps glibc from hoarding freed memory.
///
/// Every password hash allocates a ~19 MiB argon2 block. glibc serves blocks that large with
/// `mmap` and returns them on free, but its *dynamic* threshold then rises to the freed size, so
/// the next hashes come from per-thread arenas and stay resident after they are freed: a burst of
/// logins left the server at ~190 MB idle. A fixed threshold turns the dynamic one off, and
/// capping the arena count bounds the memory idle worker threads can pin.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}
