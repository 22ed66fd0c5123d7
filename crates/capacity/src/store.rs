//! Chooses the storage backend from the database URL.

use capacity_store::Store;
use std::sync::Arc;

pub async fn open(url: &str) -> Result<Arc<dyn Store>, String> {
    if url.starts_with("sqlite:") {
        let store = capacity_store_sqlite::SqliteStore::open_url(url)
            .map_err(|e| format!("cannot open {url}: {e}"))?;
        return Ok(Arc::new(store));
    }
    if capacity_store_postgres::is_postgres_url(url) {
        let options = capacity_store_postgres::Options::from_env()?;
        let store = capacity_store_postgres::PostgresStore::open_with(url, options)
            .await
            .map_err(|e| format!("cannot open {}: {e}", redact(url)))?;
        return Ok(Arc::new(store));
    }
    Err(format!(
        "unsupported database URL {:?}: use sqlite://path or postgres://user@host/database",
        redact(url)
    ))
}

/// The URL without its password, for messages and logs.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/capacity"),
            "postgres://app:***@db:5432/capacity"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(redact("sqlite://capacity.db"), "sqlite://capacity.db");
    }
}
