//! Line sources: standard input, and a followed log file (as `tail -F`:
//! appended lines are read as they come; a truncated or replaced file is read
//! again from its start).

use crate::registry::Registry;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Reads standard input line by line until it closes.
pub async fn stdin(registry: Arc<Mutex<Registry>>) -> std::io::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        registry.lock().expect("registry lock").ingest_line(&line);
    }
    Ok(())
}

/// Where a followed file stands.
pub struct Follower {
    path: PathBuf,
    file: Option<std::fs::File>,
    identity: Option<(u64, u64)>,
    offset: u64,
    partial: Vec<u8>,
}

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn identity(_meta: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

impl Follower {
    /// `from_start`: read what the file already holds (else only what is appended).
    pub fn new(path: &Path, from_start: bool) -> Self {
        let mut follower = Follower {
            path: path.to_path_buf(),
            file: None,
            identity: None,
            offset: 0,
            partial: Vec::new(),
        };
        if !from_start && let Ok(meta) = std::fs::metadata(path) {
            follower.offset = meta.len();
            follower.identity = Some(identity(&meta));
        }
        follower
    }

    /// Reads what was appended since the last call and hands over complete lines.
    pub fn poll(&mut self, mut on_line: impl FnMut(&str)) -> std::io::Result<()> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let id = identity(&meta);
        if self.identity != Some(id) || meta.len() < self.offset {
            // Rotated or truncated: start over.
            self.file = None;
            if self.identity.is_some() {
                self.offset = 0;
                self.partial.clear();
            }
            self.identity = Some(id);
        }
        if self.file.is_none() {
            let mut file = std::fs::File::open(&self.path)?;
            file.seek(SeekFrom::Start(self.offset))?;
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        let mut fresh = Vec::new();
        let read = file.read_to_end(&mut fresh)?;
        self.offset += read as u64;
        self.partial.extend_from_slice(&fresh);
        let mut consumed = 0;
        for line in self.partial.split_inclusive(|b| *b == b'\n') {
            if line.last() != Some(&b'\n') {
                break;
            }
            consumed += line.len();
            on_line(String::from_utf8_lossy(line).trim_end());
        }
        self.partial.drain(..consumed);
        Ok(())
    }
}

/// Follows `path` forever, polling every `every`.
pub async fn follow(
    registry: Arc<Mutex<Registry>>,
    path: PathBuf,
    from_start: bool,
    every: Duration,
) -> std::io::Result<()> {
    let mut follower = Follower::new(&path, from_start);
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let mut lines = Vec::new();
        if let Err(e) = follower.poll(|l| lines.push(l.to_string())) {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the followed file");
            continue;
        }
        if !lines.is_empty() {
            let mut registry = registry.lock().expect("registry lock");
            for line in &lines {
                registry.ingest_line(line);
            }
        }
    }
}
