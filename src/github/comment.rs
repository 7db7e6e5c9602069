//! The sticky pull-request comment: one comment per project, found again by a hidden marker on
//! its first line and updated in place, so a PR that is pushed to ten times shows one plan.
//! Only a comment that bagboy's own identity wrote is ever updated; anyone else's, marker or
//! not, is left alone.

use octocrab::models::issues::Comment;

use super::{Api, GithubError, Purpose};

/// GitHub refuses comment bodies over 65,536 characters.
pub const MAX_BODY: usize = 65_000;
/// Comments read before giving up the search (100 a page).
const MAX_PAGES: u32 = 50;

/// The hidden first line that marks the comment of project `name`.
pub fn marker(name: &str) -> String {
    let key: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    format!("<!-- bagboy:plan:{key} -->")
}

/// What was done on the pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    Created { id: u64, url: String },
    Updated { id: u64, url: String },
}

impl Posted {
    pub fn url(&self) -> &str {
        match self {
            Posted::Created { url, .. } | Posted::Updated { url, .. } => url,
        }
    }
}

/// Whether `c` is bagboy's comment for this marker: the marker opens the body and the author is
/// the token's identity (or, when the token cannot say who it is, as GitHub Actions' token
/// cannot, a bot account: the one a workflow's token posts as).
fn is_ours(c: &Comment, marker: &str, me: Option<&str>) -> bool {
    let opens = c
        .body
        .as_deref()
        .is_some_and(|b| b.trim_start().starts_with(marker));
    let author = match me {
        Some(login) => c.user.login == login,
        None => c.user.r#type == "Bot",
    };
    opens && author
}

/// Post `markdown` on pull request `number`: update bagboy's comment there, or create it.
pub async fn post(
    api: &Api,
    number: u64,
    project: &str,
    markdown: &str,
) -> Result<Posted, GithubError> {
    if !api.has_token() {
        return Err(GithubError::Setup(
            "--comment-pr needs GITHUB_TOKEN (with `pull-requests: write`)".into(),
        ));
    }
    let marker = marker(project);
    let body = format!("{marker}\n{markdown}");
    let octo = api.octocrab();
    // Who am I? A personal or app-user token can say; the Actions token answers 403.
    let me = match api
        .call(
            "reading the token's user",
            Purpose::Comment,
            octo.current().user(),
        )
        .await
    {
        Ok(u) => Some(u.login),
        Err(e) if e.status() == Some(401) => return Err(e),
        Err(_) => None,
    };
    let issues = octo.issues(&api.owner, &api.repo);
    let mut found = None;
    'pages: for page in 1..=MAX_PAGES {
        let got = api
            .call(
                &format!("listing the comments of pull request #{number}"),
                Purpose::Comment,
                issues.list_comments(number).per_page(100).page(page).send(),
            )
            .await?;
        let n = got.items.len();
        for c in got.items {
            if is_ours(&c, &marker, me.as_deref()) {
                found = Some(c.id);
                break 'pages;
            }
        }
        if n < 100 {
            break;
        }
    }
    match found {
        Some(id) => {
            let c = api
                .call(
                    &format!("updating bagboy's comment on pull request #{number}"),
                    Purpose::Comment,
                    issues.update_comment(id, &body),
                )
                .await?;
            Ok(Posted::Updated {
                id: c.id.0,
                url: c.html_url.to_string(),
            })
        }
        None => {
            let c = api
                .call(
                    &format!("commenting on pull request #{number}"),
                    Purpose::Comment,
                    issues.create_comment(number, &body),
                )
                .await?;
            Ok(Posted::Created {
                id: c.id.0,
                url: c.html_url.to_string(),
            })
        }
    }
}

/// Append `markdown` to `$GITHUB_STEP_SUMMARY`, when set.
/// Post (or update) bagboy's one comment on pull request `number` of `repo`, on the
/// process's runtime: what `rollback --dry-run --comment-pr` calls.
pub fn publish(
    repo: &str,
    number: u64,
    project: &str,
    markdown: &str,
) -> Result<Posted, super::GithubError> {
    let rt = crate::ops::runtime()
        .map_err(|e| super::GithubError::Setup(format!("starting the async runtime: {e}")))?;
    rt.block_on(async {
        let api = Api::new(repo)?;
        post(&api, number, project, markdown).await
    })
}

pub fn append_step_summary(markdown: &str) -> std::io::Result<bool> {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) else {
        return Ok(false);
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    f.write_all(markdown.as_bytes())?;
    if !markdown.ends_with('\n') {
        f.write_all(b"\n")?;
    }
    f.write_all(b"\n")?;
    Ok(true)
}
