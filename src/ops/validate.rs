//! `rollback.validation`, run while the plan is made and before anything changes: what it
//! finds goes into the plan (`validation`, refusals, warnings), so a dry-run shows it and a
//! rollback that would break is refused with nothing changed.

use super::Workspace;
use crate::coordinator::{Request, RollbackCoordinator};
use crate::history::History;
use crate::plan::{Plan, Validation, ValidationCheck};
use crate::registry::VerifyInput;

fn check(check: &str, registry: Option<&str>, result: &str, detail: String) -> ValidationCheck {
    ValidationCheck {
        check: check.into(),
        registry: registry.map(str::to_string),
        result: result.into(),
        detail,
    }
}

pub(crate) fn validate(
    ws: &Workspace,
    coordinator: &RollbackCoordinator<'_>,
    plan: &mut Plan,
    history: &History,
    target_idx: usize,
    req: &Request,
    dry_run: bool,
) {
    let cfg = &ws.config.deployment.validation;
    if !cfg.any() {
        return;
    }
    let mut v = Validation::default();
    if req.skip_validation {
        plan.warnings.push(
            "validation skipped (--skip-validation): the target's manifests, blobs, downloads, smoke test and migrations were not checked".into(),
        );
        for name in [
            cfg.verify_dependencies.then_some("dependencies"),
            cfg.smoke.as_ref().map(|_| "smoke_test"),
            cfg.backwards.as_ref().map(|_| "migrations"),
        ]
        .into_iter()
        .flatten()
        {
            v.checks
                .push(check(name, None, "skipped", "--skip-validation".into()));
        }
        plan.validation = Some(v);
        return;
    }
    let Ok(rt) = super::runtime() else {
        return;
    };
    let target = &history.deployments[target_idx];
    let current = history.current().map(|c| &history.deployments[c]);
    let mut refusals = Vec::new();

    // 1. The registries: every manifest, blob and download; image config differences.
    if cfg.verify_dependencies || cfg.backwards.is_some() {
        let jobs: Vec<_> = plan
            .registries
            .iter()
            .filter(|rp| rp.format != crate::registry::traffic::TRAFFIC.name)
            .filter_map(|rp| Some((rp, coordinator.backend_for(rp).ok()?)))
            .collect();
        let results = rt.block_on(futures_util::future::join_all(jobs.iter().map(
            |(rp, b)| {
                b.verify(VerifyInput {
                    plan: rp,
                    target: target.package(&rp.registry),
                    current: current.and_then(|c| c.package(&rp.registry)),
                    dependencies: cfg.verify_dependencies,
                    image_config: cfg.backwards.is_some(),
                })
            },
        )));
        for ((rp, _), r) in jobs.iter().zip(results) {
            match r {
                Ok(got) => {
                    v.requests += got.requests;
                    if got.checked && cfg.verify_dependencies {
                        if got.missing.is_empty() {
                            v.checks.push(check(
                                "dependencies",
                                Some(&rp.registry),
                                "passed",
                                got.summary.clone(),
                            ));
                        } else {
                            v.checks.push(check(
                                "dependencies",
                                Some(&rp.registry),
                                "failed",
                                format!("{} missing; {}", got.missing.len(), got.summary),
                            ));
                            refusals.extend(got.missing.iter().cloned());
                        }
                    }
                    if cfg.backwards.is_some() && !got.warnings.is_empty() {
                        v.checks.push(check(
                            "image_config",
                            Some(&rp.registry),
                            "warning",
                            format!("{} difference(s)", got.warnings.len()),
                        ));
                    }
                    plan.warnings.extend(got.warnings);
                }
                Err(e) => {
                    v.checks.push(check(
                        "dependencies",
                        Some(&rp.registry),
                        "failed",
                        format!("could not be checked: {e}"),
                    ));
                    refusals.push(format!(
                        "{}: the target could not be verified: {e}",
                        rp.registry
                    ));
                }
            }
        }
    }

    // 2. Migrations added since the target have a down migration.
    if let Some(m) = &cfg.backwards {
        let repo = match &m.repo {
            Some(r) => crate::registry::Env::of(&ws.config).base_dir.join(r),
            None => crate::registry::Env::of(&ws.config).base_dir,
        };
        let repo = if repo.as_os_str().is_empty() {
            std::path::PathBuf::from(".")
        } else {
            repo
        };
        match (
            target.commit.as_deref(),
            current.and_then(|c| c.commit.as_deref()),
        ) {
            (Some(from), Some(to)) if from != to => {
                match crate::validate::migrations::missing_downs(&repo, m, from, to) {
                    Ok((added, missing)) if missing.is_empty() => v.checks.push(check(
                        "migrations",
                        None,
                        "passed",
                        format!(
                            "{added} migration(s) added since {}; each has a down migration",
                            target.version
                        ),
                    )),
                    Ok((added, missing)) => {
                        v.checks.push(check(
                            "migrations",
                            None,
                            "failed",
                            format!(
                                "{} of {added} migration(s) added since {} have no down migration",
                                missing.len(),
                                target.version
                            ),
                        ));
                        let cv = current.map(|c| c.version.to_string()).unwrap_or_default();
                        for (f, down) in missing {
                            let msg = format!(
                                "migration {f} was added after {} (by {cv}) and has no down migration ({down}): the rolled-back code would meet a schema it does not know; --force rolls back anyway",
                                target.version
                            );
                            if req.force {
                                plan.warnings.push(format!("forced: {msg}"));
                            } else {
                                plan.refusals.push(msg);
                            }
                        }
                    }
                    Err(e) => {
                        v.checks
                            .push(check("migrations", None, "not_run", e.clone()));
                        plan.warnings.push(format!("migrations not checked: {e}"));
                    }
                }
            }
            (Some(_), Some(_)) => v.checks.push(check(
                "migrations",
                None,
                "passed",
                "the target and the current release have the same commit".into(),
            )),
            _ => {
                let why = "the history records no commit for the target or the current release (`record --commit`)".to_string();
                v.checks
                    .push(check("migrations", None, "not_run", why.clone()));
                plan.warnings.push(format!("migrations not checked: {why}"));
            }
        }
    }

    // 3. The smoke test: the target image, started.
    if let Some(s) = &cfg.smoke {
        let image = plan
            .registries
            .iter()
            .filter(|rp| rp.format == "docker")
            .find(|rp| s.registry.as_ref().is_none_or(|r| *r == rp.registry))
            .and_then(|rp| {
                let digest = target.package(&rp.registry)?.digest.clone()?;
                Some(format!("{}@{digest}", rp.registry))
            });
        match (image, dry_run) {
            (None, _) => {
                let why = "no docker registry of the plan records a digest for the target".to_string();
                v.checks.push(check("smoke_test", None, "failed", why.clone()));
                refusals.push(format!("smoke test: {why}"));
            }
            (Some(image), true) => v.checks.push(check(
                "smoke_test",
                None,
                "not_run",
                format!("a dry-run starts no container; the rollback runs {image} before changing anything"),
            )),
            (Some(image), false) => {
                let name = format!("bagboy-smoke-{}", super::operation_id());
                match rt.block_on(crate::validate::smoke::run(&image, s, &name)) {
                    Ok(what) => v.checks.push(check(
                        "smoke_test",
                        None,
                        "passed",
                        format!("{image}: {what}"),
                    )),
                    Err(why) => {
                        v.checks.push(check(
                            "smoke_test",
                            None,
                            "failed",
                            format!("{image}: {why}"),
                        ));
                        refusals.push(format!(
                            "smoke test of {image} failed: {why}; nothing was changed"
                        ));
                    }
                }
            }
        }
    }
    // What validation refuses cannot be forced: only --skip-validation goes past it.
    if !refusals.is_empty() {
        plan.refusals.extend(refusals);
    }
    plan.validation = Some(v);
}
