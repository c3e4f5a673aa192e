use clap::Parser;

fn main() {
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
