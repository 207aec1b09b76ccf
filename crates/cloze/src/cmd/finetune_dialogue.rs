//! `cloze finetune --task dialogue`: PLATO-style dialogue training
//! (`cloze_mask::DialogueBuilder` rows, `cloze_train::dialogue`'s loss) on
//! the same loop and run-directory rules as classification (`finetune.rs`
//! checks the directory and dispatches here before any work): data read and
//! checked first, `finetune.toml` (its `[dialogue]` section holds the row
//! layout: roles, attention, lengths, context MLM), `metrics.jsonl`,
//! checkpoints, `--resume`, Ctrl-C. The run ends with `model/`: the
//! checkpoint with the lowest dev response loss (the last step without
//! `--dev`) as an HF `BertForMaskedLM` (`BertForPreTraining`, with the
//! pooler and the coherence head, when the layout trains coherence) whose
//! `config.json` records the layout, ready for `cloze chat` and `cloze
//! dialogue eval`.
//!
//! The base model is any BERT with a masked-LM head (a `cloze dialogue
//! init` model, a `cloze pretrain` run's model); a base without the role
//! table the layout needs gets one, initialised to zero so training starts
//! from exactly the base model's function.

use std::path::Path;

use anyhow::{bail, Context, Result};
use cloze_eval::ModelTokenizer;
use cloze_mask::{DialogueBuilder, RoleScheme};
use cloze_models::{BertForPreTraining, HeadStatus};
use cloze_train::dialogue::{DialogueEval, DialogueSource};
use cloze_train::trainer::HeldOut;
use cloze_train::BertPretrainer;
use tch::{Device, Kind, Tensor};

use super::dialogue::{read_samples, specials, store_layout};
use super::finetune::{run_kind, train_and_export, Started, RUN_FILES};
use crate::cmd::run_dir::{self, shell_word};

/// Loads `base` for dialogue training under `layout`: adds a zero role
/// table when the layout has roles and the checkpoint has none.
fn load_base(
    base: &Path,
    layout: &cloze_mask::DialogueConfig,
) -> Result<cloze_models::Pretrained<BertForPreTraining>> {
    let mut config = cloze_models::hf::read_config(base)
        .with_context(|| format!("reading the base model in {}", base.display()))?;
    let mut tensors = cloze_models::hf::read_weights(base)
        .with_context(|| format!("reading the weights of {}", base.display()))?;
    if layout.roles != RoleScheme::None {
        let need = i64::from(layout.num_roles);
        match config.role_type_size {
            Some(n) if n >= need => {}
            Some(n) if n > 0 => bail!(
                "{} has {n} role embeddings; the layout asks for {need} (--set dialogue.num_roles={n})",
                base.display()
            ),
            _ => {
                let Some(word_key) = tensors
                    .keys()
                    .find(|k| k.ends_with("embeddings.word_embeddings.weight"))
                    .cloned()
                else {
                    bail!("{} has no word embeddings", base.display());
                };
                let role_key = word_key.replace("word_embeddings", "role_embeddings");
                let table = Tensor::f_zeros([need, config.hidden_size], (Kind::Float, Device::Cpu))?;
                tensors.insert(role_key, table);
                eprintln!(
                    "{} has no role embeddings: added {need} roles, initialised to zero",
                    base.display()
                );
            }
        }
    }
    store_layout(&mut config, layout)?;
    // Coherence training needs the pooler and the two-way pair head
    // (HF's BertForPreTraining layout); a base without them starts them
    // from HF's initialisation.
    type Build = fn(
        &tch::nn::Path<'_>,
        &cloze_models::BertConfig,
    ) -> cloze_models::Result<BertForPreTraining>;
    let (architecture, build): (&str, Build) = if layout.coherence {
        ("BertForPreTraining", BertForPreTraining::new)
    } else {
        ("BertForMaskedLM", BertForPreTraining::new_masked_lm)
    };
    config.architectures = Some(vec![architecture.to_owned()]);
    Ok(cloze_models::hf::load_tensors_with(
        config,
        tensors,
        Device::Cpu,
        build,
    )?)
}

/// Runs the dialogue training that `finetune::run` dispatched.
pub fn run(s: Started, test: Option<&Path>) -> Result<()> {
    let Started {
        cfg,
        out_guard,
        mut lock,
        run_dir,
        resuming,
    } = s;
    if let Some(t) = test {
        bail!(
            "--test {} scores classifiers; score a dialogue model with `cloze dialogue eval --model {}/model --data {}`",
            t.display(),
            shell_word(&run_dir),
            shell_word(t)
        );
    }
    let Some(layout) = cfg.dialogue else {
        bail!("finetune.toml has no [dialogue] section (the row layout of a dialogue run)");
    };
    // 1. Data and model, checked before the run directory is touched.
    let base = cfg.task.base_model.clone();
    let base_config = cloze_models::hf::read_config(&base)
        .with_context(|| format!("reading the base model in {}", base.display()))?;
    let positions = usize::try_from(base_config.max_position_embeddings).unwrap_or(0);
    if layout.max_context_len + layout.max_response_len > positions {
        bail!(
            "a context of {} tokens plus a response of {} exceeds the model's {positions} positions; \
             lower --max-length (the context) or dialogue.max_response_len",
            layout.max_context_len,
            layout.max_response_len
        );
    }
    let tok = ModelTokenizer::from_dir(&base, 512)?;
    let train = read_samples(&cfg.task.train, &tok)?;
    let dev = cfg
        .task
        .dev
        .as_deref()
        .map(|p| read_samples(p, &tok))
        .transpose()?;
    let builder = DialogueBuilder::new(layout, specials(&tok, base_config.vocab_size)?)?;
    let loop_cfg = cfg.loop_config(train.examples.len())?;
    let loaded = load_base(&base, &layout)?;
    if loaded.report.mlm_head != HeadStatus::Loaded {
        eprintln!(
            "{} has no trained masked-LM head: its transform starts from HF's initialisation \
             (the decoder is tied to the word embeddings)",
            base.display()
        );
    }
    let n_train = train.examples.len();
    let eval = dev
        .as_ref()
        .map(|d| DialogueEval::new(&d.examples, &builder, cfg.run.seed, cfg.eval.batch_size));
    let source =
        DialogueSource::new(train.examples, builder, cfg.run.seed).with_groups(train.groups)?;
    let model = BertPretrainer {
        vs: loaded.vs,
        model: loaded.model,
        config: loaded.config,
        precision: cfg.run.precision,
    };

    // 2. The run directory, then the loop.
    if let Some(guard) = &out_guard {
        lock = Some(run_dir::start(guard, &run_dir, &run_kind(), RUN_FILES)?);
    }
    eprintln!(
        "training a dialogue model on {} samples for {} steps (roles {}, {} attention, context up \
         to {} tokens, responses up to {}{})",
        n_train,
        loop_cfg.run.max_steps,
        layout.roles.name(),
        layout.attention.name(),
        layout.max_context_len,
        layout.max_response_len,
        if layout.coherence {
            "; plus response coherence rows"
        } else {
            ""
        }
    );
    let result = train_and_export(
        &model,
        loop_cfg,
        resuming,
        &run_dir,
        &base,
        cfg.task.dev.is_some(),
        &source,
        eval.as_ref().map(|e| e as &dyn HeldOut),
    )
    .map(|done| match done.best {
        Some((step, loss)) => println!(
            "lowest dev response loss {loss:.4} (perplexity {:.2}) at step {step}; dialogue \
             model: {}",
            loss.exp(),
            done.model_dir.display()
        ),
        None => println!(
            "dialogue model of the last step: {}",
            done.model_dir.display()
        ),
    });
    drop(lock);
    drop(out_guard);
    result
}
