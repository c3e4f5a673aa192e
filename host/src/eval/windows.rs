//! The evaluation protocol of the prototype: sliding windows and which labels each scores.

/// One window of the token stream: `[begin, end)`, and how many of its last labels count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub begin: usize,
    pub end: usize,
    /// end − previous window's end (0 for the first).
    pub trg_len: usize,
}

impl Window {
    pub fn len(&self) -> usize {
        self.end - self.begin
    }

    /// Offset (within the window) of the first scored label. Labels are shifted by one, so the
    /// window's first token is never a target.
    pub fn first_target(&self) -> usize {
        (self.len() - self.trg_len.min(self.len())).max(1)
    }

    /// Number of labels this window scores.
    pub fn scored(&self) -> usize {
        self.len().saturating_sub(self.first_target())
    }
}

/// One of `count` contiguous ranges of a run's batches (`--shard index/count`): every batch
/// is in exactly one shard, made of the same windows as in the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The batches of this shard among `total`.
    pub fn batches(&self, total: usize) -> std::ops::Range<usize> {
        self.index * total / self.count..(self.index + 1) * total / self.count
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let parsed = s
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(Shard { index, count }),
            _ => Err(format!(
                "`{s}` is not a shard: write I/N with 0 ≤ I < N, e.g. 0/4 for the first of four"
            )),
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Windows begin at 0, stride, 2·stride, … and end at min(begin + max_length, n); the last is
/// the one whose end is n.
pub fn windows(n: usize, max_length: usize, stride: usize) -> Vec<Window> {
    let mut out = Vec::new();
    if n == 0 || max_length == 0 || stride == 0 {
        return out;
    }
    let mut prev_end = 0;
    let mut begin = 0;
    while begin < n {
        let end = (begin + max_length).min(n);
        out.push(Window {
            begin,
            end,
            trg_len: end - prev_end,
        });
        prev_end = end;
        if end == n {
            break;
        }
        begin += stride;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(begin: usize, end: usize, trg_len: usize) -> Window {
        Window {
            begin,
            end,
            trg_len,
        }
    }

    #[test]
    fn sliding_windows_by_hand() {
        // n 10, max_length 4, stride 2.
        let ws = windows(10, 4, 2);
        assert_eq!(ws, [w(0, 4, 4), w(2, 6, 2), w(4, 8, 2), w(6, 10, 2)]);
        assert_eq!(
            ws.iter().map(Window::scored).collect::<Vec<_>>(),
            [3, 2, 2, 2]
        );
        // stride < max_length scores every token but the first: N - 1.
        assert_eq!(ws.iter().map(Window::scored).sum::<usize>(), 9);
    }

    #[test]
    fn last_window_may_be_short() {
        // n 7, max_length 4, stride 3: [0,4) [3,7); the second adds 3 new labels.
        let ws = windows(7, 4, 3);
        assert_eq!(ws, [w(0, 4, 4), w(3, 7, 3)]);
        assert_eq!(ws.iter().map(Window::scored).sum::<usize>(), 6);
    }

    #[test]
    fn disjoint_windows_lose_their_first_token() {
        // stride = max_length: every window loses its first token: N - windows.
        let ws = windows(10, 4, 4);
        assert_eq!(ws, [w(0, 4, 4), w(4, 8, 4), w(8, 10, 2)]);
        assert_eq!(ws.iter().map(Window::scored).collect::<Vec<_>>(), [3, 3, 1]);
        assert_eq!(ws.iter().map(Window::scored).sum::<usize>(), 10 - 3);
    }

    #[test]
    fn stops_after_the_window_that_reaches_n() {
        // n 5, max_length 8: one window, even though stride 2 would begin more.
        assert_eq!(windows(5, 8, 2), [w(0, 5, 5)]);
        assert!(windows(0, 8, 2).is_empty());
    }

    #[test]
    fn prototype_defaults_on_10k_tokens() {
        let ws = windows(10_000, 2048, 512);
        assert_eq!(ws.first(), Some(&w(0, 2048, 2048)));
        assert_eq!(ws.last().unwrap().end, 10_000);
        assert_eq!(ws.iter().map(Window::scored).sum::<usize>(), 9_999);
    }
}
