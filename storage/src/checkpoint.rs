//! Small durable text files in a partition directory, in Kafka's checkpoint format:
//!
//! ```text
//! 0            <- format version
//! 2            <- number of entry lines
//! 0 0          <- entries, one a line
//! 3 120
//! ```
//!
//! A checkpoint is replaced atomically: written to `NAME.tmp`, fsynced, renamed over `NAME`,
//! then the directory is fsynced so the rename itself survives a crash. A reader therefore sees
//! either the old or the new contents, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::error::StorageError;

/// The only checkpoint format version written and read.
const VERSION: u32 = 0;
/// Suffix of a checkpoint being written; leftovers are removed when a log opens.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Fsyncs a directory so that creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `contents` atomically and durably.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp_path = dir.join(format!("{name}{TMP_SUFFIX}"));
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&tmp_path, dir.join(name))?;
    sync_dir(dir)
}

/// Writes `lines` as a version-0 checkpoint named `name` in `dir`.
pub(crate) fn write_lines(dir: &Path, name: &str, lines: &[String]) -> io::Result<()> {
    let mut text = format!("{VERSION}\n{}\n", lines.len());
    for line in lines {
        debug_assert!(!line.contains('\n'), "a checkpoint entry is one line");
        text.push_str(line);
        text.push('\n');
    }
    write_atomic(dir, name, text.as_bytes())
}

/// Reads the entry lines of checkpoint `dir/name`; `Ok(None)` when the file does not exist.
/// A malformed file (wrong version, count not matching the lines) is `CorruptRecord`.
pub(crate) fn read_lines(dir: &Path, name: &str) -> Result<Option<Vec<String>>, StorageError> {
    let text = match fs::read_to_string(dir.join(name)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(StorageError::corrupt(format!(
                "checkpoint {name} is not text"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let malformed = |why: &str| StorageError::corrupt(format!("checkpoint {name}: {why}"));
    let mut lines = text.lines();
    let version: u32 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| malformed("missing version"))?;
    if version != VERSION {
        return Err(malformed(&format!("unsupported version {version}")));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| malformed("missing entry count"))?;
    let entries: Vec<String> = lines
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if entries.len() != count {
        return Err(malformed(&format!(
            "expected {count} entries, found {}",
            entries.len()
        )));
    }
    Ok(Some(entries))
}

/// Writes a checkpoint holding one offset.
pub(crate) fn write_offset(dir: &Path, name: &str, offset: i64) -> io::Result<()> {
    write_lines(dir, name, &[offset.to_string()])
}

/// Reads a checkpoint holding one offset; `Ok(None)` when the file does not exist.
pub(crate) fn read_offset(dir: &Path, name: &str) -> Result<Option<i64>, StorageError> {
    let Some(lines) = read_lines(dir, name)? else {
        return Ok(None);
    };
    match lines.as_slice() {
        [line] => line
            .parse::<i64>()
            .ok()
            .filter(|offset| *offset >= 0)
            .map(Some)
            .ok_or_else(|| {
                StorageError::corrupt(format!("checkpoint {name}: bad offset {line:?}"))
            }),
        _ => Err(StorageError::corrupt(format!(
            "checkpoint {name}: expected one offset"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_offset(dir.path(), "x").unwrap(), None);
        write_offset(dir.path(), "x", 42).unwrap();
        assert_eq!(read_offset(dir.path(), "x").unwrap(), Some(42));
        assert_eq!(
            fs::read_to_string(dir.path().join("x")).unwrap(),
            "0\n1\n42\n"
        );
        write_offset(dir.path(), "x", 7).unwrap();
        assert_eq!(read_offset(dir.path(), "x").unwrap(), Some(7));
        assert!(!dir.path().join("x.tmp").exists());
    }

    #[test]
    fn malformed_checkpoints_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["", "1\n1\n5\n", "0\n2\n5\n", "0\n1\nfive\n", "0\n1\n-3\n"] {
            fs::write(dir.path().join("x"), text).unwrap();
            assert!(
                matches!(
                    read_offset(dir.path(), "x"),
                    Err(StorageError::CorruptRecord(_))
                ),
                "{text:?}"
            );
        }
    }
}
