//! WikiText-2's raw files as the prototype read them (the Hub dataset's rows).

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
