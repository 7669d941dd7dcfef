//! Helpers shared by the config tests: throw-away files for key files and YAML files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Writes `content` to a fresh file in the temp directory; tests run in parallel, hence the
/// process id and counter in the name.
pub(crate) fn temp_file(name: &str, content: &[u8]) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "harp-config-test-{}-{n}-{name}",
        std::process::id()
    ));
    std::fs::write(&path, content).expect("write temp file");
    path
}
