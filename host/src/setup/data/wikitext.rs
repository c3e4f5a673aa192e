//! WikiText-2's raw files as the prototype read them (the Hub dataset's rows), and local text files.

use std::path::{Path, PathBuf};

use crate::config::TextFormat;

#[derive(Debug, thiserror::Error)]
#[error("cannot read data file `{path}`: {source}. Check data.path (relative paths are resolved from the config file's folder)")]
pub struct ReadError {
    path: PathBuf,
    source: std::io::Error,
}

/// The rows of the Hub dataset, rebuilt from a raw file: each line keeps its trailing "\n",
/// except that a line holding a single space is an empty row.
pub fn wikitext_rows(raw: &str) -> Vec<&str> {
    raw.split_inclusive('\n')
        .map(|line| {
            if line == " \n" || line == " " {
                ""
            } else {
                line
            }
        })
        .collect()
}

/// The prototype's text: `"\n\n".join(rows)`.
pub fn wikitext_text(raw: &str) -> String {
    wikitext_rows(raw).join("\n\n")
}

pub fn read_text(path: &Path, format: TextFormat) -> Result<String, ReadError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ReadError {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(match format {
        TextFormat::Wikitext => wikitext_text(&raw),
        TextFormat::Text => raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_lines_become_rows() {
        let raw = " \n = Robert Boulter = \n \n Robert is an actor . \n";
        assert_eq!(
            wikitext_rows(raw),
            ["", " = Robert Boulter = \n", "", " Robert is an actor . \n"]
        );
        assert_eq!(
            wikitext_text(raw),
            "\n\n = Robert Boulter = \n\n\n\n\n Robert is an actor . \n"
        );
    }

    #[test]
    fn last_line_without_newline_is_kept() {
        assert_eq!(wikitext_rows("a\nb"), ["a\n", "b"]);
        assert_eq!(wikitext_text(""), "");
    }
}
