//! Writing a new file in one piece. Through `std::fs`, a wasm guest writes in 4 KiB stream
//! chunks, each a round trip to the host's blocking pool; the positional `write` of
//! `wasi:filesystem` takes the whole buffer in one call.

use std::io;
use std::path::Path;

/// Replaces the content of the existing file `path` by `data` and syncs it to disk.
pub fn write_durable(path: &Path, data: &[u8]) -> io::Result<()> {
    #[cfg(target_arch = "wasm32")]
    {
        wasi::write_durable(path, data)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)?;
        file.write_all(data)?;
        file.sync_all()
    }
}

#[cfg(target_arch = "wasm32")]
mod wasi {
    use std::io::{self, ErrorKind};
    use std::path::Path;

    use wasip2::filesystem::preopens;
    use wasip2::filesystem::types::{DescriptorFlags, ErrorCode, OpenFlags, PathFlags};

    pub fn write_durable(path: &Path, data: &[u8]) -> io::Result<()> {
        let path = path
            .to_str()
            .ok_or_else(|| io::Error::other("the path is not UTF-8"))?;
        // The granted directory that holds the path (the deepest, if grants nest).
        let (dir, relative) = preopens::get_directories()
            .into_iter()
            .filter_map(|(dir, root)| {
                let rest = path
                    .strip_prefix(root.trim_end_matches('/'))?
                    .strip_prefix('/')?
                    .to_string();
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
        let file = dir
            .open_at(
                PathFlags::empty(),
                &relative,
                OpenFlags::TRUNCATE,
                DescriptorFlags::WRITE,
            )
            .map_err(to_io)?;
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
        file.sync().map_err(to_io)
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
