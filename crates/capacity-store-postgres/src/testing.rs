//! Throw-away databases for tests (feature `testing`).
//!
//! Test suites name a PostgreSQL server by `CAPACITY_TEST_POSTGRES_URL` (any
//! database on it the user may connect to; CI gives a fresh one). Each test
//! then gets its own database, `capacity_t_<random>`, created from that
//! connection and dropped (connections and all) when the guard drops, so
//! tests never see each other's rows and may run in parallel.

use crate::sql::DbResult;
use capacity_store::StoreError;
use tokio_postgres::NoTls;

/// The variable that names the test server.
pub const URL_VAR: &str = "CAPACITY_TEST_POSTGRES_URL";

/// The test server's URL, or `None` (with the reason printed once per call)
/// when the variable is unset or empty: callers skip their PostgreSQL tests.
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipped {test}: {URL_VAR} is not set (set it to a PostgreSQL URL, e.g. \
                 postgres://postgres@127.0.0.1:5432/postgres, to run the PostgreSQL tests)"
            );
            None
        }
    }
}

/// A fresh database; dropped with everything in it when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL of the fresh database.
    pub url: String,
    /// Its name, `capacity_t_…`.
    pub name: String,
    server_url: String,
}

impl TestDatabase {
    /// Creates `capacity_t_<random>` on the server of `server_url`.
    pub async fn create(server_url: &str) -> Result<TestDatabase, StoreError> {
        let name = format!(
            "capacity_t_{}_{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        let url = with_database(server_url, &name)?;
        let client = admin(server_url).await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .db()?;
        Ok(TestDatabase {
            url,
            name,
            server_url: server_url.to_owned(),
        })
    }

    /// Creates a fresh database on the server named by
    /// `CAPACITY_TEST_POSTGRES_URL`, or `None` (saying why) when it is unset.
    /// Panics when the server cannot be used: a set variable is a promise.
    pub async fn from_env(test: &str) -> Option<TestDatabase> {
        let server = server_url(test)?;
        Some(TestDatabase::create(&server).await.unwrap_or_else(|e| {
            panic!("{URL_VAR} is set but no test database could be created on it: {e}")
        }))
    }

    async fn drop_now(server_url: String, name: String) -> Result<(), StoreError> {
        let client = admin(&server_url).await?;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .db()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime (or not): do the async work on a
        // thread of its own and wait for it.
        let (server, name) = (self.server_url.clone(), self.name.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            rt.block_on(TestDatabase::drop_now(server, name))
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop test database {}: panicked", self.name),
        }
    }
}

async fn admin(server_url: &str) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = tokio_postgres::connect(server_url, NoTls)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to {server_url}: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `url` with its database replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> Result<String, StoreError> {
    let rest = url
        .strip_prefix("postgres://")
        .map(|r| ("postgres://", r))
        .or_else(|| {
            url.strip_prefix("postgresql://")
                .map(|r| ("postgresql://", r))
        });
    let Some((scheme, rest)) = rest else {
        return Err(StoreError::Internal(format!(
            "{URL_VAR} must be a postgres:// URL, not {url:?}"
        )));
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    let mut out = format!("{scheme}{authority}/{name}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_and_keeps_the_rest() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/capacity_ci", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5433", "x").unwrap(),
            "postgres://h:5433/x"
        );
        assert!(with_database("host=h dbname=d", "x").is_err());
    }
}
