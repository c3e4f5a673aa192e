//! The device path as far as a machine without a GPU can check it.

use crate::util::{assert_fails, int8_experiment, newest_run, require_builtins, splitbench, text};

#[test]
fn records_say_which_path_each_link_used() {
    require_builtins();
    let dir = int8_experiment("paths", "");
    let out = splitbench(&[
        "run",
        dir.join("exp.toml").to_str().unwrap(),
        "--verify-wire",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // On the CPU nothing runs on a device, so there is no wire to verify, and it says so.
    assert!(!text(&out).contains("verify-wire:"), "{}", text(&out));
    assert!(
        text(&out).contains("--verify-wire had nothing to check"),
        "{}",
        text(&out)
    );
    let run = newest_run(&dir.join("out"), &[]);
    let path_of = |file: &str| -> String {
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join(file)).unwrap()).unwrap();
        r["traffic"]["links"][0]["path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(path_of("00-none.json"), "none");
    assert_eq!(path_of("01-int8-token.json"), "host");
}

#[test]
fn device_path_without_a_gpu_is_refused_by_name() {
    require_builtins();
    let dir = int8_experiment("nodevice", "path = \"device\"");
    assert_fails(
        &["run", dir.join("exp.toml").to_str().unwrap()],
        &[
            "int8-token",
            "path = \"device\"",
            "not on a GPU",
            "\"host\"",
        ],
    );
}

#[test]
fn check_device_compares_cpu_with_the_configured_device() {
    require_builtins();
    let dir = int8_experiment("checkdev", "");
    let exp = dir.join("exp.toml");
    assert_fails(
        &["check-device", exp.to_str().unwrap()],
        &["compares the CPU with model.device", "cuda:0"],
    );
    // "auto" without a GPU is the CPU again: the same logits, bit for bit.
    let out = splitbench(&[
        "check-device",
        exp.to_str().unwrap(),
        "--set",
        "model.device=\"auto\"",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("relative 0.000e0 (bound 1e-4)"),
        "{}",
        text(&out)
    );
    if !cfg!(feature = "cuda") {
        assert_fails(
            &[
                "check-device",
                exp.to_str().unwrap(),
                "--set",
                "model.device=\"cuda:0\"",
            ],
            &["built without CUDA", "scripts/build-cuda.sh"],
        );
    }
}

/// `plan.devices` on a machine without a GPU: every node on `cpu` runs the placing code path
/// (weights moved per node, the hidden state moved at every link) and changes no number; a
/// CUDA node on a CPU build is refused before the model loads.
#[test]
fn plan_devices_on_the_cpu_change_no_number() {
    require_builtins();
    let dir = int8_experiment("plan-devices", "");
    let exp = dir.join("exp.toml");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", exp.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = splitbench(&args);
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    let plain = run(&[]);
    let first = newest_run(&dir.join("out"), &[]);
    let placed = run(&["--set", "plan.devices=[\"cpu\", \"cpu\"]"]);
    let second = newest_run(&dir.join("out"), std::slice::from_ref(&first));
    // Both nodes share the one CPU, so the weights are all in one place.
    for out in [&plain, &placed] {
        let line = out
            .lines()
            .find(|l| l.starts_with("splitbench: weights: "))
            .unwrap_or_else(|| panic!("no weights line in:\n{out}"));
        assert!(line.ends_with(" MB on cpu"), "{line}");
    }
    for file in ["00-none.json", "01-int8-token.json"] {
        let read = |run: &std::path::Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(run.join(file)).unwrap()).unwrap()
        };
        let (a, b) = (read(&first), read(&second));
        assert_eq!(a["results"], b["results"], "{file}");
        assert_eq!(a["traffic"]["total"], b["traffic"]["total"], "{file}");
        assert_eq!(a["divergence"]["kld"], b["divergence"]["kld"], "{file}");
    }
    if !cfg!(feature = "cuda") {
        assert_fails(
            &[
                "run",
                exp.to_str().unwrap(),
                "--set",
                "plan.devices=[\"cpu\", \"cuda:0\"]",
            ],
            &[
                "plan.devices[1] = \"cuda:0\"",
                "built without CUDA",
                "scripts/build-cuda.sh",
            ],
        );
    }
}
