//! `format: aur`: an AUR package's git repository (`PKGBUILD` + `.SRCINFO`). A rollback restores
//! the target's PKGBUILD with `epoch` raised above the rolled-back release's, so pacman and AUR
//! helpers see an upgrade, and the target's `.SRCINFO` with the same `epoch` line where
//! `makepkg --printsrcinfo` prints it.

use std::sync::Arc;

use crate::config::RegistryConfig;
use crate::history::{Problem, Problems};
use crate::registry::gitrepo::backend::{self, compare_versions, Codec, Common, Derive, Derived};
use crate::registry::gitrepo::Flavor;
use crate::registry::{self as registry, Env, Registry, RegistryError};

pub static AUR: registry::Kind = registry::Kind {
    name: "aur",
    aliases: &[],
    registry_is_path: false,
    recorded: true,
    check: check_options,
    open: open_package,
};

pub const PKGBUILD: &str = "PKGBUILD";
pub const SRCINFO: &str = ".SRCINFO";

fn parse(cfg: &RegistryConfig) -> Result<(Common, Vec<Problem>), Vec<Problem>> {
    let pkgbase = cfg.registry.trim();
    let default =
        backend::valid_name(pkgbase).then(|| format!("ssh://aur@aur.archlinux.org/{pkgbase}.git"));
    Common::parse(cfg, &[], default, |c, p: &mut Problems| {
        if !backend::valid_name(pkgbase) {
            p.push(
                cfg.loc,
                format!("`registry` {pkgbase:?} is not an AUR package name (the pkgbase)"),
            );
        }
        let _ = c;
    })
}

fn check_options(cfg: &RegistryConfig) -> Result<Vec<Problem>, Vec<Problem>> {
    parse(cfg).map(|(_, w)| w)
}

fn open_package(cfg: &RegistryConfig, env: &Env) -> Result<Arc<dyn Registry>, RegistryError> {
    let (c, _) = parse(cfg).map_err(|ps| registry::options_error(cfg, ps))?;
    backend::open(
        cfg,
        env,
        c.spec,
        Arc::new(Package {
            pkgbase: cfg.registry.trim().to_owned(),
        }),
    )
}

/// One AUR package base.
pub struct Package {
    pub pkgbase: String,
}

/// The value of a top-level `name=` assignment in a PKGBUILD (quotes removed).
pub fn pkgbuild_var(text: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    text.lines().find_map(|l| {
        let v = l.strip_prefix(&prefix)?;
        let v = v.split(" #").next().unwrap_or(v).trim();
        Some(v.trim_matches(|c| c == '"' || c == '\'').to_owned())
    })
}

/// A field of the `pkgbase` section of a `.SRCINFO` (the lines before the first blank one).
pub fn srcinfo_field(text: &str, name: &str) -> Option<String> {
    let prefix = format!("\t{name} = ");
    text.lines()
        .take_while(|l| !l.trim().is_empty())
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
}

fn epoch_of(pkgbuild: &str) -> Result<u64, String> {
    match pkgbuild_var(pkgbuild, "epoch") {
        None => Ok(0),
        Some(e) => e
            .parse()
            .map_err(|_| format!("`epoch={e}` is not a number bagboy can raise")),
    }
}

fn without_epoch(pkgbuild: &str) -> String {
    pkgbuild
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("epoch="))
        .collect()
}

/// The PKGBUILD with `epoch=n`: the existing line changed, else one added after `pkgrel=`.
pub fn with_epoch(pkgbuild: &str, n: u64) -> Result<String, String> {
    let line = format!("epoch={n}");
    let mut out = String::with_capacity(pkgbuild.len() + 10);
    let mut done = false;
    for l in pkgbuild.split_inclusive('\n') {
        if !done && l.starts_with("epoch=") {
            out.push_str(&line);
            out.push_str(if l.ends_with('\n') { "\n" } else { "" });
            done = true;
            continue;
        }
        out.push_str(l);
        if !done && l.starts_with("pkgrel=") && !pkgbuild.lines().any(|x| x.starts_with("epoch=")) {
            if !l.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&line);
            out.push('\n');
            done = true;
        }
    }
    done.then_some(out)
        .ok_or_else(|| "the PKGBUILD has no top-level `pkgrel=` line".to_string())
}

/// The `.SRCINFO` with `epoch = n` in the pkgbase section, where makepkg prints it (after
/// `pkgrel`).
pub fn srcinfo_with_epoch(srcinfo: &str, n: u64) -> Result<String, String> {
    let line = format!("\tepoch = {n}\n");
    let mut out = String::with_capacity(srcinfo.len() + 12);
    let mut in_base = true;
    let mut done = false;
    for l in srcinfo.split_inclusive('\n') {
        if l.trim().is_empty() {
            in_base = false;
        }
        if in_base && !done && l.starts_with("\tepoch = ") {
            out.push_str(&line);
            done = true;
            continue;
        }
        out.push_str(l);
        if in_base
            && !done
            && l.starts_with("\tpkgrel = ")
            && srcinfo_field(srcinfo, "epoch").is_none()
        {
            if !l.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&line);
            done = true;
        }
    }
    done.then_some(out)
        .ok_or_else(|| "the .SRCINFO has no `pkgrel` in its pkgbase section".to_string())
}

/// A release version as a pkgver (pkgver has no `-`).
fn as_pkgver(version: &str) -> String {
    let v = version.trim();
    v.strip_prefix(['v', 'V']).unwrap_or(v).to_owned()
}

impl Package {
    fn pkgver(files: &[Option<String>]) -> Option<String> {
        let srcinfo = files.get(1).and_then(Option::as_deref);
        let pkgbuild = files.first().and_then(Option::as_deref);
        srcinfo
            .and_then(|s| srcinfo_field(s, "pkgver"))
            .or_else(|| pkgbuild.and_then(|p| pkgbuild_var(p, "pkgver")))
    }
}

impl Codec for Package {
    fn kind(&self) -> &'static registry::Kind {
        &AUR
    }

    fn flavor(&self) -> Flavor {
        Flavor {
            what: "AUR package",
            cache_dir: "git",
            prefix: "aur-",
            default_branch: "master",
            branch_over_remote: true,
        }
    }

    fn action(&self) -> &'static str {
        "restore_pkgbuild"
    }

    fn subject(&self) -> String {
        self.pkgbase.clone()
    }

    fn candidates(&self) -> Vec<String> {
        vec![PKGBUILD.into(), SRCINFO.into()]
    }

    fn locate(&self, exists: &dyn Fn(&str) -> bool) -> Vec<String> {
        if exists(PKGBUILD) {
            self.candidates()
        } else {
            Vec::new()
        }
    }

    fn holds(&self, files: &[Option<String>], version: &str) -> Result<bool, String> {
        let v = Package::pkgver(files).ok_or("no pkgver")?;
        let want = as_pkgver(version);
        Ok(v == want || v == want.replace('-', "_") || v == want.replace('-', ""))
    }

    fn derive(&self, input: &Derive<'_>) -> Result<Derived, String> {
        let get = |files: &[Option<String>], i: usize| files.get(i).cloned().flatten();
        let target_pb = get(input.target, 0).ok_or("no PKGBUILD at the target commit")?;
        let target_si = get(input.target, 1).ok_or("no .SRCINFO at the target commit")?;
        let live_pb = get(input.live, 0);
        let te = epoch_of(&target_pb)?;
        let le = match &live_pb {
            Some(p) => epoch_of(p)?,
            None => 0,
        };
        let tv = Package::pkgver(input.target).unwrap_or_default();
        let lv = Package::pkgver(input.live).unwrap_or_default();
        // Already rolled back: the live files are the target's with a higher epoch.
        if live_pb
            .as_deref()
            .is_some_and(|l| without_epoch(l) == without_epoch(&target_pb) && le >= te)
        {
            return Ok(Derived {
                files: input.live.to_vec(),
                detail: format!("PKGBUILD of {} at pkgver {tv}, epoch {le}", self.pkgbase),
                notes: Vec::new(),
            });
        }
        // Moving forward needs no epoch: pacman already sees an upgrade.
        let forward = live_pb.is_none()
            || te > le
            || (te == le && compare_versions(&tv, &lv) == std::cmp::Ordering::Greater);
        if forward {
            return Ok(Derived {
                files: vec![Some(target_pb), Some(target_si)],
                detail: format!("PKGBUILD of {} back to pkgver {tv}", self.pkgbase),
                notes: Vec::new(),
            });
        }
        let n = le.max(te) + 1;
        Ok(Derived {
            files: vec![
                Some(with_epoch(&target_pb, n)?),
                Some(srcinfo_with_epoch(&target_si, n)?),
            ],
            detail: format!(
                "PKGBUILD of {} back to pkgver {tv}, epoch {le} → {n} so pacman and AUR helpers offer {n}:{tv} to users of {lv}; .SRCINFO with the same epoch",
                self.pkgbase
            ),
            notes: vec![format!(
                "epoch raised to {n}: every later release of {} must keep `epoch={n}` (or higher) in its PKGBUILD, or pacman sorts it below this rollback",
                self.pkgbase
            )],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PB: &str = "pkgname=myapp-bin\npkgver=1.2.0\npkgrel=1\npkgdesc=\"x\"\n";
    const SI: &str = "pkgbase = myapp-bin\n\tpkgdesc = x\n\tpkgver = 1.2.0\n\tpkgrel = 1\n\tarch = x86_64\n\npkgname = myapp-bin\n";

    #[test]
    fn epoch_added_and_raised() {
        let pb = with_epoch(PB, 1).unwrap_or_default();
        assert!(pb.contains("pkgrel=1\nepoch=1\npkgdesc"), "{pb}");
        assert_eq!(
            with_epoch(&pb, 2)
                .unwrap_or_default()
                .matches("epoch=")
                .count(),
            1
        );
        let si = srcinfo_with_epoch(SI, 3).unwrap_or_default();
        assert!(si.contains("\tpkgrel = 1\n\tepoch = 3\n\tarch"), "{si}");
        assert!(with_epoch("pkgver=1\n", 1).is_err());
        assert_eq!(
            pkgbuild_var("epoch='2' # x\n", "epoch").as_deref(),
            Some("2")
        );
    }
}
