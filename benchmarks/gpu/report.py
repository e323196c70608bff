"""Render the GPU run's output folder from its work folder (run by run.sh after every step).

Reads WORK/steps.tsv (one line per step: name, status, rc, wall s, timeout s, reason, command)
and the steps' JSON outputs; writes into OUT at most 7 files: summary.json, report.md, smoke.json,
kernel_check.json, bench_attention.json (every bench step merged), train.json (every train step)
and steps.tar.gz (the whole work folder: logs and raw outputs). Standard library only: it runs
under the GPU image's python3 whatever was installed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
import time
from pathlib import Path

FIELDS = ("name", "status", "rc", "wall_s", "timeout_s", "reason", "command")


def load(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def last_line(log: Path) -> str:
    try:
        lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1][:200].replace("|", "/") if lines else ""


def read_steps(work: Path) -> list[dict]:
    steps = []
    tsv = work / "steps.tsv"
    lines = tsv.read_text(encoding="utf-8").splitlines() if tsv.exists() else []
    for line in lines:
        parts = line.split("\t")
        parts += [""] * (len(FIELDS) - len(parts))
        s = dict(zip(FIELDS, parts, strict=False))
        s["rc"] = int(s["rc"]) if s["rc"].lstrip("-").isdigit() else None
        s["wall_s"] = float(s["wall_s"] or 0)
        s["timeout_s"] = int(s["timeout_s"] or 0)
        s["log"] = f"steps.tar.gz:work/{s['name']}.log"
        if s["status"] in ("failed", "timeout") and not s["reason"]:
            s["reason"] = last_line(work / f"{s['name']}.log")
        steps.append(s)
    return steps


def fmt(x, spec: str = ".3g") -> str:
    return "" if x is None else format(x, spec)


def bench_tables(benches: dict[str, dict]) -> list[str]:
    md = []
    for name, doc in benches.items():
        c = doc.get("config", {})
        md += [
            "",
            f"#### {name}: {c.get('dtype')} B={c.get('batch')} Hq={c.get('heads')} "
            f"D={c.get('head_dim')} {'causal' if c.get('causal') else 'non-causal'} {c.get('mode')}",
            "",
            "| backend | T | status | ms median | TFLOP/s | max abs err | x eager |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in doc.get("results", []):
            status = r.get("status", "") + (f": {r['reason']}" if r.get("reason") else "")
            md.append(
                f"| {r.get('backend')} | {r.get('seq')} | {status[:80]} | {fmt(r.get('ms_median'))} "
                f"| {fmt(r.get('tflops'))} | {fmt(r.get('max_abs_err'), '.1e')} "
                f"| {fmt(r.get('speedup_vs_eager'))} |"
            )
    return md


def render(work: Path, out: Path, budget: int) -> dict:
    steps = read_steps(work)
    env = load(work / "env.json")
    smoke = load(work / "smoke.json")
    kernel = load(work / "kernel_check.json")
    benches = {p.stem: d for p in sorted(work.glob("bench-*.json")) if (d := load(p))}
    trains = {p.stem: d for p in sorted(work.glob("train-*.json")) if (d := load(p)) is not None}
    counts = {k: sum(s["status"] == k for s in steps) for k in ("passed", "failed", "timeout")}
    counts["skipped"] = sum(s["status"] == "skipped" for s in steps)
    summary = {
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "budget_s": budget,
        "wall_s": round(sum(s["wall_s"] for s in steps), 1),
        "ok": counts["failed"] == 0 and counts["timeout"] == 0,
        "counts": counts,
        "steps": steps,
        "env": env,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    for name, doc in (("smoke.json", smoke), ("kernel_check.json", kernel)):
        if doc is not None:
            (out / name).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    if benches:
        (out / "bench_attention.json").write_text(json.dumps(benches, indent=1) + "\n")
    if trains:
        (out / "train.json").write_text(json.dumps(trains, indent=2) + "\n", encoding="utf-8")

    md = ["# GPU run (benchmarks/gpu/run.sh)", ""]
    if env:
        t = env.get("torch", {})
        acc = ", ".join(
            str(a.get("name", a)) if isinstance(a, dict) else str(a)
            for a in t.get("accelerators", [])
        )
        md.append(
            f"torch {t.get('version')} ({t.get('build')}), accelerators: {acc or 'none'}; "
            f"native extension: {env.get('native', {}).get('present')}; "
            f"libraries: {json.dumps(env.get('libraries', {}))}"
        )
        md.append("")
    md += [
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['timeout']} timed out, "
        f"{counts['skipped']} skipped; {summary['wall_s']}s of a {budget}s budget.",
        "",
        "| step | status | rc | wall s | timeout s | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in steps:
        md.append(
            f"| {s['name']} | {s['status']} | {'' if s['rc'] is None else s['rc']} "
            f"| {s['wall_s']} | {s['timeout_s']} | {s['reason']} |"
        )
    if smoke:
        md += ["", "## smoke", "", f"ok: {smoke.get('ok')}, counts: {smoke.get('counts')}"]
        for c in smoke.get("checks", []):
            if c.get("status") == "failed":
                md.append(f"- FAILED {c.get('name')}: {str(c.get('detail'))[:200]}")
        for r in smoke.get("requirements", []) or []:
            md.append(f"- requirement: {json.dumps(r)[:200]}")
    if kernel:
        md += [
            "",
            "## Triton kernel vs float64 (forward and backward)",
            "",
            "| case | ok | out err | tol | grad err | tol | eager out | eager grad | s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in kernel.get("cases", []):
            if "error" in r:
                md.append(f"| {r.get('label')} | FAIL | {r['error'][:100]} | | | | | | |")
                continue
            grad = max(r["dq"], r["dk"], r["dv"])
            md.append(
                f"| {r['label']} | {'ok' if r['ok'] else 'FAIL'} | {r['out']:.1e} "
                f"| {r['tol_out']:.1e} | {grad:.1e} | {r['tol_grad']:.1e} | {r['eager_out']:.1e} "
                f"| {r['eager_grad']:.1e} | {r['s']:.1f} |"
            )
        md.append(
            f"\nKV cache: {kernel.get('kv_cache')}; declines ok: {kernel.get('declines', {}).get('ok')}"
        )
    if benches:
        md += ["", "## bench attention", *bench_tables(benches)]
    if trains:
        md += ["", "## train cube-unet", "", "| step | steps | final loss | samples/s | eval |"]
        md.append("| --- | --- | --- | --- | --- |")
        for name, t in trains.items():
            md.append(
                f"| {name} | {t.get('steps')} | {fmt(t.get('final_loss'), '.4g')} "
                f"| {fmt(t.get('samples_per_s'), '.1f')} | {json.dumps(t.get('eval'))} |"
            )
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")

    tmp = out / "steps.tar.gz.part"
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(work, arcname="work")
    shutil.move(tmp, out / "steps.tar.gz")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=int, default=0)
    a = ap.parse_args()
    s = render(Path(a.work), Path(a.out), a.budget)
    print(json.dumps(s["counts"]))


if __name__ == "__main__":
    main()
