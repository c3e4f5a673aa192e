//! How much text each token stands for, so that perplexity can also be given per word and per
//! byte (lm-evaluation-harness's `word_perplexity`, `byte_perplexity`, `bits_per_byte`) and
//! compared across models with different tokenizers. Token i stands for the text from the end
//! of the tokens before it to its own end, so the scored tokens of a run cover the text they
//! predict exactly once, whitespace included.

use serde::{Deserialize, Serialize};

/// Bytes (UTF-8) and words (maximal runs of non-whitespace, counted where they start) of text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextCount {
    pub bytes: u64,
    pub words: u64,
}

impl TextCount {
    pub fn add(&mut self, other: TextCount) {
        self.bytes += other.bytes;
        self.words += other.words;
    }
}

/// Per token, the bytes and word starts of the text it stands for, and that text.
#[derive(Debug, Clone, Default)]
pub struct TextUnits {
    per_token: Vec<TextCount>,
    text: String,
    /// Where each token's text ends in `text` (it starts where the one before ends).
    ends: Vec<usize>,
}

impl TextUnits {
    /// From the tokenizer's byte offsets `(start, end)` of each token in `text`. Tokens the text
    /// does not hold (special tokens, offsets `(0, 0)`) stand for nothing.
    pub fn new(text: &str, offsets: &[(usize, usize)]) -> TextUnits {
        let bytes = text.as_bytes();
        // Word starts before each byte position: a non-whitespace character after whitespace
        // or at the start.
        let mut starts_before = vec![0u64; bytes.len() + 1];
        let mut previous_space = true;
        let mut count = 0;
        let mut next = 0;
        for (at, c) in text.char_indices() {
            starts_before[next..=at].fill(count);
            let space = c.is_whitespace();
            if !space && previous_space {
                count += 1;
            }
            previous_space = space;
            next = at + 1;
        }
        starts_before[next..].fill(count);
        let mut covered = 0;
        let mut ends = Vec::with_capacity(offsets.len());
        let per_token = offsets
            .iter()
            .map(|&(_, end)| {
                let end = end.min(bytes.len());
                if end <= covered {
                    ends.push(covered);
                    return TextCount::default();
                }
                ends.push(end);
                let count = TextCount {
                    bytes: (end - covered) as u64,
                    words: starts_before[end] - starts_before[covered],
                };
                covered = end;
                count
            })
            .collect();
        TextUnits {
            per_token,
            text: text.to_string(),
            ends,
        }
    }

    pub fn truncate(&mut self, tokens: usize) {
        self.per_token.truncate(tokens);
        self.ends.truncate(tokens);
    }

    /// The text token `i` stands for ("" for a special token or past the end).
    pub fn text_of(&self, i: usize) -> &str {
        let Some(&end) = self.ends.get(i) else {
            return "";
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end).unwrap_or("")
    }

    /// The text that tokens `range` stand for.
    pub fn count(&self, range: std::ops::Range<usize>) -> TextCount {
        let mut total = TextCount::default();
        for c in &self.per_token
            [range.start.min(self.per_token.len())..range.end.min(self.per_token.len())]
        {
            total.add(*c);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_cover_the_text_once_with_its_whitespace() {
        // "héllo  wörld\n" is 15 bytes; tokens: [BOS] "héllo" "  w" "örld" "\n".
        let text = "héllo  wörld\n";
        let offsets = [(0, 0), (0, 6), (6, 9), (9, 14), (14, 15)];
        let units = TextUnits::new(text, &offsets);
        let counts: Vec<(u64, u64)> = (0..5)
            .map(|i| {
                let c = units.count(i..i + 1);
                (c.bytes, c.words)
            })
            .collect();
        // "  w" starts the second word; "örld" continues it.
        assert_eq!(counts, [(0, 0), (6, 1), (3, 1), (5, 0), (1, 0)]);
        assert_eq!(
            units.count(0..5),
            TextCount {
                bytes: 15,
                words: 2
            }
        );
        // Scoring skips the first real token: the rest of the text, one word.
        assert_eq!(units.count(2..5), TextCount { bytes: 9, words: 1 });
        let texts: Vec<&str> = (0..6).map(|i| units.text_of(i)).collect();
        assert_eq!(texts, ["", "héllo", "  w", "örld", "\n", ""]);
    }

    #[test]
    fn offsets_that_skip_whitespace_still_cover_it() {
        // A tokenizer that trims offsets: the gap goes to the next token.
        let text = "a b";
        let units = TextUnits::new(text, &[(0, 1), (2, 3)]);
        assert_eq!(units.count(1..2), TextCount { bytes: 2, words: 1 });
    }
}
