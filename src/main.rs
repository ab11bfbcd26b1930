//! The `portcullis` binary: parse the command line, start logging, hand over.

use clap::Parser;

/// mimalloc instead of glibc's malloc: a proxied request makes a few dozen small
/// allocations (header maps, names, values, buffers), and glibc's malloc/free
/// were a large share of its cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    portcullis::memory::without_transparent_huge_pages();
    return_large_allocations_to_the_os();
    portcullis::logging::init();
    let cli = portcullis::cli::Cli::parse();
    if let Err(failure) = portcullis::cli::dispatch(cli) {
        eprintln!("{}", failure.message);
        std::process::exit(failure.code);
    }
}

/// Each Argon2id hash allocates 19 MiB. Rust's allocations go to mimalloc, which
/// gives such blocks back on its own; this is for what the C libraries (SQLite)
/// still allocate with glibc. glibc raises its mmap threshold after
/// the first such block is freed, so later ones come from per-thread arenas and
/// stay resident, so a few logins grew RSS many times over. A fixed threshold
/// keeps every large block in its own mapping, returned to the OS on free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_allocations_to_the_os() {
    // SAFETY: mallopt only adjusts allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_allocations_to_the_os() {}
