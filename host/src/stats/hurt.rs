//! Which tokens a codec hurts: KL(base ‖ codec) and the NLL increase summed by position in the
//! window (log2 bins, so the first positions, where the massive activations sit, stand alone)
//! and by input token (the token whose hidden state made the prediction), with its text.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use splitbench_plugin_api::measure::null_as_nan;

use super::statistic::{Statistic, TokenScore};

/// How many tokens, and their Σ KLD and Σ (NLL(codec) − NLL(base)).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct HurtSums {
    pub tokens: u64,
    pub kld: f64,
    pub dnll: f64,
}

impl HurtSums {
    fn add(&mut self, other: HurtSums) {
        self.tokens += other.tokens;
        self.kld += other.kld;
        self.dnll += other.dnll;
    }
}

/// One input token's sums and the text it stands for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TokenSums {
    pub text: String,
    #[serde(flatten)]
    pub sums: HurtSums,
}

/// The sums of a run by position bin and by input token id.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Hurt {
    pub by_position: Vec<HurtSums>,
    pub by_token: BTreeMap<u32, TokenSums>,
}

/// Bin 0 holds position 0, bin k ≥ 1 positions 2^(k−1) ..= 2^k − 1.
pub fn position_bin(position: u32) -> usize {
    (u32::BITS - position.leading_zeros()) as usize
}

/// The first and last position of bin `k`.
pub fn bin_positions(k: usize) -> (u32, u32) {
    match k {
        0 => (0, 0),
        _ => (1 << (k - 1), (1u64 << k) as u32 - 1),
    }
}

impl Hurt {
    /// One scored token; `text` is asked for the first time its id is seen.
    pub fn add(
        &mut self,
        position: u32,
        id: u32,
        kld: f32,
        dnll: f32,
        text: impl FnOnce() -> String,
    ) {
        let one = HurtSums {
            tokens: 1,
            kld: f64::from(kld.max(0.0)),
            dnll: f64::from(dnll),
        };
        let bin = position_bin(position);
        if self.by_position.len() <= bin {
            self.by_position.resize(bin + 1, HurtSums::default());
        }
        self.by_position[bin].add(one);
        self.by_token
            .entry(id)
            .or_insert_with(|| TokenSums {
                text: text(),
                sums: HurtSums::default(),
            })
            .sums
            .add(one);
    }

    /// The bins in order and the `TOP_TOKENS` input tokens of highest mean KLD among those
    /// seen at least `MIN_OCCURRENCES` times (once, when none is seen that often).
    pub fn summary(&self) -> HurtSummary {
        let total_kld: f64 = self.by_position.iter().map(|s| s.kld).sum();
        let share = |kld: f64| {
            if total_kld > 0.0 {
                kld / total_kld
            } else {
                0.0
            }
        };
        let means = |s: &HurtSums| {
            let n = s.tokens.max(1) as f64;
            (s.kld / n, s.dnll / n)
        };
        let by_position = self
            .by_position
            .iter()
            .enumerate()
            .filter(|(_, s)| s.tokens > 0)
            .map(|(k, s)| {
                let (first, last) = bin_positions(k);
                let (kld_mean, dnll_mean) = means(s);
                PositionHurt {
                    first,
                    last,
                    tokens: s.tokens,
                    kld_mean,
                    dnll_mean,
                    kld_share: share(s.kld),
                }
            })
            .collect();
        let min_occurrences = if self
            .by_token
            .values()
            .any(|t| t.sums.tokens >= MIN_OCCURRENCES)
        {
            MIN_OCCURRENCES
        } else {
            1
        };
        let mut top: Vec<TokenHurt> = self
            .by_token
            .iter()
            .filter(|(_, t)| t.sums.tokens >= min_occurrences)
            .map(|(&id, t)| {
                let (kld_mean, dnll_mean) = means(&t.sums);
                TokenHurt {
                    id,
                    text: t.text.clone(),
                    tokens: t.sums.tokens,
                    kld_mean,
                    dnll_mean,
                    kld_share: share(t.sums.kld),
                }
            })
            .collect();
        top.sort_by(|a, b| b.kld_mean.total_cmp(&a.kld_mean).then(a.id.cmp(&b.id)));
        top.truncate(TOP_TOKENS);
        HurtSummary {
            by_position,
            min_occurrences,
            top_tokens: top,
        }
    }
}

/// A token's KLD and NLL increase, by its position and by its input token.
impl Statistic for Hurt {
    fn update(&mut self, t: &TokenScore<'_>) {
        self.add(t.position, t.id, t.kld, t.nll - t.nll_base, t.text);
    }

    fn merge(&mut self, other: &Hurt) {
        if self.by_position.len() < other.by_position.len() {
            self.by_position
                .resize(other.by_position.len(), HurtSums::default());
        }
        for (a, &b) in self.by_position.iter_mut().zip(&other.by_position) {
            a.add(b);
        }
        for (&id, t) in &other.by_token {
            self.by_token
                .entry(id)
                .or_insert_with(|| TokenSums {
                    text: t.text.clone(),
                    sums: HurtSums::default(),
                })
                .sums
                .add(t.sums);
        }
    }
}

/// How many input tokens the summary lists.
pub const TOP_TOKENS: usize = 10;
/// Tokens seen fewer times than this are left out of the ranking: one unlucky occurrence is
/// noise, not a pattern.
pub const MIN_OCCURRENCES: u64 = 5;

/// One bin of positions in the window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PositionHurt {
    pub first: u32,
    pub last: u32,
    pub tokens: u64,
    #[serde(deserialize_with = "null_as_nan")]
    pub kld_mean: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub dnll_mean: f64,
    /// This bin's part of the run's total KLD.
    #[serde(deserialize_with = "null_as_nan")]
    pub kld_share: f64,
}

/// One input token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenHurt {
    pub id: u32,
    pub text: String,
    pub tokens: u64,
    #[serde(deserialize_with = "null_as_nan")]
    pub kld_mean: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub dnll_mean: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub kld_share: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HurtSummary {
    pub by_position: Vec<PositionHurt>,
    /// The fewest occurrences a token needed to be ranked.
    pub min_occurrences: u64,
    pub top_tokens: Vec<TokenHurt>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_double_in_width() {
        let bins: Vec<usize> = [0, 1, 2, 3, 4, 7, 8, 2047].map(position_bin).to_vec();
        assert_eq!(bins, [0, 1, 2, 2, 3, 3, 4, 11]);
        assert_eq!(bin_positions(0), (0, 0));
        assert_eq!(bin_positions(1), (1, 1));
        assert_eq!(bin_positions(3), (4, 7));
        assert_eq!(bin_positions(11), (1024, 2047));
    }

    #[test]
    fn sums_by_position_and_token_by_hand() {
        let mut a = Hurt::default();
        // Token 7 (" the") at positions 0 and 5, token 9 ("\n") at position 2.
        a.add(0, 7, 0.5, 1.0, || " the".into());
        a.add(2, 9, 0.25, -0.5, || "\n".into());
        let mut b = Hurt::default();
        b.add(5, 7, 0.25, 0.0, || " the".into());
        // A negative KLD (rounding) counts as 0.
        b.add(3, 9, -1e-7, 0.5, || "\n".into());
        a.merge(&b);
        let s = a.summary();
        // Total KLD 1.0: bin 0 has 0.5, bin 2 (positions 2-3) 0.25, bin 3 (4-7) 0.25.
        let bins: Vec<(u32, u32, u64, f64, f64)> = s
            .by_position
            .iter()
            .map(|p| (p.first, p.last, p.tokens, p.kld_mean, p.kld_share))
            .collect();
        assert_eq!(
            bins,
            [
                (0, 0, 1, 0.5, 0.5),
                (2, 3, 2, 0.125, 0.25),
                (4, 7, 1, 0.25, 0.25)
            ]
        );
        // Seen twice each, fewer than 5: ranked all the same, by mean KLD.
        assert_eq!(s.min_occurrences, 1);
        let top: Vec<(u32, &str, f64, f64)> = s
            .top_tokens
            .iter()
            .map(|t| (t.id, t.text.as_str(), t.kld_mean, t.dnll_mean))
            .collect();
        assert_eq!(top, [(7, " the", 0.375, 0.5), (9, "\n", 0.125, 0.0)]);
    }
}
