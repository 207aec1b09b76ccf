//! Loads a HF BERT checkpoint directory and saves it again with cloze's writer:
//! `cargo run -p cloze-models --example resave -- IN_DIR OUT_DIR`. Used to check by
//! hand that transformers' `from_pretrained` reads what cloze writes. The model class
//! follows `config.json`'s `architectures` (a fine-tuning head of the head table, or
//! `BertForPreTraining` for anything else).

use std::path::Path;

use cloze_models::{
    hf, BertForPreTraining, BertForQuestionAnswering, BertForSequenceClassification,
    BertForTokenClassification, LoadReport, Pretrained,
};

fn resave<M>(p: Pretrained<M>, out: &Path) -> anyhow::Result<LoadReport> {
    cloze_models::save_pretrained(&p.vs, &p.config, out)?;
    Ok(p.report)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 3, "usage: resave IN_DIR OUT_DIR");
    let (dir, out) = (Path::new(&args[1]), Path::new(&args[2]));
    let config = hf::read_config(dir)?;
    let arch = config
        .architectures
        .as_ref()
        .and_then(|a| a.first())
        .map_or("", String::as_str);
    let cpu = tch::Device::Cpu;
    let report = match arch {
        "BertForSequenceClassification" => resave(
            hf::load_with(dir, cpu, BertForSequenceClassification::new)?,
            out,
        )?,
        "BertForTokenClassification" => resave(
            hf::load_with(dir, cpu, BertForTokenClassification::new)?,
            out,
        )?,
        "BertForQuestionAnswering" => {
            resave(hf::load_with(dir, cpu, BertForQuestionAnswering::new)?, out)?
        }
        _ => resave(hf::load_with(dir, cpu, BertForPreTraining::new)?, out)?,
    };
    println!("{report}");
    Ok(())
}
