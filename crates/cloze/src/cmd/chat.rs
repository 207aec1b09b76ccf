//! `cloze chat`: a multi-turn conversation with a dialogue model
//! (`cloze finetune --task dialogue`). Each line read from standard input is
//! a turn; the model answers it as `--as` (default `model`). A line
//! `Name: text` is spoken by `Name` (a scene with several people: the model
//! keeps every speaker apart through its roles), any other line by `you`.
//! `/reset` forgets the conversation, `/quit` (or end of input) ends it.
//! With `--json` each answer is one JSON line, for scripts.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use cloze_mask::DialogueExample;

use super::dialogue::{encode_turns, load, respond, Strategy};

/// Arguments of `cloze chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The dialogue model (a `cloze finetune --task dialogue` run's RUN/model).
    #[arg(long)]
    model: PathBuf,
    /// The speaker the model plays.
    #[arg(long = "as", default_value = "model")]
    as_speaker: String,
    /// How responses are chosen.
    #[arg(long, value_enum, default_value_t = Strategy::TopP)]
    strategy: Strategy,
    /// Beams of `--strategy beam`.
    #[arg(long, default_value_t = 4)]
    beam: usize,
    /// Tokens kept by `--strategy top-k`.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Probability kept by `--strategy top-p`.
    #[arg(long, default_value_t = 0.9)]
    top_p: f64,
    /// Longest response in tokens.
    #[arg(long, default_value_t = 40)]
    max_len: usize,
    /// Seed of the sampling strategies (each answer draws from its own stream).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print each answer as a JSON line (`speaker`, `response`, `tokens`).
    #[arg(long)]
    json: bool,
}

/// A speaker tag: `Name: text` with a short name without spaces or digits only.
fn split_speaker(line: &str) -> Option<(&str, &str)> {
    let (name, text) = line.split_once(':')?;
    let name = name.trim();
    let ok = !name.is_empty()
        && name.len() <= 24
        && !name.contains(char::is_whitespace)
        && !name.chars().all(|c| c.is_ascii_digit());
    ok.then(|| (name, text.trim()))
}

/// Runs `cloze chat`.
pub fn run(a: ChatArgs) -> Result<()> {
    let m = load(&a.model)?;
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal() && !a.json;
    if interactive {
        eprintln!(
            "chatting with {} as {} ({:?}); `Name: text` speaks as Name, /reset forgets, /quit ends",
            a.model.display(),
            a.as_speaker,
            a.strategy
        );
    }
    // The conversation so far: (speaker, tokens).
    let mut speakers: Vec<String> = Vec::new();
    let mut turns: Vec<(u32, Vec<u32>)> = Vec::new();
    let id_of = |name: &str, speakers: &mut Vec<String>| -> u32 {
        match speakers.iter().position(|s| s == name) {
            Some(i) => i as u32,
            None => {
                speakers.push(name.to_owned());
                (speakers.len() - 1) as u32
            }
        }
    };
    let mut out = std::io::stdout().lock();
    let mut answers = 0u64;
    for line in stdin.lock().lines() {
        let line = line?;
        let line = line.trim();
        match line {
            "" => continue,
            "/quit" => break,
            "/reset" => {
                turns.clear();
                speakers.clear();
                continue;
            }
            _ => {}
        }
        let (who, text) = split_speaker(line).unwrap_or(("you", line));
        let who_id = id_of(who, &mut speakers);
        let ids = encode_turns(&m.tok, &[text])?.pop().unwrap_or_default();
        turns.push((who_id, ids));
        let me = id_of(&a.as_speaker, &mut speakers);
        let ex = DialogueExample {
            context: turns.iter().map(|(_, t)| t.clone()).collect(),
            speakers: turns.iter().map(|(s, _)| *s).collect(),
            response: Vec::new(),
            responder: me,
        };
        let tokens = respond(
            &m,
            &ex,
            a.strategy,
            a.beam,
            a.top_k,
            a.top_p,
            a.max_len,
            cloze_core::rng::mix_seed(a.seed, answers, 0),
        )?;
        answers += 1;
        let reply = m.tok.decode(&tokens)?;
        if a.json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"speaker": a.as_speaker, "response": reply, "tokens": tokens.len()})
            )?;
        } else {
            writeln!(out, "{}: {reply}", a.as_speaker)?;
        }
        out.flush()?;
        turns.push((me, tokens));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_speaker;

    #[test]
    fn speaker_tags_are_short_names_before_a_colon() {
        assert_eq!(split_speaker("Ham: To be"), Some(("Ham", "To be")));
        assert_eq!(split_speaker("well: then"), Some(("well", "then")));
        assert_eq!(split_speaker("at 10:30 we meet"), None);
        assert_eq!(split_speaker("no tag here"), None);
    }
}
