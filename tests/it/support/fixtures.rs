//! Shared fixtures: an OCI layout and a Homebrew tap with three recorded releases of `myapp`.

use bagboy::registry::oci::OciLayout;

use super::cli::{text, Project};
use super::tap::{goreleaser_formula, TestTap};

/// v1.0.0, v1.1.0 and v1.2.0 on an OCI layout (`latest` on each in turn, deterministic
/// digests) and a tap, each recorded; v1.2.0 is current.
pub fn layout_and_tap() -> (Project, TestTap) {
    let p = Project::new();
    let tap = TestTap::new();
    let layout = OciLayout::init(p.path().join("oci")).unwrap();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: oci-layout\n    registry: oci\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{}\"\n    branch: main\n",
            tap.url()
        ),
    );
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        let m = layout
            .add_image(
                &format!("v{v}"),
                format!("{{\"version\":\"{v}\"}}").as_bytes(),
                format!("layer {v}").as_bytes(),
            )
            .unwrap();
        layout.set_tag("latest", &m.descriptor()).unwrap();
        tap.commit_file(
            "Formula/myapp.rb",
            &goreleaser_formula("myapp", v),
            &format!("myapp {v}"),
        );
        tap.push();
        let out = p
            .bagboy()
            .args(["record", "--version", &format!("v{v}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
    }
    (p, tap)
}
