//! Log output: on a terminal or in a file, `env_logger`'s lines with
//! millisecond timestamps; when stderr is connected to the systemd journal,
//! plain messages with a `<N>` syslog priority prefix (journald reads it,
//! `SyslogLevelPrefix=` defaults to yes) and no timestamp, since the journal
//! stamps every line itself.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// Whether stderr is the journal: systemd sets `JOURNAL_STREAM=<dev>:<inode>`
/// for a service's stream and the check is that stderr is still that stream
/// (systemd.exec(5), `$JOURNAL_STREAM`), not merely inherited from a parent.
pub fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // fstat through a duplicate of the descriptor (std, no unsafe).
    let Ok(meta) = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| std::fs::File::from(fd).metadata())
    else {
        return false;
    };
    meta.dev() == dev && meta.ino() == ino
}

/// The syslog priority of a level (RFC 5424 section 6.2.1 severities).
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Sets up the logger: `filters` (`--log-level`), then `RUST_LOG`.
pub fn init(filters: &str) {
    let mut b = env_logger::Builder::new();
    b.parse_filters(filters).parse_env("RUST_LOG");
    if stderr_is_journal() {
        b.format(|f, r| writeln!(f, "<{}>{}", priority(r.level()), r.args()));
    } else {
        b.format_timestamp_millis();
    }
    b.init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_syslog_severities() {
        assert_eq!(priority(log::Level::Error), 3);
        assert_eq!(priority(log::Level::Warn), 4);
        assert_eq!(priority(log::Level::Info), 6);
        assert_eq!(priority(log::Level::Debug), 7);
    }
}
