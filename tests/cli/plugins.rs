//! Plugins: listing, inspecting, codec-check, loading foreign and hostile plugin files.

use std::path::PathBuf;
use std::process::Command;

use crate::util::{
    assert_fails, bin, build_plugin_crate, cargo_outside_workspace, cargo_outside_workspace_in,
    lib_name, missing_input, require_builtins, root, splitbench, synth_model, tempdir, text,
    write_text, BUILTINS,
};

#[test]
fn plugins_lists_every_builtin() {
    require_builtins();
    let out = splitbench(&["plugins"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    for p in BUILTINS {
        assert!(
            t.contains(&format!(
                "    {p} {v} (plugin-api {v})",
                v = env!("CARGO_PKG_VERSION")
            )),
            "{p} missing:\n{t}"
        );
    }
    assert!(!t.contains("not loaded"), "{t}");
}

#[test]
fn codec_check_prints_a_table_for_every_builtin_codec() {
    require_builtins();
    for (plugin, codec, params) in [
        ("identity", "identity", "{}"),
        ("cast", "fp16", "{}"),
        ("cast", "fp8-e4m3", r#"{"scale":"per-token"}"#),
        ("intq", "int8-token", "{}"),
        ("intq", "intn-block", r#"{"bits":4}"#),
        ("intq", "intn-block-asym", "{}"),
        ("topk", "topk", "{}"),
        ("zstd", "zstd", r#"{"shuffle":true}"#),
        ("outlier", "outlier", "{}"),
    ] {
        let out = splitbench(&[
            "codec-check",
            "--plugin",
            plugin,
            "--codec",
            codec,
            "--params",
            params,
            "--shape",
            "1,64,256",
        ]);
        let t = text(&out);
        assert!(out.status.success(), "{plugin}/{codec}: {t}");
        assert!(t.contains("B/elem") && t.contains("SNR dB"), "{t}");
        assert!(!t.contains("FAIL"), "{t}");
    }
    // Known values: identity is exact, int8 per token uses 1 byte + 4/256 of scale.
    let t = text(&splitbench(&[
        "codec-check",
        "--plugin",
        "intq",
        "--codec",
        "int8-token",
        "--shape",
        "1,64,256",
        "--dtype",
        "f32",
    ]));
    assert!(t.contains("1.0156"), "{t}");
}

#[test]
fn unknown_codec_lists_what_the_plugin_offers() {
    require_builtins();
    assert_fails(
        &["codec-check", "--plugin", "intq", "--codec", "int3"],
        &["no codec `int3`", "int8-token, intn-block, intn-block-asym"],
    );
}

#[test]
fn bad_params_name_the_field() {
    require_builtins();
    assert_fails(
        &[
            "codec-check",
            "--plugin",
            "intq",
            "--codec",
            "intn-block",
            "--params",
            r#"{"bitz":3}"#,
        ],
        &["unknown parameter `bitz`", "bits, block"],
    );
}

#[test]
fn missing_plugin_lists_folders_and_names() {
    let exe_dir = bin().parent().unwrap().display().to_string();
    assert_fails(
        &["codec-check", "--plugin", "nosuch", "--codec", "x"],
        &[
            "plugin `nosuch` not found",
            "libsplitbench_codec_nosuch.so",
            &exe_dir,
        ],
    );
}

#[test]
fn non_plugins_are_refused_with_the_reason() {
    let dir = tempdir("notplugin");
    let junk = dir.join("junk.so");
    std::fs::write(&junk, "not a library").unwrap();
    assert_fails(
        &["plugin", "inspect", junk.to_str().unwrap()],
        &["not a splitbench codec plugin: it is not a loadable shared library"],
    );

    // Another shared library: the Rust standard library of the toolchain that built us.
    let libdir = Command::new("rustc")
        .args(["--print", "target-libdir"])
        .output()
        .unwrap();
    let lib = PathBuf::from(String::from_utf8_lossy(&libdir.stdout).trim());
    let libstd = std::fs::read_dir(&lib)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libstd-")
        })
        .expect("the toolchain ships libstd as a shared library");
    assert_fails(
        &["plugin", "inspect", libstd.to_str().unwrap()],
        &["exports no abi_stable root module"],
    );
}

#[test]
fn plugin_built_against_an_older_layout_is_refused() {
    let so = build_plugin_crate(
        &root().join("tests/fixtures/old-api-plugin"),
        "old-api-plugin",
    );
    let t = assert_fails(
        &["plugin", "inspect", so.to_str().unwrap()],
        &[
            "was built against splitbench-plugin-api 0.1.0",
            "rebuild the plugin against splitbench-plugin-api 0.1",
        ],
    );
    assert!(
        t.lines().count() <= 2,
        "expected a short message, got:\n{t}"
    );
}

#[test]
fn a_panicking_codec_is_an_error_and_the_process_survives() {
    let so = build_plugin_crate(
        &root().join("tests/fixtures/faulty-plugin"),
        "faulty-plugin",
    );
    let out = splitbench(&[
        "codec-check",
        "--plugin",
        so.to_str().unwrap(),
        "--codec",
        "boom",
        "--shape",
        "1,4,64",
    ]);
    // Exit code 1 from our error path: an abort would be a signal, not a code.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("the plugin panicked: boom on a tensor of shape"),
        "{t}"
    );
    assert!(t.contains("FAIL"), "{t}");
}

#[test]
fn a_codec_that_panics_when_created_stops_the_run_before_the_model_loads() {
    let so = build_plugin_crate(
        &root().join("tests/fixtures/faulty-plugin"),
        "faulty-plugin",
    );
    let dir = tempdir("boomnew");
    // No model folder at all: the codec is created, and fails, before the model is looked for.
    let p = dir.join("x.toml");
    std::fs::write(
        &p,
        format!(
            "[model]\npath = \"absent\"\n[[codec]]\nplugin = {:?}\ncodec = \"boom-new\"\n[output]\ndir = \"out\"\n",
            so.to_str().unwrap()
        ),
    )
    .unwrap();
    let t = assert_fails(
        &["run", p.to_str().unwrap()],
        &[
            "codec `boom-new`",
            "the plugin panicked: boom while creating the codec",
        ],
    );
    assert!(!t.contains("model folder"), "{t}");
    assert!(!dir.join("out").exists(), "{t}");
}

#[test]
fn a_plugin_crate_outside_the_workspace_loads_into_the_unchanged_binary() {
    let collaborator = tempdir("collaborator");
    let dir = collaborator.join("mulaw");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let template = root().join("examples/codec-template");
    for file in std::fs::read_dir(template.join("src")).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, dir.join("src").join(file.file_name().unwrap())).unwrap();
    }
    let manifest = std::fs::read_to_string(template.join("Cargo.toml"))
        .unwrap()
        .replace(
            "path = \"../../plugin-api\"",
            &format!(
                "path = {:?}",
                root().join("plugin-api").display().to_string()
            ),
        );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    let so = build_plugin_crate(&dir, "splitbench-codec-mulaw");
    let out = splitbench(&["plugin", "inspect", so.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("codec `mulaw`"), "{}", text(&out));
    assert!(
        text(&out).contains("device path with default params: yes"),
        "{}",
        text(&out)
    );
    let out = splitbench(&[
        "codec-check",
        "--plugin",
        so.to_str().unwrap(),
        "--codec",
        "mulaw",
        "--shape",
        "1,16,128",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn plugin_inspect_tells_whether_codecs_have_a_device_path() {
    require_builtins();
    let dir = bin().parent().unwrap().to_path_buf();
    let inspect = |plugin: &str| {
        let so = dir.join(lib_name(&format!("splitbench-codec-{plugin}")));
        let out = splitbench(&["plugin", "inspect", so.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    let intq = inspect("intq");
    assert!(intq.contains("CUDA entry point present"), "{intq}");
    assert_eq!(
        intq.matches("device path with default params: yes").count(),
        3,
        "{intq}"
    );
    let topk = inspect("topk");
    assert!(
        topk.contains("device path with default params: no (host path only)"),
        "{topk}"
    );
}

/// The `identity` plugin built from this repository's history at `commit`: the crate and the
/// plugin API as they were then. `None` (SKIPPED) where the checkout lacks the commit.
fn identity_plugin_from(commit: &str, api: &str) -> Option<PathBuf> {
    let dir = tempdir(&format!("api{api}"));
    let archive = Command::new("git")
        .args([
            "-C",
            root().to_str().unwrap(),
            "archive",
            "--format=tar",
            commit,
        ])
        .args(["Cargo.toml", "Cargo.lock", "plugin-api", "plugins/identity"])
        .output();
    let tar = match archive {
        Ok(out) if out.status.success() => out.stdout,
        other => {
            missing_input(
                &format!("identity_plugin_from({commit})"),
                format!(
                    "this checkout has no commit {commit} (shallow clone?) to build a \
                     plugin-api {api} plugin from: {other:?}"
                ),
            );
            return None;
        }
    };
    let mut untar = Command::new("tar")
        .args(["-x", "-C", dir.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(untar.stdin.as_mut().unwrap(), &tar).unwrap();
    assert!(untar.wait().unwrap().success());
    // Only the two crates of that workspace are here.
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").unwrap();
    let end = start + manifest[start..].find(']').unwrap() + 1;
    let manifest = format!(
        "{}members = [\"plugin-api\", \"plugins/identity\"]{}",
        &manifest[..start],
        &manifest[end..]
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    // Each commit's identity plugin in a target dir of its own: the same file name in one
    // shared target would hand one test the other's plugin.
    let so = cargo_outside_workspace_in(
        "build",
        &dir.join("plugins/identity"),
        &format!("fixtures-api{api}"),
    )
    .join("debug")
    .join(lib_name("splitbench-codec-identity"));
    let old = dir.join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::copy(&so, old.join(so.file_name().unwrap())).unwrap();
    // The folder lives as long as the test process; the plugin is used after this returns.
    std::mem::forget(dir);
    Some(old.join(so.file_name().unwrap()))
}

/// A plugin built against splitbench-plugin-api 0.1.0, before device codecs (commit d2ae2bb).
#[test]
fn a_plugin_from_before_device_codecs_still_loads_and_runs() {
    require_builtins();
    let Some(so) = identity_plugin_from("d2ae2bb", "0.1.0") else {
        return;
    };
    let out = splitbench(&["plugin", "inspect", so.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("plugin-api:  0.1.0"), "{t}");
    assert!(
        t.contains("built against splitbench-plugin-api 0.1.0, before device codecs"),
        "{t}"
    );
    let out = splitbench(&[
        "codec-check",
        "--plugin",
        so.to_str().unwrap(),
        "--codec",
        "identity",
        "--shape",
        "1,16,64",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A plugin built against splitbench-plugin-api 0.1.1, before calibration (commit ef1316c),
/// runs in one sweep with a calibrated codec.
#[test]
fn a_plugin_from_before_calibration_still_loads_and_runs() {
    require_builtins();
    let Some(so) = identity_plugin_from("ef1316c", "0.1.1") else {
        return;
    };
    let out = splitbench(&["plugin", "inspect", so.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("plugin-api:  0.1.1"), "{t}");
    assert!(t.contains("device:      CUDA entry point present"), "{t}");
    let dir = tempdir("api011-run");
    synth_model(&dir);
    write_text(&dir);
    std::fs::write(
        dir.join("calibration.txt"),
        "Other words to fit on. ".repeat(40),
    )
    .unwrap();
    let exp = dir.join("exp.toml");
    std::fs::write(
        &exp,
        format!(
            "[model]\npath = \"tiny\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\n\
             [eval]\nmax_length = 48\nstride = 24\n[calibration]\npath = \"calibration.txt\"\n\
             [[codec]]\nplugin = \"{}\"\ncodec = \"identity\"\n\
             [[codec]]\nplugin = \"learned\"\ncodec = \"pca\"\nparams = {{ rank = 4 }}\n\
             [output]\ndir = \"out\"\n",
            so.display()
        ),
    )
    .unwrap();
    let out = splitbench(&["run", exp.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

/// The template's own tests: conformance, its companding tables, and its device path against
/// its host path through the plugin API's CUDA emulation.
#[test]
fn the_codec_template_passes_its_own_tests() {
    cargo_outside_workspace("test", &root().join("examples/codec-template"));
}

/// Hidden states from a file through a codec: the decoded tensors under the same names and
/// each wire length in the metadata, exact for `identity`, half the bytes for `fp16`.
#[test]
fn codec_roundtrip_decodes_a_safetensors_file() {
    use safetensors::{tensor::TensorView, Dtype, SafeTensors};
    require_builtins();
    let dir = tempdir("roundtrip");
    let values: Vec<f32> = (0..2 * 3 * 8).map(|i| (i as f32 - 20.0) * 0.37).collect();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let input = dir.join("h.safetensors");
    let tensors = [
        (
            "after_layer_1",
            TensorView::new(Dtype::F32, vec![2, 3, 8], &bytes).unwrap(),
        ),
        (
            "one_token",
            TensorView::new(Dtype::F32, vec![8], &bytes[..32]).unwrap(),
        ),
    ];
    std::fs::write(&input, safetensors::serialize(tensors, None).unwrap()).unwrap();
    for (codec, wire_per_value) in [("identity", 4), ("fp16", 2)] {
        let plugin = if codec == "identity" {
            "identity"
        } else {
            "cast"
        };
        let output = dir.join(format!("{codec}.safetensors"));
        let out = splitbench(&[
            "codec-roundtrip",
            "--plugin",
            plugin,
            "--codec",
            codec,
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let written = std::fs::read(&output).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&written).unwrap();
        let wire: serde_json::Value =
            serde_json::from_str(&meta.metadata().as_ref().unwrap()["wire_bytes"]).unwrap();
        assert_eq!(wire["after_layer_1"], 48 * wire_per_value);
        assert_eq!(wire["one_token"], 8 * wire_per_value);
        let decoded = SafeTensors::deserialize(&written).unwrap();
        let t = decoded.tensor("after_layer_1").unwrap();
        assert_eq!(t.shape(), [2, 3, 8]);
        let back: Vec<f32> = t
            .data()
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        for (a, b) in values.iter().zip(&back) {
            let exact = if codec == "identity" {
                *a
            } else {
                half::f16::from_f32(*a).to_f32()
            };
            assert_eq!(exact, *b, "{codec}");
        }
    }
    assert_fails(
        &[
            "codec-roundtrip",
            "--plugin",
            "cast",
            "--codec",
            "fp16",
            "--input",
            dir.join("missing.safetensors").to_str().unwrap(),
            "--output",
            dir.join("x.safetensors").to_str().unwrap(),
        ],
        &["cannot read", "missing.safetensors"],
    );
}
