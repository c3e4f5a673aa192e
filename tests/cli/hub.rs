//! Models from the Hugging Face Hub, served by a local HTTP server through HF_ENDPOINT.

use std::path::PathBuf;
use std::process::Command;

use crate::util::{bin, synth_model, tempdir, text, write_text};

/// Serves the files of `dir` the way the Hugging Face Hub does for hf-hub
/// (`/{repo}/resolve/{revision}/{file}`, ranged GETs, ETag and X-Repo-Commit headers) on
/// 127.0.0.1, for at most `max_requests` requests. Returns the endpoint.
fn serve_as_hub(dir: PathBuf, repo: &'static str, max_requests: usize) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max_requests) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut range: Option<(usize, Option<usize>)> = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    let (a, b) = v.trim().split_once('-').unwrap();
                    range = Some((a.parse().unwrap(), b.parse().ok()));
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let prefix = format!("/{repo}/resolve/main/");
            let file = path.strip_prefix(&prefix).map(|f| dir.join(f));
            let response = match file
                .filter(|f| f.is_file())
                .map(|f| std::fs::read(f).unwrap())
            {
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
                Some(body) => {
                    let (start, end) = match range {
                        Some((a, b)) => (a, b.unwrap_or(body.len() - 1).min(body.len() - 1)),
                        None => (0, body.len() - 1),
                    };
                    let etag = format!(
                        "{:x}",
                        body.iter()
                            .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(b as u64))
                    );
                    let mut r = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{}\r\n\
                         ETag: \"{etag}\"\r\nX-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\nConnection: close\r\n\r\n",
                        end + 1 - start,
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body[start..=end]);
                    r
                }
            };
            let _ = stream.write_all(&response);
        }
    });
    endpoint
}

#[test]
fn hub_model_through_a_local_server_then_from_the_cache() {
    let dir = tempdir("hub");
    synth_model(&dir);
    write_text(&dir);
    let endpoint = serve_as_hub(dir.join("tiny"), "test-org/tiny", 64);
    std::fs::write(
        dir.join("exp.toml"),
        "[model]\nid = \"test-org/tiny\"\ncache_dir = \"hf-cache\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\n\
         [eval]\nmax_length = 128\nstride = 128\n[output]\ndir = \"out\"\n",
    )
    .unwrap();
    let run = |endpoint: &str| {
        Command::new(bin())
            .args(["run", dir.join("exp.toml").to_str().unwrap()])
            .env("HF_ENDPOINT", endpoint)
            .output()
            .unwrap()
    };
    let out = run(&endpoint);
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.join("hf-cache/models--test-org--tiny").is_dir());
    // The files are in the cache now: a second run needs no server at all.
    let out = run("http://127.0.0.1:9");
    assert!(out.status.success(), "{}", text(&out));
    let records: Vec<PathBuf> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(records.len(), 2);
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(records[0].join("00-none.json")).unwrap())
            .unwrap();
    assert_eq!(first["model"]["id"], "test-org/tiny");
    assert_eq!(first["model"]["revision"], "main");
}
