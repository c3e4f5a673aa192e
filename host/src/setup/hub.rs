//! The one Hugging Face Hub client, for models and datasets alike, set up from the environment
//! as huggingface_hub reads it: `HF_ENDPOINT` (another Hub or a mirror), `HF_TOKEN` (gated
//! repos; else the token file under `HF_HOME`), `HF_HUB_CACHE`, else `HF_HOME/hub`, else
//! `~/.cache/huggingface/hub` (the cache Python's `datasets` and `transformers` fill, so what
//! they downloaded is read from disk), and `HF_HUB_OFFLINE` (nothing asked of the network:
//! the cache's snapshots only). A repo the Hub cannot be asked about is also read from the
//! cache.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder, ApiRepo};
use hf_hub::{Repo, RepoType};

use crate::model::load::{fetch_files, ModelFiles};
use crate::model::ModelError;

/// The client could not be set up (the token file or the cache folder).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the Hub client: {0}")]
pub struct ClientError(String);

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(
        "cannot fetch `{file}` of `{repo}` at revision `{revision}` from the Hub: {reason}. \
         Check the repo id, your network or HF_ENDPOINT (a token in HF_TOKEN for gated repos), \
         or download the files and give their local path"
    )]
    Fetch {
        repo: String,
        revision: String,
        file: String,
        reason: String,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Where the Hub's files are cached: `cache_dir`, else the locations huggingface_hub uses.
pub fn cache_root(cache_dir: Option<&Path>) -> PathBuf {
    if let Some(dir) = cache_dir {
        return dir.to_path_buf();
    }
    // huggingface_hub honours HF_HUB_CACHE before HF_HOME; hf-hub knows only HF_HOME.
    match std::env::var_os("HF_HUB_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => hf_hub::Cache::from_env().path().clone(),
    }
}

/// `HF_HUB_OFFLINE` set to a true value.
fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// The files of a repo at a revision and the commit they belong to.
pub struct Listing {
    pub commit: String,
    pub files: Vec<String>,
    /// Taken from the cache because the Hub could not be asked.
    pub offline: bool,
}

/// A Hub client on one cache.
pub struct Hub {
    api: Api,
    root: PathBuf,
    offline: bool,
}

impl Hub {
    /// On `cache_dir`, or the standard cache.
    pub fn new(cache_dir: Option<&Path>) -> Result<Hub, ClientError> {
        let root = cache_root(cache_dir);
        let mut builder = ApiBuilder::from_env()
            .with_progress(false)
            .with_cache_dir(root.clone());
        // huggingface_hub reads the token from HF_TOKEN too; hf-hub only from the token file.
        if let Ok(token) = std::env::var("HF_TOKEN") {
            if !token.is_empty() {
                builder = builder.with_token(Some(token));
            }
        }
        let api = builder.build().map_err(|e| ClientError(e.to_string()))?;
        Ok(Hub {
            api,
            root,
            offline: offline_from_env(),
        })
    }

    pub fn repo(&self, id: &str, kind: RepoType, revision: &str) -> ApiRepo {
        self.api.repo(Repo::with_revision(
            id.to_string(),
            kind,
            revision.to_string(),
        ))
    }

    /// The cache folder of a repo, as huggingface_hub names it.
    pub fn repo_cache(&self, id: &str, kind: RepoType) -> PathBuf {
        self.root
            .join(Repo::new(id.to_string(), kind).folder_name())
    }

    /// The files of a repo at `revision`: asked of the Hub, or, offline or when the Hub cannot
    /// be asked, those of the cached snapshot. `Err` says why the Hub was not asked (or what
    /// it answered) when the cache has no snapshot either.
    pub fn list(&self, id: &str, kind: RepoType, revision: &str) -> Result<Listing, String> {
        let reason = if self.offline {
            "HF_HUB_OFFLINE is set".to_string()
        } else {
            match self.repo(id, kind, revision).info() {
                Ok(info) => {
                    return Ok(Listing {
                        commit: info.sha,
                        files: info.siblings.into_iter().map(|s| s.rfilename).collect(),
                        offline: false,
                    })
                }
                Err(e) => e.to_string(),
            }
        };
        match cached_listing(&self.repo_cache(id, kind), revision) {
            Some(listing) => {
                eprintln!(
                    "splitbench: using the cached files of {id} (commit {}): {reason}",
                    listing.commit
                );
                Ok(listing)
            }
            None => Err(reason),
        }
    }

    /// One file of a repo, from the cache when it is there; offline, from the cache only.
    pub fn file(
        &self,
        id: &str,
        kind: RepoType,
        revision: &str,
        name: &str,
    ) -> Result<PathBuf, HubError> {
        let fetch_error = |reason: String| HubError::Fetch {
            repo: id.to_string(),
            revision: revision.to_string(),
            file: name.to_string(),
            reason,
        };
        if self.offline {
            let repo = Repo::with_revision(id.to_string(), kind, revision.to_string());
            return hf_hub::Cache::new(self.root.clone())
                .repo(repo)
                .get(name)
                .ok_or_else(|| {
                    fetch_error("HF_HUB_OFFLINE is set and the file is not in the cache".into())
                });
        }
        self.repo(id, kind, revision)
            .get(name)
            .map_err(|e| fetch_error(e.to_string()))
    }
}

/// One file of a Hub model (a GGUF, say), from the cache when it is there.
pub fn model_file(
    id: &str,
    revision: &str,
    name: &str,
    cache_dir: Option<&Path>,
) -> Result<PathBuf, HubError> {
    Hub::new(cache_dir)?.file(id, RepoType::Model, revision, name)
}

/// A safetensors model's files from the Hub (or its cache).
pub fn model_files(
    id: &str,
    revision: &str,
    cache_dir: Option<&Path>,
) -> Result<ModelFiles, HubError> {
    let hub = Hub::new(cache_dir)?;
    fetch_files(|name| hub.file(id, RepoType::Model, revision, name))
}

/// The cached snapshot of `revision`: the commit its ref names, the commit itself when the
/// revision is one, or else the only snapshot no other ref claims (`datasets` fetches by
/// commit and may write no ref).
fn cached_listing(repo_dir: &Path, revision: &str) -> Option<Listing> {
    let snapshots = repo_dir.join("snapshots");
    let refs = repo_dir.join("refs");
    let from_ref = std::fs::read_to_string(refs.join(revision))
        .ok()
        .map(|c| c.trim().to_string());
    let commit = match from_ref {
        Some(c) => c,
        None if snapshots.join(revision).is_dir() => revision.to_string(),
        None => {
            let mut claimed = Vec::new();
            walk(&refs, "", &mut claimed);
            let claimed: Vec<String> = claimed
                .iter()
                .filter_map(|r| std::fs::read_to_string(refs.join(r)).ok())
                .map(|c| c.trim().to_string())
                .collect();
            let mut unclaimed = std::fs::read_dir(&snapshots)
                .ok()?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|c| !claimed.contains(c));
            let only = unclaimed.next()?;
            if unclaimed.next().is_some() {
                return None;
            }
            only
        }
    };
    let dir = snapshots.join(&commit);
    let mut files = Vec::new();
    walk(&dir, "", &mut files);
    (!files.is_empty()).then_some(Listing {
        commit,
        files,
        offline: true,
    })
}

/// Paths of the files under `dir`, relative and '/'-separated as the Hub names them.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let rel = format!("{prefix}{name}");
        let path = entry.path();
        // Snapshot files are symlinks into blobs/: is_file follows them.
        if path.is_dir() {
            walk(&path, &format!("{rel}/"), out);
        } else if path.is_file() {
            out.push(rel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_listing_follows_the_ref_or_the_only_snapshot() {
        let dir = crate::scratch::ScratchDir::new("hubcache");
        let snap = dir.join("snapshots/abc123/cfg");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("test-00000-of-00001.parquet"), b"x").unwrap();
        // No ref (as `datasets` may leave it): the only snapshot.
        let l = cached_listing(&dir, "main").unwrap();
        assert_eq!(l.commit, "abc123");
        assert_eq!(l.files, ["cfg/test-00000-of-00001.parquet"]);
        assert!(l.offline);
        // Two snapshots and no ref: ambiguous.
        std::fs::create_dir_all(dir.join("snapshots/def456")).unwrap();
        assert!(cached_listing(&dir, "main").is_none());
        // ... unless the other one is another revision's.
        std::fs::create_dir_all(dir.join("refs/refs/convert")).unwrap();
        std::fs::write(dir.join("refs/refs/convert/parquet"), "def456").unwrap();
        assert_eq!(cached_listing(&dir, "main").unwrap().commit, "abc123");
        std::fs::write(dir.join("refs/main"), "abc123\n").unwrap();
        assert_eq!(cached_listing(&dir, "main").unwrap().commit, "abc123");
        assert_eq!(cached_listing(&dir, "abc123").unwrap().commit, "abc123");
        // The converted revision's snapshot holds no file here.
        assert!(cached_listing(&dir, "refs/convert/parquet").is_none());
    }
}
