//! `data.files`: glob patterns over the '/'-separated paths of a dataset repo.

/// Glob match of a '/'-separated path: `*` and `?` within a segment, `**` any segments.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn segments(p: &[&str], s: &[&str]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((&"**", rest)) => (0..=s.len()).any(|i| segments(rest, &s[i..])),
            Some((first, rest)) => s.split_first().is_some_and(|(name, tail)| {
                segment(first.as_bytes(), name.as_bytes()) && segments(rest, tail)
            }),
        }
    }
    fn segment(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| segment(rest, &s[i..])),
            Some((b'?', rest)) => !s.is_empty() && segment(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && segment(rest, &s[1..]),
        }
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    segments(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("a/*.parquet", "a/x.parquet"));
        assert!(!glob_match("a/*.parquet", "a/b/x.parquet"));
        assert!(glob_match("**/x.parquet", "x.parquet"));
        assert!(glob_match("**/x.parquet", "a/b/x.parquet"));
        assert!(glob_match(
            "en/c4-validation.0000?-of-*",
            "en/c4-validation.00001-of-00008"
        ));
        assert!(!glob_match("a", "a/b"));
    }
}
