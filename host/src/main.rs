use clap::Parser;

fn main() {
    // As other Unix tools: a closed pipe (`splitbench plugins | head`) ends the process
    // quietly instead of making println! panic.
    #[cfg(unix)]
    // SAFETY: restores SIGPIPE's default action before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_memory();
    let cli = splitbench::cli::Cli::parse();
    let backtrace = cli.wants_backtrace();
    // Backtraces are for --verbose: candle captures one into every error it makes (printing
    // it as part of the message) whenever RUST_BACKTRACE is set, so capturing is switched off
    // here unless asked for. Set before any other thread exists.
    std::env::set_var("RUST_LIB_BACKTRACE", if backtrace { "1" } else { "0" });
    if let Err(err) = splitbench::cli::run(cli) {
        if backtrace {
            eprintln!("splitbench: error: {err:?}");
        } else {
            eprintln!("{}", splitbench::cli::error_message(&err));
        }
        std::process::exit(1);
    }
}

/// The forward pass allocates and frees buffers of a few to a hundred MB per op. glibc hands
/// the large ones to mmap and back, so every op paid page faults and page clearing (6–25% of
/// the CPU time in profiles); kept in the heap, they are reused.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}
