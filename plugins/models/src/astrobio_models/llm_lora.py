"""`llm-lora`: a causal language model fine-tuned with PEFT LoRA on text about exoplanets.

Base model: by default a tiny Llama-architecture model built here from a `transformers` config
(no download; `hidden`, `layers`, `heads`), over a fixed character vocabulary (printable ASCII
and newline); or any local Hugging Face checkpoint with `model_path` (`--model-path DIR`), with
its own tokenizer. The base weights are frozen; LoRA adapters (rank `rank`, on every linear
layer), the output layer and (`train_embeddings`) the input embeddings are trained.

Data: a corpus generated from an exoplanet table: one sentence per planet from its columns
(name, host star, discovery method and year, orbital period, radius). Default: every confirmed
planet of The Extrasolar Planets Encyclopaedia (exoplanet.eu; Schneider et al. 2011, A&A 532,
A79), 7,317 planets as of 2024-08-30, in the extract `data/exoplanet_eu_planets.csv.gz` (see
`data/README.md` and `extract_exoplanet_eu`); `--quick-smoke` takes its first 300. `--data` takes a table with the NASA Exoplanet
Archive's column names (`pl_name`, `hostname`, `discoverymethod`, `disc_year`, `pl_orbper`,
`pl_rade`; any subset with `pl_name`) as `.csv`, `.tsv` or `.parquet` (what `astrobio fetch
nasa-exoplanet` writes), or a plain `.txt` corpus (one text per line). Planets are split into
train and held-out sets by host star (planets of one star are never on both sides; see
`system_of` for planets without a host; a `.txt` line is its own group); the text (BOS line EOS
BOS line EOS ...) is cut into blocks of `block` tokens.

Metric: held-out perplexity over every token of the held-out blocks but each block's first
(the model sees only the tokens before it in its own block). Baselines (`baseline`): the base
model (the same network with the adapters switched off) and an interpolated modified Kneser-Ney
n-gram (`ngram.py`; order chosen on the training planets) over the same tokens, scored on
exactly the same predictions with the same context limit (never back across a block's start).
`plot`: per held-out planet, the model's perplexity against the n-gram's. Generation
(`generate`) decodes with the key-value cache.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
from pathlib import Path
from typing import Any

import torch

from astrobio_models._common import options, split_indices

NAME = "llm-lora"
DATA_DIR = Path(__file__).parent / "data"
DEFAULT_TABLE = DATA_DIR / "exoplanet_eu_planets.csv.gz"
COLUMNS = ("pl_name", "hostname", "discoverymethod", "disc_year", "pl_orbper", "pl_rade")
R_JUP_IN_R_EARTH = 11.209  # equatorial radii (IAU 2015 nominal values)
SMOKE_PLANETS = 300  # --quick-smoke / `astrobio smoke`: the first planets of the table only
VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>", "\n", *[chr(c) for c in range(32, 127)]]
PAD, BOS, EOS, UNK = 0, 1, 2, 3

DEFAULTS: dict[str, Any] = {
    "hidden": 128,
    "layers": 2,
    "heads": 4,
    "block": 128,
    "rank": 32,
    "alpha": 32,
    "lora_dropout": 0.0,
    "train_embeddings": True,
    "repeats": 2,
    "model_path": None,
    "base_seed": 0,
    "val_fraction": 0.2,
    "split_seed": 0,
    "ngram_max_order": 8,
    "grad_checkpointing": False,
}


def factory(config: dict[str, Any] | None = None) -> LLMLoRAPlugin:
    return LLMLoRAPlugin(options(NAME, DEFAULTS, config))


class CharTokenizer:
    """Printable ASCII and newline, one token per character; anything else is <unk>."""

    def __init__(self) -> None:
        self.index = {ch: i for i, ch in enumerate(VOCAB)}

    def __len__(self) -> int:
        return len(VOCAB)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(ch, UNK) for ch in text]

    def decode(self, ids) -> str:
        return "".join(VOCAB[i] if i > UNK else "" for i in ids)


def _given(v: Any) -> bool:
    """A value that is there: not None, not blank, not NaN (Parquet's missing floats)."""
    if v is None or (isinstance(v, str) and not v.strip()):
        return False
    return not (isinstance(v, float) and math.isnan(v))


def sentence(row: dict[str, Any]) -> str:
    """One line about a planet from whichever columns it has."""
    name = str(row.get("pl_name") or "").strip()
    host = row.get("hostname")
    parts = [f"{name} orbits {host}" if _given(host) else name]
    if _given(row.get("discoverymethod")):
        how = f"was found by {str(row['discoverymethod']).lower()}"
        if _given(row.get("disc_year")):
            how += f" in {int(float(row['disc_year']))}"
        parts.append(how)
    if _given(row.get("pl_orbper")):
        parts.append(f"its year lasts {float(row['pl_orbper']):.2f} days")
    if _given(row.get("pl_rade")):
        parts.append(f"its radius is {float(row['pl_rade']):.2f} Earth radii")
    return ", ".join(parts) + "."


def system_of(row: dict[str, Any]) -> str:
    """The group a planet is split with: its host star; without one, its name less a trailing
    component letter ("2M1510 Ab" and "2M1510 B" go together)."""
    if _given(row.get("hostname")):
        return "host:" + " ".join(str(row["hostname"]).split())
    name = " ".join(str(row.get("pl_name") or "").split())
    return "name:" + re.sub(r"\s+\(?[A-Za-z]{1,3}\)?$", "", name)


def _ascii(text: str) -> str:
    """HTML entities decoded, accents dropped, whitespace runs collapsed (the character vocabulary
    is printable ASCII)."""
    import html
    import unicodedata

    text = unicodedata.normalize("NFKD", html.unescape(text))
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split())


def extract_exoplanet_eu(src: Path | str, dest: Path | str = DEFAULT_TABLE) -> int:
    """Write the compact extract the default corpus is read from; returns the planet count.

    `src`: the exoplanet.eu catalogue export (CSV, its own column names). Kept: confirmed
    planets; columns renamed to the NASA archive's (`name` -> pl_name, `star_name` -> hostname,
    `detection_type` -> discoverymethod, `discovered` -> disc_year, `orbital_period` (days) ->
    pl_orbper, `radius` (Jupiter radii) x 11.209 -> pl_rade (Earth radii, 4 decimals)). Names are
    made ASCII (`_ascii`); numbers other than the radius are copied as written."""
    with open(src, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["planet_status"] == "Confirmed"]
    with (
        open(dest, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        io.TextIOWrapper(gz, encoding="utf-8", newline="") as fh,
    ):  # gzip without a name or time in its header: the same input gives the same bytes
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(COLUMNS)
        for r in rows:
            rade = f"{float(r['radius']) * R_JUP_IN_R_EARTH:.4f}" if r["radius"] else ""
            out.writerow(
                [_ascii(r["name"]), _ascii(r["star_name"]), r["detection_type"].strip(),
                 r["discovered"].strip(), r["orbital_period"].strip(), rade]
            )  # fmt: skip
    return len(rows)


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows (dicts) of a `.csv`, `.tsv` (either maybe gzipped) or `.parquet` exoplanet table."""
    from astrobio_cli.errors import UserError

    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        except Exception as exc:
            raise UserError(f"cannot read Parquet table {path}: {exc}") from None
    name = path.name.lower().removesuffix(".gz")
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as fh:
        dialect = "excel-tab" if name.endswith(".tsv") else "excel"
        return list(csv.DictReader(fh, dialect=dialect))


def corpus(data: Path | None) -> tuple[list[str], list[str], dict[str, Any]]:
    """The corpus lines, each line's split group (its host star) and a provenance record."""
    from astrobio_cli.errors import UserError

    path = DEFAULT_TABLE if data is None else Path(data)
    from astrobio_cli.data import sequences as seqs

    if path.suffix.lower() in (*seqs.FASTA_SUFFIXES, *seqs.GENBANK_SUFFIXES):
        # FASTA / GenBank from `astrobio fetch ncbi|uniprot|ensembl`, through the core reader:
        # one sentence per record, split by organism (its records never straddle the split).
        records = seqs.read_sequences(path)
        lines = seqs.corpus_lines(records)
        groups = [r.organism or r.id for r in records]
        return lines, groups, {"path": str(path), "records": len(records), "split": "by organism"}
    if path.suffix.lower() == ".txt":
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        groups = [f"line:{i}" for i in range(len(lines))]
        return lines, groups, {"path": str(path), "lines": len(lines), "split": "by line"}
    rows = [r for r in read_table(path) if _given(r.get("pl_name"))]
    if not rows:
        raise UserError(f"{path}: no rows with a pl_name column; llm-lora needs an exoplanet table")
    if data is None:
        provenance = {
            "table": "exoplanet.eu (The Extrasolar Planets Encyclopaedia), confirmed planets, "
            "updated to 2024-08-30; Schneider et al. 2011, A&A 532, A79",
            "path": f"astrobio_models/data/{DEFAULT_TABLE.name}",
        }
    else:
        provenance = {"path": str(path)}
    provenance.update({"planets": len(rows), "split": "by host star"})
    return [sentence(r) for r in rows], [system_of(r) for r in rows], provenance


def corpus_lines(data: Path | None) -> tuple[list[str], dict[str, Any]]:
    lines, _, provenance = corpus(data)
    return lines, provenance


def split_by_group(
    groups: list[str], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Train and held-out line indices: a deterministic split of the groups (host stars)."""
    names = list(dict.fromkeys(groups))
    _, va = split_indices(len(names), val_fraction, seed)
    held = {names[i] for i in va}
    return (
        [i for i, g in enumerate(groups) if g not in held],
        [i for i, g in enumerate(groups) if g in held],
    )


class LLMLoRAPlugin:
    name = NAME
    data_kind = "exoplanet-table"
    train_defaults = {"lr": 5e-3, "batch_size": 16, "steps": 1000, "warmup": 50}
    smoke_config = {"hidden": 32, "layers": 1, "heads": 2, "block": 32, "rank": 8, "alpha": 16}
    primary_metric = ("perplexity", "lower")

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            if self.config["model_path"]:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(
                    self.config["model_path"], local_files_only=True
                )
            else:
                self._tokenizer = CharTokenizer()
        return self._tokenizer

    def _encode(self, lines: list[str]) -> list[int]:
        tok = self.tokenizer
        if isinstance(tok, CharTokenizer):
            return [i for ln in lines for i in [BOS, *tok.encode(ln), EOS]]
        eos = tok.eos_token_id if tok.eos_token_id is not None else 0
        return [i for ln in lines for i in [*tok.encode(ln, add_special_tokens=False), eos]]

    def make_datasets(self, data: Path | None, *, seed: int, smoke: bool = False):
        import numpy as np

        from astrobio_cli.training.plugin import Datasets

        c = self.config
        lines, groups, provenance = corpus(data)
        if smoke:
            lines, groups = lines[:SMOKE_PLANETS], groups[:SMOKE_PLANETS]
            provenance["smoke_subset"] = len(lines)
        tr, va = split_by_group(groups, c["val_fraction"], c["split_seed"])
        # The training text repeats its sentences in `repeats` shuffled orders (so blocks start
        # at different sentences); held-out planets (and their siblings) are never in it.
        rng = np.random.default_rng(c["split_seed"])
        train_lines = [lines[i] for _ in range(c["repeats"]) for i in rng.permutation(tr)]
        val_lines = [lines[i] for i in va]
        blocks = {
            "train": _blocks(self._encode(train_lines), c["block"]),
            "val": _blocks(self._encode(val_lines), c["block"]),
        }
        provenance.update(
            {"train_planets": len(tr), "val_planets": len(va),
             "train_hosts": len({groups[i] for i in tr}), "val_hosts": len({groups[i] for i in va}),
             "val_characters": sum(len(ln) for ln in val_lines), "block": c["block"],
             "train_blocks": len(blocks["train"]), "val_blocks": len(blocks["val"])}
        )  # fmt: skip
        context = {
            "train_lines": [lines[i] for i in tr],
            "train_groups": [groups[i] for i in tr],
            "val_lines": val_lines,
        }
        return Datasets(
            train=blocks["train"],
            val=blocks["val"],
            provenance=provenance,
            context=context,
            seed=seed,
        )

    def _base(self):
        """The base model: a local Hugging Face checkpoint, or the built-in tiny Llama (the
        same weights for every run: seeded by `base_seed`)."""
        c = self.config
        if c["model_path"]:
            from transformers import AutoModelForCausalLM

            base = AutoModelForCausalLM.from_pretrained(c["model_path"], local_files_only=True)
        else:
            from transformers import LlamaConfig, LlamaForCausalLM

            cfg = LlamaConfig(
                vocab_size=len(VOCAB),
                hidden_size=c["hidden"],
                intermediate_size=2 * c["hidden"],
                num_hidden_layers=c["layers"],
                num_attention_heads=c["heads"],
                num_key_value_heads=max(1, c["heads"] // 2),
                max_position_embeddings=max(256, 4 * c["block"]),
                pad_token_id=PAD,
                bos_token_id=BOS,
                eos_token_id=EOS,
                tie_word_embeddings=False,
            )
            with torch.random.fork_rng():
                torch.manual_seed(c["base_seed"])  # the same base weights for every run
                base = LlamaForCausalLM(cfg)
        return base

    def build(self, datasets):
        from peft import LoraConfig, get_peft_model

        c = self.config
        base = self._base()
        if c["grad_checkpointing"]:
            base.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
            base.enable_input_require_grads()
        lora = LoraConfig(
            r=c["rank"],
            lora_alpha=c["alpha"],
            lora_dropout=c["lora_dropout"],
            target_modules="all-linear",
            modules_to_save=["lm_head", "embed_tokens"] if c["train_embeddings"] else ["lm_head"],
            task_type="CAUSAL_LM",
        )
        return get_peft_model(base, lora)

    def loss(self, model, batch, datasets):
        return model(input_ids=batch, labels=batch).loss

    def export(self, model, datasets, out_dir: Path) -> None:
        """A PEFT adapter directory (adapter_config.json + adapter_model.safetensors, written
        by `save_pretrained`) that `peft.PeftModel.from_pretrained(base, dir)` and
        `peft.AutoPeftModelForCausalLM.from_pretrained(dir)` load. With the built-in base, the
        base itself (a few MB) goes to `dir/base`, so the adapter loads with no network."""
        import json

        c = self.config
        out_dir = Path(out_dir)
        final = out_dir.parent / "export"  # the loop renames out_dir to <run>/export
        if c["model_path"]:
            base_ref = str(Path(c["model_path"]).resolve())
        else:
            self._base().save_pretrained(out_dir / "base", safe_serialization=True)
            base_ref = str((final / "base").resolve())
        cfg = model.peft_config["default"]
        before = cfg.base_model_name_or_path
        cfg.base_model_name_or_path = base_ref
        try:
            model.save_pretrained(out_dir, safe_serialization=True)
        finally:
            cfg.base_model_name_or_path = before
        (out_dir / "astrobio.json").write_text(
            json.dumps(
                {
                    "model": "llm-lora",
                    "base": base_ref,
                    "tokenizer": "astrobio_models.llm_lora (character level)",
                    "vocab_size": len(VOCAB),
                    "data_provenance": datasets.provenance,
                },
                indent=2,
                default=str,
            ),
            encoding="utf-8",
        )

    def _token_nll(self, model, blocks) -> torch.Tensor:
        """Negative log-likelihood (float64, nats) of every token of each block but the first,
        given the tokens before it in its block: shape (blocks, block - 1)."""
        device = next(model.parameters()).device
        out = []
        for s in range(0, len(blocks), 32):
            ids = torch.stack([blocks[i] for i in range(s, min(len(blocks), s + 32))]).to(device)
            logp = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), dim=-1)
            nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]
            out.append(nll.double().cpu())
        return torch.cat(out)

    def _perplexity(self, model, blocks) -> float:
        return math.exp(float(self._token_nll(model, blocks).mean()))

    def evaluate(self, model, datasets):
        nll = self._token_nll(model, datasets.val)
        return {"perplexity": math.exp(float(nll.mean())), "predictions": nll.numel()}

    def ngram(self, datasets):
        """The Kneser-Ney n-gram on `datasets`' training planets: its order (1..ngram_max_order)
        chosen on a by-host split of the training planets (80/20, with the same block framing),
        then refitted on every training planet (each sentence once, not `repeats` times).
        Returns (model, info); kept for the same `datasets`."""
        from astrobio_models.ngram import fit_selected

        cached = getattr(self, "_ngram_cache", None)
        if cached is not None and cached[0] is datasets:
            return cached[1], cached[2]
        ctx, c = datasets.context, self.config
        lines, groups = ctx["train_lines"], ctx["train_groups"]
        inner_tr, inner_va = split_by_group(groups, 0.2, c["split_seed"] + 1)
        lm, info = fit_selected(
            self._encode(lines),
            self._encode([lines[i] for i in inner_tr]),
            self._encode([lines[i] for i in inner_va]),
            block=len(datasets.val[0]),
            vocab_size=len(self.tokenizer),
            max_order=c["ngram_max_order"],
        )
        self._ngram_cache = (datasets, lm, info)
        return lm, info

    def _ngram_nll(self, lm, blocks):
        """The n-gram's NLL of exactly the tokens `_token_nll` scores, shape (blocks, block - 1).
        Its context stops at the block's start, as the model's does (the same information)."""
        import numpy as np

        from astrobio_models.ngram import blocks_positions

        block = len(blocks[0])
        ids = torch.stack(list(blocks)).reshape(-1).numpy()
        pos, starts = blocks_positions(len(blocks), block)
        return -np.asarray(lm.logprobs(ids, pos, starts)).reshape(len(blocks), block - 1)

    def baseline(self, datasets):
        """Two baselines on the held-out blocks. `base-model`: the base model's perplexity, built
        and scored without adapters (`astrobio eval` loads the checkpoint into the model it
        scores; the base weights are frozen, so a fresh build has the same base: same
        `base_seed` or `model_path`). `kneser-ney`: the n-gram of `ngram`, scored on the same
        predictions; `order` is the order it chose."""
        model = self.build(datasets)
        model.eval()
        with torch.no_grad(), model.disable_adapter():
            base = self.evaluate(model, datasets)
        lm, info = self.ngram(datasets)
        nll = self._ngram_nll(lm, datasets.val)
        kn = {"perplexity": math.exp(float(nll.mean())), "order": info["order"],
              "predictions": nll.size}  # fmt: skip
        return {"base-model": base, "kneser-ney": kn}

    def plot(self, model, datasets, path: Path) -> None:
        """Per held-out planet: the model's perplexity against the n-gram's (left); bits per
        token by kind of token (letter, digit, space, other, special: <bos>/<eos>/<pad>)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
        import numpy as np

        model.eval()
        with torch.no_grad():
            m = self._token_nll(model, datasets.val).numpy()
        lm, info = self.ngram(datasets)
        g = self._ngram_nll(lm, datasets.val)
        ids = torch.stack(list(datasets.val))[:, 1:].reshape(-1).numpy()
        m, g = m.reshape(-1), g.reshape(-1)
        # planet of each predicted token: the number of EOS tokens before it in the text
        flat = torch.stack(list(datasets.val)).reshape(-1).numpy()
        eos = EOS if isinstance(self.tokenizer, CharTokenizer) else self.tokenizer.eos_token_id
        before = np.concatenate([[0], np.cumsum(flat == eos)[:-1]])
        block = len(datasets.val[0])
        line = before.reshape(-1, block)[:, 1:].reshape(-1)
        n = np.bincount(line)
        ok = n > 0
        ppl_m = np.exp(np.bincount(line, m)[ok] / n[ok])
        ppl_g = np.exp(np.bincount(line, g)[ok] / n[ok])

        fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.4))
        ax.scatter(ppl_g, ppl_m, s=6, alpha=0.5)
        lo, hi = min(ppl_g.min(), ppl_m.min()), max(ppl_g.max(), ppl_m.max())
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel=f"Kneser-Ney {info['order']}-gram perplexity",
               ylabel="llm-lora perplexity")  # fmt: skip
        plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
        some = matplotlib.ticker.FuncFormatter(  # 2, 3 and 5 times a power of ten
            lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "235" else ""
        )
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(some)
        ax.set_title(
            f"{ok.sum()} held-out planets (lower is better); the model wins on "
            f"{(ppl_m < ppl_g).mean():.0%}",
            fontsize=10,
        )
        text = self.tokenizer.decode if not isinstance(self.tokenizer, CharTokenizer) else None
        kinds = {"letter": str.isalpha, "digit": str.isdigit, "space": str.isspace}
        names = [*kinds, "other", "special"]

        def kind(t: int) -> str:
            if isinstance(self.tokenizer, CharTokenizer) and t <= UNK:
                return "special"
            ch = (text([t]) if text else VOCAB[t])[:1]
            if not ch:
                return "special"
            return next((k for k, f in kinds.items() if f(ch)), "other")

        lab = np.array([names.index(kind(int(t))) for t in ids])
        x = np.arange(len(names))
        bits = np.log2(np.e)
        for off, v, name in ((-0.2, m, "llm-lora"), (0.2, g, "Kneser-Ney")):
            mean = [v[lab == i].mean() * bits if (lab == i).any() else 0.0 for i in x]
            bx.bar(x + off, mean, width=0.4, label=name)
        bx.set_xticks(x, names)
        bx.set(ylabel="bits per token (held out)", title="by the kind of token predicted")
        bx.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def serve_adapter(self, model, datasets):
        """`astrobio serve llm-lora`: prompt in, text out, through the key-value cache. The
        character tokenizer frames each text with BOS ... EOS ids; a Hugging Face tokenizer
        (--model-path) adds its own special tokens and has an eos_token_id."""
        from astrobio_cli.serve import CausalLMAdapter

        tok = self.tokenizer
        if isinstance(tok, CharTokenizer):
            return CausalLMAdapter(self, model, datasets, tok, prefix_ids=(BOS,), eos_id=EOS)
        return CausalLMAdapter(self, model, datasets, tok)

    def generate(
        self, model, prompt: str, max_new_tokens: int = 40, *, use_cache: bool = True
    ) -> str:
        """Greedy decoding; with `use_cache` the keys and values of past tokens are kept."""
        tok = self.tokenizer
        device = next(model.parameters()).device
        if isinstance(tok, CharTokenizer):
            ids = torch.tensor([[BOS, *tok.encode(prompt)]], device=device)
            eos, pad = EOS, PAD
        else:
            ids = torch.tensor([tok.encode(prompt)], device=device)
            eos, pad = tok.eos_token_id, tok.pad_token_id or tok.eos_token_id
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=use_cache,
            eos_token_id=eos,
            pad_token_id=pad,
        )
        new = out[0, ids.shape[1] :].tolist()
        return tok.decode(new)


def _blocks(ids: list[int], block: int) -> list[torch.Tensor]:
    t = torch.tensor(ids, dtype=torch.long)
    n = len(t) // block
    return (
        list(t[: n * block].view(n, block))
        if n
        else [torch.nn.functional.pad(t, (0, block - len(t)))]
    )
