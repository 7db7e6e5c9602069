#!/usr/bin/env python3
"""Measure what one rollback costs the machine, this build against a baseline build, in the
same run, on a real local docker-registry:

  * a 250-tag rollback: bytes written to and fsyncs of the journal (strace);
  * a 50-registry rollback: TCP connections opened, HTTP requests served (the registry's
    access log) and how often the TLS root store was loaded (reads of the CA bundle: one per
    HTTP client built).

Usage: scripts/bench-ops.py [BASELINE_REV]   (default: the commit before the ops redesign)
Prints a markdown table (docs/benchmarks.md, "Operations").
"""
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = sys.argv[1] if len(sys.argv) > 1 else "8d0738c"
TAGS = 250
REGISTRIES = 50


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def build(rev):
    if rev is None:
        sh("cargo", "build", "--quiet", "--release", "--bin", "bagboy", cwd=ROOT)
        return os.path.join(ROOT, "target/release/bagboy")
    wt = os.path.join(ROOT, "target/bench-baseline-src")
    if not os.path.isdir(wt):
        sh("git", "worktree", "add", "--detach", wt, rev, cwd=ROOT)
    else:
        sh("git", "checkout", "--quiet", "--detach", rev, cwd=wt)
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target/bench-baseline"))
    sh("cargo", "build", "--quiet", "--release", "--bin", "bagboy", cwd=wt, env=env)
    return os.path.join(ROOT, "target/bench-baseline/release/bagboy")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Registry:
    def __init__(self, work):
        self.port = free_port()
        self.log = os.path.join(work, "access.log")
        cfg = os.path.join(work, "registry.yml")
        with open(cfg, "w") as f:
            f.write(
                f"version: 0.1\nlog: {{level: info, accesslog: {{disabled: false}}}}\n"
                f"storage: {{filesystem: {{rootdirectory: {work}/storage}}}}\n"
                f"http: {{addr: 127.0.0.1:{self.port}}}\n"
            )
        self.proc = subprocess.Popen(
            ["/usr/bin/docker-registry", "serve", cfg],
            stdout=open(self.log, "w"),
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/")
                return
            except Exception:
                time.sleep(0.1)
        raise SystemExit("docker-registry did not start")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method, path, body=None, headers=None):
        req = urllib.request.Request(self.url(path), data=body, method=method, headers=headers or {})
        return urllib.request.urlopen(req)

    def blob(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        loc = self.request("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
        sep = "&" if "?" in loc else "?"
        path = loc.replace(f"http://127.0.0.1:{self.port}", "")
        self.request("PUT", f"{path}{sep}digest={digest}", data,
                     {"Content-Type": "application/octet-stream"})
        return digest, len(data)

    def image(self, repo, version):
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "config": {"Labels": {"v": version}},
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        layer = f"app {version}\n".encode()
        cd, cs = self.blob(repo, config)
        ld, ls = self.blob(repo, layer)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}],
        }).encode()
        return manifest

    def put(self, repo, tag, manifest):
        self.request("PUT", f"/v2/{repo}/manifests/{tag}", manifest,
                     {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})

    def requests_logged(self):
        with open(self.log) as f:
            return sum(1 for line in f if '"' in line and "HTTP/1.1" in line)


def project(work, name, reg, repos):
    d = os.path.join(work, name)
    os.makedirs(os.path.join(d, "docker"), exist_ok=True)
    with open(os.path.join(d, "bagboy.yaml"), "w") as f:
        f.write("name: app\nregistries:\n")
        for r in repos:
            f.write(f'  - {{format: docker, registry: "127.0.0.1:{reg.port}/{r}", insecure: true}}\n')
    return d


def bagboy(binary, cwd, *args, strace=None):
    env = dict(os.environ, DOCKER_CONFIG=os.path.join(cwd, "docker"), NO_COLOR="1",
               BAGBOY_CACHE_DIR=os.path.join(cwd, "cache"))
    env.pop("BAGBOY_LOG", None)
    cmd = [binary, "-q", *args]
    if strace:
        cmd = ["strace", "-f", "-qq", "-o", strace,
               "-e", "trace=openat,write,pwrite64,fsync,fdatasync,close,connect", *cmd]
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def parse_strace(path, port):
    """Journal bytes and syncs, connections to the registry, TLS root-store reads."""
    fds = {}
    jbytes = jsyncs = conns = roots = 0
    opened = re.compile(r'^(\d+)\s+openat\(.*?"([^"]+)".*\)\s+=\s+(\d+)')
    call = re.compile(r'^(\d+)\s+(write|pwrite64|fsync|fdatasync|close)\((\d+)[,)].*=\s+(-?\d+)')
    conn = re.compile(r'connect\(.*sin_port=htons\((\d+)\).*127\.0\.0\.1')
    with open(path) as f:
        for line in f:
            m = opened.match(line)
            if m:
                fds[m.group(3)] = m.group(2)
                # One read of the CA bundle per root store loaded (per HTTP client built).
                if m.group(2).endswith("ca-certificates.crt"):
                    roots += 1
                continue
            m = call.match(line)
            if m:
                _, op, fd, ret = m.groups()
                # One process (threads share its fds): docker backends spawn no children.
                name = fds.get(fd)
                if name and "/journal" in name:
                    if op in ("write", "pwrite64") and int(ret) > 0:
                        jbytes += int(ret)
                    elif op in ("fsync", "fdatasync"):
                        jsyncs += 1
                if op == "close":
                    fds.pop(fd, None)
                continue
            m = conn.search(line)
            if m and int(m.group(1)) == port:
                conns += 1
    return jbytes, jsyncs, conns, roots


def main():
    for tool in ("strace", "/usr/bin/docker-registry"):
        if not shutil.which(tool):
            sh("apt-get", "install", "-y", "-qq", "strace", "docker-registry")
    builds = [("this build", build(None)), (f"baseline {BASELINE}", build(BASELINE))]
    work = tempfile.mkdtemp()
    reg = Registry(work)
    rows = []
    try:
        # 250 tags on one repository.
        v1, v2 = reg.image("bench/tags", "v1.0.0"), reg.image("bench/tags", "v1.1.0")
        aliases = [f"t{i}" for i in range(TAGS - 1)] + ["latest"]
        # 50 repositories, three tags each.
        repos = [f"bench/app{i}" for i in range(REGISTRIES)]
        images = {r: (reg.image(r, "v1.0.0"), reg.image(r, "v1.1.0")) for r in repos}
        for label, binary in builds:
            slug = label.split()[0]
            p = project(work, f"tags-{slug}", reg, ["bench/tags"])
            reg.put("bench/tags", "v1.0.0", v1)
            for t in aliases:
                reg.put("bench/tags", t, v1)
            bagboy(binary, p, "record", "--version", "v1.0.0")
            reg.put("bench/tags", "v1.1.0", v2)
            for t in aliases:
                reg.put("bench/tags", t, v2)
            bagboy(binary, p, "record", "--version", "v1.1.0")
            trace = os.path.join(work, f"tags-{slug}.strace")
            t0 = time.time()
            bagboy(binary, p, "rollback", "--version", "v1.0.0", "--yes", strace=trace)
            tags_secs = time.time() - t0
            jbytes, jsyncs, _, _ = parse_strace(trace, reg.port)

            p = project(work, f"regs-{slug}", reg, repos)
            for i, v in enumerate(("v1.0.0", "v1.1.0")):
                for r in repos:
                    for t in (v, "latest", "stable"):
                        reg.put(r, t, images[r][i])
                bagboy(binary, p, "record", "--version", v)
            before = reg.requests_logged()
            trace = os.path.join(work, f"regs-{slug}.strace")
            t0 = time.time()
            bagboy(binary, p, "rollback", "--version", "v1.0.0", "--yes", strace=trace)
            regs_secs = time.time() - t0
            served = reg.requests_logged() - before
            _, _, conns, roots = parse_strace(trace, reg.port)
            rows.append((label, jbytes, jsyncs, tags_secs, served, conns, roots, regs_secs))
    finally:
        reg.proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(f"| build | {TAGS}-tag rollback: journal bytes | journal fsyncs | wall (under strace) "
          f"| {REGISTRIES}-registry rollback: requests | TCP connections | TLS root-store loads | wall (under strace) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, jb, js, ts, served, conns, roots, rs in rows:
        print(f"| {label} | {jb:,} | {js} | {ts:.2f} s | {served} | {conns} | {roots} | {rs:.2f} s |")


if __name__ == "__main__":
    main()
