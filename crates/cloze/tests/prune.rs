//! `cloze prune` through the real binary: SparseGPT and magnitude pruning of
//! a small pretrained model, the n:m pattern, the checkpoint format, and
//! the errors for bad settings.

mod common;

use std::path::Path;

use common::{cloze, fails_with, ok, pretrained_model};

fn weights(dir: &Path) -> std::collections::BTreeMap<String, tch::Tensor> {
    cloze_models::hf::read_safetensors(&dir.join("model.safetensors")).expect("weights")
}

fn is_pruned_linear(key: &str) -> bool {
    key.contains("encoder.layer.") && key.ends_with(".weight") && !key.contains("LayerNorm")
}

#[test]
fn prune_sparsegpt_and_magnitude_write_loadable_sparse_checkpoints() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, model) = pretrained_model(tmp.path(), 200, 10);
    let dense = weights(&model);

    let sparse = tmp.path().join("sparsegpt");
    let out = ok(
        cloze()
            .args([
                "prune",
                "--method",
                "sparsegpt",
                "--sparsity",
                "0.5",
                "--samples",
                "16",
                "--model",
            ])
            .arg(&model)
            .arg("--calibration")
            .arg(&data)
            .arg("--out")
            .arg(&sparse)
            .output()
            .expect("spawn"),
        "prune sparsegpt",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("(50.00%)"));
    let pruned = weights(&sparse);
    // The same keys, shapes and kinds as the input: whatever loads the dense
    // checkpoint (transformers included) loads this one.
    assert_eq!(
        dense.keys().collect::<Vec<_>>(),
        pruned.keys().collect::<Vec<_>>()
    );
    for (k, d) in &dense {
        let p = &pruned[k];
        assert_eq!((d.size(), d.kind()), (p.size(), p.kind()), "{k}");
        if is_pruned_linear(k) {
            let zeros = p.eq(0.0).sum(tch::Kind::Int64).int64_value(&[]);
            assert_eq!(
                zeros * 2,
                p.numel() as i64,
                "{k}: half of the weights are zero"
            );
        } else {
            assert!(d.equal(p), "{k} is untouched");
        }
    }
    for f in ["config.json", "tokenizer.json"] {
        assert!(sparse.join(f).is_file(), "{f} is copied");
    }
    // The pruned model evaluates like any other.
    ok(
        cloze()
            .args(["eval", "--model"])
            .arg(&sparse)
            .arg("--data")
            .arg(&data)
            .output()
            .expect("spawn"),
        "eval of the pruned model",
    );

    // 2:4 by magnitude needs no calibration.
    let two_four = tmp.path().join("two-four");
    ok(
        cloze()
            .args([
                "prune",
                "--method",
                "magnitude",
                "--pattern",
                "2:4",
                "--model",
            ])
            .arg(&model)
            .arg("--out")
            .arg(&two_four)
            .output()
            .expect("spawn"),
        "prune 2:4",
    );
    for (k, p) in weights(&two_four) {
        if is_pruned_linear(&k) {
            let rows = p.size()[0];
            let groups = p
                .eq(0.0)
                .view([rows, -1, 4])
                .sum_dim_intlist(-1, false, tch::Kind::Int64);
            assert_eq!(groups.ge(2).all().int64_value(&[]), 1, "{k}");
        }
    }
    // An earlier output is not replaced without --force.
    fails_with(
        &cloze()
            .args(["prune", "--method", "magnitude", "--model"])
            .arg(&model)
            .arg("--out")
            .arg(&two_four)
            .output()
            .expect("spawn"),
        "--force",
    );
}

#[test]
fn bad_prune_settings_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).expect("dir");
    let out = tmp.path().join("out");
    let run = |args: &[&str]| {
        cloze()
            .arg("prune")
            .args(args)
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("spawn")
    };
    fails_with(&run(&["--method", "sparsegpt"]), "needs --calibration");
    fails_with(
        &run(&["--method", "magnitude", "--sparsity", "1.5"]),
        "between 0 and 1",
    );
    fails_with(
        &run(&["--method", "magnitude", "--sparsity", "0"]),
        "between 0 and 1",
    );
    fails_with(
        &run(&["--method", "magnitude", "--pattern", "4:2"]),
        "0 < n < m",
    );
    assert!(!out.exists(), "nothing written");
}
