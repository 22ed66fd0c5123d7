//! Chooses the storage backend from the database URL.

use capacity_store::Store;
use std::sync::Arc;

pub async fn open(url: &str) -> Result<Arc<dyn Store>, String> {
    if url.starts_with("sqlite:") {
        let store = capacity_store_sqlite::SqliteStore::open_url(url)
            .map_err(|e| format!("cannot open {}: {e}", crate::config::redact(url)))?;
        return Ok(Arc::new(store));
    }
    Err(format!(
        "unsupported database URL {:?}: use sqlite://path",
        crate::config::redact(url)
    ))
}
