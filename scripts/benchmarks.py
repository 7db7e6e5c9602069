#!/usr/bin/env python3
"""Regenerate docs/benchmarks.md (and docs/benchmarks-history.svg) in one run.

Every figure is measured in this run, on this machine, with the release build, against what a
user would otherwise run, back to back:

  * tag rollbacks of REPOS x TAGS (1x4, 10x10, 50x5) on a real docker-registry: bagboy vs
    `skopeo copy` per tag and vs a sequential curl loop (GET the manifest once per repository,
    PUT it per tag), with bagboy's requests (the registry's access log) against the floor;
  * histories of 1k / 10k / 100k entries: `versions list --limit 10`, `versions compare`,
    `versions prune`, `rollback --dry-run` (time, peak RSS), against PyYAML loading the same
    file (the C loader when present), and a plot of time and memory against size;
  * startup (`bagboy --version`) and binary size;
  * the operations (journal, connections: scripts/bench-ops.py), npm
    (scripts/bench-npm.sh) and cargo (scripts/bench-cargo.sh) sections, by their own scripts.

  * git processes of a typical dry-run (OCI + Homebrew tap + npm when Verdaccio is there), by
    bagboy's own count (`crate::git`, logged at -vv).

Usage: scripts/benchmarks.py [--quick] [--only SECTION,...]
  --quick: fewer runs, no ops/npm/cargo sections.
  --only rollback,history,startup,git,ops,npm,cargo: measure only these; every other section keeps
    the numbers of the docs/benchmarks.md in place (and the doc says so). On a shared 2-core
    machine the full run takes long; a section you did not change need not be measured again.
The binary is built into $CARGO_TARGET_DIR (default target/).
"""
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = "--quick" in sys.argv
RUNS = 3 if QUICK else 5
SECTIONS = ["rollback", "history", "startup", "git", "ops", "npm", "cargo"]
ONLY = (sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else SECTIONS)
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
# Above this many tags a matrix row runs without skopeo (a process per tag per run: minutes).
SKOPEO_MAX_TAGS = 250
# The parallel reference: curl's own parallel transfers, as many at once as bagboy's default
# `rollback.concurrency`.
PARALLEL = 8


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def need(cmds):
    missing = [pkg for cmd, pkg in cmds if shutil.which(cmd) is None and not os.path.exists(cmd)]
    if missing:
        print(f"installing: {' '.join(missing)}", file=sys.stderr)
        sh("apt-get", "update", "-qq")
        sh("apt-get", "install", "-y", "-qq", *missing, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
           stdout=subprocess.DEVNULL)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


CPU = []  # user + system seconds of each timed() run, in order


def timed(cmd, cwd=None, env=None):
    """(seconds, peak RSS in KiB) of one run; its CPU seconds go to CPU."""
    out = tempfile.mktemp()
    subprocess.run(["/usr/bin/time", "-f", "%e %M %U %S", "-o", out, *cmd], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        t, m, u, s = f.read().split()[-4:]
    os.unlink(out)
    CPU.append(float(u) + float(s))
    return float(t), int(m)


def median(xs):
    return statistics.median(xs)


def _bench_ops():
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_ops", os.path.join(ROOT, "scripts", "bench-ops.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Registry(_bench_ops().Registry):
    """bench-ops.py's real docker-registry, plus what these benchmarks read of it."""

    def image(self, repo, version):
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"v": version, "repo": repo}},
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        cd, cs = self.blob(repo, config)
        ld, ls = self.blob(repo, f"{repo} {version}\n".encode())
        return json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}],
        }).encode()

    def log_lines(self):
        with open(self.log) as f:
            return [line for line in f if "HTTP/1.1" in line]

    def stop(self):
        self.proc.kill()


def bagboy_env(d):
    env = dict(os.environ, DOCKER_CONFIG=os.path.join(d, "docker"), NO_COLOR="1",
               BAGBOY_CACHE_DIR=os.path.join(d, "cache"))
    env.pop("BAGBOY_LOG", None)
    return env


def curl_parallel(work, port, jobs):
    """One curl process running `jobs` ((method, path, body file or None)) PARALLEL at a time."""
    cfg = os.path.join(work, "curl.cfg")
    with open(cfg, "w") as f:
        for i, (method, path, body) in enumerate(jobs):
            if i:
                f.write("next\n")
            f.write(f'url = "http://127.0.0.1:{port}{path}"\nsilent\nfail\noutput = "/dev/null"\n')
            if method == "HEAD":
                f.write("head\n")
            f.write('header = "Accept: application/vnd.oci.image.manifest.v1+json"\n')
            if method == "PUT":
                f.write(f'request = "PUT"\ndata-binary = "@{body}"\n'
                        'header = "Content-Type: application/vnd.oci.image.manifest.v1+json"\n')
    sh("curl", "--silent", "--parallel", "--parallel-max", str(PARALLEL), "--config", cfg)


def rollback_matrix(bagboy):
    rows = []
    for repos, tags in [(1, 4), (10, 10), (50, 5), (200, 3)]:
        work = tempfile.mkdtemp()
        reg = Registry(work)
        d = os.path.join(work, "p")
        os.makedirs(os.path.join(d, "docker"))
        names = [f"bench/app{r}" for r in range(repos)]
        with open(os.path.join(d, "bagboy.yaml"), "w") as f:
            f.write("name: app\nregistries:\n")
            for n in names:
                f.write(f'  - {{format: docker, registry: "127.0.0.1:{reg.port}/{n}", insecure: true}}\n')
        aliases = ["latest"] + [f"t{i}" for i in range(1, tags)]
        manifests = {}
        for v in ["v1.1.0", "v1.2.0"]:
            for n in names:
                m = reg.image(n, v)
                manifests[(n, v)] = m
                reg.put(n, v, m)
                for t in aliases:
                    reg.put(n, t, m)
            sh(bagboy, "-q", "record", "--version", v, cwd=d, env=bagboy_env(d), stdout=subprocess.DEVNULL)
        b, s, c, p, reqs = [], [], [], [], []
        digests = {k: "sha256:" + hashlib.sha256(m).hexdigest() for k, m in manifests.items()}
        bodies = {}
        for (n, v), m in manifests.items():
            bodies[(n, v)] = os.path.join(work, f"{n.replace('/', '_')}-{v}.json")
            with open(bodies[(n, v)], "wb") as f:
                f.write(m)
        other = {"v1.1.0": "v1.2.0", "v1.2.0": "v1.1.0"}
        with_skopeo = repos * tags <= SKOPEO_MAX_TAGS
        sk = ["skopeo", "--insecure-policy", "copy", "-q", "--all", "--src-tls-verify=false",
              "--dest-tls-verify=false"]
        target = "v1.1.0"
        for run in range(RUNS):
            for target in ["v1.1.0", "v1.2.0"]:
                before = len(reg.log_lines())
                t, _ = timed([bagboy, "-q", "rollback", "--version", target, "--yes"], cwd=d, env=bagboy_env(d))
                b.append(t)
                reqs.append(sum(1 for line in reg.log_lines()[before:] if "bagboy/" in line))
            # curl, PARALLEL transfers at once: the reads bagboy makes (every tag that takes
            # part, the target's version tag by GET), then the same PUTs.
            for target in ["v1.1.0", "v1.2.0"]:
                start = time.monotonic()
                reads = []
                for n in names:
                    reads.append(("GET", f"/v2/{n}/manifests/{target}", None))
                    reads += [("HEAD", f"/v2/{n}/manifests/{t}", None) for t in aliases + [other[target]]]
                curl_parallel(work, reg.port, reads)
                curl_parallel(work, reg.port, [("PUT", f"/v2/{n}/manifests/{t}", bodies[(n, target)])
                                               for n in names for t in aliases])
                p.append(time.monotonic() - start)
            # skopeo: one process per tag, back and forth
            for target in ["v1.1.0", "v1.2.0"] if with_skopeo else []:
                start = time.monotonic()
                for n in names:
                    for tg in aliases:
                        sh(*sk, f"docker://127.0.0.1:{reg.port}/{n}@{digests[(n, target)]}",
                           f"docker://127.0.0.1:{reg.port}/{n}:{tg}")
                s.append(time.monotonic() - start)
            # curl: GET the manifest once per repository, PUT it per tag
            for target in ["v1.1.0", "v1.2.0"] if with_skopeo else []:
                start = time.monotonic()
                for n in names:
                    mf = os.path.join(work, "m.json")
                    sh("curl", "-sf", "-o", mf, "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
                       f"http://127.0.0.1:{reg.port}/v2/{n}/manifests/{digests[(n, target)]}")
                    for tg in aliases:
                        sh("curl", "-sf", "-o", "/dev/null", "-X", "PUT", "-H",
                           "Content-Type: application/vnd.oci.image.manifest.v1+json", "--data-binary", f"@{mf}",
                           f"http://127.0.0.1:{reg.port}/v2/{n}/manifests/{tg}")
                c.append(time.monotonic() - start)
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)
        moved = repos * tags
        # The floor: per tag, one read of where it points and one PUT; per repository, one GET
        # of the target manifest (the version tag itself is already there: read, not put).
        # The floor: one read of every tag that takes part (the target's version tag, whose
        # GET is also the manifest to put, its TAGS aliases, and the current release's own
        # version tag, which the plan lists as left in place) and one PUT per moved tag.
        floor = repos * (tags + 2) + repos * tags
        rows.append((repos, tags, moved, median(b), median(s) if s else None, median(c) if c else None,
                     median(p), median(reqs), floor))
    out = ["| repos x tags | tags moved | bagboy | skopeo copy per tag | ratio | curl loop | ratio | "
           f"curl, {PARALLEL} in parallel | bagboy / parallel curl | bagboy requests | floor |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for repos, tags, moved, bt, st, ct, pt, rq, floor in rows:
        sk = f"{st:.2f} s | {st / bt:.1f}x" if st is not None else "not run | -"
        cl = f"{ct:.2f} s | {ct / bt:.1f}x" if ct is not None else "not run | -"
        out.append(f"| {repos} x {tags} | {moved} | {bt:.2f} s | {sk} | {cl} | "
                   f"{pt:.2f} s | {bt / pt:.2f}x | {rq:.0f} | {floor} |")
    return "\n".join(out)


def write_history(path, n, layout_digests):
    """n entries, newest first; the two newest point at real images of an OCI layout."""
    with open(path, "w") as f:
        f.write("deployments:\n")
        for i in range(n, 0, -1):
            status = "deployed" if i == n else "superseded"
            digest = layout_digests.get(i, "sha256:%064x" % i)
            f.write(f'  - version: "v1.{i}.0"\n    timestamp: "2026-01-01T00:00:00Z"\n    commit: "{i:040x}"\n'
                    f'    status: {status}\n    packages:\n      - format: oci-layout\n        registry: "oci"\n'
                    f'        digest: "{digest}"\n        tags: ["v1.{i}.0", "latest", "1.{i}"]\n'
                    f'    notes: "release {i} from the pipeline, run {i:08d}; recorded by bagboy record in CI"\n'
                    f'    actor: "release-bot"\n')


def history_section(bagboy, publish):
    sizes = [1000, 10000, 100000]
    rows, plot = [], []
    for n in sizes:
        work = tempfile.mkdtemp()
        d = os.path.join(work, "p")
        os.makedirs(d)
        layout = os.path.join(d, "oci")
        digests = {}
        for i in (n - 1, n, n + 1):
            sh(publish, layout, "-", f"v1.{i}.0", stdout=subprocess.DEVNULL)
        idx = json.load(open(os.path.join(layout, "index.json")))
        for m in idx["manifests"]:
            ref = m.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
            if ref.startswith("v1."):
                digests[int(ref.split(".")[1])] = m["digest"]
        with open(os.path.join(d, "bagboy.yaml"), "w") as f:
            f.write("name: app\nregistries:\n  - format: oci-layout\n    registry: oci\n")
        hist = os.path.join(d, "h.yml")
        write_history(hist, n, digests)
        size = os.path.getsize(hist)
        env = bagboy_env(d)
        res = {}
        cmds = {
            "list": ["versions", "list", "--limit", "10"],
            "compare": ["versions", "compare", "previous", "current"],
            "dry-run": ["rollback", "--dry-run"],
            "prune": ["versions", "prune", "--keep", str(n - 1), "--yes"],
            "record": ["record", "--version", f"v1.{n + 1}.0"],
        }
        runs = 1 if n >= 100000 and QUICK else 3
        for name, args in cmds.items():
            ts, ms = [], []
            cpu = []
            for _ in range(runs):
                shutil.copy(hist, hist + ".run")
                t, m = timed([bagboy, "-q", "--history", hist + ".run", *args], cwd=d, env=env)
                ts.append(t)
                ms.append(m)
                cpu.append(CPU[-1])
            res[name] = (median(ts), max(ms))
            res[name + " cpu"] = median(cpu)
        py = "import yaml,sys; L=getattr(yaml,'CSafeLoader',yaml.SafeLoader); yaml.load(open(sys.argv[1]),Loader=L)"
        ts, ms = [], []
        for _ in range(runs):
            t, m = timed(["python3", "-c", py, hist])
            ts.append(t)
            ms.append(m)
        res["pyyaml"] = (median(ts), max(ms))
        rows.append((n, size, res))
        plot.append((n, res["list"][0], res["list"][1] / 1024, res["prune"][0], res["prune"][1] / 1024,
                     res["pyyaml"][0], res["pyyaml"][1] / 1024))
        shutil.rmtree(work, ignore_errors=True)
    out = ["| entries | file | `versions list --limit 10` | `versions compare` | `rollback --dry-run` | "
           "`versions prune` | `record` | PyYAML load (reference) |", "|---|---|---|---|---|---|---|---|"]
    for n, size, r in rows:
        cell = lambda k: f"{r[k][0]:.2f} s, {r[k][1] // 1024} MiB"
        out.append(f"| {n:,} | {size / 1e6:.1f} MB | {cell('list')} | {cell('compare')} | {cell('dry-run')} | "
                   f"{cell('prune')} | {cell('record')} | {cell('pyyaml')} |")
    # The plot: time and peak memory against entries.
    os.makedirs(TARGET, exist_ok=True)
    data = os.path.join(TARGET, "bench-history.dat")
    with open(data, "w") as f:
        for row in plot:
            f.write(" ".join(str(x) for x in row) + "\n")
    svg = os.path.join(ROOT, "docs", "benchmarks-history.svg")
    gp = f"""
set terminal svg size 900,420 font 'sans,11' background '#ffffff'
set output '{svg}'
set multiplot layout 1,2 title 'bagboy and history size (release build, this machine)'
set logscale xy
set xlabel 'entries'
set key left top
set grid
set ylabel 'seconds'
plot '{data}' using 1:2 with linespoints title 'versions list --limit 10', \\
     '' using 1:4 with linespoints title 'versions prune', \\
     '' using 1:6 with linespoints dashtype 2 title 'PyYAML load'
set ylabel 'peak RSS (MiB)'
plot '{data}' using 1:3 with linespoints title 'versions list --limit 10', \\
     '' using 1:5 with linespoints title 'versions prune', \\
     '' using 1:7 with linespoints dashtype 2 title 'PyYAML load'
unset multiplot
"""
    subprocess.run(["gnuplot"], input=gp.encode(), check=True)
    return "\n".join(out), rows


def startup(bagboy):
    ts = []
    for _ in range(30):
        start = time.perf_counter()
        sh(bagboy, "--version", stdout=subprocess.DEVNULL)
        ts.append(time.perf_counter() - start)
    return median(ts)


def tap_project(bagboy, publish):
    """The quickstart's project: an OCI layout and a Homebrew tap (a bare git repository), three
    releases recorded. Returns (work dir, env)."""
    work = tempfile.mkdtemp()
    d = os.path.join(work, "p")
    os.makedirs(d)
    sh("git", "init", "-q", "--bare", "-b", "main", os.path.join(d, "tap.git"))
    sh("git", "clone", "-q", os.path.join(d, "tap.git"), os.path.join(d, "tap-work"), stderr=subprocess.DEVNULL)
    for k, v in [("user.name", "bench"), ("user.email", "bench@example.com")]:
        sh("git", "-C", os.path.join(d, "tap-work"), "config", k, v)
    with open(os.path.join(d, "bagboy.yaml"), "w") as f:
        f.write(f"name: myapp\nregistries:\n  - format: oci-layout\n    registry: oci\n"
                f"  - format: brew\n    registry: acme/homebrew-tap\n    remote: file://{d}/tap.git\n"
                f"    branch: main\n")
    env = bagboy_env(d)
    for v in ["v1.0.0", "v1.1.0", "v1.2.0"]:
        sh(publish, "oci", "tap-work", v, cwd=d, env=env, stdout=subprocess.DEVNULL)
        return_code = subprocess.run([bagboy, "-q", "record", "--version", v], cwd=d, env=env,
                                     stdout=subprocess.DEVNULL).returncode
        assert return_code == 0, f"record {v}"
    return work, d, env


def dry_run_section(bagboy, publish):
    """(git processes of one dry-run, its median time) on the quickstart's OCI + tap project."""
    work, d, env = tap_project(bagboy, publish)
    r = subprocess.run([bagboy, "-vv", "rollback", "--dry-run"], cwd=d, env=env, capture_output=True, text=True)
    counts = [int(m) for m in __import__("re").findall(r"processes=(\d+)", r.stderr)]
    ts = []
    for _ in range(10):
        t, _ = timed([bagboy, "-q", "rollback", "--dry-run"], cwd=d, env=env)
        ts.append(t)
    shutil.rmtree(work, ignore_errors=True)
    return (counts[-1] if counts else None), median(ts)


def kept_sections(path):
    """The `## ` sections of the doc in place, by title, to keep what this run does not measure."""
    out, title = {}, None
    if not os.path.exists(path):
        return out
    for line in open(path).read().splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            out[title] = []
        elif title is not None:
            out[title].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


def main():
    need([("/usr/bin/docker-registry", "docker-registry"), ("skopeo", "skopeo"), ("gnuplot", "gnuplot-nox"),
          ("/usr/bin/time", "time"), ("curl", "curl")])
    try:
        import yaml  # noqa: F401
    except ImportError:
        need([("/usr/lib/python3/dist-packages/yaml", "python3-yaml")])
    sh("cargo", "build", "--quiet", "--release", "--bin", "bagboy", "--example", "publish", cwd=ROOT)
    bagboy = os.path.join(TARGET, "release/bagboy")
    publish = os.path.join(TARGET, "release/examples/publish")
    doc_path = os.path.join(ROOT, "docs", "benchmarks.md")
    kept = kept_sections(doc_path)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    import yaml
    pyyaml = f"PyYAML {yaml.__version__} " + ("with libyaml (`CSafeLoader`)" if getattr(yaml, "__with_libyaml__", False) else "(pure Python `SafeLoader`)")
    not_run = []

    def keep(title):
        not_run.append(title)
        return kept.get(title, "(not measured yet)")

    t_rollback = "Tag rollbacks: bagboy vs `skopeo copy` per tag vs curl"
    t_history = "History size: 1k / 10k / 100k entries"
    t_startup = "Startup and size"
    t_git = "git processes of a dry-run"
    t_ops = "Operations: journal and connections (scripts/bench-ops.py)"
    t_npm = "npm: a package family (scripts/bench-npm.sh)"
    t_cargo = "cargo: a crate family (scripts/bench-cargo.sh)"
    sections = []
    if "rollback" in ONLY:
        sections.append((t_rollback, f"""Each repository holds two releases and TAGS tags (`latest` and aliases) on one of them; a run
moves every tag of every repository to the other release and back. bagboy's time is the whole
command (load the history, plan, one PUT per tag, write the history, journal each step).
skopeo: one `skopeo copy --all docker://repo@digest docker://repo:tag` per tag. curl loop: a
sequential loop, one GET of the manifest per repository and one PUT per tag (no planning, no
history, no undo). Neither runs above {SKOPEO_MAX_TAGS} tags (a process per tag per run:
minutes). curl in parallel: one `curl --parallel --parallel-max {PARALLEL}` doing the reads
bagboy does (every tag that takes part, the target's version tag by GET), then a second one
doing the same PUTs: the HTTP work alone, with bagboy's default concurrency; bagboy also
journals every step (a step's start on disk before its PUT, its result committed with the next step's start: about one fdatasync per step) and writes the history. Requests are bagboy's in the registry's
access log for one rollback; the floor is one read of every tag that takes part (the target's
version tag, whose GET also brings the manifest to put, its aliases, and the current release's
own version tag, which the plan lists as left in place) and one PUT per moved tag.

{rollback_matrix(bagboy)}"""))
    else:
        sections.append((t_rollback, keep(t_rollback)))
    goals = ""
    if "history" in ONLY:
        history, rows = history_section(bagboy, publish)
        n100k = next(r for n, _, r in rows if n == 100000)

        def goal(k, secs, mib=300):
            ok = n100k[k][0] < secs and n100k[k][1] < mib * 1024
            return (f"**{'met' if ok else 'not met'}** ({n100k[k][0]:.2f} s, {n100k[k][1] // 1024} MiB; "
                    f"{n100k[k + ' cpu']:.2f} s of CPU)")
        sections.append((t_history, f"""The history in the shape `record` writes (about 500 bytes an entry: a registry, tags, notes).
Median time and highest peak RSS of 3 runs of one command, against {pyyaml} loading the same file, which is only the parse. Plot: `docs/benchmarks-history.svg`.

{history}

![time and memory against history size](benchmarks-history.svg)

Goals at 100k entries, under 1 s and 300 MiB (wall time; the CPU time, user + system, says
what the machine's other work added): `versions list --limit 10` {goal('list', 1)};
`rollback --dry-run` {goal('dry-run', 1)}; `record` {goal('record', 1)}; and `prune` under 2 s:
{goal('prune', 2, 1 << 20)}. A history in the subset bagboy writes (block mappings and lists,
plain words, one-line double-quoted strings and flow lists) is read by a small reader of that
subset (`src/yaml/subset.rs`) that builds the same nodes, positions included, as serde-saphyr;
anything else (anchors, other quoting, a syntax error) goes to serde-saphyr, which reports the
errors. Entries stream into the typed model one at a time, so memory follows the model."""))
    else:
        sections.append((t_history, keep(t_history)))
    if "startup" in ONLY or "git" in ONLY:
        git_count, dry = dry_run_section(bagboy, publish)
    if "startup" in ONLY:
        start = startup(bagboy)
        size = os.path.getsize(bagboy)
        sections.append((t_startup, f"""| | |
|---|---|
| `bagboy --version` (median of 30) | {start * 1000:.1f} ms |
| `bagboy rollback --dry-run`, OCI layout + Homebrew tap (median of 10) | {dry * 1000:.0f} ms |
| release binary | {size / 1e6:.1f} MB |

The release profile and why: docs/decisions.md ("Release profile")."""))
    else:
        sections.append((t_startup, keep(t_startup)))
    if "git" in ONLY:
        sections.append((t_git, f"""`bagboy -vv rollback --dry-run` on the quickstart's project (an OCI layout and a Homebrew tap
in a local bare repository, three releases recorded) logs how many git processes it started
(`crate::git` counts every one): **{git_count}** (28 before the batching of issue 30). npm,
cargo and Docker registries start none.

Measured once by hand for issue 30 (debug build), on a Scoop bucket and an AUR package with
three releases recorded each (the shape of `tests/it/git_registries.rs`): Scoop 20 → 7, AUR
29 → 7. Five of a run's processes open the cache (is it ours, its origin, `ls-remote`, fetch,
the head); the rest are one `cat-file --batch` per commit read (a commit and its files) and,
for a tap, one `ls-tree -r` per commit to find where the formula lives and the `log` that
finds the current release's commit. `src/registry/gitrepo/` remembers the head until a fetch
or push and files per full commit id for the run. `dry_run_on_a_tap_starts_few_git_processes`
and `scoop_dry_run_starts_few_git_processes` keep a tap's count at 12 or fewer and a bucket's
at 8 (counts, not times)."""))
    else:
        sections.append((t_git, keep(t_git)))
    for name, title, cmd in [("ops", t_ops, [sys.executable, os.path.join(ROOT, "scripts/bench-ops.py")]),
                             ("npm", t_npm, ["bash", os.path.join(ROOT, "scripts/bench-npm.sh"), "10", "5"]),
                             ("cargo", t_cargo, ["bash", os.path.join(ROOT, "scripts/bench-cargo.sh"), "10", "5"])]:
        if name in ONLY and not QUICK:
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            table = "\n".join(line for line in r.stdout.strip().splitlines() if not line.startswith("HEAD is now at"))
            sections.append((title, table if r.returncode == 0 else f"(not measured: {r.stderr.strip()[-300:]})"))
        else:
            sections.append((title, keep(title)))
    kept_note = ""
    if not_run:
        kept_note = ("\n\nNot measured in this run (numbers kept from the previous one): "
                     + ", ".join(f"\"{t}\"" for t in not_run) + ".")
    doc = f"""# Benchmarks

Regenerated by `scripts/benchmarks.py` in one run on {time.strftime('%Y-%m-%d')}, commit
`{commit}`, on this machine ({os.cpu_count()} cores, {platform.machine()}), release build.
Every comparison is measured in the same run, back to back; other work on the machine makes
absolute times noisy, ratios less so. Medians of {RUNS} runs unless said.{kept_note}
"""
    for title, body in sections:
        doc += f"\n## {title}\n\n{body}\n"
    with open(doc_path, "w") as f:
        f.write(doc)
    print(doc)


if __name__ == "__main__":
    main()
