//! What a run leaves behind: its folder, a JSONL curve and a JSON record per codec, the
//! summary table and the plots.

pub mod batch_line;
mod columns;
pub mod detail;
pub mod plots;
pub mod record;
pub mod report_html;
pub mod run_dir;
pub mod summary;

pub use record::{CodecRecord, JsonlWriter};
pub use run_dir::RunDir;
