//! Bad masking configs give typed errors naming the offending field, and the
//! example schemes under `configs/masking/` load.

use std::path::PathBuf;

use cloze_mask::{Error, Masker, MaskingConfig, SimilarSourceConfig, Vocab};

fn err(toml: &str) -> Error {
    MaskingConfig::from_toml_str(toml).expect_err("invalid config")
}

const HEAD: &str = "[units]\ntype = \"tokens\"\n";

#[test]
fn rates_outside_unit_interval_name_the_field() {
    let e = err(&format!(
        "{HEAD}[select]\ntype = \"budget\"\nrate = 1.5\n[corrupt]\ntype = \"bert\"\n"
    ));
    assert!(
        matches!(&e, Error::RateOutOfRange { field, value } if field == "select.rate" && *value == 1.5),
        "{e}"
    );
    assert!(e.to_string().contains("select.rate"));
    let e = err(&format!(
        "{HEAD}[select]\ntype = \"budget\"\nrate = 0.15\n[corrupt]\ntype = \"bert\"\nmask = -0.1\nrandom = 0.1\nkeep = 1.0\n"
    ));
    assert!(
        matches!(&e, Error::RateOutOfRange { field, .. } if field == "corrupt.mask"),
        "{e}"
    );
}

#[test]
fn distributions_must_sum_to_one() {
    let e = err(&format!(
        "{HEAD}[select]\ntype = \"budget\"\nrate = 0.15\n[corrupt]\ntype = \"bert\"\nmask = 0.8\nrandom = 0.1\nkeep = 0.2\n"
    ));
    assert!(
        matches!(&e, Error::NotADistribution { field, .. } if field.starts_with("corrupt.")),
        "{e}"
    );
    let e = err(&format!(
        "{HEAD}[select]\ntype = \"budget\"\nrate = 0.15\nlengths = {{ type = \"weights\", weights = [0.5, 0.3, 0.1] }}\n[corrupt]\ntype = \"bert\"\n"
    ));
    assert!(
        matches!(&e, Error::NotADistribution { field, sum } if field == "select.lengths.weights" && (*sum - 0.9).abs() < 1e-9),
        "{e}"
    );
    let e = err(&format!(
        "{HEAD}[select]\ntype = \"budget\"\nrate = 0.15\nlengths = {{ type = \"geometric\", p = 0.2, max = 0 }}\n[corrupt]\ntype = \"bert\"\n"
    ));
    assert!(
        matches!(&e, Error::InvalidValue { field, .. } if field == "select.lengths.max"),
        "{e}"
    );
}

#[test]
fn unknown_fields_and_types_are_parse_errors_naming_them() {
    let e = err(&format!(
        "{HEAD}[select]\ntype = \"budget\"\nrat = 0.15\n[corrupt]\ntype = \"bert\"\n"
    ));
    assert!(matches!(e, Error::ConfigToml { .. }));
    let text = format!("{e:#}")
        + &std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default();
    assert!(text.contains("rat"), "{text}");
    let e = err(&format!(
        "{HEAD}[select]\ntype = \"sometimes\"\nrate = 0.15\n[corrupt]\ntype = \"bert\"\n"
    ));
    assert!(matches!(e, Error::ConfigToml { .. }));
}

#[test]
fn vocabulary_without_mask_is_named() {
    let vocab = Vocab::from_tokens(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b"]
            .map(String::from)
            .to_vec(),
    );
    let e = vocab.special_tokens().expect_err("no [MASK]");
    assert!(matches!(e, Error::MissingSpecialToken { token: "[MASK]" }));
    let mut specials = cloze_text::SpecialTokens {
        vocab_size: 6,
        pad: 0,
        unk: 1,
        cls: 2,
        sep: 3,
        mask: 6,
        pseudo_mask: None,
        all_special: vec![0, 1, 2, 3],
    };
    let e =
        Masker::new(MaskingConfig::bert(None), specials.clone()).expect_err("mask outside vocab");
    assert!(
        matches!(
            e,
            Error::SpecialOutOfVocab {
                token: "[MASK]",
                ..
            }
        ),
        "{e}"
    );
    specials.mask = 4;
    specials.vocab_size = 5;
    specials.all_special = vec![0, 1, 2, 3, 4];
    assert!(matches!(
        Masker::new(MaskingConfig::bert(None), specials),
        Err(Error::NoOrdinaryTokens)
    ));
}

#[test]
fn unparsable_synonym_files_name_the_field() -> anyhow::Result<()> {
    let dir = tempdir()?;
    let bad_json = dir.join("cilin_tree.json");
    std::fs::write(&bad_json, "{\"A\": {\"tag\": 1}")?;
    let vocab = std::sync::Arc::new(Vocab::from_tokens(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]
            .map(String::from)
            .to_vec(),
    ));
    let specials = vocab.special_tokens()?;
    let config = MaskingConfig::macbert(Some(SimilarSourceConfig::Cilin {
        path: Some(bad_json.clone()),
        include_related: false,
    }));
    let e = Masker::builder(config, specials.clone())
        .word_codec(vocab.clone())
        .build()
        .expect_err("bad cilin");
    assert!(
        matches!(&e, Error::CilinParse { field, path, .. } if field == "corrupt.source.path" && *path == bad_json),
        "{e}"
    );
    let bad_vec = dir.join("vectors.txt");
    std::fs::write(&bad_vec, "2 2\nx 1 0\ny 1 zero\n")?;
    let config = MaskingConfig::macbert(Some(SimilarSourceConfig::Word2vec {
        path: bad_vec,
        top_k: 5,
        min_similarity: 0.0,
        max_words: None,
    }));
    let e = Masker::builder(config, specials.clone())
        .word_codec(vocab)
        .build()
        .expect_err("bad vectors");
    assert!(matches!(&e, Error::Word2VecParse { line: 3, .. }), "{e}");
    assert!(
        e.to_string().contains("corrupt.source.path") && e.to_string().contains("zero"),
        "{e}"
    );
    let e = Masker::new(MaskingConfig::macbert(None), specials).expect_err("no source");
    assert!(
        matches!(&e, Error::MissingSimilarWords { field } if field == "corrupt.source"),
        "{e}"
    );
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("cloze-mask-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[test]
fn example_schemes_load_and_match_the_presets() -> anyhow::Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/masking");
    let bert = MaskingConfig::load(dir.join("bert.toml"))?;
    assert_eq!(bert, MaskingConfig::bert(Some(20)));
    assert_eq!(
        MaskingConfig::load(dir.join("wwm.toml"))?,
        MaskingConfig::whole_word(Some(20))
    );
    assert_eq!(
        MaskingConfig::load(dir.join("span.toml"))?,
        MaskingConfig::spanbert()
    );
    let mac = MaskingConfig::load(dir.join("macbert.toml"))?;
    assert_eq!(mac.select, MaskingConfig::macbert(None).select);
    assert!(matches!(
        mac.corrupt,
        cloze_mask::CorruptConfig::SimilarWord { .. }
    ));
    let json = serde_json::to_string(&bert)?;
    assert_eq!(MaskingConfig::from_json_str(&json)?, bert);
    Ok(())
}
