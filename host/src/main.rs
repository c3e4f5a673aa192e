use clap::Parser;

fn main() {
    // As other Unix tools: a closed pipe (`splitbench plugins | head`) ends the process
    // quietly instead of making println! panic.
    #[cfg(unix)]
    // SAFETY: restores SIGPIPE's default action before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
