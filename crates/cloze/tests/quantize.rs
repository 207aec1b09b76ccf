//! `cloze quantize` through the real binary: GPTQ and RTN at 4 and 3 bits
//! on a small pretrained model, the GPTQ layout on disk, the quantised model
//! evaluated by `cloze eval`, int8 SmoothQuant calibration run by
//! `--precision int8`, and the errors for bad settings and for training from
//! a quantised model.

mod common;

use std::path::Path;

use common::{cloze, fails_with, ok, pretrained_model};

fn eval_json(model: &Path, data: &Path) -> serde_json::Value {
    eval_json_in(model, data, "fp32")
}

fn eval_json_in(model: &Path, data: &Path, precision: &str) -> serde_json::Value {
    let out = ok(
        cloze()
            .args(["eval", "--json", "--precision", precision, "--model"])
            .arg(model)
            .arg("--data")
            .arg(data)
            .output()
            .expect("spawn"),
        "eval",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().expect("a line")).expect("json")
}

#[test]
fn quantize_writes_the_gptq_layout_that_every_loader_reads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, model) = pretrained_model(tmp.path(), 200, 10);
    let dense = eval_json(&model, &data)["losses"]["mlm"]
        .as_f64()
        .expect("loss");

    let q4 = tmp.path().join("gptq4");
    let out = ok(
        cloze()
            .args([
                "quantize",
                "--method",
                "gptq",
                "--bits",
                "4",
                "--group-size",
                "32",
                "--samples",
                "16",
                "--model",
            ])
            .arg(&model)
            .arg("--calibration")
            .arg(&data)
            .arg("--out")
            .arg(&q4)
            .output()
            .expect("spawn"),
        "quantize gptq",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("quantised 12 linear layers to 4 bits"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(q4.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["quantization_config"]["quant_method"], "gptq");
    assert_eq!(config["quantization_config"]["bits"], 4);
    let stored = cloze_models::hf::read_weight_files(&q4).expect("weights");
    let key = "bert.encoder.layer.0.attention.self.query";
    assert!(!stored.contains_key(&format!("{key}.weight")));
    let qweight = &stored[&format!("{key}.qweight")];
    assert_eq!(qweight.kind(), tch::Kind::Int);
    assert_eq!(
        qweight.size(),
        vec![32 * 4 / 32, 32],
        "hidden 32 in, 32 out"
    );
    assert_eq!(stored[&format!("{key}.scales")].kind(), tch::Kind::Half);
    // Loaded back (dequantised): the model evaluates, close to the dense one.
    let q4_loss = eval_json(&q4, &data)["losses"]["mlm"]
        .as_f64()
        .expect("loss");
    assert!(
        (q4_loss - dense).abs() < 0.5,
        "dense {dense}, 4-bit {q4_loss}"
    );

    // Round to nearest at 3 bits needs no calibration.
    let r3 = tmp.path().join("rtn3");
    ok(
        cloze()
            .args([
                "quantize",
                "--method",
                "rtn",
                "--bits",
                "3",
                "--group-size",
                "32",
                "--model",
            ])
            .arg(&model)
            .arg("--out")
            .arg(&r3)
            .output()
            .expect("spawn"),
        "quantize rtn",
    );
    eval_json(&r3, &data);

    // A quantised model cannot be trained from, nor quantised again.
    fails_with(
        &cloze()
            .args(["pretrain", "--init-from"])
            .arg(&q4)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(tmp.path().join("again"))
            .output()
            .expect("spawn"),
        "quantised checkpoint",
    );
    fails_with(
        &cloze()
            .args(["quantize", "--method", "rtn", "--model"])
            .arg(&q4)
            .arg("--out")
            .arg(tmp.path().join("twice"))
            .output()
            .expect("spawn"),
        "already quantised",
    );
}

#[test]
fn bad_quantize_settings_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).expect("dir");
    let out = tmp.path().join("out");
    let run = |args: &[&str]| {
        cloze()
            .arg("quantize")
            .args(args)
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("spawn")
    };
    fails_with(&run(&["--method", "gptq"]), "needs --calibration");
    fails_with(
        &run(&["--method", "rtn", "--bits", "1"]),
        "supported are 2 to 8",
    );
    fails_with(&run(&["--method", "rtn", "--bits", "5"]), "2, 3, 4 or 8");
    fails_with(&run(&["--method", "int8"]), "needs --calibration");
    fails_with(&run(&["--method", "int8", "--bits", "4"]), "is 8 bits");
    fails_with(
        &run(&["--method", "int8", "--smooth-alpha", "1.5"]),
        "must be in (0, 1]",
    );
    fails_with(
        &run(&["--method", "rtn", "--smooth-alpha", "0.5"]),
        "--method int8 only",
    );
    assert!(!out.exists(), "nothing written");
}

#[test]
fn int8_calibration_keeps_the_weights_and_smooths_int8_inference() {
    if !cloze_models::int8::available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, model) = pretrained_model(tmp.path(), 200, 10);
    let smooth = tmp.path().join("int8");
    let out = ok(
        cloze()
            .args(["quantize", "--method", "int8", "--samples", "8", "--model"])
            .arg(&model)
            .arg("--calibration")
            .arg(&data)
            .arg("--out")
            .arg(&smooth)
            .output()
            .expect("spawn"),
        "quantize int8",
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("calibrated 8 linear inputs") && said.contains("alpha 0.8, 8 sequences"),
        "{said}"
    );
    // The weights are the dense model's, bit for bit; the calibration sits
    // beside them.
    let dense_w = cloze_models::hf::read_weight_files(&model).expect("dense");
    let kept = cloze_models::hf::read_weight_files(&smooth).expect("kept");
    assert_eq!(dense_w.len(), kept.len());
    for (name, t) in &dense_w {
        assert!(t.equal(&kept[name]), "{name} changed");
    }
    let s = cloze_models::Int8Smoothing::load(&smooth)
        .expect("read")
        .expect("a calibration file");
    assert_eq!(s.len(), 2 * 4, "two layers, four linear inputs each");
    assert!((s.alpha() - 0.8).abs() < 1e-6);

    // fp32 runs the unchanged weights; int8 with and without smoothing are
    // close to it and differ from each other (the factors were applied).
    let loss = |dir: &Path, p: &str| {
        eval_json_in(dir, &data, p)["losses"]["mlm"]
            .as_f64()
            .expect("loss")
    };
    let dense = loss(&model, "fp32");
    assert_eq!(loss(&smooth, "fp32"), dense);
    let plain = loss(&model, "int8");
    let smoothed = loss(&smooth, "int8");
    assert!((plain - dense).abs() < 0.2, "dense {dense}, int8 {plain}");
    assert!(
        (smoothed - dense).abs() < 0.2,
        "dense {dense}, smoothed int8 {smoothed}"
    );
    assert_ne!(plain, smoothed);
}
