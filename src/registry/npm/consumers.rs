//! What npm consumers see after a rollback: which dist-tags move or stay (and why), which of
//! bagboy's own deprecation messages went stale, and the "who this reaches" note of the plan.

use std::collections::BTreeSet;

use semver::Version as Semver;

/// The message `deprecate_bad` writes when `deprecate_message` is not configured.
pub const DEFAULT_MESSAGE: &str = "broken; use {target}";

/// The deprecation message for `target`, from the configured template.
pub fn render(template: &str, target: &str) -> String {
    template.replace("{target}", target)
}

/// The version a deprecation `message` points at when bagboy wrote it from `template`: the
/// candidate `x` whose rendering is exactly the message. A human's wording matches none.
pub fn points_at<'a>(
    template: &str,
    message: &str,
    candidates: &'a BTreeSet<String>,
) -> Option<&'a str> {
    let (pre, post) = template.split_once("{target}")?;
    if !post.contains("{target}") {
        // One placeholder (the usual template): the version is what is between.
        let x = message.strip_prefix(pre)?.strip_suffix(post)?;
        return candidates.get(x).map(String::as_str);
    }
    candidates
        .iter()
        .map(String::as_str)
        .find(|x| render(template, x) == message)
}

/// One package's rollback, as the dist-tag decisions need it.
pub struct Rollback<'a> {
    pub name: &'a str,
    pub target: &'a Semver,
    /// The release rolled back from, when there is one and it is not the target.
    pub from: Option<&'a Semver>,
    /// Versions this plan deprecates (or re-words the deprecation of).
    pub deprecates: &'a BTreeSet<String>,
}

/// What happens to one dist-tag, and why when it is not plain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagFate {
    Unchanged,
    Move(Option<String>),
    Leave(String),
}

/// Where the tag stands in the config and the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagSource {
    /// Recorded on the target (or configured when the target's record names no tags).
    Recorded,
    /// In `dist_tags:`, but the target never carried it.
    Configured,
    /// Neither: listed because it points at a version this rollback is about.
    Other,
}

/// A tag recorded on the target goes back to it. A configured tag the target never carried
/// moves too when it points at a version this rollback leaves behind (above the target, up
/// to the release rolled back from, or deprecated by this plan): otherwise `pkg@tag` would
/// install a broken or deprecated version. Any other tag is named and left in place.
pub fn fate(r: &Rollback<'_>, tag: &str, live: Option<&str>, source: TagSource) -> TagFate {
    let t = r.target.to_string();
    if live == Some(t.as_str()) {
        return TagFate::Unchanged;
    }
    if source == TagSource::Recorded {
        return TagFate::Move(
            live.is_none()
                .then(|| "the tag is missing; it will be created".into()),
        );
    }
    let name = r.name;
    let Some(l) = live else {
        return TagFate::Leave(format!(
            "configured, but {name} has no `{tag}` tag and {t} never carried it: not created"
        ));
    };
    let lv = Semver::parse(l).ok();
    let deprecated_here = r.deprecates.contains(l);
    let from_here = lv.is_some() && lv.as_ref() == r.from;
    if source == TagSource::Other {
        let dep = if deprecated_here {
            ", deprecated by this rollback"
        } else {
            ", the release rolled back from"
        };
        return TagFate::Leave(format!(
            "not in `dist_tags`: `npm install {name}@{tag}` still gets {l}{dep}; add `{tag}` to `dist_tags` to move it"
        ));
    }
    let moved = |why: &str| {
        TagFate::Move(Some(format!(
            "configured; {t} never carried it, but {l} {why}"
        )))
    };
    if deprecated_here {
        return moved("is deprecated by this rollback");
    }
    if from_here {
        return moved("is the release rolled back from");
    }
    match (lv, r.from) {
        (Some(v), from) if v > *r.target && from.is_none_or(|f| v <= *f) => {
            moved("is above it and rolled back")
        }
        (Some(v), Some(f)) if v > *r.target => TagFate::Leave(format!(
            "configured, but {l} is newer than {f}, the release rolled back from (another channel): left in place"
        )),
        (Some(_), _) => TagFate::Leave(format!(
            "configured, but {l} is older than {t}: left in place"
        )),
        (None, _) => TagFate::Leave(format!(
            "configured, but {l} is not a semver version: left in place"
        )),
    }
}

/// What one package's consumers get once the plan ran (packages alike share one note).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    pub target: String,
    /// The release rolled back from, when it is above the target.
    pub from: Option<String>,
    /// Whether `from` is deprecated once the plan ran.
    pub from_deprecated: bool,
    /// Tags at the target once the plan ran.
    pub at_target: Vec<String>,
    /// Tags named in the plan and left in place.
    pub left: Vec<String>,
}

/// The "who this reaches" notes: one per group of packages whose consumers fare alike.
pub fn notes(reaches: &[(String, Reach)]) -> Vec<String> {
    crate::registry::group_alike(reaches)
        .into_iter()
        .map(|(r, names)| note(r, &names))
        .collect()
}

fn note(r: &Reach, names: &[&str]) -> String {
    let (head, p) = match names {
        [one] => (format!("who this reaches ({one}):"), one.to_string()),
        many => (
            format!("who this reaches (each of {}):", many.join(", ")),
            "<pkg>".to_string(),
        ),
    };
    let t = &r.target;
    let mut parts = Vec::new();
    if r.at_target.iter().any(|x| x == "latest") {
        parts.push(format!(
            "a fresh `npm install {p}` and ranges {t} satisfies (`^{t}`) get {t}, as npm takes `latest` when it is in range"
        ));
    } else {
        parts.push(format!(
            "a fresh `npm install {p}` follows `latest`, which this plan does not point at {t}"
        ));
    }
    if let Some(f) = &r.from {
        if r.from_deprecated {
            parts.push(format!(
                "a range {t} does not satisfy (`^{f}`) gets its newest non-deprecated version, else {f} with a deprecation warning"
            ));
        } else {
            parts.push(format!(
                "a range {t} does not satisfy (`^{f}`) still gets {f} or newer, without a warning (`deprecate_bad` is off)"
            ));
        }
        // npm reads no deprecation for a version its lockfile pins (npm 11, checked).
        parts.push(format!(
            "existing lockfiles keep {f}: `npm ci` and `npm install` install it without a warning (`npm outdated` lists it)"
        ));
    }
    if !r.at_target.is_empty() {
        let tags: Vec<String> = r.at_target.iter().map(|x| format!("`{p}@{x}`")).collect();
        parts.push(format!("{} get {t}", tags.join(", ")));
    }
    let left: Vec<String> = r.left.iter().map(|x| format!("`{p}@{x}`")).collect();
    parts.push(if left.is_empty() {
        "other tags are untouched".to_string()
    } else {
        format!("{} and other tags are untouched", left.join(", "))
    });
    if r.at_target.iter().any(|x| x == "latest") {
        parts.push(format!(
            "a global install goes back with `npm i -g {p}@latest`"
        ));
    }
    format!("{head} {}.", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Semver {
        Semver::parse(s).unwrap()
    }

    #[test]
    fn configured_tags_leave_the_versions_rolled_back_and_nothing_else() {
        let (target, from) = (v("1.0.0"), v("1.2.0"));
        let deprecates: BTreeSet<String> = ["1.2.0".to_string()].into();
        let r = Rollback {
            name: "myapp",
            target: &target,
            from: Some(&from),
            deprecates: &deprecates,
        };
        let c = TagSource::Configured;
        assert_eq!(fate(&r, "next", Some("1.0.0"), c), TagFate::Unchanged);
        assert!(
            matches!(fate(&r, "next", Some("1.2.0"), c), TagFate::Move(Some(d)) if d.contains("deprecated by this rollback"))
        );
        assert!(
            matches!(fate(&r, "next", Some("1.1.0"), c), TagFate::Move(Some(d)) if d.contains("above it"))
        );
        assert!(
            matches!(fate(&r, "next", Some("2.0.0-rc.1"), c), TagFate::Leave(d) if d.contains("another channel"))
        );
        assert!(
            matches!(fate(&r, "next", Some("0.9.0"), c), TagFate::Leave(d) if d.contains("older"))
        );
        assert!(matches!(
            fate(&r, "next", Some("junk"), c),
            TagFate::Leave(_)
        ));
        assert!(
            matches!(fate(&r, "next", None, c), TagFate::Leave(d) if d.contains("not created"))
        );
        assert!(matches!(
            fate(&r, "latest", None, TagSource::Recorded),
            TagFate::Move(Some(_))
        ));
        assert!(
            matches!(fate(&r, "beta", Some("1.2.0"), TagSource::Other), TagFate::Leave(d) if d.contains("add `beta` to `dist_tags`"))
        );
    }

    #[test]
    fn only_messages_rendered_from_the_template_point_somewhere() {
        let c: BTreeSet<String> = ["1.1.0".to_string(), "1.1.0-rc.1".to_string()].into();
        assert_eq!(
            points_at(DEFAULT_MESSAGE, "broken; use 1.1.0", &c),
            Some("1.1.0")
        );
        assert_eq!(
            points_at(DEFAULT_MESSAGE, "broken; use 1.1.0, really", &c),
            None
        );
        assert_eq!(
            points_at(DEFAULT_MESSAGE, "security issue, see #12", &c),
            None
        );
        assert_eq!(points_at("do not use", "do not use", &c), None);
        assert_eq!(
            points_at(
                "{target} replaces this ({target})",
                "1.1.0-rc.1 replaces this (1.1.0-rc.1)",
                &c
            ),
            Some("1.1.0-rc.1")
        );
    }

    #[test]
    fn packages_alike_share_one_note() {
        let r = Reach {
            target: "1.0.0".into(),
            from: Some("1.1.0".into()),
            from_deprecated: true,
            at_target: vec!["latest".into(), "next".into()],
            left: vec!["beta".into()],
        };
        let n = notes(&[("a".into(), r.clone()), ("b".into(), r.clone())]);
        assert_eq!(n.len(), 1);
        assert!(
            n[0].starts_with("who this reaches (each of a, b):"),
            "{}",
            n[0]
        );
        assert!(
            n[0].contains("`<pkg>@beta` and other tags are untouched"),
            "{}",
            n[0]
        );
        let one = notes(&[("myapp".into(), r)]);
        assert!(one[0].contains("(`^1.1.0`) gets its newest non-deprecated version, else 1.1.0 with a deprecation warning"), "{}", one[0]);
        assert!(
            one[0].contains("`myapp@latest`, `myapp@next` get 1.0.0"),
            "{}",
            one[0]
        );
    }
}
