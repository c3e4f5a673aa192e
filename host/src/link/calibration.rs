//! The fitted states of calibrated codecs: which (plugin, codec, params, link) needs one, and
//! the states the host was given, by that key.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::sha256_hex;

/// One codec configuration at one link: what a fitted state belongs to. Per-link variants of
/// a codec (`--per-link`, overrides) that choose the same codec share its state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CalibrationTarget {
    /// The plugin file, canonical.
    pub plugin: PathBuf,
    pub codec: String,
    pub params_json: String,
    /// Index of the link in the plan.
    pub link: usize,
    pub link_name: String,
}

impl CalibrationTarget {
    /// A short stable digest of the codec configuration (not the link), for file names.
    pub fn config_digest(&self) -> String {
        let key = format!(
            "{}\n{}\n{}",
            self.plugin.display(),
            self.codec,
            self.params_json
        );
        sha256_hex(key.as_bytes())[..12].to_string()
    }
}

/// A fitted state, as a record reports it: sent once per link, apart from the per-token wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibratedLink {
    pub link: String,
    pub state_bytes: u64,
    pub state_sha256: String,
}

/// The states given to the host, by target.
#[derive(Default)]
pub struct CalibrationStates {
    states: HashMap<CalibrationTarget, Vec<u8>>,
}

impl CalibrationStates {
    pub fn insert(&mut self, target: CalibrationTarget, state: Vec<u8>) {
        self.states.insert(target, state);
    }

    pub fn get(&self, target: &CalibrationTarget) -> Option<&[u8]> {
        self.states.get(target).map(Vec::as_slice)
    }

    /// What the record says of `target`'s state.
    pub fn describe(&self, target: &CalibrationTarget) -> Option<CalibratedLink> {
        self.get(target).map(|state| CalibratedLink {
            link: target.link_name.clone(),
            state_bytes: state.len() as u64,
            state_sha256: sha256_hex(state),
        })
    }
}
