//! The evaluation text built in and from the Hub: a local HTTP server on 127.0.0.1 answers as
//! the Hugging Face Hub does (repo API JSON and `resolve` URLs) through HF_ENDPOINT, serving
//! parquet files this test writes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::hub_server::{serve, Reply};
use crate::util::{
    bin, missing_input, newest_run, root, sha256_hex, splitbench, synth_model, tempdir, text,
};

/// A WikiText-2 raw file as the repository ships it (zstd), decompressed.
fn shipped_raw(file: &str) -> String {
    let path = root().join("host/data/wikitext-2-raw-v1").join(file);
    let bytes = zstd::decode_all(std::fs::File::open(path).unwrap()).unwrap();
    String::from_utf8(bytes).unwrap()
}

/// The Hub dataset's rows, stated here independently of splitbench: each line of the raw
/// file keeps its "\n", and a line holding a single space is an empty row.
fn hub_rows(raw: &str) -> Vec<&str> {
    raw.split_inclusive('\n')
        .map(|line| if line == " \n" { "" } else { line })
        .collect()
}

/// Runs an experiment whose `[data]` section is `data` (scoring its first 1000 tokens);
/// returns the output and the record of the baseline codec.
fn run(dir: &Path, name: &str, data: &str, endpoint: &str) -> (Output, Option<serde_json::Value>) {
    let exp = dir.join(format!("{name}.toml"));
    let out_dir = dir.join(format!("out-{name}"));
    std::fs::write(
        &exp,
        format!(
            "[model]\npath = \"tiny\"\n{data}\n[eval]\nmax_length = 128\nstride = 128\n\
             [output]\ndir = {:?}\n",
            out_dir.display().to_string()
        ),
    )
    .unwrap();
    // Scoring the whole text would take minutes with nothing more to check: the text's
    // sha256 and token count are those of the whole text all the same.
    let out = Command::new(bin())
        .arg("run")
        .arg(&exp)
        .args(["--first-k-tokens", "1000"])
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("SPLITBENCH_PLUGIN_PATH")
        .output()
        .unwrap();
    let record = std::fs::read_dir(&out_dir).ok().and_then(|mut runs| {
        let run = runs.next()?.ok()?.path();
        let json = std::fs::read_to_string(run.join("00-none.json")).ok()?;
        serde_json::from_str(&json).ok()
    });
    (out, record)
}

/// A parquet file as the Hub stores a text dataset (one UTF-8 column, snappy, row groups).
fn write_parquet(path: &Path, column: &str, rows: &[&str]) {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = parquet::schema::parser::parse_message_type(&format!(
        "message schema {{ optional binary {column} (UTF8); }}"
    ))
    .unwrap();
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), props.into()).unwrap();
    for chunk in rows.chunks(1000) {
        let mut group = writer.next_row_group().unwrap();
        let mut col = group.next_column().unwrap().unwrap();
        let values: Vec<ByteArray> = chunk.iter().map(|r| ByteArray::from(*r)).collect();
        col.typed::<ByteArrayType>()
            .write_batch(&values, Some(&vec![1; chunk.len()]), None)
            .unwrap();
        col.close().unwrap();
        group.close().unwrap();
    }
    writer.close().unwrap();
}

/// Files under `dir`, '/'-separated, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// Serves dataset `repo` as the Hub does for hf-hub: `GET /api/datasets/{repo}/revision/{rev}`
/// (JSON with the commit and the file list) and `GET /datasets/{repo}/resolve/{rev}/{file}`
/// (ranged, with ETag and X-Repo-Commit). `revisions` maps a revision to (folder, commit).
/// Returns the endpoint and a count of the requests answered.
fn serve_dataset_as_hub(
    repo: &'static str,
    revisions: Vec<(&'static str, PathBuf, &'static str)>,
) -> (String, Arc<AtomicUsize>) {
    let api = format!("/api/datasets/{repo}/revision/");
    let resolve = format!("/datasets/{repo}/resolve/");
    serve(move |path| {
        // hf-hub sends a revision holding '/' (refs/convert/parquet) as %2F.
        let revision_of = |rest: &str| -> Option<(PathBuf, &'static str, String)> {
            revisions.iter().find_map(|(rev, dir, commit)| {
                let tail = rest.strip_prefix(&rev.replace('/', "%2F"))?;
                Some((dir.clone(), *commit, tail.to_string()))
            })
        };
        if let Some(rest) = path.strip_prefix(&api) {
            match revision_of(rest).filter(|(_, _, tail)| tail.is_empty()) {
                None => Reply::NotFound,
                Some((dir, commit, _)) => {
                    let siblings: Vec<serde_json::Value> = files_under(&dir)
                        .into_iter()
                        .map(|f| serde_json::json!({ "rfilename": f }))
                        .collect();
                    Reply::Json(
                        serde_json::json!({ "id": repo, "sha": commit, "siblings": siblings })
                            .to_string(),
                    )
                }
            }
        } else if let Some(rest) = path.strip_prefix(&resolve) {
            let file = revision_of(rest).and_then(|(dir, commit, tail)| {
                let f = dir.join(tail.strip_prefix('/')?);
                f.is_file().then(|| (std::fs::read(f).unwrap(), commit))
            });
            match file {
                None => Reply::NotFound,
                Some((body, commit)) => Reply::File {
                    body,
                    commit: commit.into(),
                },
            }
        } else {
            Reply::NotFound
        }
    })
}

const MAIN_COMMIT: &str = "1111111111111111111111111111111111111111";
const CONVERTED_COMMIT: &str = "2222222222222222222222222222222222222222";

#[test]
fn hub_wikitext_rows_give_the_builtin_text_then_come_from_the_cache() {
    let dir = tempdir("wikitext");
    synth_model(&dir);
    // Salesforce/wikitext's layout: {config}/{split}-NNNNN-of-NNNNN.parquet. The test split
    // in two shards (their order matters), and another config that must not be read.
    let raw = shipped_raw("wiki.test.raw.zst");
    let rows = hub_rows(&raw);
    assert_eq!(rows.len(), 4358);
    let repo_dir = dir.join("repo");
    let (first, second) = rows.split_at(2500);
    write_parquet(
        &repo_dir.join("wikitext-2-raw-v1/test-00001-of-00002.parquet"),
        "text",
        second,
    );
    write_parquet(
        &repo_dir.join("wikitext-2-raw-v1/test-00000-of-00002.parquet"),
        "text",
        first,
    );
    write_parquet(
        &repo_dir.join("wikitext-103-raw-v1/test-00000-of-00001.parquet"),
        "text",
        &rows[..10],
    );
    std::fs::write(repo_dir.join("README.md"), "---\nconfigs: []\n---\n").unwrap();
    let (endpoint, served) = serve_dataset_as_hub(
        "Salesforce/wikitext",
        vec![("main", repo_dir.clone(), MAIN_COMMIT)],
    );

    let hub = "[data]\ndataset = \"Salesforce/wikitext\"\nconfig = \"wikitext-2-raw-v1\"\n\
               cache_dir = \"hf-cache\"\n";
    let (out, record) = run(&dir, "hub", hub, &endpoint);
    assert!(out.status.success(), "{}", text(&out));
    let record = record.expect("a record");
    assert_eq!(
        record["dataset"]["text_sha256"],
        sha256_hex(rows.join("\n\n").as_bytes()),
        "the Hub rows joined with \\n\\n"
    );
    let origin = &record["dataset"]["origin"];
    assert_eq!(origin["kind"], "hub");
    assert_eq!(origin["commit"], MAIN_COMMIT);
    assert_eq!(origin["rows"], 4358);
    assert_eq!(
        origin["files"],
        serde_json::json!([
            "wikitext-2-raw-v1/test-00000-of-00002.parquet",
            "wikitext-2-raw-v1/test-00001-of-00002.parquet"
        ])
    );
    // Stored where huggingface_hub (and so `datasets`) keeps them.
    let snapshot = dir.join(format!(
        "hf-cache/datasets--Salesforce--wikitext/snapshots/{MAIN_COMMIT}/wikitext-2-raw-v1"
    ));
    assert!(snapshot.join("test-00000-of-00002.parquet").is_file());

    // The same text as the built-in data: same sha256, same token count, same perplexity.
    let (out, builtin_record) = run(&dir, "builtin", "", &endpoint);
    assert!(out.status.success(), "{}", text(&out));
    let builtin_record = builtin_record.expect("a record");
    for key in ["text_sha256", "text_tokens", "tokens"] {
        assert_eq!(
            record["dataset"][key], builtin_record["dataset"][key],
            "{key}"
        );
    }
    assert_eq!(record["results"]["ppl"], builtin_record["results"]["ppl"]);

    // With the Hub unreachable, the cached files serve.
    let before = served.load(Ordering::SeqCst);
    let (out, again) = run(&dir, "cached", hub, "http://127.0.0.1:9");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("using the cached files"),
        "{}",
        text(&out)
    );
    assert_eq!(served.load(Ordering::SeqCst), before);
    assert_eq!(
        again.expect("a record")["dataset"]["text_sha256"],
        record["dataset"]["text_sha256"]
    );
}

#[test]
fn hub_falls_back_to_the_converted_parquet_with_its_own_column_and_join() {
    let dir = tempdir("converted");
    synth_model(&dir);
    // The repo itself holds no parquet (say JSON lines); the Hub's conversion does, under
    // refs/convert/parquet as {config}/{split}/NNNN.parquet.
    let main_dir = dir.join("main");
    std::fs::create_dir_all(&main_dir).unwrap();
    std::fs::write(main_dir.join("valid.jsonl"), "{}\n").unwrap();
    let converted_dir = dir.join("converted");
    let raw = shipped_raw("wiki.valid.raw.zst");
    let rows: Vec<&str> = hub_rows(&raw)
        .into_iter()
        .filter(|r| !r.is_empty())
        .take(300)
        .collect();
    write_parquet(
        &converted_dir.join("default/validation/0000.parquet"),
        "sentence",
        &rows,
    );
    write_parquet(
        &converted_dir.join("default/test/0000.parquet"),
        "sentence",
        &rows[..5],
    );
    let (endpoint, _) = serve_dataset_as_hub(
        "org/ptb-like",
        vec![
            ("main", main_dir, MAIN_COMMIT),
            ("refs/convert/parquet", converted_dir, CONVERTED_COMMIT),
        ],
    );
    let data =
        "[data]\ndataset = \"org/ptb-like\"\nsplit = \"validation\"\ncolumn = \"sentence\"\n\
                join = \" \"\ncache_dir = \"hf-cache\"\n";
    let (out, record) = run(&dir, "converted", data, &endpoint);
    assert!(out.status.success(), "{}", text(&out));
    let record = record.expect("a record");
    assert_eq!(
        record["dataset"]["text_sha256"],
        sha256_hex(rows.join(" ").as_bytes())
    );
    let origin = &record["dataset"]["origin"];
    assert_eq!(origin["revision"], "refs/convert/parquet");
    assert_eq!(origin["commit"], CONVERTED_COMMIT);
    assert_eq!(origin["rows"], 300);
    assert!(record["dataset"]["format"].is_null());

    // A wrong column names the ones there are.
    let (out, _) = run(
        &dir,
        "badcolumn",
        &data.replace("\"sentence\"", "\"text\""),
        &endpoint,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no column `text`") && text(&out).contains("`sentence`"),
        "{}",
        text(&out)
    );
    // A split that is nowhere says what there is.
    let (out, _) = run(
        &dir,
        "badsplit",
        &data.replace("\"validation\"", "\"train\""),
        &endpoint,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no parquet files for split `train`")
            && text(&out).contains("default/validation/0000.parquet"),
        "{}",
        text(&out)
    );
}

/// The development machines' copy of the published `wiki.test.raw`; `None` (SKIPPED, or a
/// failure in CI) where there is none.
fn shared_wiki_test_raw(test: &str) -> Option<PathBuf> {
    let shared = std::env::var_os("SPLITBENCH_WIKITEXT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data/wikitext-2-raw-v1"))
        .join("wiki.test.raw");
    if !shared.is_file() {
        missing_input(
            test,
            format!(
                "{} not found (set SPLITBENCH_WIKITEXT_DIR)",
                shared.display()
            ),
        );
        return None;
    }
    Some(shared)
}

/// No `[data]` section: the same text and token ids as `wiki.test.raw` read with
/// `format = "wikitext"` (where the development machines keep that file).
#[test]
fn no_data_section_equals_the_shared_wiki_test_raw() {
    let Some(shared) = shared_wiki_test_raw("no_data_section_equals_the_shared_wiki_test_raw")
    else {
        return;
    };
    let dir = tempdir("nodata");
    synth_model(&dir);
    let (out, builtin) = run(&dir, "builtin", "", "http://127.0.0.1:9");
    assert!(out.status.success(), "{}", text(&out));
    let file = format!(
        "[data]\npath = {:?}\nformat = \"wikitext\"\n",
        shared.display().to_string()
    );
    let (out, from_file) = run(&dir, "file", &file, "http://127.0.0.1:9");
    assert!(out.status.success(), "{}", text(&out));
    let (builtin, from_file) = (builtin.unwrap(), from_file.unwrap());
    for key in ["text_sha256", "text_tokens", "tokens", "format"] {
        assert_eq!(builtin["dataset"][key], from_file["dataset"][key], "{key}");
    }
    assert_eq!(
        builtin["dataset"]["source"],
        "builtin:wikitext-2-raw-v1/test"
    );
    assert_eq!(builtin["results"]["ppl"], from_file["results"]["ppl"]);
    // run.json, which resume compares, records the same sha256.
    let run_json = |name: &str| -> serde_json::Value {
        let run = std::fs::read_dir(dir.join(format!("out-{name}")))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap()
    };
    assert_eq!(
        run_json("builtin")["text_sha256"],
        builtin["dataset"]["text_sha256"]
    );
    assert_eq!(
        run_json("file")["text_sha256"],
        builtin["dataset"]["text_sha256"]
    );
}

#[test]
fn wikitext_run_on_the_shared_data() {
    let Some(data) = shared_wiki_test_raw("wikitext_run_on_the_shared_data") else {
        return;
    };
    let dir = tempdir("wikitext");
    synth_model(&dir);
    std::fs::write(
        dir.join("exp.toml"),
        format!(
            "[model]\npath = \"tiny\"\n[data]\npath = {:?}\nfirst_k_tokens = 2000\n[eval]\nmax_length = 256\nstride = 256\n[output]\ndir = \"out\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let out = splitbench(&["run", dir.join("exp.toml").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let run_dir = newest_run(&dir.join("out"), &[]);
    let none: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("00-none.json")).unwrap())
            .unwrap();
    assert_eq!(none["dataset"]["tokens"], 2000);
    // Disjoint windows of 256 over 2000 tokens: 8 windows, each loses its first token.
    assert_eq!(none["results"]["scored_tokens"], 2000 - 8);
    assert_eq!(none["dataset"]["text_sha256"].as_str().unwrap().len(), 64);
}
