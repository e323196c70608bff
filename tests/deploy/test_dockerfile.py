"""The Dockerfile, checked by reading it (no Docker engine here): stages, base images, the files
it copies exist and are not excluded by .dockerignore, locked install with the GPU extras,
non-root user, and a HEALTHCHECK that is a real `astrobio smoke` command line."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and stages: each instruction as (KEYWORD, arguments), continuations joined."""
    lines, buf = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):  # comment lines inside a continued instruction
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        lines.append(buf + s)
        buf = ""
    assert not buf, "the Dockerfile ends inside a continued line"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            m = re.match(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            assert m, f"bad FROM: {line}"
            base = re.sub(r"\$\{(\w+)\}", lambda g: args.get(g.group(1), g.group(0)), m.group(1))
            stages.append(Stage(base, m.group(2)))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def dockerfile():
    return parse(DOCKERFILE.read_text())


def _copies(stage: Stage) -> list[tuple[str | None, list[str]]]:
    """(from, sources) of each COPY."""
    out = []
    for kw, rest in stage.instructions:
        if kw not in ("COPY", "ADD"):
            continue
        parts = shlex.split(rest)
        src_from = None
        flags = [p for p in parts if p.startswith("--")]
        for f in flags:
            if f.startswith("--from="):
                src_from = f.split("=", 1)[1]
        paths = [p for p in parts if not p.startswith("--")]
        out.append((src_from, paths[:-1]))
    return out


def _ignored(rel: str, patterns: list[str]) -> bool:
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/")
        hit = (
            fnmatch.fnmatch(rel, p)
            or rel.startswith(p + "/")
            or (p.startswith("**/") and fnmatch.fnmatch(Path(rel).name, p[3:]))
        )
        if hit:
            ignored = not neg
    return ignored


def test_multi_stage_on_cuda_images(dockerfile):
    args, stages = dockerfile
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    assert build.name == "build" and runtime.name == "runtime"
    assert build.base.startswith("nvidia/cuda:") and "-devel-" in build.base
    assert runtime.base.startswith("nvidia/cuda:") and "-runtime-" in runtime.base
    assert "${" not in build.base and "${" not in runtime.base  # every ARG has a default
    # torch's CUDA major version (from uv.lock's nvidia-cuda-runtime) matches the base image's.
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    cuda_rt = {p["name"]: p.get("version") for p in lock["package"]}.get("nvidia-cuda-runtime")
    if cuda_rt:
        assert args["CUDA_VERSION"].split(".")[0] == cuda_rt.split(".")[0]


def test_copied_files_exist_and_reach_the_build_context(dockerfile):
    _, stages = dockerfile
    names = {s.name for s in stages}
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    local = 0
    for stage in stages:
        for src_from, sources in _copies(stage):
            if src_from is not None:
                assert src_from in names or "/" in src_from or ":" in src_from, src_from
                continue
            for src in sources:
                rel = src.rstrip("/")
                assert (REPO / rel).exists(), f"COPY {src}: no such file in the repository"
                assert not _ignored(rel, patterns), f"COPY {src} is excluded by .dockerignore"
                local += 1
    assert local >= 8
    # What the build needs is copied: the lock, both Cargo files, the crates, the sources.
    copied = {s.rstrip("/") for st in stages for f, srcs in _copies(st) if f is None for s in srcs}
    for need in ("uv.lock", "pyproject.toml", "Cargo.toml", "Cargo.lock", "rust", "src", "plugins"):
        assert need in copied, f"the Dockerfile does not COPY {need}"


def test_locked_install_with_gpu_extras_and_rust(dockerfile):
    _, stages = dockerfile
    build_runs = " ".join(rest for kw, rest in stages[0].instructions if kw == "RUN")
    assert "rustup" in build_runs
    assert "uv sync --locked" in build_runs and "--no-dev" in build_runs
    assert "--extra xformers" in build_runs and "--extra flash-attn" in build_runs
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra in re.findall(r"--extra ([a-z0-9-]+)", build_runs):
        assert extra in extras, f"--extra {extra} is not an extra of pyproject.toml"
    assert "--no-editable" in build_runs  # the venv must not point back at /src


def test_runtime_runs_as_non_root_with_a_smoke_healthcheck(dockerfile, run_cli):
    _, stages = dockerfile
    runtime = stages[-1]
    users = [rest for kw, rest in runtime.instructions if kw == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    kws = [kw for kw, _ in runtime.instructions]
    assert kws.index("USER") < kws.index("ENTRYPOINT")
    (hc,) = [rest for kw, rest in runtime.instructions if kw == "HEALTHCHECK"]
    cmd = hc.split("CMD", 1)[1].strip()
    argv = __import__("json").loads(cmd)
    assert argv[:2] == ["astrobio", "smoke"] and "accelerator,imports" in argv
    # The exact health-check command line works here (exit 0 on this CPU machine).
    res = run_cli(*argv[1:])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
