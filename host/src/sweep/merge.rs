//! `splitbench merge`: the run folders of `--shard 0/N … N-1/N` into the folder of the whole
//! run. Each codec's batch states are applied in batch order, as the whole run applies them,
//! so totals, per-window results and intervals come out the same.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::codec_run::{read_lines, Totals};
use super::finish::{link_time, results, traffic, LinkCodecs};
use super::resume::RunIdentity;
use crate::eval::Shard;
use crate::output::batch_line::{BatchLine, FailureLine};
use crate::output::record::{write_new_json, CodecRecord};
use crate::output::summary::{load_records, render};
use crate::output::{JsonlWriter, RunDir};
use crate::stats::divergence;

/// A shard's folder, its identity and its records.
struct ShardRun {
    dir: RunDir,
    shard: Shard,
    identity: RunIdentity,
    records: Vec<CodecRecord>,
}

fn read_shard(dir: &Path) -> Result<ShardRun> {
    let run = RunDir::existing(dir);
    let text = std::fs::read_to_string(run.identity()).with_context(|| {
        format!(
            "`{}` is not a run folder (no run.json); give the folders `splitbench run --shard` \
             printed",
            dir.display()
        )
    })?;
    let identity: RunIdentity = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a splitbench run identity", dir.display()))?;
    let Some(shard) = identity.shard else {
        bail!(
            "`{}` holds a whole run (made without --shard), not a shard",
            dir.display()
        );
    };
    if !run.summary().is_file() {
        bail!(
            "shard {shard} in `{}` did not finish (no summary.json); finish it with `splitbench \
             run EXPERIMENT.toml --shard {shard} --resume {}`, then merge again",
            dir.display(),
            dir.display()
        );
    }
    let records = load_records(&run)?;
    Ok(ShardRun {
        dir: run,
        shard,
        identity,
        records,
    })
}

/// The shards in index order, after checking that they are the parts of one run, each once.
fn check_shards(mut shards: Vec<ShardRun>) -> Result<Vec<ShardRun>> {
    let first = &shards[0];
    for other in &shards[1..] {
        if let Some(difference) = other.identity.difference_ignoring_shard(&first.identity) {
            bail!(
                "`{}` and `{}` are shards of different runs: {difference}",
                first.dir.path().display(),
                other.dir.path().display()
            );
        }
        if other.shard.count != first.shard.count {
            bail!(
                "`{}` is shard {} and `{}` is shard {}: the shards of one run share N",
                first.dir.path().display(),
                first.shard,
                other.dir.path().display(),
                other.shard
            );
        }
    }
    shards.sort_by_key(|s| s.shard.index);
    for pair in shards.windows(2) {
        if pair[0].shard == pair[1].shard {
            bail!(
                "shard {} is given twice: `{}` and `{}`",
                pair[0].shard,
                pair[0].dir.path().display(),
                pair[1].dir.path().display()
            );
        }
    }
    let count = shards[0].shard.count;
    let missing: Vec<String> = (0..count)
        .filter(|i| !shards.iter().any(|s| s.shard.index == *i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "shard {} of this run is missing; run it with `splitbench run EXPERIMENT.toml \
             --shard I/N` and give its folder too",
            missing.join(", ")
        );
    }
    let labels = |s: &ShardRun| {
        s.records
            .iter()
            .map(|r| r.codec.clone())
            .collect::<Vec<_>>()
    };
    if let Some(other) = shards.iter().find(|s| labels(s) != labels(&shards[0])) {
        bail!(
            "`{}` does not hold the records of the same codecs as `{}`",
            other.dir.path().display(),
            shards[0].dir.path().display()
        );
    }
    Ok(shards)
}

/// One codec over every shard: its batch lines applied in order (up to a failure, after
/// which the whole run would have stopped the codec), written to `jsonl`.
fn merge_codec(
    shards: &[ShardRun],
    index: usize,
    label: &str,
    links: usize,
    jsonl: &mut JsonlWriter,
) -> Result<(Totals, Option<String>)> {
    let mut totals = Totals::new(links);
    let mut next_batch = None;
    for shard in shards {
        let path = shard.dir.batches(index, label);
        for line in read_lines(&path)? {
            if let Ok(f) = serde_json::from_str::<FailureLine>(&line) {
                jsonl.write(&f)?;
                return Ok((totals, Some(f.failure)));
            }
            let parsed: BatchLine = serde_json::from_str(&line)
                .with_context(|| format!("`{}` has a line that is not a batch", path.display()))?;
            if next_batch.is_some_and(|b| b != parsed.batch) {
                bail!(
                    "`{}` goes on at batch {} where batch {} was due: the shards do not cover \
                     the run's batches in order",
                    path.display(),
                    parsed.batch,
                    next_batch.unwrap_or_default()
                );
            }
            next_batch = Some(parsed.batch + 1);
            jsonl.write(&totals.apply_line(label, parsed.batch, parsed.state))?;
        }
    }
    Ok((totals, None))
}

/// Each link's one-token cost as shard 0 measured it, when it was measured.
fn one_token_costs(template: &CodecRecord) -> Option<Vec<(u64, f64)>> {
    template
        .traffic
        .links
        .iter()
        .map(|l| Some((l.one_token_bytes?, l.one_token_codec_ms? / 1e3)))
        .collect()
}

/// Checks that every shard fitted each calibrated codec to the same states, and copies the
/// states into the merged run folder.
fn carry_calibration(shards: &[ShardRun], out: &RunDir) -> Result<()> {
    for (index, template) in shards[0].records.iter().enumerate() {
        if let Some(other) = shards
            .iter()
            .find(|s| s.records[index].calibration != template.calibration)
        {
            bail!(
                "codec `{}` was fitted to other states in `{}` than in `{}`; merge shards of \
                 one run, which fit on the same calibration text",
                template.codec,
                other.dir.path().display(),
                shards[0].dir.path().display()
            );
        }
    }
    let from = shards[0].dir.calibration_dir();
    let Ok(entries) = std::fs::read_dir(&from) else {
        return Ok(());
    };
    std::fs::create_dir_all(out.calibration_dir())
        .with_context(|| format!("creating `{}`", out.calibration_dir().display()))?;
    for entry in entries {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            let to = out.calibration_dir().join(name);
            std::fs::copy(&path, &to)
                .with_context(|| format!("copying `{}` to `{}`", path.display(), to.display()))?;
        }
    }
    Ok(())
}

/// Merges the shard folders into `out` (a new folder): run.json, the batch curves, a record
/// per codec, summary.json and the plots of the whole run.
pub fn merge(out: &Path, dirs: &[PathBuf]) -> Result<Vec<CodecRecord>> {
    if dirs.is_empty() {
        bail!("give the shard folders to merge");
    }
    let shards = check_shards(dirs.iter().map(|d| read_shard(d)).collect::<Result<_>>()?)?;
    if out.exists() {
        bail!(
            "`{}` exists; merge into a new folder so no run is overwritten",
            out.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating `{}`", out.display()))?;
    let run_dir = RunDir::existing(out);
    write_new_json(&run_dir.identity(), &shards[0].identity.without_shard())?;
    carry_calibration(&shards, &run_dir)?;
    let mut records: Vec<CodecRecord> = Vec::new();
    for (index, template) in shards[0].records.iter().enumerate() {
        let label = &template.codec;
        let links = &template.plan.links;
        let mut jsonl = JsonlWriter::append(run_dir.batches(index, label))?;
        let (totals, failure) = merge_codec(&shards, index, label, links.len(), &mut jsonl)?;
        let parts: Vec<&CodecRecord> = shards.iter().map(|s| &s.records[index]).collect();
        let labels: Vec<String> = template
            .traffic
            .links
            .iter()
            .map(|l| l.codec.clone())
            .collect();
        let paths: Vec<&str> = template
            .traffic
            .links
            .iter()
            .map(|l| l.path.as_str())
            .collect();
        let one_token = one_token_costs(template);
        let divergence = match records.first() {
            Some(base) if failure.is_none() => Some(divergence(
                &totals.acc,
                &base.results.windows,
                &totals.windows,
            )),
            _ => None,
        };
        let record = CodecRecord {
            generation: None,
            run_id: run_dir.id().to_string(),
            started: parts
                .iter()
                .map(|r| r.started.clone())
                .min()
                .unwrap_or_default(),
            finished: parts
                .iter()
                .map(|r| r.finished.clone())
                .max()
                .unwrap_or_default(),
            duration_s: parts.iter().map(|r| r.duration_s).sum(),
            failure,
            incomplete: false,
            shard: None,
            results: results(&totals),
            divergence,
            traffic: traffic(
                &totals,
                links,
                &LinkCodecs {
                    labels: &labels,
                    paths: &paths,
                },
                one_token.as_deref(),
            ),
            link_time: link_time(&totals, &template.link_time.model, one_token.as_deref()),
            ..template.clone()
        };
        write_new_json(&run_dir.record(index, label), &record)?;
        records.push(record);
    }
    let rows = render(&run_dir, &records)?;
    write_new_json(&run_dir.summary(), &rows)?;
    Ok(records)
}
