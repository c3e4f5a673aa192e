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
    if let Err(err) = splitbench::cli::run(cli) {
        // One paragraph: the error and its causes, no Debug dump or backtrace.
        let mut message = format!("splitbench: error: {err}");
        for cause in err.chain().skip(1) {
            message.push_str(&format!(": {cause}"));
        }
        eprintln!("{message}");
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
