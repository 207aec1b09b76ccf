//! Loads a HF BERT checkpoint directory and saves it again with cloze's writer:
//! `cargo run -p cloze-models --example resave -- IN_DIR OUT_DIR`. Used to check by
//! hand that transformers' `from_pretrained` reads what cloze writes.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 3, "usage: resave IN_DIR OUT_DIR");
    let p = cloze_models::load_pretrained(std::path::Path::new(&args[1]), tch::Device::Cpu)?;
    println!("{}", p.report);
    cloze_models::save_pretrained(&p.vs, &p.config, std::path::Path::new(&args[2]))?;
    Ok(())
}
