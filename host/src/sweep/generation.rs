//! `[generate]`: after the perplexity sweep, greedy continuations of prompts from the
//! evaluation text, through the uncompressed model and every codec, compared with the
//! uncompressed model's; each codec's figures go into its record under `generation`.

use std::time::Instant;

use anyhow::{Context, Result};

use super::inputs::Sweep;
use crate::config::{CodecSpec, GenerateSection, LinkModel};
use crate::eval::generate::{
    argmax, generate, Feed, GenerationLink, GenerationLinks, GenerationRecord,
};
use crate::eval::Links;
use crate::link::{CodecHost, LinkTraffic};
use crate::output::CodecRecord;

/// Prompt i is tokens `[floor(i·K/N), floor(i·K/N) + P)` of the K evaluated tokens; refused
/// where a prompt and its continuation exceed the model's `context` or the prompts overlap.
pub fn prompts(tokens: &[u32], spec: &GenerateSection, context: usize) -> Result<Vec<Vec<u32>>> {
    let k = tokens.len();
    if spec.prompt_tokens + spec.new_tokens > context || spec.prompt_tokens > k / spec.prompts {
        anyhow::bail!(
            "[generate] asks for {} prompts of {} tokens and {} new tokens: a prompt and its \
             continuation must fit the model's context ({context} positions) and the prompts \
             must fit the {k} evaluated tokens without overlapping; lower prompt_tokens or \
             new_tokens",
            spec.prompts,
            spec.prompt_tokens,
            spec.new_tokens
        );
    }
    Ok((0..spec.prompts)
        .map(|i| {
            let start = i * k / spec.prompts;
            tokens[start..start + spec.prompt_tokens].to_vec()
        })
        .collect())
}

/// `log_softmax` of one row of logits, in f64.
fn log_probs(logits: &[f32]) -> Vec<f64> {
    let log_sum = log_sum_exp(logits);
    logits.iter().map(|&x| x as f64 - log_sum).collect()
}

/// `ln Σ exp(x)` in f64, shifted by the largest value.
fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    max + logits
        .iter()
        .map(|&x| (x as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

/// `log_softmax(logits)[token]`, without the whole row.
fn log_prob_of(logits: &[f32], token: usize) -> f64 {
    logits[token] as f64 - log_sum_exp(logits)
}

/// KL(p ‖ q) from log-probabilities.
fn kld(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(a, b)| a.exp() * (a - b)).sum()
}

/// The uncompressed model's log-probabilities at each step `[step][prompt][vocab]`, and its
/// continuations.
struct Reference {
    continuations: Vec<Vec<u32>>,
    log_probs: Vec<Vec<Vec<f64>>>,
}

/// Runs `[generate]` for the baseline and every codec of the sweep and sets each record's
/// `generation`.
pub fn run(
    sweep: &Sweep<'_>,
    host: &mut CodecHost,
    spec: &GenerateSection,
    link_model: &LinkModel,
    records: &mut [CodecRecord],
) -> Result<()> {
    let decoder = &sweep.model.decoder;
    let prompts = prompts(
        &sweep.tokens.ids,
        spec,
        decoder.config.max_position_embeddings,
    )?;
    let new = spec.new_tokens;
    let mut log_probs = Vec::with_capacity(new);
    let continuations = generate(decoder, &prompts, new, Feed::Greedy, None, &mut |_, l| {
        log_probs.push(l.iter().map(|r| self::log_probs(r)).collect())
    })?;
    let reference = Reference {
        continuations,
        log_probs,
    };
    for record in records.iter_mut() {
        let generation = codec_generation(
            sweep,
            host,
            &record.codec_spec,
            &prompts,
            &reference,
            link_model,
        )
        .with_context(|| format!("generating with codec `{}`", record.codec))?;
        record.generation = Some(generation);
    }
    Ok(())
}

fn links_for<'p>(
    sweep: &'p Sweep<'_>,
    host: &mut CodecHost,
    spec: &CodecSpec,
) -> Result<Links<'p>> {
    let (codecs, _) = host.link_codecs(spec, &sweep.plan, &sweep.exp.base_dir)?;
    Ok(Links::new(&sweep.plan, codecs))
}

fn codec_generation(
    sweep: &Sweep<'_>,
    host: &mut CodecHost,
    spec: &CodecSpec,
    prompts: &[Vec<u32>],
    reference: &Reference,
    link_model: &LinkModel,
) -> Result<GenerationRecord> {
    let decoder = &sweep.model.decoder;
    let (n, new) = (prompts.len(), reference.continuations[0].len());
    let links_n = sweep.plan.links.len();
    let mut prefill = vec![LinkTraffic::default(); links_n];
    let mut decode = vec![LinkTraffic::default(); links_n];
    // Free-running, one codec instance per link that sees the whole token stream.
    let mut links = links_for(sweep, host, spec)?;
    let mut step_ms = Vec::with_capacity(new);
    let mut clock = Instant::now();
    let continuations = generate(
        decoder,
        prompts,
        new,
        Feed::Greedy,
        Some(GenerationLinks {
            links: &mut links,
            prefill: &mut prefill,
            decode: &mut decode,
        }),
        &mut |_, _| {
            step_ms.push(clock.elapsed().as_secs_f64() * 1e3);
            clock = Instant::now();
        },
    )?;
    // Teacher-forced along the uncompressed continuation, fresh codec instances.
    let mut links = links_for(sweep, host, spec)?;
    // Its traffic repeats the free-running pass's and is not reported.
    let (mut forced_prefill, mut forced_decode) = (
        vec![LinkTraffic::default(); links_n],
        vec![LinkTraffic::default(); links_n],
    );
    let mut kld_by_position = vec![0f64; new];
    let mut top1 = 0usize;
    generate(
        decoder,
        prompts,
        new,
        Feed::Forced(&reference.continuations),
        Some(GenerationLinks {
            links: &mut links,
            prefill: &mut forced_prefill,
            decode: &mut forced_decode,
        }),
        &mut |step, logits| {
            for (row, l) in logits.iter().enumerate() {
                let q = log_probs(l);
                kld_by_position[step] += kld(&reference.log_probs[step][row], &q) / n as f64;
                if argmax(l) == reference.continuations[row][step] {
                    top1 += 1;
                }
            }
        },
    )?;
    // The uncompressed model's NLL of the codec's continuation.
    let mut nll = 0f64;
    generate(
        decoder,
        prompts,
        new,
        Feed::Forced(&continuations),
        None,
        &mut |step, logits| {
            for (row, l) in logits.iter().enumerate() {
                nll -= log_prob_of(l, continuations[row][step] as usize);
            }
        },
    )?;
    let positions = (n * new) as f64;
    let matches = continuations
        .iter()
        .flatten()
        .zip(reference.continuations.iter().flatten())
        .filter(|(a, b)| a == b)
        .count();
    let first_divergence = continuations
        .iter()
        .zip(&reference.continuations)
        .map(|(c, r)| c.iter().zip(r).position(|(a, b)| a != b).unwrap_or(new) as f64)
        .sum::<f64>()
        / n as f64;
    let prompt_tokens = prompts[0].len();
    let per = |bytes: u64, tokens: usize| bytes as f64 / tokens.max(1) as f64;
    let links: Vec<GenerationLink> = sweep
        .plan
        .links
        .iter()
        .enumerate()
        .map(|(k, l)| GenerationLink {
            name: l.name.clone(),
            prefill_bytes_per_token: per(prefill[k].bytes, n * prompt_tokens),
            decode_bytes_per_token: per(decode[k].bytes, n * new.saturating_sub(1)),
        })
        .collect();
    let prefill_compute_ms = step_ms.first().copied().unwrap_or(0.0);
    let decode_steps = &step_ms[1.min(step_ms.len())..];
    let compute_ms_per_step = decode_steps.iter().sum::<f64>() / decode_steps.len().max(1) as f64;
    // Per prompt: the batch's compute and codec time divided among its prompts.
    let bits_per_ms = link_model.bandwidth_mbps * 1e3;
    let wire = |traffic: &[LinkTraffic], bytes_per_prompt: &dyn Fn(usize) -> f64, calls: f64| {
        traffic
            .iter()
            .enumerate()
            .map(|(k, t)| {
                link_model.latency_ms
                    + bytes_per_prompt(k) * 8.0 / bits_per_ms
                    + (t.encode_s + t.decode_s) * 1e3 / (n as f64 * calls.max(1.0))
            })
            .sum::<f64>()
    };
    let ttft_ms = prefill_compute_ms / n as f64
        + wire(
            &prefill,
            &|k| links[k].prefill_bytes_per_token * prompt_tokens as f64,
            1.0,
        );
    let tpot_ms = compute_ms_per_step / n as f64
        + wire(
            &decode,
            &|k| links[k].decode_bytes_per_token,
            (new - 1) as f64,
        );
    Ok(GenerationRecord {
        prompts: n,
        prompt_tokens,
        new_tokens: new,
        match_rate: matches as f64 / positions,
        first_divergence_mean: first_divergence,
        kld_forced_mean: kld_by_position.iter().sum::<f64>() / new as f64,
        kld_forced_by_position: kld_by_position,
        top1_forced: top1 as f64 / positions,
        baseline_nll: nll / positions,
        prefill_bytes_per_token: links.iter().map(|l| l.prefill_bytes_per_token).sum(),
        decode_bytes_per_token: links.iter().map(|l| l.decode_bytes_per_token).sum(),
        links,
        continuations,
        compute_ms_per_step,
        prefill_compute_ms,
        ttft_ms,
        tpot_ms,
    })
}

/// The decode phase's table: one line per codec.
pub fn table(records: &[CodecRecord]) -> String {
    let first = records.iter().find_map(|r| r.generation.as_ref());
    let Some(first) = first else {
        return String::new();
    };
    let width = records
        .iter()
        .map(|r| r.codec.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "\ngeneration ({} prompts of {} tokens, {} new tokens each, greedy)\n\
         {:<width$} {:>7} {:>10} {:>12} {:>8} {:>9} {:>10} {:>10} {:>9} {:>9}\n",
        first.prompts,
        first.prompt_tokens,
        first.new_tokens,
        "codec",
        "match",
        "first diff",
        "KLD forced",
        "top-1",
        "base NLL",
        "prefill B",
        "decode B",
        "TTFT ms",
        "TPOT ms"
    );
    for r in records {
        if let Some(g) = &r.generation {
            out.push_str(&format!(
                "{:<width$} {:>6.1}% {:>10.2} {:>12.5} {:>7.1}% {:>9.4} {:>10.1} {:>10.1} {:>9.2} \
                 {:>9.3}\n",
                r.codec,
                100.0 * g.match_rate,
                g.first_divergence_mean,
                g.kld_forced_mean,
                100.0 * g.top1_forced,
                g.baseline_nll,
                g.prefill_bytes_per_token,
                g.decode_bytes_per_token,
                g.ttft_ms,
                g.tpot_ms
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_spread_over_the_text() {
        let tokens: Vec<u32> = (0..100).collect();
        let spec = GenerateSection {
            prompts: 4,
            prompt_tokens: 3,
            new_tokens: 2,
        };
        assert_eq!(
            prompts(&tokens, &spec, 8).unwrap(),
            [
                vec![0, 1, 2],
                vec![25, 26, 27],
                vec![50, 51, 52],
                vec![75, 76, 77]
            ]
        );
        let long = GenerateSection {
            new_tokens: 6,
            ..spec
        };
        let err = prompts(&tokens, &long, 8).unwrap_err().to_string();
        assert!(err.contains("context (8 positions)"), "{err}");
    }

    #[test]
    fn kld_by_hand() {
        // p = (1/2, 1/2), q = (1/4, 3/4): KL = ½ ln 2 + ½ ln(2/3).
        let p = log_probs(&[0.0, 0.0]);
        let q = log_probs(&[0.0, 3f32.ln()]);
        let want = 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        assert!((kld(&p, &q) - want).abs() < 1e-7);
        assert_eq!(kld(&p, &p), 0.0);
        assert!((log_prob_of(&[0.0, 3f32.ln()], 1) - 0.75f64.ln()).abs() < 1e-7);
    }
}
