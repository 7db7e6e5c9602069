//! `format: gitops`: an image reference in a deploy repository — a kustomization's `images[]`
//! entry (`newTag`, `digest`) or a YAML path in a Helm values file (`path: image.tag`) — set
//! to the target's value, every other byte of the file kept.

use std::sync::Arc;

use crate::config::RegistryConfig;
use crate::history::{Problem, Problems};
use crate::registry::gitrepo::backend::{self, same_version, Codec, Common, Derive, Derived};
use crate::registry::gitrepo::yaml_lines as yl;
use crate::registry::gitrepo::Flavor;
use crate::registry::{self as registry, Env, Registry, RegistryError};

pub static GITOPS: registry::Kind = registry::Kind {
    name: "gitops",
    aliases: &[],
    registry_is_path: false,
    recorded: true,
    check: check_options,
    open: open_deploy,
};

const KEYS: &[&str] = &["file", "image", "path"];

fn parse(cfg: &RegistryConfig) -> Result<(Common, Vec<Problem>), Vec<Problem>> {
    Common::parse(cfg, KEYS, None, |c, p: &mut Problems| {
        match c.get("file") {
            None => p.push(cfg.loc, "`file` is required for format gitops"),
            Some(f) if !backend::valid_repo_path(f) => p.push(
                c.loc("file").unwrap_or(cfg.loc),
                format!("`file` {f:?} must be a relative path inside the repository"),
            ),
            Some(_) => {}
        }
        match (c.get("image"), c.get("path")) {
            (None, None) => p.push(
                cfg.loc,
                "format gitops needs `image:` (a kustomization's images[].name) or `path:` (a YAML path such as image.tag)",
            ),
            (Some(_), Some(_)) => p.push(
                c.loc("path").unwrap_or(cfg.loc),
                "`image` and `path` exclude each other: say which one",
            ),
            (Some(i), None) if i.trim().is_empty() || i.contains(char::is_whitespace) => p.push(
                c.loc("image").unwrap_or(cfg.loc),
                format!("`image` {i:?} is not an image name"),
            ),
            (None, Some(path)) if path.split('.').any(|s| s.trim().is_empty()) => p.push(
                c.loc("path").unwrap_or(cfg.loc),
                format!("`path` {path:?} is not a dotted YAML path such as image.tag"),
            ),
            _ => {}
        }
    })
}

fn check_options(cfg: &RegistryConfig) -> Result<Vec<Problem>, Vec<Problem>> {
    parse(cfg).map(|(_, w)| w)
}

fn open_deploy(cfg: &RegistryConfig, env: &Env) -> Result<Arc<dyn Registry>, RegistryError> {
    let (c, _) = parse(cfg).map_err(|ps| registry::options_error(cfg, ps))?;
    let file = c.get("file").unwrap_or_default().to_owned();
    let target = match (c.get("image"), c.get("path")) {
        (Some(i), _) => Target::Kustomize(i.to_owned()),
        (None, Some(p)) => Target::Path(p.split('.').map(str::to_owned).collect()),
        (None, None) => Target::Path(Vec::new()),
    };
    backend::open(cfg, env, c.spec, Arc::new(Reference { file, target }))
}

/// Which value in the file is the release's.
#[derive(Debug, Clone)]
pub enum Target {
    /// `images[]` entry with this `name:`: its `newTag` (and `digest`).
    Kustomize(String),
    /// A path of mapping keys to a scalar.
    Path(Vec<String>),
}

/// The image reference of one release in a deploy repository.
pub struct Reference {
    pub file: String,
    pub target: Target,
}

/// A located value: the line and the byte span of its token in the file.
#[derive(Debug, Clone, PartialEq)]
struct Found {
    /// `(key, token span in the file)`; `None` span: the key is absent.
    values: Vec<(&'static str, Option<(usize, usize)>)>,
    /// Where a missing key's line goes, and its indent.
    insert_at: usize,
    indent: usize,
}

fn locate(text: &str, target: &Target) -> Result<Found, String> {
    let ls = yl::lines(text);
    let span_in_file =
        |line: usize, (a, b): (usize, usize)| (ls[line].start + a, ls[line].start + b);
    match target {
        Target::Kustomize(image) => {
            let i = yl::map_key(&ls, 0, ls.len(), "images", Some(0))
                .ok_or("no top-level `images:` in the kustomization")?;
            let (s, e) = yl::block_after(&ls, i);
            let item = yl::seq_items(&ls, s, e)
                .into_iter()
                .find(|&it| {
                    yl::item_key(&ls, it, "name").is_some_and(|(l, (a, b))| {
                        yl::unquote(ls[l].text.get(a..b).unwrap_or("")) == *image
                    })
                })
                .ok_or_else(|| format!("no `images[]` entry named {image}"))?;
            let get = |k: &'static str| {
                (
                    k,
                    yl::item_key(&ls, item, k).map(|(l, span)| span_in_file(l, span)),
                )
            };
            let first = ls[item.0].text;
            let rest = first.trim_start_matches(' ').get(1..).unwrap_or("");
            let indent = yl::indent(first) + 1 + (rest.len() - rest.trim_start_matches(' ').len());
            let insert_at = ls.get(item.1).map_or(text.len(), |l| l.start);
            Ok(Found {
                values: vec![get("newTag"), get("digest")],
                insert_at,
                indent,
            })
        }
        Target::Path(keys) => {
            let (mut s, mut e) = (0, ls.len());
            let mut at = Some(0);
            for (n, key) in keys.iter().enumerate() {
                let line = yl::map_key(&ls, s, e, key, at)
                    .ok_or_else(|| format!("no `{}` in the file", keys[..=n].join(".")))?;
                at = None;
                if n + 1 == keys.len() {
                    let (_, v) = yl::split_key(ls[line].text).ok_or("not a key")?;
                    let span = yl::value_span(ls[line].text, v);
                    if span.0 == span.1 {
                        return Err(format!("`{}` is not a scalar", keys.join(".")));
                    }
                    return Ok(Found {
                        values: vec![("value", Some(span_in_file(line, span)))],
                        insert_at: 0,
                        indent: 0,
                    });
                }
                (s, e) = yl::block_after(&ls, line);
            }
            Err("an empty `path`".into())
        }
    }
}

fn token(text: &str, span: Option<(usize, usize)>) -> Option<&str> {
    span.and_then(|(a, b)| text.get(a..b))
}

impl Reference {
    fn shown(&self) -> String {
        match &self.target {
            Target::Kustomize(i) => format!("{i} in {}", self.file),
            Target::Path(p) => format!("{} in {}", p.join("."), self.file),
        }
    }

    /// The release's tag (or value) in the file.
    fn tag(&self, text: &str) -> Result<Option<String>, String> {
        let f = locate(text, &self.target)?;
        Ok(token(text, f.values.first().and_then(|v| v.1)).map(yl::unquote))
    }
}

impl Codec for Reference {
    fn kind(&self) -> &'static registry::Kind {
        &GITOPS
    }

    fn flavor(&self) -> Flavor {
        Flavor {
            what: "deploy repository",
            cache_dir: "git",
            prefix: "gitops-",
            default_branch: "main",
            branch_over_remote: false,
        }
    }

    fn action(&self) -> &'static str {
        "set_image_tag"
    }

    fn subject(&self) -> String {
        self.shown()
    }

    fn candidates(&self) -> Vec<String> {
        vec![self.file.clone()]
    }

    fn locate(&self, exists: &dyn Fn(&str) -> bool) -> Vec<String> {
        self.candidates()
            .into_iter()
            .filter(|p| exists(p))
            .collect()
    }

    fn holds(&self, files: &[Option<String>], version: &str) -> Result<bool, String> {
        let text = files.first().and_then(Option::as_deref).ok_or("no file")?;
        Ok(self.tag(text)?.is_some_and(|t| same_version(&t, version)))
    }

    fn derive(&self, input: &Derive<'_>) -> Result<Derived, String> {
        let live = input
            .live
            .first()
            .cloned()
            .flatten()
            .ok_or_else(|| format!("no {} on the branch", self.file))?;
        let target = input
            .target
            .first()
            .cloned()
            .flatten()
            .ok_or_else(|| format!("no {} at the target commit", self.file))?;
        let lf = locate(&live, &self.target)?;
        let tf = locate(&target, &self.target)?;
        // Edits from the end of the file backwards, so earlier spans stay valid.
        let mut edits: Vec<(usize, usize, String)> = Vec::new();
        let mut shown = Vec::new();
        for ((key, lspan), (_, tspan)) in lf.values.iter().zip(&tf.values) {
            let (now, want) = (token(&live, *lspan), token(&target, *tspan));
            if now == want {
                continue;
            }
            shown.push(format!(
                "{key} {} → {}",
                now.map(yl::unquote).unwrap_or_else(|| "none".into()),
                want.map(yl::unquote).unwrap_or_else(|| "none".into())
            ));
            match (lspan, want) {
                (Some((a, b)), Some(w)) => edits.push((*a, *b, w.to_owned())),
                // The target had no such key: drop its line.
                (Some((a, _)), None) => {
                    let start = live[..*a].rfind('\n').map_or(0, |p| p + 1);
                    let end = live[*a..].find('\n').map_or(live.len(), |p| a + p + 1);
                    edits.push((start, end, String::new()));
                }
                (None, Some(w)) => {
                    let mut at = lf.insert_at;
                    let mut line = format!("{}{key}: {w}\n", " ".repeat(lf.indent));
                    if at == live.len() && !live.ends_with('\n') {
                        line.insert(0, '\n');
                    }
                    if at > live.len() {
                        at = live.len();
                    }
                    edits.push((at, at, line));
                }
                (None, None) => {}
            }
        }
        edits.sort_by_key(|e| std::cmp::Reverse(e.0));
        let mut out = live.clone();
        for (a, b, w) in edits {
            if a <= b && b <= out.len() && out.is_char_boundary(a) && out.is_char_boundary(b) {
                out.replace_range(a..b, &w);
            } else {
                return Err("the file changed shape while editing".into());
            }
        }
        let detail = if shown.is_empty() {
            format!("{} already at the target's value", self.shown())
        } else {
            format!("{}: {}", self.shown(), shown.join(", "))
        };
        Ok(Derived {
            files: vec![Some(out)],
            detail,
            notes: Vec::new(),
        })
    }

    fn notes(&self, _input: &Derive<'_>, _derived: &Derived) -> Vec<String> {
        vec![
            "image automation re-applies a newer tag unless told to hold: Argo CD Image Updater — pin the app with an `argocd-image-updater.argoproj.io/<alias>.allow-tags` annotation (e.g. `regexp:^v1\\.2\\.0$`) or pause its automation; Flux — `spec.suspend: true` on the ImageUpdateAutomation (and the ImagePolicy)".into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUST: &str = "images:\n  # the API\n  - name: registry.example.com/acme/myapp\n    newTag: v1.4.0 # bumped by CI\n  - name: redis\n    newTag: \"7.2\"\nresources:\n  - deploy.yaml\n";

    #[test]
    fn kustomize_tag_swapped_in_place() {
        let r = Reference {
            file: "k.yaml".into(),
            target: Target::Kustomize("registry.example.com/acme/myapp".into()),
        };
        let target = KUST.replace("v1.4.0 # bumped by CI", "v1.2.0");
        let d = r
            .derive(&Derive {
                paths: &["k.yaml".into()],
                live: &[Some(KUST.into())],
                target: &[Some(target)],
                target_version: "v1.2.0",
                current_version: None,
            })
            .map(|d| d.files)
            .unwrap_or_default();
        assert_eq!(d, vec![Some(KUST.replace("v1.4.0 #", "v1.2.0 #"))]);
    }

    #[test]
    fn kustomize_digest_follows_the_target() {
        let r = Reference {
            file: "k.yaml".into(),
            target: Target::Kustomize("app".into()),
        };
        let derive = |live: &str, target: &str| {
            r.derive(&Derive {
                paths: &["k.yaml".into()],
                live: &[Some(live.into())],
                target: &[Some(target.into())],
                target_version: "v1",
                current_version: None,
            })
            .map(|d| d.files)
            .unwrap_or_default()
        };
        let plain = "images:\n- name: app\n  newTag: v2\n- name: db\n  newTag: \"7\"\n";
        let pinned = "images:\n- name: app\n  newTag: v1\n  digest: sha256:aa\n- name: db\n  newTag: \"7\"\n";
        // The target pinned a digest: it is added to the live entry.
        assert_eq!(derive(plain, pinned), vec![Some(pinned.to_string())]);
        // The target had none: the live digest goes.
        let live = pinned.replace("v1", "v2");
        let target = plain.replace("v2", "v1");
        assert_eq!(derive(&live, &target), vec![Some(target.clone())]);
    }

    #[test]
    fn values_path() {
        let v = "image:\n  repository: acme/myapp\n  tag: \"1.4.0\"  # x\nother:\n  tag: keep\n";
        let r = Reference {
            file: "values.yaml".into(),
            target: Target::Path(vec!["image".into(), "tag".into()]),
        };
        assert_eq!(r.tag(v).ok().flatten().as_deref(), Some("1.4.0"));
        let other = Reference {
            file: "values.yaml".into(),
            target: Target::Path(vec!["other".into(), "tag".into()]),
        };
        assert_eq!(other.tag(v).ok().flatten().as_deref(), Some("keep"));
    }
}
