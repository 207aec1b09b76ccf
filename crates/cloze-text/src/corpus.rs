//! Streaming corpus readers. A corpus is a file or a directory of files in
//! Google BERT's text format (one sentence or paragraph per line, a blank line
//! between documents) or JSONL (one document per record, its text in a named
//! field, paragraphs separated by newlines); any file may be gzip'd (`.gz`).
//!
//! Documents are produced one at a time, so memory stays flat however large
//! the corpus is. Bad input is a typed error naming the file and line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// How each file of a corpus is read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorpusFormat {
    /// JSONL for `.jsonl`/`.jsonl.gz` files (text field `text`), plain text otherwise.
    #[default]
    Auto,
    /// Plain text, Google BERT format.
    Text,
    /// JSONL with the document text in the given field.
    Jsonl {
        /// Field holding the text.
        field: String,
    },
}

/// Reader settings.
#[derive(Debug, Clone)]
pub struct CorpusOptions {
    /// File format.
    pub format: CorpusFormat,
    /// Replace invalid UTF-8 with U+FFFD instead of failing.
    pub lossy_utf8: bool,
    /// Longest accepted line in bytes; a longer line (a binary file, or text
    /// without newlines) is an error.
    pub max_line_bytes: usize,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        Self {
            format: CorpusFormat::Auto,
            lossy_utf8: false,
            max_line_bytes: 1 << 20,
        }
    }
}

/// One document: its non-empty lines (sentences or paragraphs), trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    /// The lines.
    pub lines: Vec<String>,
}

impl Document {
    /// Total bytes of text.
    pub fn bytes(&self) -> usize {
        self.lines.iter().map(String::len).sum()
    }
}

/// The files of a corpus: `path` itself when it is not a directory (a
/// regular file, or a named pipe such as the shell's `<(zcat corpus.gz)`), or
/// every regular file below a directory (hidden files skipped), sorted so the
/// order is reproducible.
pub fn corpus_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).at(path)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let p = entry.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let ft = entry.file_type().at(&p)?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() || (ft.is_symlink() && p.is_file()) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Total size in bytes of a corpus's files (compressed size for `.gz`), for progress.
pub fn corpus_bytes(path: &Path) -> Result<u64> {
    let mut total = 0;
    for f in corpus_files(path)? {
        total += std::fs::metadata(&f).at(&f)?.len();
    }
    Ok(total)
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

fn is_jsonl(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    name.ends_with(".jsonl") || name.ends_with(".ndjson")
}

/// Counts bytes read from the underlying (possibly compressed) file.
struct Counting<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// A line reader over one file that enforces the line limit and UTF-8.
struct LineReader {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    line: u64,
    buf: Vec<u8>,
    limit: usize,
    lossy: bool,
}

impl LineReader {
    fn open(
        path: &Path,
        options: &CorpusOptions,
        counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<Self> {
        let file = File::open(path).at(path)?;
        let counted = Counting {
            inner: file,
            count: counter,
        };
        let reader: Box<dyn BufRead + Send> = if is_gz(path) {
            Box::new(BufReader::with_capacity(
                1 << 16,
                flate2::read::MultiGzDecoder::new(BufReader::new(counted)),
            ))
        } else {
            Box::new(BufReader::with_capacity(1 << 16, counted))
        };
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            line: 0,
            buf: Vec::new(),
            limit: options.max_line_bytes,
            lossy: options.lossy_utf8,
        })
    }

    /// The next line without its terminator, or None at end of file.
    fn next_line(&mut self) -> Result<Option<String>> {
        self.buf.clear();
        self.line += 1;
        let limit = (self.limit as u64).saturating_add(1);
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| self.io_error(source))?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        } else if n as u64 == limit {
            return Err(Error::LineTooLong {
                path: self.path.clone(),
                line: self.line,
                limit: self.limit,
            });
        }
        let bytes = std::mem::take(&mut self.buf);
        match String::from_utf8(bytes) {
            Ok(s) => Ok(Some(s)),
            Err(e) if self.lossy => Ok(Some(String::from_utf8_lossy(e.as_bytes()).into_owned())),
            Err(_) => Err(Error::InvalidUtf8 {
                path: self.path.clone(),
                line: self.line,
            }),
        }
    }

    fn io_error(&self, source: std::io::Error) -> Error {
        if source.kind() == std::io::ErrorKind::InvalidData {
            // Corrupt gzip data.
            Error::Format {
                path: self.path.clone(),
                line: self.line,
                reason: format!("unreadable data: {source}"),
            }
        } else {
            Error::Io {
                path: self.path.clone(),
                source,
            }
        }
    }
}

/// Streams the documents of a corpus. Yields `Err` once and then stops on bad
/// input; yields [`Error::EmptyCorpus`] when the corpus holds no text at all.
pub struct DocumentReader {
    root: PathBuf,
    files: Vec<PathBuf>,
    next_file: usize,
    current: Option<(LineReader, bool)>,
    options: CorpusOptions,
    documents: u64,
    done: bool,
    bytes_read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl DocumentReader {
    /// Opens a corpus file or directory.
    pub fn open(path: &Path, options: CorpusOptions) -> Result<Self> {
        let files = corpus_files(path)?;
        Ok(Self {
            root: path.to_path_buf(),
            files,
            next_file: 0,
            current: None,
            options,
            documents: 0,
            done: false,
            bytes_read: Default::default(),
        })
    }

    /// Bytes read so far from the corpus files (compressed bytes for `.gz`).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Documents produced so far.
    pub fn documents(&self) -> u64 {
        self.documents
    }

    fn read_next(&mut self) -> Result<Option<Document>> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.files.get(self.next_file) else {
                    return Ok(None);
                };
                self.next_file += 1;
                let jsonl = match &self.options.format {
                    CorpusFormat::Auto => is_jsonl(path),
                    CorpusFormat::Text => false,
                    CorpusFormat::Jsonl { .. } => true,
                };
                self.current = Some((
                    LineReader::open(path, &self.options, self.bytes_read.clone())?,
                    jsonl,
                ));
            }
            let Some((reader, jsonl)) = self.current.as_mut() else {
                continue;
            };
            let doc = if *jsonl {
                let field = match &self.options.format {
                    CorpusFormat::Jsonl { field } => field.as_str(),
                    _ => "text",
                };
                read_jsonl_document(reader, field)?
            } else {
                read_text_document(reader)?
            };
            match doc {
                Some(d) => return Ok(Some(d)),
                None => self.current = None,
            }
        }
    }
}

impl Iterator for DocumentReader {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_next() {
            Ok(Some(doc)) => {
                self.documents += 1;
                Some(Ok(doc))
            }
            Ok(None) => {
                self.done = true;
                (self.documents == 0).then(|| {
                    Err(Error::EmptyCorpus {
                        path: self.root.clone(),
                    })
                })
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads lines up to a blank line (or end of file); None when the file has no
/// more text.
fn read_text_document(reader: &mut LineReader) -> Result<Option<Document>> {
    let mut doc = Document::default();
    while let Some(line) = reader.next_line()? {
        let t = line.trim();
        if t.is_empty() {
            if !doc.lines.is_empty() {
                return Ok(Some(doc));
            }
        } else if t.len() == line.len() {
            doc.lines.push(line);
        } else {
            doc.lines.push(t.to_string());
        }
    }
    Ok((!doc.lines.is_empty()).then_some(doc))
}

fn read_jsonl_document(reader: &mut LineReader, field: &str) -> Result<Option<Document>> {
    while let Some(line) = reader.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line).map_err(|e| Error::Format {
            path: reader.path.clone(),
            line: reader.line,
            reason: format!("not a JSON object: {e}"),
        })?;
        let text = value
            .get(field)
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::Format {
                path: reader.path.clone(),
                line: reader.line,
                reason: format!("no string field {field:?}"),
            })?;
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if !lines.is_empty() {
            return Ok(Some(Document { lines }));
        }
    }
    Ok(None)
}

/// Streams every non-empty line of a corpus (for tokenizer training).
pub fn lines(
    path: &Path,
    options: CorpusOptions,
) -> Result<impl Iterator<Item = Result<String>> + Send> {
    let reader = DocumentReader::open(path, options)?;
    Ok(
        reader.flat_map(|doc| -> Box<dyn Iterator<Item = Result<String>> + Send> {
            match doc {
                Ok(d) => Box::new(d.lines.into_iter().map(Ok)),
                Err(e) => Box::new(std::iter::once(Err(e))),
            }
        }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(path: &Path, options: CorpusOptions) -> Result<Vec<Document>> {
        DocumentReader::open(path, options)?.collect()
    }

    fn doc(lines: &[&str]) -> Document {
        Document {
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn google_format_documents() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.txt");
        std::fs::write(&p, "a b.\r\nc d.\n\n\n  e f.  \n\ng\n").unwrap();
        let docs = read_all(&p, CorpusOptions::default()).unwrap();
        assert_eq!(
            docs,
            vec![doc(&["a b.", "c d."]), doc(&["e f."]), doc(&["g"])]
        );
    }

    #[test]
    fn directory_gz_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "one\n").unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"two\nthree\n\nfour\n").unwrap();
        std::fs::write(dir.path().join("b.txt.gz"), gz.finish().unwrap()).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join("sub/c.jsonl"),
            "{\"text\": \"five\\nsix\", \"id\": 1}\n\n{\"text\": \"\"}\n{\"text\": \"seven\"}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".hidden"), "never").unwrap();
        let docs = read_all(dir.path(), CorpusOptions::default()).unwrap();
        assert_eq!(
            docs,
            vec![
                doc(&["one"]),
                doc(&["two", "three"]),
                doc(&["four"]),
                doc(&["five", "six"]),
                doc(&["seven"])
            ]
        );
    }

    #[test]
    fn invalid_utf8_names_file_and_line_or_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.txt");
        std::fs::write(&p, b"fine\nalso fine\nbad \xff byte\n").unwrap();
        let err = read_all(&p, CorpusOptions::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidUtf8 { line: 3, .. }), "{err}");
        assert!(err.to_string().contains("bad.txt:3"));
        let docs = read_all(
            &p,
            CorpusOptions {
                lossy_utf8: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(docs[0].lines[2], "bad \u{fffd} byte");
    }

    #[test]
    fn empty_corpus_and_missing_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.txt");
        std::fs::write(&p, "\n\n  \n").unwrap();
        assert!(matches!(
            read_all(&p, CorpusOptions::default()),
            Err(Error::EmptyCorpus { .. })
        ));
        let missing = dir.path().join("nope.txt");
        let err = read_all(&missing, CorpusOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("nope.txt"));
    }

    #[test]
    fn huge_line_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.txt");
        std::fs::write(&p, format!("short\n{}", "x".repeat(10 << 20))).unwrap();
        let err = read_all(&p, CorpusOptions::default()).unwrap_err();
        assert!(matches!(err, Error::LineTooLong { line: 2, .. }), "{err}");
        // Exactly at the limit is fine.
        std::fs::write(&p, "y".repeat(1 << 20)).unwrap();
        assert_eq!(
            read_all(&p, CorpusOptions::default()).unwrap()[0].lines[0].len(),
            1 << 20
        );
    }

    #[test]
    fn bad_jsonl_names_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        std::fs::write(&p, "{\"text\":\"a\"}\n{\"body\":\"b\"}\n").unwrap();
        let err = read_all(&p, CorpusOptions::default()).unwrap_err();
        assert!(err.to_string().contains("x.jsonl:2"), "{err}");
    }
}
