//! The metadata log of a single-voter quorum: committed records in one local file.
//!
//! Each line is `CRC32C(hex) JSON\n`. A record is committed once its line is written and
//! fsynced; at start-up the file is replayed and a torn or corrupt tail (a crash during a
//! write) is cut off, so the image is rebuilt from exactly the committed records.
//!
//! # Invariants
//! - `next_offset` is one more than the number of committed records (offsets start at 1).
//! - Every byte of the file up to its length is a whole, checksummed line.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::records::MetadataRecord;

pub struct LocalMetadataLog {
    path: PathBuf,
    file: File,
    next_offset: u64,
}

impl LocalMetadataLog {
    /// Opens the log under `dir`, returning it and the committed records in order.
    pub fn open(dir: &Path) -> std::io::Result<(LocalMetadataLog, Vec<(u64, MetadataRecord)>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("metadata.log");
        let mut records = Vec::new();
        let mut valid_len: u64 = 0;
        if path.exists() {
            let reader = BufReader::new(File::open(&path)?);
            for line in reader.split(b'\n') {
                let line = line?;
                match Self::decode_line(&line) {
                    Some(record) => {
                        records.push((records.len() as u64 + 1, record));
                        valid_len += line.len() as u64 + 1;
                    }
                    None => break,
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let len = file.metadata()?.len();
        if len != valid_len {
            tracing::warn!(path = %path.display(), len, valid_len, "truncating torn tail of the metadata log");
            file.set_len(valid_len)?;
            file.sync_all()?;
        }
        let next_offset = records.len() as u64 + 1;
        Ok((
            LocalMetadataLog {
                path,
                file,
                next_offset,
            },
            records,
        ))
    }

    fn decode_line(line: &[u8]) -> Option<MetadataRecord> {
        let (crc_hex, json) = line.split_at_checked(8)?;
        let json = json.strip_prefix(b" ")?;
        let crc = u32::from_str_radix(std::str::from_utf8(crc_hex).ok()?, 16).ok()?;
        if crc32c::crc32c(json) != crc {
            return None;
        }
        serde_json::from_slice(json).ok()
    }

    /// Appends records durably and returns the offset of each.
    pub fn append(&mut self, records: &[MetadataRecord]) -> std::io::Result<Vec<u64>> {
        let mut buf = Vec::new();
        for record in records {
            let json = serde_json::to_vec(record).expect("metadata records serialize");
            write!(buf, "{:08x} ", crc32c::crc32c(&json))?;
            buf.extend_from_slice(&json);
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        // Committed means durable: the metadata log is the single source of truth.
        self.file.sync_data()?;
        let first = self.next_offset;
        self.next_offset += records.len() as u64;
        Ok((first..self.next_offset).collect())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, recs) = LocalMetadataLog::open(dir.path()).unwrap();
        assert!(recs.is_empty());
        let r1 = MetadataRecord::ClusterId {
            cluster_id: "c1".into(),
        };
        let r2 = MetadataRecord::ProducerIds {
            broker_id: 1,
            first_producer_id: 0,
            size: 1000,
        };
        assert_eq!(log.append(&[r1.clone(), r2.clone()]).unwrap(), vec![1, 2]);
        let path = log.path().to_path_buf();
        drop(log);
        // A torn write: half a line at the end.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"0badc0de {\"type\":\"Clus").unwrap();
        drop(f);
        let (mut log, recs) = LocalMetadataLog::open(dir.path()).unwrap();
        assert_eq!(recs, vec![(1, r1), (2, r2)]);
        assert_eq!(
            log.append(&[MetadataRecord::ClusterId {
                cluster_id: "x".into()
            }])
            .unwrap(),
            vec![3]
        );
        let (_, recs) = LocalMetadataLog::open(dir.path()).unwrap();
        assert_eq!(recs.len(), 3);
    }
}
