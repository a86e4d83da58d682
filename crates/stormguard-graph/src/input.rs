//! Reading a graph or settings file: one function for every command that reads one, so that each
//! refuses the same files the same way.
//!
//! ## Why only regular files, and at most 4 MiB
//! The proxy reads its settings file again at every reload and looks at it every 500 ms, and the
//! commands read the file named on their command line. A path that names something other than a
//! file made both hang or eat memory: opening a FIFO blocks until a writer comes (a reload
//! stuck in `open`, and every reload after it waiting behind), `/dev/zero` never ends, and a
//! valid 100 MB file was hashed every half second. So a file is opened without blocking, the
//! handle opened (not the path, which may have changed since) must be a regular file, and at
//! most [`MAX_FILE_BYTES`] are read: a larger file is refused by its length before any read,
//! and one that grows past the limit while being read is refused after `MAX_FILE_BYTES + 1`
//! bytes. The largest real graph or settings file is tens of kilobytes.
//!
//! Standard input and process substitution (`check /dev/stdin`, `sim <(...)`) are refused with
//! the rest: they are FIFOs to the reader. Save the text to a file first.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

/// The largest graph or settings file read: 4 MiB.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads the graph or settings file at `path` as text (see the module docs for what is
/// refused). Blocking, but never on a FIFO or a device: call it from a blocking context in an
/// async program, and bound the wait if the file system itself may hang (a network mount).
///
/// # Errors
/// What opening or reading failed with; or, with a message that says what to do: a path that is
/// not a regular file ([`io::ErrorKind::InvalidInput`]), a file larger than [`MAX_FILE_BYTES`]
/// ([`io::ErrorKind::FileTooLarge`]), text that is not UTF-8 ([`io::ErrorKind::InvalidData`]).
/// The caller names the path.
///
/// ```
/// use stormguard_graph::input;
///
/// let error = input::read_text("/dev/null".as_ref()).unwrap_err();
/// assert!(error.to_string().contains("not a regular file"), "{error}");
/// ```
pub fn read_text(path: &Path) -> io::Result<String> {
    read_limited(path, MAX_FILE_BYTES, "a graph or settings file")
}

/// [`read_text`] with another size limit, for inputs that are not graph or settings files but
/// must be bounded all the same (a saved Prometheus page, which a big server makes some MB
/// long).
///
/// # Errors
/// As [`read_text`], with `limit` in place of [`MAX_FILE_BYTES`].
///
/// ```
/// use stormguard_graph::input;
///
/// let path = std::env::temp_dir().join("stormguard-read-text-at-most.txt");
/// std::fs::write(&path, "0123456789").unwrap();
/// assert_eq!(input::read_text_at_most(&path, 10).unwrap(), "0123456789");
/// let error = input::read_text_at_most(&path, 9).unwrap_err();
/// assert_eq!(error.kind(), std::io::ErrorKind::FileTooLarge);
/// ```
pub fn read_text_at_most(path: &Path, limit: u64) -> io::Result<String> {
    read_limited(path, limit, "this input")
}

/// Reads `path`, a regular file of at most `limit` bytes; `what` names the input in the error.
fn read_limited(path: &Path, limit: u64, what: &str) -> io::Result<String> {
    let file = open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "is {}, not a regular file: {what} is read from a regular file only (for \
                 standard input or a pipe, save the text to a file first)",
                kind_of(&metadata.file_type())
            ),
        ));
    }
    let too_large = || {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("is larger than {}, the limit for {what}", bytes_text(limit)),
        )
    };
    if metadata.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Opens `path` for reading without waiting: on Unix, `O_NONBLOCK` makes opening a FIFO with
/// no writer return at once (it is refused right after), and `O_NOCTTY` keeps a terminal named
/// by mistake from becoming the process's controlling terminal.
fn open(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    options.open(path)
}

/// What a file that is not a regular file is, for the error.
fn kind_of(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (a named pipe, or standard input from a pipe)";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

fn bytes_text(bytes: u64) -> String {
    if bytes % (1024 * 1024) == 0 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("stormguard-input-{}-{name}", std::process::id()))
    }

    #[test]
    fn a_file_up_to_the_limit_is_read_and_one_byte_more_is_refused() {
        let path = temp("limit.toml");
        std::fs::write(&path, "a = 1\n").unwrap();
        assert_eq!(
            read_limited(&path, 6, "a graph or settings file").unwrap(),
            "a = 1\n"
        );
        let error = read_limited(&path, 5, "a graph or settings file").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(
            error.to_string(),
            "is larger than 5 bytes, the limit for a graph or settings file"
        );
        std::fs::write(&path, vec![b'#'; MAX_FILE_BYTES as usize]).unwrap();
        assert!(read_text(&path).is_ok());
        std::fs::write(&path, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let error = read_text(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(error.to_string().contains("larger than 4 MiB"), "{error}");
    }

    #[test]
    fn a_fifo_is_refused_at_once_rather_than_waited_on() {
        let path = temp("fifo.toml");
        let _ = std::fs::remove_file(&path);
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: mkfifo is not available");
            return;
        }
        // Without O_NONBLOCK, this open waits for a writer that never comes.
        let (done, result) = std::sync::mpsc::channel();
        let reading = path.clone();
        std::thread::spawn(move || done.send(read_text(&reading).map(|_| ())));
        let outcome = result.recv_timeout(std::time::Duration::from_secs(10));
        if outcome.is_err() {
            // Unblock the reader so that the thread ends, then fail.
            let _ = std::fs::OpenOptions::new().write(true).open(&path);
        }
        std::fs::remove_file(&path).unwrap();
        let error = outcome.expect("a FIFO was refused without waiting for a writer");
        let error = error.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().starts_with("is a FIFO"), "{error}");
    }

    #[test]
    fn devices_and_directories_are_refused_by_what_they_are() {
        for (path, kind) in [
            ("/dev/zero", "a character device"),
            ("/dev/null", "a character device"),
        ] {
            if Path::new(path).exists() {
                let error = read_text(Path::new(path)).unwrap_err();
                assert!(
                    error.to_string().starts_with(&format!("is {kind}")),
                    "{error}"
                );
            }
        }
        let error = read_text(&std::env::temp_dir()).unwrap_err();
        assert!(error.to_string().starts_with("is a directory"), "{error}");
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_with_where() {
        let path = temp("latin1.toml");
        std::fs::write(&path, b"a = \"\xe9\"\n").unwrap();
        let error = read_text(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("offset 5"), "{error}");
    }
}
