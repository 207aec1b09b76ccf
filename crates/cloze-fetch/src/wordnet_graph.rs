//! The `wn18rr-style` and `wn18rr-style-zeroshot` knowledge graphs: a graph
//! in the manner of WN18RR (Dettmers et al. 2018), built here from the
//! WordNet 3.0 database files of the `wordnet-base` Debian package, with a
//! label and a description for every entity. Part of the dataset layer
//! ([`crate::datasets`] registers both and runs their converters); the graph
//! is read by [`cloze_text::kg::KnowledgeGraph::load`], and the link
//! prediction that uses it lives in `cloze-eval`.
//!
//! It is WN18RR-*style*: the relation inventory, the direction of each
//! relation and the removal of inverse relations follow WN18RR, but the
//! entity set and the split are our own, so its numbers are never to be
//! compared with published WN18RR results.
//!
//! **Source.** `apt-get download wordnet-base=1:3.0-37`, members
//! `usr/share/wordnet/data.{noun,verb,adj,adv}` (the `wndb(5)` format: one
//! synset per line, `offset lex_filenum ss_type w_cnt word lex_id ... p_cnt
//! ptr... [frames] | gloss`, `w_cnt` in hexadecimal, each pointer `symbol
//! offset pos source/target`). The licence lines at the top of each file,
//! which begin with two spaces, are skipped. 117,659 synsets.
//!
//! **Entities.** One per synset, named as WN18RR names them, by the 8-digit
//! byte offset of the synset in its data file, followed by the letter of
//! that file: `n`, `v`, `a` or `r` (so `02084071n` is *dog*). The letter is
//! needed because offsets repeat across files: 296 offsets of WordNet 3.0
//! name two synsets (`00001740` is both *entity* and *able*). Adjective
//! satellites (`ss_type` `s`) live in `data.adj` and are named with `a`,
//! the letter WordNet's own pointers use for them.
//!
//! - The *label* is the synset's first lemma with underscores as spaces and
//!   the adjective position markers `(a)`, `(p)`, `(ip)` removed, case kept
//!   (`Canis_familiaris` -> `Canis familiaris`). Labels are not
//!   disambiguated: the 8 noun synsets whose first lemma is `bank` all
//!   read `bank`, as they would in WN18RR's readable names; the
//!   description tells them apart.
//! - The *description* is the definition part of the gloss: the gloss up to
//!   the first `; "` or `: "` (the separators WordNet puts before its
//!   quoted example sentences), with trailing spaces and `;` removed. A
//!   gloss without examples is kept whole. 59 descriptions still hold a
//!   `"`: a quoted phrase inside the definition, or an example WordNet
//!   attached without such a separator.
//!
//! **Relations.** WN18RR's 11, each from one WordNet pointer symbol, as the
//! triple (source synset, relation, target synset) of the line that holds
//! the pointer; this is WN18's convention (its `_hypernym` triples run from
//! the hyponym to the hypernym, its `_has_part` from the whole to the part):
//!
//! | relation | pointer | head -> tail |
//! |---|---|---|
//! | `_hypernym` | `@` | a synset -> its hypernym (nouns, verbs) |
//! | `_instance_hypernym` | `@i` | an instance -> its class |
//! | `_member_meronym` | `%m` | a group -> a member (the genus `Canis` -> `dog`) |
//! | `_has_part` | `%p` | a whole -> a part (WordNet's part meronym) |
//! | `_synset_domain_topic_of` | `;c` | a synset -> its topic domain |
//! | `_member_of_domain_usage` | `-u` | a usage domain -> a member synset |
//! | `_member_of_domain_region` | `-r` | a region domain -> a member synset |
//! | `_derivationally_related_form` | `+` | either way (symmetric) |
//! | `_also_see` | `^` | either way (symmetric) |
//! | `_verb_group` | `$` | either way (symmetric) |
//! | `_similar_to` | `&` | either way (symmetric) |
//!
//! `+` (and most `^`) pointers are lexical, between two words of two
//! synsets; they are taken at synset level, so the several word pairs
//! linking two synsets give one triple. The symmetric relations keep both
//! directions exactly as WordNet lists them: in the kept graph every
//! `_similar_to` and `_verb_group` triple has its reverse, all but 29 of
//! 50,933 `_derivationally_related_form` triples do, but only 2,442 of 3,039
//! `_also_see` triples, since WordNet does not always list that pointer both
//! ways. The inverse pointers WN18 had and WN18RR removed are not emitted:
//! `~` hyponym, `~i` instance hyponym, `#m` member holonym, `#p` part holonym, `-c` member of a topic
//! domain, `;u` and `;r` domain of a synset (usage, region). Neither are the
//! pointers neither dataset used (`!` antonym, `#s`/`%s` substance
//! holonym/meronym, `=` attribute, `*` entailment, `>` cause, `<`
//! participle, `\` pertainym). A pointer from a synset to itself is
//! dropped (a `+` between two words of one synset). Duplicate triples are
//! kept once.
//!
//! **Size.** The full graph has 112,199 synsets in some triple and 218,358
//! triples. The graph keeps [`MAX_ENTITIES`] synsets (40,943, WN18's and
//! WN18RR's number) and the triples whose head and tail are both kept. The
//! synsets are ranked by their degree in the full graph (each triple counts
//! at its head and at its tail), highest first, ties broken by ascending
//! name, and the first [`MAX_ENTITIES`] are taken. A taken synset whose
//! triples all lead to synsets not taken would have no triple: it is struck
//! out for good and the next synset of the ranking takes its place, until
//! every kept synset has a triple (347 are struck, `struck_isolated` in
//! `graph.stats.json`). The result: 40,943 entities (24,041 nouns, 9,635
//! verbs, 7,267 adjectives; no adverb synset has a triple of the 11
//! relations) and 110,163 triples. The lowest degree kept is 3.
//!
//! This is not WN18's entity set, and the mix differs from WN18RR's: the
//! adjectives bring 8,638 `_similar_to` triples (WN18RR has 86 in all),
//! `_derivationally_related_form` is 46% of the triples and `_hypernym`
//! 29% (in WN18RR about 34% and 40%).
//!
//! **The transductive split (`wn18rr-style`).** Each triple is hashed from
//! its text `head<TAB>relation<TAB>tail`:
//! `u64_be(sha256(seed_le64 ‖ "wn18rr-style triple" ‖ 0x00 ‖ text)[0..8])`
//! with the seed [`SPLIT_SEED`]. In order of that hash (ties: the text), the
//! first [`EVAL_TRIPLES`] triples are test candidates, the next
//! [`EVAL_TRIPLES`] valid candidates, the rest train. Then two rules take
//! candidates out of valid and test and put them in train, so no fact of the
//! graph is lost and every entity is in train:
//!
//! 1. A candidate whose head or tail no train triple mentions (the split is
//!    transductive: every evaluation entity is seen in training).
//! 2. A candidate of an asymmetric relation whose reverse `(tail, relation,
//!    head)` is in train (WN18RR's leakage rule, applied to the relations it
//!    kept; the symmetric ones keep their reverses, as in WN18RR).
//!
//! Result: train 104,335, valid 2,911, test 2,917 triples; rule 1 moved 89
//! valid and 83 test candidates, rule 2 none (the only asymmetric pair in
//! the graph, two synsets each the topic domain of the other, is in train).
//! All 11 relations occur in all three files.
//!
//! **The zero-shot split (`wn18rr-style-zeroshot`).** The same graph. The
//! entities are ordered by
//! `u64_be(sha256(seed_le64 ‖ "wn18rr-style entity" ‖ 0x00 ‖ name)[0..8])`
//! (ties: name); the first [`HELD_OUT_ENTITIES`] are held out for test, the
//! next [`HELD_OUT_ENTITIES`] for valid. Train is every triple with neither
//! end held out. Test candidates are the triples with exactly one end in the
//! test held-out set and the other end held out for neither split and
//! mentioned by train; in triple-hash order the first [`EVAL_TRIPLES`] are
//! test. Valid is built the same way from its own held-out set. Every other
//! triple (both ends held out, an end in each set, an end seen nowhere in
//! train, past the cap) is in no file. So the entities of test that train
//! never mentions are exactly the test held-out entities that occur in test
//! ([`cloze_text::kg::KnowledgeGraph::unseen_in_training`]), and likewise
//! for valid.
//!
//! Result: train 99,202, valid 3,000, test 3,000 triples over 40,533
//! entities; 899 of the 1,000 test held-out entities occur in test and 909
//! of the valid ones in valid; left out: 4,328 over the cap, 343 whose other
//! end train never mentions, 155 joining a valid and a test held-out
//! entity, 135 with both ends in one held-out set. A held-out hub weighs on
//! the per-relation mix: test holds 85 `_member_of_domain_region` triples,
//! train 217.
//!
//! **Files** (both datasets): `train.txt`, `valid.txt`, `test.txt` (tab
//! separated `head relation tail`, sorted by text), `entities.tsv` (`name
//! label description` for every entity of the three files, sorted by name)
//! and `graph.stats.json` ([`GraphStats`]: the counts of every step and the
//! rule in words). The counts are pinned by the network test
//! `tests/datasets.rs`.
//!
//! ```
//! use cloze_fetch::wordnet_graph::{gloss_description, lemma_label, Relation};
//!
//! assert_eq!(Relation::from_pointer("@"), Some(Relation::Hypernym));
//! assert_eq!(Relation::from_pointer("~"), None, "hyponyms are WN18RR's removed inverse");
//! assert_eq!(Relation::HasPart.name(), "_has_part");
//! assert_eq!(lemma_label("ready_to_hand(p)"), "ready to hand");
//! assert_eq!(
//!     gloss_description("occurs in many breeds; \"the dog barked all night\""),
//!     "occurs in many breeds"
//! );
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::archive::read_members;
use crate::error::{Error, Result};

/// How many entities the graph keeps: WN18's (and WN18RR's) 40,943.
pub const MAX_ENTITIES: usize = 40_943;
/// The seed of the split hashes. Changing it changes every split: it is fixed.
pub const SPLIT_SEED: u64 = 13;
/// The size of valid and test before (transductive) or the cap on them
/// (zero-shot).
pub const EVAL_TRIPLES: usize = 3_000;
/// The size of each held-out entity set of the zero-shot split.
pub const HELD_OUT_ENTITIES: usize = 1_000;
/// The name of the statistics file.
pub const STATS_FILE: &str = "graph.stats.json";
/// The files both graph datasets hold.
pub const GRAPH_FILES: &[&str] = &[
    "train.txt",
    "valid.txt",
    "test.txt",
    "entities.tsv",
    STATS_FILE,
];

const MEMBERS: [(&str, PartOfSpeech); 4] = [
    ("usr/share/wordnet/data.noun", PartOfSpeech::Noun),
    ("usr/share/wordnet/data.verb", PartOfSpeech::Verb),
    ("usr/share/wordnet/data.adj", PartOfSpeech::Adjective),
    ("usr/share/wordnet/data.adv", PartOfSpeech::Adverb),
];

/// The part of speech of a synset, as the data file it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartOfSpeech {
    /// `data.noun`, letter `n`.
    Noun,
    /// `data.verb`, letter `v`.
    Verb,
    /// `data.adj` (heads and satellites), letter `a`.
    Adjective,
    /// `data.adv`, letter `r`.
    Adverb,
}

impl PartOfSpeech {
    /// The letter that ends an entity name.
    pub fn letter(self) -> char {
        match self {
            PartOfSpeech::Noun => 'n',
            PartOfSpeech::Verb => 'v',
            PartOfSpeech::Adjective => 'a',
            PartOfSpeech::Adverb => 'r',
        }
    }

    /// The part of speech of a `wndb(5)` letter: `n`, `v`, `a`, `s`
    /// (an adjective satellite) or `r`.
    pub fn from_letter(letter: &str) -> Option<Self> {
        match letter {
            "n" => Some(PartOfSpeech::Noun),
            "v" => Some(PartOfSpeech::Verb),
            "a" | "s" => Some(PartOfSpeech::Adjective),
            "r" => Some(PartOfSpeech::Adverb),
            _ => None,
        }
    }
}

/// WN18RR's 11 relations, in the order of their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Relation {
    /// `_also_see` (`^`), symmetric.
    AlsoSee,
    /// `_derivationally_related_form` (`+`), symmetric.
    DerivationallyRelatedForm,
    /// `_has_part` (`%p`, part meronym): whole -> part.
    HasPart,
    /// `_hypernym` (`@`): synset -> hypernym.
    Hypernym,
    /// `_instance_hypernym` (`@i`): instance -> class.
    InstanceHypernym,
    /// `_member_meronym` (`%m`): group -> member.
    MemberMeronym,
    /// `_member_of_domain_region` (`-r`): region -> member synset.
    MemberOfDomainRegion,
    /// `_member_of_domain_usage` (`-u`): usage domain -> member synset.
    MemberOfDomainUsage,
    /// `_similar_to` (`&`), symmetric.
    SimilarTo,
    /// `_synset_domain_topic_of` (`;c`): synset -> its topic domain.
    SynsetDomainTopicOf,
    /// `_verb_group` (`$`), symmetric.
    VerbGroup,
}

impl Relation {
    /// Every relation, in name order.
    pub const ALL: [Relation; 11] = [
        Relation::AlsoSee,
        Relation::DerivationallyRelatedForm,
        Relation::HasPart,
        Relation::Hypernym,
        Relation::InstanceHypernym,
        Relation::MemberMeronym,
        Relation::MemberOfDomainRegion,
        Relation::MemberOfDomainUsage,
        Relation::SimilarTo,
        Relation::SynsetDomainTopicOf,
        Relation::VerbGroup,
    ];

    /// WN18RR's name of the relation.
    pub fn name(self) -> &'static str {
        match self {
            Relation::AlsoSee => "_also_see",
            Relation::DerivationallyRelatedForm => "_derivationally_related_form",
            Relation::HasPart => "_has_part",
            Relation::Hypernym => "_hypernym",
            Relation::InstanceHypernym => "_instance_hypernym",
            Relation::MemberMeronym => "_member_meronym",
            Relation::MemberOfDomainRegion => "_member_of_domain_region",
            Relation::MemberOfDomainUsage => "_member_of_domain_usage",
            Relation::SimilarTo => "_similar_to",
            Relation::SynsetDomainTopicOf => "_synset_domain_topic_of",
            Relation::VerbGroup => "_verb_group",
        }
    }

    /// The WordNet pointer symbol the relation is read from.
    pub fn pointer_symbol(self) -> &'static str {
        match self {
            Relation::AlsoSee => "^",
            Relation::DerivationallyRelatedForm => "+",
            Relation::HasPart => "%p",
            Relation::Hypernym => "@",
            Relation::InstanceHypernym => "@i",
            Relation::MemberMeronym => "%m",
            Relation::MemberOfDomainRegion => "-r",
            Relation::MemberOfDomainUsage => "-u",
            Relation::SimilarTo => "&",
            Relation::SynsetDomainTopicOf => ";c",
            Relation::VerbGroup => "$",
        }
    }

    /// The relation a pointer symbol gives, or `None` for the pointers the
    /// graph leaves out (see the module docs).
    pub fn from_pointer(symbol: &str) -> Option<Relation> {
        Relation::ALL
            .into_iter()
            .find(|r| r.pointer_symbol() == symbol)
    }

    /// Whether the relation holds both ways (WordNet lists both directions).
    pub fn is_symmetric(self) -> bool {
        matches!(
            self,
            Relation::AlsoSee
                | Relation::DerivationallyRelatedForm
                | Relation::SimilarTo
                | Relation::VerbGroup
        )
    }
}

/// A synset's place in the database: its data file and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SynsetId {
    /// The byte offset of its line in the data file.
    pub offset: u32,
    /// The data file.
    pub pos: PartOfSpeech,
}

impl SynsetId {
    /// The entity name: eight digits of offset and the file's letter
    /// (`02084071n`).
    pub fn name(self) -> String {
        format!("{:08}{}", self.offset, self.pos.letter())
    }
}

/// One pointer of a synset line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    /// The pointer symbol (`@`, `%m`, `+`, ...).
    pub symbol: String,
    /// The synset it points to.
    pub target: SynsetId,
}

/// One parsed line of a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synset {
    /// Where it is.
    pub id: SynsetId,
    /// Its words as the file spells them (underscores, adjective markers).
    pub lemmas: Vec<String>,
    /// Its pointers, in file order.
    pub pointers: Vec<Pointer>,
    /// The gloss after `| `, trimmed.
    pub gloss: String,
    /// The 1-based line number in its data file, for error messages.
    pub line: u64,
}

/// A lemma as words: underscores become spaces and an adjective position
/// marker (`(a)`, `(p)`, `(ip)`) is removed; case is kept.
pub fn lemma_label(lemma: &str) -> String {
    let bare = ["(a)", "(p)", "(ip)"]
        .iter()
        .find_map(|m| lemma.strip_suffix(m))
        .unwrap_or(lemma);
    bare.split('_')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The definition part of a gloss: the text before the first `; "` or `: "`
/// that introduces an example sentence, without trailing spaces or `;`.
pub fn gloss_description(gloss: &str) -> &str {
    let cut = [gloss.find("; \""), gloss.find(": \"")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(gloss.len());
    gloss[..cut].trim().trim_end_matches(';').trim_end()
}

/// Parses one synset line of the data file of `pos`; the error is the reason.
fn parse_line(line: &str, pos: PartOfSpeech, line_no: u64) -> std::result::Result<Synset, String> {
    let (data, gloss) = line.split_once(" | ").unwrap_or((line, ""));
    let mut fields = data.split_ascii_whitespace();
    let mut next = |what: &str| {
        fields
            .next()
            .ok_or_else(|| format!("the line ends before its {what}"))
    };
    let offset_text = next("offset")?;
    let offset: u32 = offset_text
        .parse()
        .map_err(|_| format!("offset {offset_text:?} is not a number"))?;
    next("lexicographer file number")?;
    let ss_type = next("synset type")?;
    if PartOfSpeech::from_letter(ss_type) != Some(pos) {
        return Err(format!(
            "synset type {ss_type:?} does not belong in the {} file",
            pos.letter()
        ));
    }
    let w_cnt_text = next("word count")?;
    let w_cnt = usize::from_str_radix(w_cnt_text, 16)
        .map_err(|_| format!("word count {w_cnt_text:?} is not hexadecimal"))?;
    if w_cnt == 0 {
        return Err("a synset without words".into());
    }
    let mut lemmas = Vec::with_capacity(w_cnt);
    for _ in 0..w_cnt {
        lemmas.push(next("word")?.to_string());
        next("lexical id")?;
    }
    let p_cnt_text = next("pointer count")?;
    let p_cnt: usize = p_cnt_text
        .parse()
        .map_err(|_| format!("pointer count {p_cnt_text:?} is not a number"))?;
    let mut pointers = Vec::with_capacity(p_cnt);
    for _ in 0..p_cnt {
        let symbol = next("pointer symbol")?.to_string();
        let target_text = next("pointer offset")?;
        let target_offset: u32 = target_text
            .parse()
            .map_err(|_| format!("pointer offset {target_text:?} is not a number"))?;
        let target_pos_text = next("pointer part of speech")?;
        let target_pos = PartOfSpeech::from_letter(target_pos_text)
            .ok_or_else(|| format!("pointer part of speech {target_pos_text:?} is unknown"))?;
        next("pointer source/target")?;
        pointers.push(Pointer {
            symbol,
            target: SynsetId {
                offset: target_offset,
                pos: target_pos,
            },
        });
    }
    // Verb frames may follow; the graph does not use them.
    Ok(Synset {
        id: SynsetId { offset, pos },
        lemmas,
        pointers,
        gloss: gloss.trim().to_string(),
        line: line_no,
    })
}

/// Parses a whole data file of `pos`, skipping the licence lines (which
/// begin with two spaces); `path` names the file in errors.
pub fn parse_data(text: &str, pos: PartOfSpeech, path: &Path) -> Result<Vec<Synset>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("  ") || line.trim().is_empty() {
            continue;
        }
        let line_no = i as u64 + 1;
        out.push(
            parse_line(line, pos, line_no).map_err(|reason| Error::Format {
                path: path.to_path_buf(),
                line: line_no,
                reason,
            })?,
        );
    }
    Ok(out)
}

/// An entity of a graph: its name, label and description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entity {
    pub(crate) name: String,
    pub(crate) label: String,
    pub(crate) description: String,
}

/// A triple as indices into [`Graph::entities`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Edge {
    pub(crate) head: u32,
    pub(crate) relation: Relation,
    pub(crate) tail: u32,
}

/// Entities sorted by name and distinct triples sorted by (head, relation,
/// tail), which is the order of their texts (names have one length and no
/// relation name is a prefix of another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Graph {
    pub(crate) entities: Vec<Entity>,
    pub(crate) triples: Vec<Edge>,
}

impl Graph {
    fn text(&self, e: Edge) -> String {
        format!(
            "{}\t{}\t{}",
            self.entities[e.head as usize].name,
            e.relation.name(),
            self.entities[e.tail as usize].name
        )
    }

    /// Degree of every entity (each triple counts at its head and its tail).
    fn degrees(&self) -> Vec<usize> {
        let mut degree = vec![0usize; self.entities.len()];
        for e in &self.triples {
            degree[e.head as usize] += 1;
            degree[e.tail as usize] += 1;
        }
        degree
    }
}

/// What `graph.stats.json` records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GraphStats {
    /// The dataset (`wn18rr-style` or `wn18rr-style-zeroshot`).
    pub dataset: String,
    /// Synsets read from the four data files.
    pub synsets: usize,
    /// Offsets that name synsets in more than one data file.
    pub offset_collisions: usize,
    /// Synsets in at least one triple of the full graph.
    pub full_entities: usize,
    /// Distinct triples of the full graph, by relation.
    pub full_triples: BTreeMap<String, usize>,
    /// Pointers of the 11 relations from a synset to itself (dropped).
    pub self_loops: usize,
    /// Pointers of the 11 relations repeating a triple already read
    /// (lexical pointers between other words of the same two synsets).
    pub duplicate_pointers: usize,
    /// The entity limit ([`MAX_ENTITIES`]).
    pub max_entities: usize,
    /// The lowest full-graph degree among the kept synsets.
    pub min_degree_kept: usize,
    /// Synsets taken by rank but struck out because all their triples led
    /// to synsets not taken (see the module docs).
    pub struck_isolated: usize,
    /// Entities of the written files (= lines of `entities.tsv`).
    pub entities: usize,
    /// Relations of the written files.
    pub relations: usize,
    /// Triples of the kept graph (before the split; the zero-shot split
    /// leaves some out of every file).
    pub graph_triples: usize,
    /// Triples per split file.
    pub split: BTreeMap<String, usize>,
    /// Triples per relation, then per split file.
    pub per_relation: BTreeMap<String, BTreeMap<String, usize>>,
    /// Transductive split: evaluation candidates put back in train, by
    /// `split/reason` (`test/unseen_entity`, `valid/reverse_in_train`).
    pub moved_to_train: BTreeMap<String, usize>,
    /// Zero-shot split: held-out entities per split, and how many of them
    /// occur in that split's file (`test_held_out`, `test_held_out_used`).
    pub held_out: BTreeMap<String, usize>,
    /// Zero-shot split: triples in no file, by reason.
    pub left_out: BTreeMap<String, usize>,
    /// Entities of valid and test that train never mentions.
    pub unseen_in_training: BTreeMap<String, usize>,
    /// The split seed.
    pub seed: u64,
    /// The rules in words.
    pub rule: String,
}

/// Builds the full graph of the 11 relations over every synset; counts go
/// into `stats`.
pub(crate) fn full_graph(
    synsets: &[Synset],
    path_of: &dyn Fn(PartOfSpeech) -> PathBuf,
    stats: &mut GraphStats,
) -> Result<Graph> {
    // Entities are numbered in name order (offset, then letter).
    let mut named: Vec<(String, &Synset)> = synsets.iter().map(|s| (s.id.name(), s)).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    for w in named.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(Error::Format {
                path: path_of(w[1].1.id.pos),
                line: w[1].1.line,
                reason: format!("synset {} occurs twice", w[1].0),
            });
        }
    }
    let mut offsets: HashMap<u32, usize> = HashMap::new();
    for s in synsets {
        *offsets.entry(s.id.offset).or_default() += 1;
    }
    stats.synsets = synsets.len();
    stats.offset_collisions = offsets.values().filter(|&&n| n > 1).count();
    let index: HashMap<SynsetId, u32> = named
        .iter()
        .enumerate()
        .map(|(i, (_, s))| (s.id, i as u32))
        .collect();
    let mut triples: HashSet<Edge> = HashSet::new();
    for s in synsets {
        let head = index[&s.id];
        for p in &s.pointers {
            let Some(relation) = Relation::from_pointer(&p.symbol) else {
                continue;
            };
            let tail = *index.get(&p.target).ok_or_else(|| Error::Format {
                path: path_of(s.id.pos),
                line: s.line,
                reason: format!(
                    "pointer {} to {}, which no data file holds",
                    p.symbol,
                    p.target.name()
                ),
            })?;
            if tail == head {
                stats.self_loops += 1;
                continue;
            }
            if !triples.insert(Edge {
                head,
                relation,
                tail,
            }) {
                stats.duplicate_pointers += 1;
            }
        }
    }
    let mut triples: Vec<Edge> = triples.into_iter().collect();
    triples.sort();
    let entities = named
        .into_iter()
        .map(|(name, s)| Entity {
            name,
            label: s.lemmas.first().map(|l| lemma_label(l)).unwrap_or_default(),
            description: gloss_description(&s.gloss).to_string(),
        })
        .collect();
    let graph = Graph { entities, triples };
    stats.full_entities = graph.degrees().iter().filter(|&&d| d > 0).count();
    stats.full_triples = count_by_relation(&graph.triples);
    Ok(graph)
}

fn count_by_relation(triples: &[Edge]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in triples {
        *out.entry(e.relation.name().to_string()).or_default() += 1;
    }
    out
}

/// The `max` entities of highest degree (ties: name), every one with a
/// triple among them, and those triples, renumbered (see the module docs).
pub(crate) fn select(full: &Graph, max: usize, stats: &mut GraphStats) -> Graph {
    let degree = full.degrees();
    // Entities are sorted by name, so the index breaks ties by name.
    let mut ranked: Vec<usize> = (0..full.entities.len())
        .filter(|&i| degree[i] > 0)
        .collect();
    ranked.sort_by_key(|&i| (std::cmp::Reverse(degree[i]), i));
    let mut kept = vec![false; full.entities.len()];
    let (mut count, mut next, mut struck) = (0, 0, 0);
    // Each round either ends or strikes at least one synset for good, and
    // striking a synset without kept neighbours isolates no other, so the
    // loop ends at the latest one round after the ranking runs out.
    loop {
        while count < max && next < ranked.len() {
            kept[ranked[next]] = true;
            next += 1;
            count += 1;
        }
        let mut inner_degree = vec![0usize; full.entities.len()];
        for e in &full.triples {
            if kept[e.head as usize] && kept[e.tail as usize] {
                inner_degree[e.head as usize] += 1;
                inner_degree[e.tail as usize] += 1;
            }
        }
        let isolated: Vec<usize> = (0..kept.len())
            .filter(|&i| kept[i] && inner_degree[i] == 0)
            .collect();
        if isolated.is_empty() {
            break;
        }
        for i in isolated {
            kept[i] = false;
            count -= 1;
            struck += 1;
        }
    }
    let inner: Vec<Edge> = full
        .triples
        .iter()
        .copied()
        .filter(|e| kept[e.head as usize] && kept[e.tail as usize])
        .collect();
    let (graph, _) = restrict(full, &inner);
    stats.max_entities = max;
    stats.struck_isolated = struck;
    stats.min_degree_kept = (0..kept.len())
        .filter(|&i| kept[i])
        .map(|i| degree[i])
        .min()
        .unwrap_or(0);
    graph
}

/// The graph of `triples` (edges of `graph`) over the entities they mention,
/// renumbered in name order, and the map from old to new ids.
fn restrict(graph: &Graph, triples: &[Edge]) -> (Graph, Vec<Option<u32>>) {
    let mut used = vec![false; graph.entities.len()];
    for e in triples {
        used[e.head as usize] = true;
        used[e.tail as usize] = true;
    }
    let mut new_id = vec![None; graph.entities.len()];
    let mut entities = Vec::new();
    for (i, entity) in graph.entities.iter().enumerate() {
        if used[i] {
            new_id[i] = Some(entities.len() as u32);
            entities.push(entity.clone());
        }
    }
    let map = |id: u32| new_id[id as usize].unwrap_or(u32::MAX);
    let mut triples: Vec<Edge> = triples
        .iter()
        .map(|e| Edge {
            head: map(e.head),
            relation: e.relation,
            tail: map(e.tail),
        })
        .collect();
    triples.sort();
    (Graph { entities, triples }, new_id)
}

/// The 64-bit split hash of a text under a tag (see the module docs).
fn split_hash(seed: u64, tag: &str, text: &str) -> u64 {
    let mut key = Vec::with_capacity(8 + tag.len() + 1 + text.len());
    key.extend_from_slice(&seed.to_le_bytes());
    key.extend_from_slice(tag.as_bytes());
    key.push(0);
    key.extend_from_slice(text.as_bytes());
    let digest = cloze_fs::digest::sha256_hex(&key);
    u64::from_str_radix(&digest[..16], 16).unwrap_or(0)
}

const TRIPLE_TAG: &str = "wn18rr-style triple";
const ENTITY_TAG: &str = "wn18rr-style entity";

/// Triples of a graph ordered by their split hash (ties: text).
fn triples_by_hash(graph: &Graph, seed: u64) -> Vec<Edge> {
    let mut keyed: Vec<(u64, String, Edge)> = graph
        .triples
        .iter()
        .map(|&e| {
            let text = graph.text(e);
            (split_hash(seed, TRIPLE_TAG, &text), text, e)
        })
        .collect();
    keyed.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    keyed.into_iter().map(|(_, _, e)| e).collect()
}

/// The three splits of a graph, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Splits {
    pub(crate) train: Vec<Edge>,
    pub(crate) valid: Vec<Edge>,
    pub(crate) test: Vec<Edge>,
}

impl Splits {
    fn named(&self) -> [(&'static str, &Vec<Edge>); 3] {
        [
            ("train.txt", &self.train),
            ("valid.txt", &self.valid),
            ("test.txt", &self.test),
        ]
    }
}

/// The transductive split of the module docs.
pub(crate) fn split_transductive(
    graph: &Graph,
    seed: u64,
    eval: usize,
    stats: &mut GraphStats,
) -> Splits {
    let ordered = triples_by_hash(graph, seed);
    let test_end = eval.min(ordered.len());
    let valid_end = (2 * eval).min(ordered.len());
    let mut train: Vec<Edge> = ordered[valid_end..].to_vec();
    let mut candidates = [
        ("test", ordered[..test_end].to_vec()),
        ("valid", ordered[test_end..valid_end].to_vec()),
    ];
    // Rule 1, against the train of the hash alone: moving a candidate to
    // train only adds seen entities, so one pass suffices.
    let seen: HashSet<u32> = train.iter().flat_map(|e| [e.head, e.tail]).collect();
    let mut back = Vec::new();
    for (name, list) in &mut candidates {
        let before = list.len();
        list.retain(|e| {
            let keep = seen.contains(&e.head) && seen.contains(&e.tail);
            if !keep {
                back.push(*e);
            }
            keep
        });
        stats
            .moved_to_train
            .insert(format!("{name}/unseen_entity"), before - list.len());
    }
    train.append(&mut back);
    // Rule 2, against the train after rule 1. A candidate moved here cannot
    // be the reverse of another candidate (that reverse is in train), so
    // this pass is final too.
    let in_train: HashSet<Edge> = train.iter().copied().collect();
    for (name, list) in &mut candidates {
        let before = list.len();
        list.retain(|e| {
            let reverse = Edge {
                head: e.tail,
                relation: e.relation,
                tail: e.head,
            };
            let keep = e.relation.is_symmetric() || !in_train.contains(&reverse);
            if !keep {
                back.push(*e);
            }
            keep
        });
        stats
            .moved_to_train
            .insert(format!("{name}/reverse_in_train"), before - list.len());
    }
    train.append(&mut back);
    let [(_, mut test), (_, mut valid)] = candidates;
    train.sort();
    valid.sort();
    test.sort();
    Splits { train, valid, test }
}

/// The zero-shot split of the module docs.
pub(crate) fn split_zero_shot(
    graph: &Graph,
    seed: u64,
    held: usize,
    eval: usize,
    stats: &mut GraphStats,
) -> Splits {
    let mut order: Vec<(u64, usize)> = graph
        .entities
        .iter()
        .enumerate()
        .map(|(i, e)| (split_hash(seed, ENTITY_TAG, &e.name), i))
        .collect();
    // Entities are in name order, so the index breaks hash ties by name.
    order.sort();
    // 0: neither, 1: held out for test, 2: held out for valid.
    let mut group = vec![0u8; graph.entities.len()];
    for (rank, &(_, i)) in order.iter().enumerate().take(2 * held) {
        group[i] = if rank < held { 1 } else { 2 };
    }
    let train: Vec<Edge> = graph
        .triples
        .iter()
        .copied()
        .filter(|e| group[e.head as usize] == 0 && group[e.tail as usize] == 0)
        .collect();
    let seen: HashSet<u32> = train.iter().flat_map(|e| [e.head, e.tail]).collect();
    let mut lists: [Vec<Edge>; 3] = Default::default();
    let mut left_out: BTreeMap<String, usize> = BTreeMap::new();
    for e in triples_by_hash(graph, seed) {
        let (gh, gt) = (group[e.head as usize], group[e.tail as usize]);
        let reason = match (gh, gt) {
            (0, 0) => continue,
            (0, g) | (g, 0) => {
                let other = if gh == 0 { e.head } else { e.tail };
                if !seen.contains(&other) {
                    "other_end_unseen"
                } else if lists[g as usize].len() < eval {
                    lists[g as usize].push(e);
                    continue;
                } else {
                    "over_cap"
                }
            }
            (a, b) if a == b => "both_ends_held_out",
            _ => "ends_held_out_for_valid_and_test",
        };
        *left_out.entry(reason.to_string()).or_default() += 1;
    }
    let [_, mut test, mut valid] = lists;
    test.sort();
    valid.sort();
    for (name, list, g) in [("test", &test, 1u8), ("valid", &valid, 2u8)] {
        let used: HashSet<u32> = list
            .iter()
            .flat_map(|e| [e.head, e.tail])
            .filter(|&x| group[x as usize] == g)
            .collect();
        stats.held_out.insert(
            format!("{name}_held_out"),
            group.iter().filter(|&&x| x == g).count(),
        );
        stats
            .held_out
            .insert(format!("{name}_held_out_used"), used.len());
    }
    stats.left_out = left_out;
    Splits { train, valid, test }
}

/// The rule text of `graph.stats.json`.
fn rule(zero_shot: bool) -> String {
    let common = format!(
        "entities: WordNet 3.0 synsets named <8-digit offset><n|v|a|r>; relations: WN18RR's 11 \
         from pointers @ @i %m %p ;c -u -r + ^ $ & as (source, relation, target), inverse \
         pointers ~ ~i #m #p -c ;u ;r not emitted, self-loops dropped, duplicates kept once; \
         kept: the {MAX_ENTITIES} synsets of highest full-graph degree (ties: name), one \
         without a triple among those taken struck and replaced by the next in rank, and the \
         triples among them; hash(x) = u64_be(sha256(seed_le64 || tag || 0x00 || x)[0..8])"
    );
    if zero_shot {
        format!(
            "{common}; entities in order of hash(\"{ENTITY_TAG}\", name): the first \
             {HELD_OUT_ENTITIES} held out for test, the next {HELD_OUT_ENTITIES} for valid; \
             train = triples with no held-out end; test (valid) = triples with exactly one end \
             in its held-out set and the other end held out nowhere and in train, the first \
             {EVAL_TRIPLES} in order of hash(\"{TRIPLE_TAG}\", head<TAB>relation<TAB>tail); \
             other triples in no file"
        )
    } else {
        format!(
            "{common}; triples in order of hash(\"{TRIPLE_TAG}\", head<TAB>relation<TAB>tail): \
             the first {EVAL_TRIPLES} test, the next {EVAL_TRIPLES} valid, the rest train; a \
             test/valid triple with an entity no train triple mentions, or of an asymmetric \
             relation with its reverse in train, is moved to train"
        )
    }
}

/// The bytes of the five files of a graph dataset, by file name.
pub(crate) fn render(
    graph: &Graph,
    splits: &Splits,
    stats: &mut GraphStats,
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let mut used = vec![false; graph.entities.len()];
    let mut relations = HashSet::new();
    let mut files = Vec::new();
    stats.split.clear();
    stats.per_relation.clear();
    for (name, list) in splits.named() {
        let mut text = String::with_capacity(list.len() * 48);
        for &e in list {
            used[e.head as usize] = true;
            used[e.tail as usize] = true;
            relations.insert(e.relation);
            text.push_str(&graph.text(e));
            text.push('\n');
            *stats
                .per_relation
                .entry(e.relation.name().to_string())
                .or_default()
                .entry(name.to_string())
                .or_default() += 1;
        }
        stats.split.insert(name.to_string(), list.len());
        files.push((name, text.into_bytes()));
    }
    let mut tsv = String::new();
    for (entity, _) in graph.entities.iter().zip(&used).filter(|(_, u)| **u) {
        // Tabs and line breaks would break the format; WordNet has none, but
        // the rule costs nothing.
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        let _ = writeln!(
            tsv,
            "{}\t{}\t{}",
            entity.name,
            clean(&entity.label),
            clean(&entity.description)
        );
    }
    stats.entities = used.iter().filter(|&&u| u).count();
    stats.relations = relations.len();
    let seen: HashSet<u32> = splits.train.iter().flat_map(|e| [e.head, e.tail]).collect();
    for (name, list) in [("valid.txt", &splits.valid), ("test.txt", &splits.test)] {
        let unseen: HashSet<u32> = list
            .iter()
            .flat_map(|e| [e.head, e.tail])
            .filter(|x| !seen.contains(x))
            .collect();
        stats
            .unseen_in_training
            .insert(name.to_string(), unseen.len());
    }
    files.push(("entities.tsv", tsv.into_bytes()));
    let mut json = serde_json::to_vec_pretty(&stats).map_err(|source| Error::Json {
        path: PathBuf::from(STATS_FILE),
        source,
    })?;
    json.push(b'\n');
    files.push((STATS_FILE, json));
    Ok(files)
}

/// Reads and parses the four data files of the archive.
fn read_synsets(archive: &Path) -> Result<Vec<Synset>> {
    let names: Vec<&str> = MEMBERS.iter().map(|(m, _)| *m).collect();
    let found = read_members(archive, &|n| names.contains(&n))?;
    let mut synsets = Vec::new();
    for (member, pos) in MEMBERS {
        let bytes = found.get(member).ok_or_else(|| Error::MissingMember {
            archive: archive.to_path_buf(),
            member: member.to_string(),
        })?;
        let path = archive.join(member);
        let text = std::str::from_utf8(bytes).map_err(|_| Error::Format {
            path: path.clone(),
            line: 0,
            reason: "not UTF-8".into(),
        })?;
        synsets.extend(parse_data(text, pos, &path)?);
    }
    Ok(synsets)
}

/// Builds the kept graph of an archive: full graph, then the selection.
fn kept_graph(archive: &Path, stats: &mut GraphStats) -> Result<Graph> {
    let synsets = read_synsets(archive)?;
    let path_of = |pos: PartOfSpeech| {
        let member = MEMBERS
            .iter()
            .find(|(_, p)| *p == pos)
            .map(|(m, _)| *m)
            .unwrap_or("usr/share/wordnet");
        archive.join(member)
    };
    let full = full_graph(&synsets, &path_of, stats)?;
    let graph = select(&full, MAX_ENTITIES, stats);
    stats.graph_triples = graph.triples.len();
    stats.seed = SPLIT_SEED;
    Ok(graph)
}

fn write_all(out: &Path, files: Vec<(&'static str, Vec<u8>)>) -> Result<()> {
    for (name, bytes) in files {
        crate::datasets::write_file(&out.join(name), &bytes)?;
    }
    Ok(())
}

/// The converter of `wn18rr-style`.
pub(crate) fn convert_transductive(archive: &Path, out: &Path) -> Result<()> {
    let mut stats = GraphStats {
        dataset: "wn18rr-style".into(),
        rule: rule(false),
        ..GraphStats::default()
    };
    let graph = kept_graph(archive, &mut stats)?;
    let splits = split_transductive(&graph, SPLIT_SEED, EVAL_TRIPLES, &mut stats);
    let files = render(&graph, &splits, &mut stats)?;
    tracing::info!(entities = stats.entities, split = ?stats.split, "wn18rr-style converted");
    write_all(out, files)
}

/// The converter of `wn18rr-style-zeroshot`.
pub(crate) fn convert_zero_shot(archive: &Path, out: &Path) -> Result<()> {
    let mut stats = GraphStats {
        dataset: "wn18rr-style-zeroshot".into(),
        rule: rule(true),
        ..GraphStats::default()
    };
    let graph = kept_graph(archive, &mut stats)?;
    let splits = split_zero_shot(
        &graph,
        SPLIT_SEED,
        HELD_OUT_ENTITIES,
        EVAL_TRIPLES,
        &mut stats,
    );
    let files = render(&graph, &splits, &mut stats)?;
    tracing::info!(entities = stats.entities, split = ?stats.split, "wn18rr-style-zeroshot converted");
    write_all(out, files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use cloze_text::kg::{KnowledgeGraph, Split};

    /// A few synsets in the format of `data.noun`, with a licence line, the
    /// inverse pointers WordNet lists, a lexical pointer given for two word
    /// pairs and one from a synset to itself.
    const NOUN: &str = "  1 This software and database is being provided to you, the LICENSEE, by  \n\
00001740 03 n 01 entity 0 001 ~ 00001930 n 0000 | that which is perceived or known  \n\
00001930 03 n 01 physical_entity 0 002 @ 00001740 n 0000 ~ 02083346 n 0000 | an entity that has physical existence  \n\
02083346 05 n 02 canine 0 canid 0 003 @ 00001930 n 0000 ~ 02084071 n 0000 + 02084071 n 0101 | any of various fissiped mammals  \n\
02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 007 @ 02083346 n 0000 #m 02083863 n 0000 %p 02158846 n 0000 + 02083346 n 0101 + 02083346 n 0202 + 02084071 n 0203 ;c 00001930 n 0000 | a member of the genus Canis; occurs in many breeds; \"the dog barked all night\"  \n\
02083863 05 n 01 Canis 0 003 %m 02084071 n 0000 -u 02084071 n 0000 -c 02084071 n 0000 | type genus of the Canidae  \n\
02158846 05 n 01 flag 0 001 #p 02084071 n 0000 | a conspicuously marked or shaped tail  \n";

    /// Two adjectives (a head and a satellite with a position marker) and two
    /// verbs with a verb frame after the pointers.
    const ADJ: &str = "00019131 00 a 01 accessible 0 001 & 00019731 a 0000 | capable of being reached: \"a town accessible by rail\"  \n\
00019731 00 s 02 handy 0 ready_to_hand(p) 0 002 & 00019131 a 0000 ^ 00019131 a 0000 | easy to reach  \n";
    const VERB: &str = "00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 002 $ 00002325 v 0000 @ 00002325 v 0000 02 + 08 00 + 02 00 | draw air into, and expel out of, the lungs  \n\
00002325 29 v 01 respire 1 001 $ 00001740 v 0000 01 + 02 00 | undergo the biomedical and metabolic processes of respiration  \n";

    fn synsets() -> Vec<Synset> {
        let mut all = parse_data(NOUN, PartOfSpeech::Noun, Path::new("data.noun")).unwrap();
        all.extend(parse_data(ADJ, PartOfSpeech::Adjective, Path::new("data.adj")).unwrap());
        all.extend(parse_data(VERB, PartOfSpeech::Verb, Path::new("data.verb")).unwrap());
        all
    }

    fn path_of(pos: PartOfSpeech) -> PathBuf {
        PathBuf::from(format!("data.{}", pos.letter()))
    }

    fn texts(graph: &Graph, edges: &[Edge]) -> Vec<String> {
        edges.iter().map(|&e| graph.text(e)).collect()
    }

    #[test]
    fn data_lines_parse_into_synsets() {
        let nouns = parse_data(NOUN, PartOfSpeech::Noun, Path::new("data.noun")).unwrap();
        assert_eq!(nouns.len(), 6, "the licence line is skipped");
        let dog = &nouns[3];
        assert_eq!(dog.id.name(), "02084071n");
        assert_eq!(dog.line, 5);
        assert_eq!(dog.lemmas, ["dog", "domestic_dog", "Canis_familiaris"]);
        assert_eq!(dog.pointers.len(), 7);
        assert_eq!(
            dog.pointers[1],
            Pointer {
                symbol: "#m".into(),
                target: SynsetId {
                    offset: 2_083_863,
                    pos: PartOfSpeech::Noun
                }
            }
        );
        assert_eq!(
            gloss_description(&dog.gloss),
            "a member of the genus Canis; occurs in many breeds"
        );
        let verbs = parse_data(VERB, PartOfSpeech::Verb, Path::new("data.verb")).unwrap();
        assert_eq!(verbs[0].id.name(), "00001740v");
        assert_eq!(verbs[0].lemmas.len(), 4);
        assert_eq!(
            verbs[0].pointers.len(),
            2,
            "the verb frames are not pointers"
        );
        let adjs = parse_data(ADJ, PartOfSpeech::Adjective, Path::new("data.adj")).unwrap();
        assert_eq!(
            adjs[1].id.name(),
            "00019731a",
            "a satellite is named with a"
        );
        assert_eq!(lemma_label(&adjs[1].lemmas[1]), "ready to hand");
        assert_eq!(
            gloss_description(&adjs[0].gloss),
            "capable of being reached"
        );
    }

    #[test]
    fn malformed_data_lines_name_file_and_line() {
        let err = |text: &str, pos| {
            parse_data(text, pos, Path::new("data.noun"))
                .unwrap_err()
                .to_string()
        };
        let noun = PartOfSpeech::Noun;
        assert_eq!(
            err("  licence\n00001740 03 n 0g entity 0 000 | x\n", noun),
            "data.noun:2: word count \"0g\" is not hexadecimal"
        );
        assert_eq!(
            err("00001740 03 v 01 entity 0 000 | x\n", noun),
            "data.noun:1: synset type \"v\" does not belong in the n file"
        );
        assert_eq!(
            err(
                "00001740 03 n 01 entity 0 002 @ 00001930 n 0000 | x\n",
                noun
            ),
            "data.noun:1: the line ends before its pointer symbol"
        );
        assert_eq!(
            err(
                "00001740 03 n 01 entity 0 001 @ 00001930 x 0000 | x\n",
                noun
            ),
            "data.noun:1: pointer part of speech \"x\" is unknown"
        );
        assert_eq!(
            err("0000174x 03 n 01 entity 0 000 | x\n", noun),
            "data.noun:1: offset \"0000174x\" is not a number"
        );
        // A pointer to a synset no file holds is caught when the graph is built.
        let s = parse_data(
            "00001740 03 n 01 entity 0 001 @ 00001930 n 0000 | x\n",
            noun,
            Path::new("data.noun"),
        )
        .unwrap();
        let e = full_graph(&s, &path_of, &mut GraphStats::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.n:1: pointer @ to 00001930n, which no data file holds"
        );
    }

    #[test]
    fn labels_and_descriptions() {
        assert_eq!(lemma_label("Canis_familiaris"), "Canis familiaris");
        assert_eq!(lemma_label("outback(a)"), "outback");
        assert_eq!(lemma_label("galore(ip)"), "galore");
        assert_eq!(lemma_label("dog"), "dog");
        assert_eq!(
            gloss_description("an entity that has physical existence"),
            "an entity that has physical existence"
        );
        assert_eq!(
            gloss_description("a workplace; as in the expression \"on the job\";"),
            "a workplace; as in the expression \"on the job\""
        );
        assert_eq!(
            gloss_description("a complete extent or range: \"a face that expressed a gamut\""),
            "a complete extent or range"
        );
        assert_eq!(gloss_description(""), "");
    }

    #[test]
    fn pointers_map_to_wn18rrs_eleven_relations() {
        let names: Vec<&str> = Relation::ALL.iter().map(|r| r.name()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted, "ALL is in name order, which Ord follows");
        assert!(Relation::ALL.windows(2).all(|w| w[0] < w[1]));
        for r in Relation::ALL {
            assert_eq!(Relation::from_pointer(r.pointer_symbol()), Some(r));
        }
        let kept = ["@", "@i", "%m", "%p", ";c", "-u", "-r", "+", "^", "$", "&"];
        for s in kept {
            assert!(Relation::from_pointer(s).is_some(), "{s}");
        }
        // WN18's inverses and the pointers neither dataset has.
        for s in [
            "~", "~i", "#m", "#p", "-c", ";u", ";r", "!", "#s", "%s", "=", "*", ">", "<", "\\",
        ] {
            assert_eq!(Relation::from_pointer(s), None, "{s}");
        }
        let symmetric: Vec<&str> = Relation::ALL
            .iter()
            .filter(|r| r.is_symmetric())
            .map(|r| r.name())
            .collect();
        assert_eq!(
            symmetric,
            [
                "_also_see",
                "_derivationally_related_form",
                "_similar_to",
                "_verb_group"
            ]
        );
    }

    #[test]
    fn the_full_graph_keeps_source_to_target_triples_once() {
        let mut stats = GraphStats::default();
        let g = full_graph(&synsets(), &path_of, &mut stats).unwrap();
        assert_eq!(stats.synsets, 10);
        // 00001740 is a noun and a verb.
        assert_eq!(stats.offset_collisions, 1);
        assert_eq!(stats.self_loops, 1);
        assert_eq!(
            stats.duplicate_pointers, 1,
            "dog + canine for two word pairs"
        );
        let dog = &g.entities[g
            .entities
            .iter()
            .position(|e| e.name == "02084071n")
            .unwrap()];
        assert_eq!(dog.label, "dog");
        assert_eq!(
            dog.description,
            "a member of the genus Canis; occurs in many breeds"
        );
        assert_eq!(
            texts(&g, &g.triples),
            [
                "00001740v\t_hypernym\t00002325v",
                "00001740v\t_verb_group\t00002325v",
                "00001930n\t_hypernym\t00001740n",
                "00002325v\t_verb_group\t00001740v",
                "00019131a\t_similar_to\t00019731a",
                "00019731a\t_also_see\t00019131a",
                "00019731a\t_similar_to\t00019131a",
                "02083346n\t_derivationally_related_form\t02084071n",
                "02083346n\t_hypernym\t00001930n",
                "02083863n\t_member_meronym\t02084071n",
                "02083863n\t_member_of_domain_usage\t02084071n",
                "02084071n\t_derivationally_related_form\t02083346n",
                "02084071n\t_has_part\t02158846n",
                "02084071n\t_hypernym\t02083346n",
                "02084071n\t_synset_domain_topic_of\t00001930n",
            ]
        );
        assert_eq!(stats.full_entities, 10);
        assert_eq!(stats.full_triples["_hypernym"], 4);
    }

    #[test]
    fn selection_keeps_the_highest_degrees_ties_by_name() {
        let mut stats = GraphStats::default();
        let full = full_graph(&synsets(), &path_of, &mut stats).unwrap();
        // Degrees: dog 7, canine 4; physical_entity, the two verbs and the
        // two adjectives 3 each; Canis 2; entity and flag 1.
        let g = select(&full, 5, &mut stats);
        // Ties at degree 3 go by name: 00001740v, 00001930n, 00002325v.
        let names: Vec<&str> = g.entities.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "00001740v",
                "00001930n",
                "00002325v",
                "02083346n",
                "02084071n"
            ]
        );
        assert_eq!((stats.min_degree_kept, stats.struck_isolated), (3, 0));
        assert_eq!(g.triples.len(), 8);
        // With four, the first verb is taken without its only neighbour, so
        // it is struck; the second verb and the two adjectives taken in turn
        // are isolated too; Canis, a neighbour of dog, fills the place.
        let g = select(&full, 4, &mut stats);
        let names: Vec<&str> = g.entities.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["00001930n", "02083346n", "02083863n", "02084071n"]);
        assert_eq!((stats.min_degree_kept, stats.struck_isolated), (2, 4));
        assert_eq!(g.triples.len(), 7);
        assert!(g.triples.iter().all(|e| e.head < 4 && e.tail < 4));
        // Past the size of the graph, everything is kept.
        let g = select(&full, 100, &mut stats);
        assert_eq!(g, full);
        assert_eq!((stats.min_degree_kept, stats.struck_isolated), (1, 0));
    }

    /// A synthetic graph of `n` entities: a hypernym tree, derivational pairs
    /// in both directions and a few has-part triples.
    fn synthetic(n: u32) -> Graph {
        let entities = (0..n)
            .map(|i| Entity {
                name: format!("{:08}n", i + 1),
                label: format!("thing {i}"),
                description: if i % 7 == 0 {
                    String::new()
                } else {
                    format!("the thing numbered {i}")
                },
            })
            .collect();
        let mut triples = Vec::new();
        for i in 1..n {
            triples.push(Edge {
                head: i,
                relation: Relation::Hypernym,
                tail: (i - 1) / 4,
            });
            if i % 3 == 0 {
                let j = (i * 7 + 1) % n;
                if j != i {
                    triples.push(Edge {
                        head: i,
                        relation: Relation::DerivationallyRelatedForm,
                        tail: j,
                    });
                    triples.push(Edge {
                        head: j,
                        relation: Relation::DerivationallyRelatedForm,
                        tail: i,
                    });
                }
            }
            if i % 5 == 0 {
                triples.push(Edge {
                    head: i,
                    relation: Relation::HasPart,
                    tail: (i * 3 + 2) % n,
                });
            }
        }
        // A hypernym cycle, so the reverse rule has something to catch.
        triples.push(Edge {
            head: 0,
            relation: Relation::Hypernym,
            tail: 1,
        });
        triples.sort();
        triples.dedup();
        triples.retain(|e| e.head != e.tail);
        Graph { entities, triples }
    }

    fn as_kg(graph: &Graph, splits: &Splits) -> KnowledgeGraph {
        let files = render(graph, splits, &mut GraphStats::default()).unwrap();
        let text = |name: &str| {
            String::from_utf8(files.iter().find(|(n, _)| *n == name).unwrap().1.clone()).unwrap()
        };
        KnowledgeGraph::from_texts(&text("train.txt"), &text("valid.txt"), &text("test.txt"))
            .unwrap()
            .with_entity_texts(&text("entities.tsv"))
            .unwrap()
    }

    #[test]
    fn the_transductive_split_is_disjoint_deterministic_and_seen() {
        let g = synthetic(600);
        let mut stats = GraphStats::default();
        let s = split_transductive(&g, SPLIT_SEED, 60, &mut stats);
        assert_eq!(
            s,
            split_transductive(&g, SPLIT_SEED, 60, &mut GraphStats::default())
        );
        assert_ne!(
            s.test,
            split_transductive(&g, SPLIT_SEED + 1, 60, &mut GraphStats::default()).test
        );
        // Every triple is in exactly one split.
        let mut all: Vec<Edge> = s
            .train
            .iter()
            .chain(&s.valid)
            .chain(&s.test)
            .copied()
            .collect();
        all.sort();
        assert_eq!(all, g.triples);
        let moved: usize = stats.moved_to_train.values().sum();
        assert_eq!(s.valid.len() + s.test.len() + moved, 120);
        assert!(s.test.len() > 30 && s.valid.len() > 30, "{stats:?}");
        // Leaves of the tree have degree 1 or so: some candidates must move.
        assert!(stats.moved_to_train["test/unseen_entity"] > 0, "{stats:?}");
        let train: HashSet<Edge> = s.train.iter().copied().collect();
        let seen: HashSet<u32> = s.train.iter().flat_map(|e| [e.head, e.tail]).collect();
        for e in s.valid.iter().chain(&s.test) {
            assert!(seen.contains(&e.head) && seen.contains(&e.tail));
            let reverse = Edge {
                head: e.tail,
                relation: e.relation,
                tail: e.head,
            };
            assert!(e.relation.is_symmetric() || !train.contains(&reverse));
        }
        let kg = as_kg(&g, &s);
        assert!(kg.unseen_in_training(Split::Test).is_empty());
        assert!(kg.unseen_in_training(Split::Valid).is_empty());
        assert_eq!(kg.entities.len(), 600);
        assert_eq!(kg.entity_text(5), "thing 5");
        assert_eq!(kg.entity_description(5), Some("the thing numbered 5"));
        assert_eq!(kg.entity_description(7), None);
    }

    #[test]
    fn the_reverse_rule_moves_asymmetric_leaks_only() {
        // Two entities, a hypernym both ways and a derivation both ways, and
        // an anchor so both entities stay seen whatever the hash does.
        let entities: Vec<Entity> = ["00000001n", "00000002n", "00000003n"]
            .iter()
            .map(|n| Entity {
                name: n.to_string(),
                label: n.to_string(),
                description: String::new(),
            })
            .collect();
        let e = |h, r, t| Edge {
            head: h,
            relation: r,
            tail: t,
        };
        let mut triples = vec![
            e(0, Relation::Hypernym, 1),
            e(1, Relation::Hypernym, 0),
            e(0, Relation::DerivationallyRelatedForm, 1),
            e(1, Relation::DerivationallyRelatedForm, 0),
            e(0, Relation::HasPart, 2),
            e(1, Relation::HasPart, 2),
        ];
        triples.sort();
        let g = Graph { entities, triples };
        // With one evaluation triple each, over every seed: a hypernym in
        // test never has its reverse in train; a derivation may.
        let mut symmetric_kept = false;
        for seed in 0..64 {
            let s = split_transductive(&g, seed, 1, &mut GraphStats::default());
            for t in s.test.iter().chain(&s.valid) {
                let reverse = e(t.tail, t.relation, t.head);
                if t.relation == Relation::Hypernym {
                    assert!(!s.train.contains(&reverse), "seed {seed}");
                } else if t.relation.is_symmetric() && s.train.contains(&reverse) {
                    symmetric_kept = true;
                }
            }
        }
        assert!(symmetric_kept);
    }

    #[test]
    fn the_zero_shot_split_holds_out_whole_entities() {
        let g = synthetic(2_000);
        let mut stats = GraphStats::default();
        let s = split_zero_shot(&g, SPLIT_SEED, 100, 150, &mut stats);
        assert_eq!(
            s,
            split_zero_shot(&g, SPLIT_SEED, 100, 150, &mut GraphStats::default())
        );
        assert!(s.test.len() > 50 && s.test.len() <= 150, "{stats:?}");
        assert!(s.valid.len() > 50 && s.valid.len() <= 150, "{stats:?}");
        assert_eq!(stats.held_out["test_held_out"], 100);
        let kg = as_kg(&g, &s);
        // Map the graph's held-out entities into the reloaded ids.
        let train_entities: HashSet<u32> = s.train.iter().flat_map(|e| [e.head, e.tail]).collect();
        let test_unseen: Vec<u32> = s
            .test
            .iter()
            .flat_map(|e| [e.head, e.tail])
            .filter(|x| !train_entities.contains(x))
            .collect();
        // Each test triple has exactly one unseen end.
        assert_eq!(test_unseen.len(), s.test.len());
        let mut names: Vec<&str> = test_unseen
            .iter()
            .map(|&i| g.entities[i as usize].name.as_str())
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), stats.held_out["test_held_out_used"]);
        let unseen: Vec<&str> = kg
            .unseen_in_training(Split::Test)
            .iter()
            .map(|&i| kg.entities[i as usize].as_str())
            .collect();
        assert_eq!(unseen, names);
        // Valid and test held-out entities are disjoint.
        let valid_unseen: HashSet<u32> = kg.unseen_in_training(Split::Valid).into_iter().collect();
        assert!(kg
            .unseen_in_training(Split::Test)
            .iter()
            .all(|x| !valid_unseen.contains(x)));
        assert!(!valid_unseen.is_empty());
        // Nothing of valid or test is in train, and nothing is in two files.
        let train: HashSet<Edge> = s.train.iter().copied().collect();
        assert!(s.test.iter().chain(&s.valid).all(|e| !train.contains(e)));
        let test: HashSet<Edge> = s.test.iter().copied().collect();
        assert!(s.valid.iter().all(|e| !test.contains(e)));
        let placed = s.train.len() + s.valid.len() + s.test.len();
        let left: usize = stats.left_out.values().sum();
        assert_eq!(placed + left, g.triples.len());
    }

    #[test]
    fn rendered_files_list_exactly_the_entities_of_the_splits() {
        let mut stats = GraphStats::default();
        let full = full_graph(&synsets(), &path_of, &mut stats).unwrap();
        let splits = Splits {
            train: full.triples[..10].to_vec(),
            valid: full.triples[10..12].to_vec(),
            test: full.triples[12..13].to_vec(),
        };
        let files = render(&full, &splits, &mut stats).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, GRAPH_FILES);
        let tsv = String::from_utf8(files[3].1.clone()).unwrap();
        assert!(
            tsv.contains("02084071n\tdog\ta member of the genus Canis; occurs in many breeds\n")
        );
        assert!(tsv.lines().all(|l| l.split('\t').count() == 3));
        let json: GraphStats = serde_json::from_slice(&files[4].1).unwrap();
        assert_eq!(json.split["test.txt"], 1);
        assert_eq!(json.entities, tsv.lines().count());
        let kg = as_kg(&full, &splits);
        assert_eq!(kg.entities.len(), json.entities);
        assert_eq!(kg.relations.len(), json.relations);
    }
}
