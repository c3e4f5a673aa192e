//! Ctrl-C during a sweep: the batch in flight finishes and the records are written first.

static INTERRUPTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Ctrl-C once: finish the batch, write records marked incomplete, exit non-zero. Twice: now.
pub fn watch_interrupts() {
    // Fails only if a handler is already installed, which then serves the same purpose.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
            std::process::exit(130);
        }
        eprintln!("\nsplitbench: stopping after this batch (Ctrl-C again to stop now)");
    });
}

/// Whether Ctrl-C was pressed since [`watch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTS.load(std::sync::atomic::Ordering::SeqCst) > 0
}
