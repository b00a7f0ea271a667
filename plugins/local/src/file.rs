//! Files in one piece. Through `std::fs`, a wasm guest reads and writes in 4 KiB stream
//! chunks, each a call into the host; the positional `read` and `write` of `wasi:filesystem`
//! move up to 64 KiB (the host's cap per read) or the whole buffer in one call.
//!
//! Every file this plugin writes gets a modification time of its own choosing (the time of
//! the write, its sub-millisecond digits random), so a [`Stamp`] names one write: a store
//! that remembers the stamp and version of what it wrote knows the version of an unchanged
//! file without reading and hashing it again.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What tells one write of a file from another without reading it: its size and its
/// modification time, as [`write_durable`] set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    size: u64,
    modified: Duration,
}

/// Replaces the content of the existing file `path` by `data`, gives it a modification time
/// of its own and syncs it to disk. Returns its stamp, `None` when the filesystem did not
/// keep the time exactly (it then stamps nothing: versions are hashed).
pub fn write_durable(path: &Path, data: &[u8]) -> io::Result<Option<Stamp>> {
    let stamp = Stamp {
        size: data.len() as u64,
        modified: unique_time(),
    };
    let kept = sys::write_durable(path, data, stamp.modified)?;
    Ok((kept == Some(stamp)).then_some(stamp))
}

/// The whole content of the regular file `path` and its stamp.
pub fn read(path: &Path) -> io::Result<(Vec<u8>, Stamp)> {
    sys::read(path)
}

/// The stamp of the file `path` as it is now; `None` when there is none.
pub fn stamp(path: &Path) -> io::Result<Option<Stamp>> {
    match sys::stamp(path) {
        Ok(stamp) => Ok(Some(stamp)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Now, to the millisecond, with random digits below: no two writes share it, in practice.
fn unique_time() -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let millis = Duration::from_millis(now.as_millis() as u64);
    millis + Duration::from_nanos(sys::random() % 1_000_000)
}

fn not_regular(path: &Path) -> io::Error {
    io::Error::other(format!("{} is not a regular file", path.display()))
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    //! The same through `std::fs`, for the plugin linked natively (tests, benchmarks).
    use std::fs::{File, Metadata, OpenOptions};
    use std::hash::{BuildHasher, RandomState};
    use std::io::{self, Read, Write};
    use std::path::Path;
    use std::time::{Duration, UNIX_EPOCH};

    use super::{Stamp, not_regular};

    pub fn write_durable(
        path: &Path,
        data: &[u8],
        modified: Duration,
    ) -> io::Result<Option<Stamp>> {
        let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
        file.write_all(data)?;
        file.set_modified(UNIX_EPOCH + modified)?;
        file.sync_all()?;
        Ok(stamp_of(&file.metadata()?))
    }

    pub fn read(path: &Path) -> io::Result<(Vec<u8>, Stamp)> {
        let mut file = File::open(path)?;
        let metadata = file.metadata()?;
        let stamp = stamp_of(&metadata).ok_or_else(|| not_regular(path))?;
        let mut data = Vec::with_capacity(metadata.len() as usize);
        file.read_to_end(&mut data)?;
        Ok((data, stamp))
    }

    pub fn stamp(path: &Path) -> io::Result<Stamp> {
        stamp_of(&std::fs::metadata(path)?).ok_or_else(|| not_regular(path))
    }

    fn stamp_of(metadata: &Metadata) -> Option<Stamp> {
        let modified = metadata.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
        metadata.is_file().then_some(Stamp {
            size: metadata.len(),
            modified,
        })
    }

    pub fn random() -> u64 {
        RandomState::new().hash_one(std::time::Instant::now())
    }
}

#[cfg(target_arch = "wasm32")]
mod sys {
    use std::io::{self, ErrorKind};
    use std::path::Path;
    use std::time::Duration;

    use wasip2::filesystem::preopens;
    use wasip2::filesystem::types::{
        Datetime, Descriptor, DescriptorFlags, DescriptorStat, DescriptorType, ErrorCode,
        NewTimestamp, OpenFlags, PathFlags,
    };

    use super::{Stamp, not_regular};

    pub fn write_durable(
        path: &Path,
        data: &[u8],
        modified: Duration,
    ) -> io::Result<Option<Stamp>> {
        let file = granted(path, |dir, relative| {
            dir.open_at(
                PathFlags::empty(),
                relative,
                OpenFlags::TRUNCATE,
                DescriptorFlags::WRITE,
            )
            .map_err(to_io)
        })?;
        let mut offset = 0;
        while offset < data.len() {
            let written = file.write(&data[offset..], offset as u64).map_err(to_io)?;
            if written == 0 {
                return Err(io::Error::new(
                    ErrorKind::WriteZero,
                    "the file took no bytes",
                ));
            }
            offset += written as usize;
        }
        let time = Datetime {
            seconds: modified.as_secs(),
            nanoseconds: modified.subsec_nanos(),
        };
        file.set_times(NewTimestamp::NoChange, NewTimestamp::Timestamp(time))
            .map_err(to_io)?;
        file.sync().map_err(to_io)?;
        Ok(stamp_of(&file.stat().map_err(to_io)?))
    }

    pub fn read(path: &Path) -> io::Result<(Vec<u8>, Stamp)> {
        let file = granted(path, |dir, relative| {
            dir.open_at(
                PathFlags::SYMLINK_FOLLOW,
                relative,
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .map_err(to_io)
        })?;
        let stamp = stamp_of(&file.stat().map_err(to_io)?).ok_or_else(|| not_regular(path))?;
        // The size the stat saw, in as few reads as the host allows (64 KiB each).
        let mut data = Vec::new();
        while (data.len() as u64) < stamp.size {
            let rest = stamp.size - data.len() as u64;
            let (chunk, _) = file.read(rest, data.len() as u64).map_err(to_io)?;
            if chunk.is_empty() {
                break; // shrunk since the stat
            }
            if data.is_empty() {
                data = chunk;
                data.reserve_exact((stamp.size as usize).saturating_sub(data.len()));
            } else {
                data.extend_from_slice(&chunk);
            }
        }
        Ok((data, stamp))
    }

    pub fn stamp(path: &Path) -> io::Result<Stamp> {
        let stat = granted(path, |dir, relative| {
            dir.stat_at(PathFlags::SYMLINK_FOLLOW, relative)
                .map_err(to_io)
        })?;
        stamp_of(&stat).ok_or_else(|| not_regular(path))
    }

    fn stamp_of(stat: &DescriptorStat) -> Option<Stamp> {
        let time = stat.data_modification_timestamp?;
        (stat.type_ == DescriptorType::RegularFile).then_some(Stamp {
            size: stat.size,
            modified: Duration::new(time.seconds, time.nanoseconds),
        })
    }

    pub fn random() -> u64 {
        wasip2::random::insecure::get_insecure_random_u64()
    }

    thread_local! {
        /// The granted directories, asked for once: they stay for the instance's life.
        static PREOPENS: Vec<(Descriptor, String)> = preopens::get_directories();
    }

    /// Runs `with` on the granted directory that holds `path` (the deepest, if grants nest)
    /// and the rest of the path below it.
    fn granted<T>(
        path: &Path,
        with: impl FnOnce(&Descriptor, &str) -> io::Result<T>,
    ) -> io::Result<T> {
        let path = path
            .to_str()
            .ok_or_else(|| io::Error::other("the path is not UTF-8"))?;
        PREOPENS.with(|preopens| {
            let (dir, rest) = preopens
                .iter()
                .filter_map(|(dir, root)| {
                    let rest = path
                        .strip_prefix(root.trim_end_matches('/'))?
                        .strip_prefix('/')?;
                    Some((root.len(), dir, rest))
                })
                .max_by_key(|(depth, _, _)| *depth)
                .map(|(_, dir, rest)| (dir, rest))
                .ok_or_else(|| {
                    io::Error::new(
                        ErrorKind::PermissionDenied,
                        format!("{path} is in no granted directory"),
                    )
                })?;
            with(dir, rest)
        })
    }

    fn to_io(code: ErrorCode) -> io::Error {
        let kind = match code {
            ErrorCode::Exist => ErrorKind::AlreadyExists,
            ErrorCode::NoEntry => ErrorKind::NotFound,
            ErrorCode::Access | ErrorCode::NotPermitted | ErrorCode::ReadOnly => {
                ErrorKind::PermissionDenied
            }
            _ => ErrorKind::Other,
        };
        io::Error::new(kind, format!("{code:?}"))
    }
}
