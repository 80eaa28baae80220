//! A process-wide bound on open segment files.
//!
//! A segment reads and writes its `.log` through a descriptor, but a broker with tens of
//! thousands of replicas cannot hold one descriptor per segment: that passes the RLIMIT_NOFILE
//! most systems set. A [`SegmentFile`] therefore opens its file when it is used, and when more
//! than [`capacity`] segment files are open the least recently used are closed, to be opened
//! again on their next use. Closing loses nothing: written bytes are in the page cache, and an
//! fsync through a later descriptor flushes them (fsync acts on the file, not the descriptor).
//!
//! The hot path (a file already open) costs one atomic increment and an uncontended lock; the
//! registry is only locked when a file is opened past the capacity, or a segment is created.
//!
//! # Invariants
//! - `OPEN` counts the [`SegmentFile`]s whose slot holds a descriptor.
//! - Descriptors in use when evicted stay open until their user drops them, so the number of
//!   descriptors may pass the capacity by the number of reads in flight, never more.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// The capacity until the broker sets one ([`set_capacity`]).
pub const DEFAULT_CAPACITY: usize = 4096;

/// Eviction closes files down to this fraction of the capacity, so that it runs once per many
/// opens rather than on every one.
const EVICT_TO_PERCENT: usize = 90;

static CAPACITY: AtomicUsize = AtomicUsize::new(DEFAULT_CAPACITY);
static OPEN: AtomicUsize = AtomicUsize::new(0);
/// A logical clock: each use of a file takes the next tick, so older ticks are less recent.
static CLOCK: AtomicU64 = AtomicU64::new(0);
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    slots: Vec::new(),
    prune_at: 1024,
});

/// Every segment file of the process, as weak references (a dropped segment's entry is pruned
/// when the registry grows past twice its live size).
struct Registry {
    slots: Vec<Weak<Slot>>,
    prune_at: usize,
}

impl Registry {
    fn register(&mut self, slot: &Arc<Slot>) {
        if self.slots.len() >= self.prune_at {
            self.slots.retain(|s| s.strong_count() > 0);
            self.prune_at = (self.slots.len() * 2).max(1024);
        }
        self.slots.push(Arc::downgrade(slot));
    }
}

#[derive(Debug)]
struct Slot {
    path: PathBuf,
    file: Mutex<Option<Arc<File>>>,
    last_used: AtomicU64,
}

impl Slot {
    /// Closes the descriptor if it is open; true if it was.
    fn close(&self) -> bool {
        let closed = self.file.lock().take().is_some();
        if closed {
            OPEN.fetch_sub(1, Ordering::Relaxed);
        }
        closed
    }
}

/// Bounds the segment files open at once (at least 16).
pub fn set_capacity(capacity: usize) {
    CAPACITY.store(capacity.max(16), Ordering::Relaxed);
}

pub fn capacity() -> usize {
    CAPACITY.load(Ordering::Relaxed)
}

/// Segment files open now.
pub fn open_count() -> usize {
    OPEN.load(Ordering::Relaxed)
}

/// A segment's `.log`, opened on use and closed when it is among the least recently used
/// past the capacity.
#[derive(Debug)]
pub struct SegmentFile {
    slot: Arc<Slot>,
}

impl SegmentFile {
    /// Creates the file (truncating any with its name) and keeps it open.
    pub fn create(path: &Path) -> io::Result<SegmentFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(SegmentFile::register(path, file))
    }

    /// Opens an existing file and keeps it open.
    pub fn open(path: &Path) -> io::Result<SegmentFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(SegmentFile::register(path, file))
    }

    fn register(path: &Path, file: File) -> SegmentFile {
        let slot = Arc::new(Slot {
            path: path.to_path_buf(),
            file: Mutex::new(Some(Arc::new(file))),
            last_used: AtomicU64::new(CLOCK.fetch_add(1, Ordering::Relaxed)),
        });
        REGISTRY.lock().register(&slot);
        if OPEN.fetch_add(1, Ordering::Relaxed) + 1 > capacity() {
            evict();
        }
        SegmentFile { slot }
    }

    /// The open descriptor, reopening the file if it was closed.
    pub fn get(&self) -> io::Result<Arc<File>> {
        self.slot
            .last_used
            .store(CLOCK.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        let mut guard = self.slot.file.lock();
        if let Some(file) = guard.as_ref() {
            return Ok(file.clone());
        }
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.slot.path)?,
        );
        *guard = Some(file.clone());
        drop(guard);
        if OPEN.fetch_add(1, Ordering::Relaxed) + 1 > capacity() {
            evict();
        }
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.slot.path
    }

    /// Whether the descriptor is open now (tests).
    pub fn is_open(&self) -> bool {
        self.slot.file.lock().is_some()
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        self.slot.close();
    }
}

/// Closes the least recently used files until the open count is back under
/// [`EVICT_TO_PERCENT`] of the capacity.
fn evict() {
    let target = capacity() * EVICT_TO_PERCENT / 100;
    let mut registry = REGISTRY.lock();
    registry.slots.retain(|s| s.strong_count() > 0);
    let open = OPEN.load(Ordering::Relaxed);
    if open <= target {
        return;
    }
    let mut candidates: Vec<(u64, Arc<Slot>)> = registry
        .slots
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|s| s.file.lock().is_some())
        .map(|s| (s.last_used.load(Ordering::Relaxed), s))
        .collect();
    let excess = open - target;
    if candidates.len() > excess {
        candidates.select_nth_unstable_by_key(excess, |(tick, _)| *tick);
    }
    let closed = candidates
        .iter()
        .take(excess)
        .filter(|(_, slot)| slot.close())
        .count();
    tracing::debug!(
        closed,
        open = open_count(),
        capacity = capacity(),
        "closed least recently used segment files"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// One test touches the process-wide state, so the capacity it sets holds throughout.
    #[test]
    fn least_recently_used_files_close_past_the_capacity_and_reopen_on_use() {
        let dir = tempfile::tempdir().unwrap();
        set_capacity(20);
        let files: Vec<SegmentFile> = (0..100)
            .map(|i| {
                let path = dir.path().join(format!("{i}.log"));
                let f = SegmentFile::create(&path).unwrap();
                (&*f.get().unwrap()).write_all(&[i as u8; 8]).unwrap();
                f
            })
            .collect();
        // Other tests open segment files concurrently (and see evictions too); those of this
        // test are among the open ones, which a concurrent open may briefly take past 20.
        let open = files.iter().filter(|f| f.is_open()).count();
        assert!(
            open <= 24,
            "{open} of the 100 files open, capacity {}",
            capacity()
        );
        // The newest stay open; the oldest were closed and read back the same bytes.
        assert!(files[99].is_open());
        assert!(!files[0].is_open());
        let mut buf = [0u8; 8];
        use std::os::unix::fs::FileExt;
        files[0].get().unwrap().read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [0u8; 8]);
        files[3].get().unwrap().read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [3u8; 8]);
        assert!(files[3].is_open());
        set_capacity(DEFAULT_CAPACITY);
    }
}
