//! Secrets never reach logs or errors of the OCI client. Alone in its test binary: tracing's
//! per-callsite interest is process-wide, and a callsite first hit by a concurrent test on
//! another thread (with no subscriber there) could hide this test's captured events.

use crate::support;

use bagboy::registry::oci::{ClientOptions, Credential, ImageRepo, OciClient};
use support::{block_on, Auth, TestRegistry, TokenUser};

fn client(reg: &TestRegistry, credential: Option<Credential>) -> OciClient {
    let options = ClientOptions {
        insecure: true,
        ..ClientOptions::default()
    };
    OciClient::new(&reg.host(), options, credential).expect("client")
}

fn repo(reg: &TestRegistry, path: &str) -> ImageRepo {
    ImageRepo::parse(&reg.repo(path)).expect("repo parses")
}

#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn secrets_never_reach_logs_or_errors() {
    let reg = TestRegistry::start(Auth::Token(TokenUser::defaults()));
    reg.push_image("acme/app", "v1");
    let repo = repo(&reg, "acme/app");
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let errors = tracing::subscriber::with_default(subscriber, || {
        let alice = client(&reg, Some(Credential::basic("alice", "alice-password")));
        let manifest = block_on(alice.get_manifest(&repo, "v1")).unwrap();
        block_on(alice.put_manifest(&repo, "latest", &manifest)).unwrap();
        let wrong = client(&reg, Some(Credential::basic("alice", "hunter2-wrong")));
        let err = block_on(wrong.get_manifest(&repo, "v1")).unwrap_err();
        let refresh = client(
            &reg,
            Some(Credential::identity_token("not-a-valid-refresh")),
        );
        let err2 = block_on(refresh.get_manifest(&repo, "v1")).unwrap_err();
        format!("{err}\n{err:?}\n{err2}\n{err2:?}\n{wrong:?}")
    });
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("obtained registry token"),
        "logging is captured: {logs}"
    );
    for secret in [
        "alice-password",
        "hunter2-wrong",
        "not-a-valid-refresh",
        "eyJ",
        "Basic YWxp",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into logs");
        assert!(
            !errors.contains(secret),
            "{secret} leaked into errors: {errors}"
        );
    }
}
