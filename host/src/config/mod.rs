//! Experiment TOML: what to run, read strictly (unknown keys and wrong types are errors that
//! name the file, the line and what was expected), with `--set` overrides, then validated.

mod overrides;
mod schema;

use std::path::{Path, PathBuf};

pub use schema::*;

use overrides::{apply_override, suggest_closest};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read experiment file `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("in `{path}`: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("--set {assignment}: {message}")]
    Override { assignment: String, message: String },
    #[error("in `{path}`: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// An experiment and the folder its relative paths are resolved from.
#[derive(Debug, Clone)]
pub struct LoadedExperiment {
    pub path: PathBuf,
    pub base_dir: PathBuf,
    pub experiment: Experiment,
}

impl LoadedExperiment {
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

pub fn load(path: &Path, overrides: &[String]) -> Result<LoadedExperiment, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_err = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message: suggest_closest(&message),
    };
    // Parse the file as written first, so its errors carry line numbers.
    let mut experiment: Experiment =
        toml::from_str(&text).map_err(|e| parse_err(e.to_string().trim_end().to_string()))?;
    if !overrides.is_empty() {
        let mut doc: toml::Table =
            toml::from_str(&text).map_err(|e| parse_err(e.to_string().trim_end().to_string()))?;
        for o in overrides {
            apply_override(&mut doc, o)?;
        }
        experiment = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Override {
                assignment: overrides.join(" "),
                message: e.to_string().trim_end().to_string(),
            })?;
    }
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let loaded = LoadedExperiment {
        path: path.to_path_buf(),
        base_dir,
        experiment,
    };
    validate(&loaded)?;
    Ok(loaded)
}

fn validate(loaded: &LoadedExperiment) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: loaded.path.clone(),
        message,
    };
    let e = &loaded.experiment;
    match (&e.model.path, &e.model.id, &e.model.gguf) {
        (None, None, None) => {
            return Err(invalid(
                "[model] needs `path` (a local folder), `id` (a Hub repo) or `gguf` (a GGUF file)"
                    .into(),
            ))
        }
        (Some(_), Some(_), _) => {
            return Err(invalid("[model] takes `path` or `id`, not both".into()))
        }
        (Some(_), None, Some(_)) => {
            return Err(invalid(
                "[model] takes `path` (a safetensors folder) or `gguf`, not both".into(),
            ))
        }
        _ => {}
    }
    if e.eval.max_length < 2 {
        return Err(invalid(format!(
            "eval.max_length = {} leaves no token to score: a window's first token has no \
             prediction, so a window needs at least 2 tokens; the prototype uses 2048",
            e.eval.max_length
        )));
    }
    if e.eval.stride == 0 || e.eval.stride > e.eval.max_length {
        return Err(invalid(format!(
            "eval.stride = {} must be between 1 and eval.max_length ({}); stride = max_length gives disjoint windows",
            e.eval.stride, e.eval.max_length
        )));
    }
    if e.eval.batch_size == 0 {
        return Err(invalid("eval.batch_size must be at least 1".into()));
    }
    if let Some(g) = &e.generate {
        if g.prompts == 0 || g.prompt_tokens == 0 || g.new_tokens < 2 {
            return Err(invalid(format!(
                "[generate] needs at least 1 prompt of at least 1 token and 2 new tokens (one \
                 after the prefill, one decode step); got prompts = {}, prompt_tokens = {}, \
                 new_tokens = {}",
                g.prompts, g.prompt_tokens, g.new_tokens
            )));
        }
    }
    let plan_forms = [
        e.plan.nodes.is_some(),
        e.plan.layer_to_node.is_some(),
        e.plan.split_after.is_some(),
    ]
    .iter()
    .filter(|&&b| b)
    .count();
    if plan_forms > 1 {
        return Err(invalid(
            "[plan] takes one of `nodes`, `layer_to_node` or `split_after`".into(),
        ));
    }
    if e.data.first_k_tokens == 1 {
        return Err(invalid(
            "data.first_k_tokens = 1 keeps one token, and scoring needs at least 2; use 0 for \
             the whole text or a larger count"
                .into(),
        ));
    }
    if e.plan.layer_to_node.is_none() {
        for (key, set) in [
            ("embed_node", e.plan.embed_node),
            ("head_node", e.plan.head_node),
        ] {
            if set.is_some() {
                return Err(invalid(format!(
                    "plan.{key} applies only with plan.layer_to_node (the other plans put the \
                     embedding on the first node and the head where the prototype does); \
                     remove it or give plan.layer_to_node"
                )));
            }
        }
    }
    if let Some(cuts) = &e.plan.split_after {
        if let Some(twice) = cuts
            .iter()
            .enumerate()
            .find_map(|(i, c)| cuts[..i].contains(c).then_some(c))
        {
            return Err(invalid(format!(
                "plan.split_after lists layer {twice} twice; name each cut once"
            )));
        }
    }
    if let Some(devices) = &e.plan.devices {
        let nodes = e.plan.node_count();
        if devices.len() != nodes {
            return Err(invalid(format!(
                "plan.devices names {} but the plan has {}; give one device per node, in node \
                 order (several nodes may share one, e.g. [\"cuda:0\", \"cuda:0\", \"cuda:1\"])",
                count(devices.len(), "device"),
                count(nodes, "node")
            )));
        }
        if devices.contains(&DeviceSpec::Auto) {
            return Err(invalid(
                "plan.devices cannot hold \"auto\": name each node's device (\"cpu\" or \
                 \"cuda:N\"), or leave plan.devices out to put every node on model.device"
                    .into(),
            ));
        }
    }
    if let Some(weights) = e.model.weights {
        match (e.model.gguf.is_some(), weights.is_for_gguf()) {
            (true, false) => {
                return Err(invalid(format!(
                    "model.weights = \"{}\" does not apply to GGUF files; use \"native\" or \"dequantize\"",
                    weights.as_str()
                )))
            }
            (false, true) => {
                return Err(invalid(format!(
                    "model.weights = \"{}\" applies to GGUF files only; for safetensors use \"dense\", \"q8_0\", \"q4_0\", \"q4k\" or \"q6k\"",
                    weights.as_str()
                )))
            }
            _ => {}
        }
    }
    e.links.model().map_err(&invalid)?;
    for spec in &e.codec {
        validate_codec(spec).map_err(&invalid)?;
        let on_cpu = match &e.plan.devices {
            Some(devices) => devices.iter().all(|d| *d == DeviceSpec::Cpu),
            None => e.model.device == DeviceSpec::Cpu,
        };
        if on_cpu {
            let on_device = std::iter::once(spec)
                .chain(spec.links.values())
                .any(|c| c.path == CodecPath::Device);
            if on_device {
                return Err(invalid(format!(
                    "codec `{}` asks for path = \"device\", but the model is not on a GPU \
                     ({}); use \
                     path = \"auto\" or \"host\", or put the model on a GPU (model.device = \"cuda:0\")",
                    spec.display_name(),
                    match e.plan.devices {
                        Some(_) => "plan.devices puts every node on \"cpu\"",
                        None => "model.device = \"cpu\"",
                    }
                )));
            }
        }
        for (link, over) in &spec.links {
            let at = |m: String| {
                invalid(format!(
                    "codec `{}`, links.\"{link}\": {m}",
                    spec.display_name()
                ))
            };
            check_link_key(link).map_err(at)?;
            validate_codec(over).map_err(at)?;
        }
    }
    check_labels(&e.codec).map_err(&invalid)
}

/// `1 device`, `3 nodes`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Reports and file names use each codec's label: it must name one codec and be usable in a
/// file name.
fn check_labels(codecs: &[CodecSpec]) -> Result<(), String> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut baseline: Option<usize> = None;
    for (i, spec) in codecs.iter().enumerate() {
        // Entries that are `none` throughout are the baseline itself, listed once.
        if spec.is_none() && spec.links.is_empty() && spec.label.is_none() {
            if let Some(first) = baseline {
                return Err(format!(
                    "codecs #{first} and #{} are both the baseline `none`; list it once (it runs                      whether listed or not)",
                    i + 1
                ));
            }
            baseline = Some(i + 1);
            continue;
        }
        let name = spec.display_name();
        if let Some(label) = &spec.label {
            // `int8/token` reads well in a table; `../x` or `/tmp/x` reads as a path.
            let path_like = label.starts_with(['.', '/'])
                || label.contains("..")
                || label.contains('\\')
                || label.chars().any(char::is_control);
            if label.trim().is_empty() || path_like {
                return Err(format!(
                    "codec #{} has label {label:?}, which reads as a path; a label may hold `/` \
                     (as in `int8/token`) but must not be empty, start with `.` or `/`, or hold \
                     `..`, `\\` or control characters",
                    i + 1
                ));
            }
        }
        if spec.is_none() && spec.links.is_empty() {
            return Err(format!(
                "codec #{} is the baseline `none`, which reports always call `none`; remove its \
                 label",
                i + 1
            ));
        }
        if name == "none" {
            return Err(format!(
                "codec #{} would be reported as `none`, the baseline's name; give it another \
                 `label`",
                i + 1
            ));
        }
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            return Err(format!(
                "codecs #{first} and #{} are both named `{name}` in reports; give one of them a \
                 different `label = \"...\"`",
                i + 1
            ));
        }
        seen.push((name, i + 1));
    }
    Ok(())
}

/// A per-link override key: `embed`, `layer:N` or a full link name (`layer:N:nodeA->nodeB`).
/// Whether the plan has that link is checked once the model's layer count is known.
fn check_link_key(key: &str) -> Result<(), String> {
    let mut parts = key.splitn(3, ':');
    let point_ok = match (parts.next(), parts.next()) {
        (Some("embed"), None) => true,
        (Some("embed"), Some(nodes)) => parts.next().is_none() && node_pair(nodes),
        (Some("layer"), Some(n)) => {
            n.parse::<usize>().is_ok() && parts.next().is_none_or(node_pair)
        }
        _ => false,
    };
    if point_ok {
        Ok(())
    } else {
        Err(
            "a link is named `embed`, `layer:N` or in full as `layer:N:nodeA->nodeB` (the \
             names `splitbench run` prints)"
                .into(),
        )
    }
}

fn node_pair(s: &str) -> bool {
    let node = |n: &str| {
        n.strip_prefix("node")
            .is_some_and(|i| i.parse::<usize>().is_ok())
    };
    s.split_once("->").is_some_and(|(a, b)| node(a) && node(b))
}

fn validate_codec(spec: &CodecSpec) -> Result<(), String> {
    match (&spec.name, &spec.plugin, &spec.codec) {
        (Some(name), None, None) if name == "none" => Ok(()),
        (Some(name), None, None) => Err(format!(
            "unknown built-in codec `{name}`; the only built-in is `none`; for others give `plugin` and `codec`"
        )),
        (None, Some(_), Some(_)) => Ok(()),
        (None, Some(_), None) => Err("a [[codec]] with `plugin` also needs `codec`".into()),
        _ => Err("a [[codec]] needs either name = \"none\" or `plugin` and `codec`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("x.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmp() -> crate::scratch::ScratchDir {
        crate::scratch::ScratchDir::new("config")
    }

    #[test]
    fn minimal_gets_prototype_defaults() {
        let d = tmp();
        let e = load(&write(&d, "[model]\npath = \"m\"\n"), &[]).unwrap();
        assert_eq!(e.experiment.eval.max_length, 2048);
        assert_eq!(e.experiment.eval.stride, 512);
        assert_eq!(e.experiment.eval.batch_size, 2);
        assert!(e.experiment.codec[0].is_none());
        assert_eq!(e.resolve(Path::new("m")), d.join("m"));
    }

    #[test]
    fn unknown_key_names_line_and_field() {
        let d = tmp();
        let err = load(
            &write(&d, "[model]\npath = \"m\"\n\n[eval]\nbatch_sise = 2\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 5") && err.contains("did you mean `batch_size`?"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_line() {
        let d = tmp();
        let err = load(
            &write(&d, "[model]\npath = \"m\"\n[eval]\nstride = \"big\"\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 4") && err.contains("expected usize"),
            "{err}"
        );
    }

    #[test]
    fn overrides_apply() {
        let d = tmp();
        let e = load(
            &write(&d, "[model]\npath = \"m\"\n"),
            &["eval.batch_size=4".into(), "model.dtype=bf16".into()],
        )
        .unwrap();
        assert_eq!(e.experiment.eval.batch_size, 4);
        assert_eq!(e.experiment.model.dtype, ModelDtype::Bf16);
    }

    #[test]
    fn device_spellings() {
        for (text, spec) in [
            ("cpu", DeviceSpec::Cpu),
            ("auto", DeviceSpec::Auto),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            assert_eq!(DeviceSpec::try_from(text.to_string()).unwrap(), spec);
        }
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "metal"] {
            let err = DeviceSpec::try_from(bad.to_string()).unwrap_err();
            assert!(err.contains("cuda:N"), "{bad}: {err}");
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn typed_values_are_checked_with_the_line() {
        let d = tmp();
        for (bad, expected) in [
            ("[model]\npath = \"m\"\ndtype = \"f64\"\n", "line 3"),
            ("[model]\npath = \"m\"\ndevice = \"gpu\"\n", "cuda:N"),
            ("[model]\npath = \"m\"\nweights = \"q3\"\n", "line 3"),
            (
                "[model]\npath = \"m\"\n[links]\nprofile = \"dialup\"\n",
                "broadband",
            ),
            (
                "[model]\npath = \"m\"\nweights = \"native\"\n",
                "GGUF files only",
            ),
            (
                "[model]\ngguf = \"m.gguf\"\nweights = \"q4k\"\n",
                "does not apply to GGUF",
            ),
        ] {
            let err = load(&write(&d, bad), &[]).unwrap_err().to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    #[test]
    fn stride_checks() {
        let d = tmp();
        for bad in ["stride = 0", "stride = 4096"] {
            let err = load(
                &write(&d, &format!("[model]\npath = \"m\"\n[eval]\n{bad}\n")),
                &[],
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("eval.stride"), "{err}");
        }
    }

    #[test]
    fn codec_specs() {
        let d = tmp();
        let e = load(
            &write(
                &d,
                "[model]\npath = \"m\"\n[[codec]]\nname = \"none\"\n[[codec]]\nplugin = \"intq\"\ncodec = \"intn-block\"\nparams = { bits = 4 }\n",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(e.experiment.codec.len(), 2);
        assert_eq!(e.experiment.codec[1].params_json(), r#"{"bits":4}"#);
        assert_eq!(e.experiment.codec[1].display_name(), "intn-block(bits=4)");
        let err = load(
            &write(&d, "[model]\npath = \"m\"\n[[codec]]\nname = \"fp16\"\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("only built-in is `none`"), "{err}");
    }

    #[test]
    fn labels_name_one_codec_and_no_path() {
        let d = tmp();
        let intq = "plugin = \"intq\"\ncodec = \"intn-block\"";
        let ok = format!(
            "[model]\npath = \"m\"\n[[codec]]\n{intq}\nlabel = \"int4/block\"\n[[codec]]\n{intq}\n"
        );
        assert!(load(&write(&d, &ok), &[]).is_ok());
        for (label, expected) in [
            ("../x", "reads as a path"),
            ("/tmp/x", "reads as a path"),
            ("", "reads as a path"),
            ("none", "the baseline's name"),
            ("intn-block", "both named `intn-block`"),
        ] {
            let text = format!(
                "[model]\npath = \"m\"\n[[codec]]\n{intq}\nlabel = {label:?}\n[[codec]]\n{intq}\n"
            );
            let err = load(&write(&d, &text), &[]).unwrap_err().to_string();
            assert!(err.contains(expected), "{label}: {err}");
        }
        let twice =
            "[model]\npath = \"m\"\n[[codec]]\nname = \"none\"\n[[codec]]\nname = \"none\"\n";
        let err = load(&write(&d, twice), &[]).unwrap_err().to_string();
        assert!(err.contains("both the baseline `none`"), "{err}");
    }

    #[test]
    fn link_keys() {
        for good in [
            "embed",
            "layer:7",
            "layer:7:node0->node1",
            "embed:node2->node0",
        ] {
            assert!(check_link_key(good).is_ok(), "{good}");
        }
        for bad in [
            "layer7",
            "layer:x",
            "layer:7:node0",
            "embed:0->1",
            "head",
            "layer:7:n0->n1",
        ] {
            assert!(check_link_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plan_keys_that_cannot_apply() {
        let d = tmp();
        for (plan, expected) in [
            ("split_after = [3, 1, 3]", "lists layer 3 twice"),
            (
                "nodes = 2\nembed_node = 1",
                "plan.embed_node applies only with",
            ),
            (
                "nodes = 3\ndevices = [\"cpu\", \"cpu\"]",
                "plan.devices names 2 devices but the plan has 3 nodes",
            ),
            (
                "split_after = [3]\ndevices = [\"cpu\", \"cpu\", \"cpu\"]",
                "names 3 devices but the plan has 2 nodes",
            ),
            (
                "layer_to_node = [0, 1, 1, 0]\nhead_node = 2\ndevices = [\"cpu\"]",
                "names 1 device but the plan has 3 nodes",
            ),
            (
                "devices = [\"cpu\", \"auto\", \"cpu\", \"cpu\"]",
                "plan.devices cannot hold \"auto\"",
            ),
            ("devices = [\"gpu0\"]", "device `gpu0` is not understood"),
        ] {
            let text = format!("[model]\npath = \"m\"\n[plan]\n{plan}\n");
            let err = load(&write(&d, &text), &[]).unwrap_err().to_string();
            assert!(err.contains(expected), "{plan}: {err}");
        }
    }
}
