//! A stand-in for the Hugging Face Hub: an HTTP/1.1 server on 127.0.0.1 that hf-hub reaches
//! through HF_ENDPOINT. Each test says what a path answers; files are served as the Hub serves
//! them (ranged GETs, ETag and X-Repo-Commit headers).

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What the server answers for one request path.
pub enum Reply {
    Json(String),
    /// A file of the repo at `commit`.
    File {
        body: Vec<u8>,
        commit: String,
    },
    NotFound,
}

/// Starts the server; returns its endpoint and the count of requests it has answered.
pub fn serve(reply: impl Fn(&str) -> Reply + Send + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
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
            count.fetch_add(1, Ordering::SeqCst);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let response = match reply(path) {
                Reply::NotFound => {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                }
                Reply::Json(body) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body.as_bytes());
                    r
                }
                Reply::File { body, commit } => {
                    let (start, end) = match range {
                        Some((a, b)) => (a, b.unwrap_or(body.len() - 1).min(body.len() - 1)),
                        None => (0, body.len() - 1),
                    };
                    let etag = crate::util::sha256_hex(&body);
                    let mut r = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{}\r\n\
                         ETag: \"{etag}\"\r\nX-Repo-Commit: {commit}\r\nConnection: close\r\n\r\n",
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
    (endpoint, served)
}
