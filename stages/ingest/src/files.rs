//! Reading the source files: found under folders, gunzipped, told apart by their content.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use crate::Format;

pub(crate) fn spill_folder() -> String {
    format!("spilling samples to {} (TMPDIR)", std::env::temp_dir().display())
}

/// A file's bytes, gunzipped when it is gzipped, counted as they are read.
pub(crate) struct Decoded {
    inner: Box<dyn Read + Send>,
    gzip: bool,
    pub(crate) bytes: u64,
}

impl Decoded {
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(path)?);
        let gzip = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        let inner: Box<dyn Read + Send> =
            if gzip { Box::new(flate2::bufread::MultiGzDecoder::new(file)) } else { Box::new(file) };
        Ok(Decoded { inner, gzip, bytes: 0 })
    }

    /// The last bytes of the file's content. A plain file seeks to them; a gzipped one has to
    /// be decompressed to its end.
    pub(crate) fn tail(path: &Path) -> std::io::Result<Vec<u8>> {
        use std::io::{Seek, SeekFrom};
        const TAIL: usize = 64;
        let mut input = Decoded::open(path)?;
        if !input.gzip {
            let mut file = std::fs::File::open(path)?;
            file.seek(SeekFrom::End(-(TAIL as i64).min(file.metadata()?.len() as i64)))?;
            let mut tail = Vec::new();
            file.read_to_end(&mut tail)?;
            return Ok(tail);
        }
        let mut tail = Vec::with_capacity(2 * TAIL);
        let mut buf = vec![0; 1 << 16];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                return Ok(tail);
            }
            tail.extend_from_slice(&buf[n.saturating_sub(TAIL)..n]);
            tail.drain(..tail.len().saturating_sub(TAIL));
        }
    }
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf).map_err(|e| {
            if self.gzip && e.kind() != std::io::ErrorKind::Interrupted {
                std::io::Error::new(e.kind(), format!("the gzip stream is damaged or truncated ({e})"))
            } else {
                e
            }
        })?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Tells formats apart by their first bytes: JSON arrays and objects starting with
/// `"status"` or `"data"` are API answers, other objects legacy dumps, the rest text.
pub(crate) fn sniff(bytes: &[u8]) -> Format {
    let text = &bytes[..bytes.len().min(4096)];
    let mut rest = text.iter().skip_while(|b| b.is_ascii_whitespace());
    match rest.next() {
        Some(b'[') => Format::Answer,
        Some(b'{') => {
            let after: Vec<u8> = rest.skip_while(|b| b.is_ascii_whitespace()).take(8).copied().collect();
            if after.starts_with(b"\"status\"") || after.starts_with(b"\"data\"") || after.starts_with(b"}") {
                Format::Answer
            } else if after.starts_with(b"\"") {
                Format::Legacy
            } else {
                Format::Text
            }
        }
        Some(b'<') => Format::Answer, // an HTML error page: the answer parser names it
        _ => Format::Text,
    }
}

/// Input files below a folder, sorted.
pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
