//! Tokens as npm and `actions/setup-node` keep them: `//host[:port]/path/:_authToken=…` lines
//! of the user's `.npmrc` (`NPM_CONFIG_USERCONFIG`, else `~/.npmrc`), `${VAR}` expanded. The
//! checkout's own `.npmrc` is never read: on a pull request it is anyone's.

use std::path::PathBuf;

use secrecy::SecretString;

fn user_npmrc() -> Option<PathBuf> {
    std::env::var_os("NPM_CONFIG_USERCONFIG")
        .or_else(|| std::env::var_os("npm_config_userconfig"))
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".npmrc")))
}

/// `${VAR}` → its value (unset: empty, as npm does).
fn expand(v: &str) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                out.push_str(&std::env::var(&after[..j]).unwrap_or_default());
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `//host/path/` key npm uses for a registry URL ("nerf dart").
fn nerf(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let mut path = url.path().to_string();
    if !path.ends_with('/') {
        path.push('/');
    }
    format!("//{host}{port}{path}")
}

/// The token written for `registry` (the longest matching key), if any.
pub fn token_for(registry: &reqwest::Url) -> Option<SecretString> {
    let path = user_npmrc()?;
    let text = crate::files::read_regular(&path, 1 << 20).ok()?;
    token_in(&String::from_utf8_lossy(&text), registry)
}

/// Where the token for `registry` is written (`//host/:_authToken` in ~/.npmrc), for
/// `bagboy check`; never the token.
pub fn token_source(registry: &reqwest::Url) -> Option<String> {
    token_for(registry)?;
    let path = user_npmrc()?;
    Some(format!(
        "`{}:_authToken` in {}",
        nerf(registry),
        path.display()
    ))
}

pub fn token_in(npmrc: &str, registry: &reqwest::Url) -> Option<SecretString> {
    let want = nerf(registry);
    let mut best: Option<(usize, String)> = None;
    for line in npmrc.lines() {
        let line = line.trim();
        if line.starts_with(['#', ';']) {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let Some(prefix) = key.trim().strip_suffix(":_authToken") else {
            continue;
        };
        let prefix = if prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        // A token goes only to the registry it is written for (that host, under that path).
        if want.starts_with(&prefix) && best.as_ref().is_none_or(|(n, _)| prefix.len() > *n) {
            let v = expand(value.trim().trim_matches('"'));
            if !v.is_empty() {
                best = Some((prefix.len(), v));
            }
        }
    }
    best.map(|(_, t)| SecretString::from(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn tokens_go_only_to_their_registry() {
        let rc = "registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken=pub\n//127.0.0.1:4873/:_authToken=local\n//npm.acme.example/team/:_authToken=team\n";
        let t = |u: &str| {
            token_in(rc, &reqwest::Url::parse(u).unwrap()).map(|s| s.expose_secret().to_string())
        };
        assert_eq!(t("https://registry.npmjs.org/").as_deref(), Some("pub"));
        assert_eq!(t("http://127.0.0.1:4873/").as_deref(), Some("local"));
        assert_eq!(t("http://127.0.0.1:4874/"), None);
        assert_eq!(t("https://npm.acme.example/team/").as_deref(), Some("team"));
        assert_eq!(t("https://npm.acme.example/other/"), None);
        assert_eq!(t("https://evil.example/"), None);
    }
}
