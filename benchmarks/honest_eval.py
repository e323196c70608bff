"""Every model beside its strongest cheap baselines, 3 seeds each: the commands behind README's
results table.

For each model: `astrobio train MODEL --cpu --seed S --out RUNS/MODEL-S` for S in the seeds
(skipped when the run already has a checkpoint), then `astrobio eval MODEL --checkpoint
RUNS/MODEL-0 --checkpoint ... --json`, saved as `RESULTS/MODEL.json`; finally a Markdown table of
the primary metric (mean ± std over the seeds) for the model and every baseline, with wall times.

    ASTROBIO_THREADS=1 uv run python benchmarks/honest_eval.py --out runs/honest
    uv run python benchmarks/honest_eval.py --out runs/honest --table   # the table only

The data of each model is its built-in data (`astrobio eval` JSON's `data` names it: generator
and seed, or the bundled catalogue file); the machine is whatever runs this (`astrobio env`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

MODELS = (
    "planet-mass",
    "graph-vae",
    "llm-lora",
    "spectral-transformer",
    "datacube-cnn",
    "cube-unet",
)


def astrobio() -> str:
    exe = Path(sys.executable).with_name("astrobio")
    return str(exe) if exe.exists() else (shutil.which("astrobio") or "astrobio")


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([astrobio(), *args], capture_output=True, text=True, env=os.environ)


def train_and_eval(model: str, seeds: list[int], out: Path) -> dict:
    walls = []
    runs = []
    for s in seeds:
        run_dir = out / "runs" / f"{model}-{s}"
        runs.append(run_dir)
        if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
            continue
        t0 = time.perf_counter()
        r = run(["train", model, "--cpu", "--seed", str(s), "--out", str(run_dir)])
        walls.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"train {model} seed {s} failed:\n{r.stderr[-2000:]}")
    args = ["eval", model, *[a for d in runs for a in ("--checkpoint", str(d))], "--json"]
    r = run(args)
    if r.returncode != 0:
        raise SystemExit(f"eval {model} failed:\n{r.stderr[-2000:]}")
    report = json.loads(r.stdout)
    report["train_wall_s"] = walls
    report["commands"] = [
        f"astrobio train {model} --cpu --seed {s} --out runs/{model}-{s}" for s in seeds
    ] + [
        f"astrobio eval {model} "
        + " ".join(f"--checkpoint runs/{model}-{s}" for s in seeds)
        + " --json"
    ]
    return report


def fmt(mean: float, std: float) -> str:
    if abs(std) <= 1e-9 * max(1.0, abs(mean)):  # saved by an older eval: float noise
        std = 0.0
    return f"{mean:.4g} ± {std:.2g}"


def table(results: dict[str, dict]) -> str:
    lines = [
        "| model | metric | model (mean ± std) | strongest baseline | every baseline | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, rep in results.items():
        key, better = rep["primary_metric"]
        m, ms = rep["model"][key], rep["model_std"].get(key, 0.0)
        base = {b: v[key] for b, v in rep["baselines"].items() if key in v}
        sign = 1 if better == "lower" else -1
        best = min(base, key=lambda b: sign * base[b]) if base else None
        others = ", ".join(
            f"{b} {fmt(v, rep['baselines_std'][b].get(key, 0.0))}" for b, v in base.items()
        )
        if best is None:
            verdict = "no baseline"
        elif sign * m < sign * base[best]:
            verdict = f"**wins** ({abs(rep['vs_baseline'][best]) * 100:.1f}% better than {best})"
        else:
            verdict = f"**loses** to {best} ({abs(rep['vs_baseline'][best]) * 100:.1f}% worse)"
        best_cell = (
            f"{best} {fmt(base[best], rep['baselines_std'][best].get(key, 0.0))}" if best else "-"
        )
        lines.append(
            f"| `{name}` | {key} ({better} is better) | {fmt(m, ms)} | {best_cell} | {others} "
            f"| {verdict} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/honest"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--table", action="store_true", help="Only print the table of saved results.")
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    res_dir = args.out / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for model in models:
        path = res_dir / f"{model}.json"
        if not args.table:
            t0 = time.perf_counter()
            rep = train_and_eval(model, seeds, args.out)
            rep["wall_s"] = time.perf_counter() - t0
            path.write_text(json.dumps(rep, indent=2, default=str), encoding="utf-8")
            print(f"{model}: done in {rep['wall_s']:.0f} s", file=sys.stderr, flush=True)
        if path.is_file():
            results[model] = json.loads(path.read_text(encoding="utf-8"))
    print(table(results))


if __name__ == "__main__":
    main()
