//! Configuration: command-line flags, `CAPACITY_*` environment variables
//! and an optional TOML file (`--config FILE` or `CAPACITY_CONFIG`), in that
//! order of precedence, then the defaults. clap reads flags and environment
//! (a flag wins over its variable); this module lays the file and the
//! defaults under them. The README's configuration table lists every key.
//!
//! Secrets (a database URL's password) are never printed: clap hides the
//! environment value in `--help`, and `store::open` masks the password in
//! its messages.

use serde::Deserialize;
use std::path::Path;

/// The keys of the configuration file. Every key is optional; unknown keys
/// are refused so a typo does not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub log_format: Option<String>,
    pub demo: Option<bool>,
    pub allow_private_webhooks: Option<bool>,
    pub webhook_delivery: Option<bool>,
    /// Sustained requests per second per token; 0 turns the limit off.
    pub rate_limit_per_second: Option<u32>,
    pub rate_limit_burst: Option<u32>,
    pub request_timeout_seconds: Option<u64>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://capacity.db";
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 100;
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: u64 = 30;

impl FileConfig {
    /// Reads the file named by `--config` / `CAPACITY_CONFIG`, if any.
    pub fn load(path: Option<&Path>) -> Result<FileConfig, String> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| format!("the configuration file {} is invalid: {e}", path.display()))
    }
}

/// The first value present: flag or environment (already merged by clap),
/// then the file, then the default.
pub fn pick<T>(cli: Option<T>, file: Option<T>, default: T) -> T {
    cli.or(file).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_environment_win_over_the_file_which_wins_over_defaults() {
        assert_eq!(pick(Some(1), Some(2), 3), 1);
        assert_eq!(pick(None, Some(2), 3), 2);
        assert_eq!(pick(None, None, 3), 3);
    }

    #[test]
    fn the_file_is_toml_with_known_keys_only() {
        let c: FileConfig = toml::from_str(
            "listen = \"0.0.0.0:9000\"\nrate_limit_per_second = 50\nrequest_timeout_seconds = 5\n",
        )
        .unwrap();
        assert_eq!(c.listen.as_deref(), Some("0.0.0.0:9000"));
        assert_eq!(c.rate_limit_per_second, Some(50));
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
    }
}
