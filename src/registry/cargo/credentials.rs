//! Tokens where cargo keeps them, read the way cargo reads them: `CARGO_REGISTRY_TOKEN` or
//! `[registry] token` for crates.io; `CARGO_REGISTRIES_<NAME>_TOKEN` or
//! `[registries.<name>] token` for an alternative registry, whose name is found from its index
//! URL (`CARGO_REGISTRIES_<NAME>_INDEX`, `[registries.<name>] index` in
//! `$CARGO_HOME/config.toml`): a token is bound to the index its owner configured, so a
//! `registry:` changed on a pull request gets none. Only `$CARGO_HOME` (default `~/.cargo`) is
//! read, never the checkout's `.cargo/`: on a pull request it is anyone's.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

/// A token and where it was found (an env var name or a file and table), never the secret.
pub struct Found {
    pub token: SecretString,
    pub source: String,
}

/// How the registry is known to cargo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CargoName {
    CratesIo,
    /// An alternative registry's name in cargo's config, when one was found.
    Alternative(Option<String>),
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

fn read_toml(path: &Path) -> Option<toml::Table> {
    let bytes = crate::files::read_regular(path, 1 << 20).ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .parse::<toml::Table>()
        .ok()
}

/// `config.toml` (or the legacy `config`) and `credentials.toml` (or `credentials`).
fn home_file(stem: &str) -> Option<(PathBuf, toml::Table)> {
    let home = cargo_home()?;
    [format!("{stem}.toml"), stem.to_string()]
        .iter()
        .map(|f| home.join(f))
        .find_map(|p| read_toml(&p).map(|t| (p, t)))
}

/// How cargo spells a registry name in environment variables: `my-reg` → `MY_REG`.
pub fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

fn same_index(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The alternative registry's name for `index` (`sparse+https://…/`).
pub fn name_for_index(index: &str) -> Option<String> {
    let mut from_env: Vec<String> = std::env::vars()
        .filter_map(|(k, v)| {
            let name = k
                .strip_prefix("CARGO_REGISTRIES_")?
                .strip_suffix("_INDEX")?;
            same_index(&v, index).then(|| name.to_ascii_lowercase())
        })
        .collect();
    from_env.sort();
    if let Some(n) = from_env.into_iter().next() {
        return Some(n);
    }
    let (_, config) = home_file("config")?;
    let regs = config.get("registries")?.as_table()?;
    regs.iter()
        .find(|(_, v)| {
            v.get("index")
                .and_then(|i| i.as_str())
                .is_some_and(|i| same_index(i, index))
        })
        .map(|(k, _)| k.clone())
}

fn display(path: &Path) -> String {
    match std::env::var_os("HOME").map(PathBuf::from) {
        Some(h) if path.starts_with(&h) => format!(
            "~/{}",
            path.strip_prefix(&h).unwrap_or(path).to_string_lossy()
        ),
        _ => path.to_string_lossy().into_owned(),
    }
}

fn env_token(var: &str) -> Option<Found> {
    let v = std::env::var(var).ok().filter(|v| !v.trim().is_empty())?;
    Some(Found {
        token: SecretString::from(v.trim().to_string()),
        source: var.to_string(),
    })
}

/// The token cargo would use for this registry, if any.
pub fn token(name: &CargoName) -> Option<Found> {
    match name {
        CargoName::CratesIo => env_token("CARGO_REGISTRY_TOKEN").or_else(|| {
            let (path, creds) = home_file("credentials")?;
            let t = creds.get("registry")?.get("token")?.as_str()?;
            Some(Found {
                token: SecretString::from(t.trim().to_string()),
                source: format!("{} [registry]", display(&path)),
            })
        }),
        CargoName::Alternative(None) => None,
        CargoName::Alternative(Some(n)) => {
            env_token(&format!("CARGO_REGISTRIES_{}_TOKEN", env_name(n))).or_else(|| {
                let (path, creds) = home_file("credentials")?;
                let t = creds.get("registries")?.get(n)?.get("token")?.as_str()?;
                Some(Found {
                    token: SecretString::from(t.trim().to_string()),
                    source: format!("{} [registries.{n}]", display(&path)),
                })
            })
        }
    }
}

/// Where bagboy looked, for the message when there is no token.
pub fn where_to_put(name: &CargoName) -> String {
    match name {
        CargoName::CratesIo => {
            "CARGO_REGISTRY_TOKEN, or `[registry] token` in ~/.cargo/credentials.toml".into()
        }
        CargoName::Alternative(Some(n)) => format!(
            "CARGO_REGISTRIES_{}_TOKEN, or `[registries.{n}] token` in ~/.cargo/credentials.toml",
            env_name(n)
        ),
        CargoName::Alternative(None) => "cargo knows no registry with this index URL: name it \
             in ~/.cargo/config.toml (`[registries.<name>] index = \"sparse+…\"`) or with \
             CARGO_REGISTRIES_<NAME>_INDEX, and put its token in CARGO_REGISTRIES_<NAME>_TOKEN \
             or ~/.cargo/credentials.toml"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_as_cargo_spells_them() {
        assert_eq!(env_name("my-registry"), "MY_REGISTRY");
        assert_eq!(env_name("kellnr"), "KELLNR");
    }

    #[test]
    fn index_urls_match_with_or_without_trailing_slash() {
        assert!(same_index(
            "sparse+http://127.0.0.1:8000/api/v1/crates/",
            "sparse+http://127.0.0.1:8000/api/v1/crates"
        ));
        assert!(!same_index(
            "sparse+http://127.0.0.1:8000/api/v1/crates/",
            "sparse+http://127.0.0.1:8001/api/v1/crates/"
        ));
    }
}
