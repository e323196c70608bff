"""`llm-lora`: a causal language model fine-tuned with PEFT LoRA on text about exoplanets.

Base model: by default a tiny Llama-architecture model built here from a `transformers` config
(no download; `hidden`, `layers`, `heads`), over a fixed character vocabulary (printable ASCII
and newline); or any local Hugging Face checkpoint with `model_path` (`--model-path DIR`), with
its own tokenizer. The base weights are frozen; LoRA adapters (rank `rank`, on every linear
layer) and the output layer are trained.

Data: a corpus generated from an exoplanet table: one sentence per planet from its columns
(name, host star, discovery method and year, orbital period, radius). Default: the small table
of well-known planets below (values rounded from the NASA Exoplanet Archive); `--data` takes a
CSV with the archive's column names (`pl_name`, `hostname`, `discoverymethod`, `disc_year`,
`pl_orbper`, `pl_rade`; any subset with `pl_name`) or a plain `.txt` corpus. Planets (lines)
are split into train and held-out sets; the text is cut into blocks of `block` tokens.

Metric: held-out perplexity. Baseline: the base model's perplexity (the same network with the
adapters switched off). Generation (`generate`) decodes with the key-value cache.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch

from astrobio_models._common import options, split_indices

NAME = "llm-lora"
# (name, host, method, year, period days, radius Earth radii or None)
PLANETS = [
    ("51 Peg b", "51 Peg", "Radial Velocity", 1995, 4.23, None),
    ("HD 209458 b", "HD 209458", "Transit", 1999, 3.52, 15.4),
    ("HD 189733 b", "HD 189733", "Transit", 2005, 2.22, 12.7),
    ("55 Cnc e", "55 Cnc", "Radial Velocity", 2004, 0.74, 1.88),
    ("GJ 581 c", "GJ 581", "Radial Velocity", 2007, 12.92, None),
    ("WASP-12 b", "WASP-12", "Transit", 2008, 1.09, 21.3),
    ("GJ 1214 b", "GJ 1214", "Transit", 2009, 1.58, 2.74),
    ("Kepler-22 b", "Kepler-22", "Transit", 2011, 289.86, 2.38),
    ("Kepler-16 b", "Kepler-16", "Transit", 2011, 228.78, 8.45),
    ("WASP-39 b", "WASP-39", "Transit", 2011, 4.06, 14.3),
    ("Kepler-62 f", "Kepler-62", "Transit", 2013, 267.29, 1.41),
    ("Kepler-186 f", "Kepler-186", "Transit", 2014, 129.94, 1.17),
    ("Kepler-452 b", "Kepler-452", "Transit", 2015, 384.84, 1.63),
    ("K2-18 b", "K2-18", "Transit", 2015, 32.94, 2.61),
    ("Proxima Cen b", "Proxima Cen", "Radial Velocity", 2016, 11.19, None),
    ("TRAPPIST-1 d", "TRAPPIST-1", "Transit", 2016, 4.05, 0.79),
    ("TRAPPIST-1 e", "TRAPPIST-1", "Transit", 2017, 6.10, 0.92),
    ("TRAPPIST-1 f", "TRAPPIST-1", "Transit", 2017, 9.21, 1.05),
    ("TRAPPIST-1 g", "TRAPPIST-1", "Transit", 2017, 12.35, 1.13),
    ("LHS 1140 b", "LHS 1140", "Transit", 2017, 24.74, 1.73),
    ("TOI-700 d", "TOI-700", "Transit", 2020, 37.42, 1.07),
    ("TOI-270 d", "TOI-270", "Transit", 2019, 11.38, 2.13),
    ("LP 791-18 d", "LP 791-18", "Transit", 2023, 2.75, 1.03),
    ("Teegarden's Star b", "Teegarden's Star", "Radial Velocity", 2019, 4.91, None),
    ("Ross 128 b", "Ross 128", "Radial Velocity", 2017, 9.87, None),
    ("Barnard b", "Barnard's star", "Radial Velocity", 2024, 3.15, None),
    ("Kepler-442 b", "Kepler-442", "Transit", 2015, 112.3, 1.34),
    ("Kepler-1649 c", "Kepler-1649", "Transit", 2020, 19.54, 1.06),
    ("HD 80606 b", "HD 80606", "Radial Velocity", 2001, 111.44, 11.0),
    ("Beta Pic b", "Beta Pic", "Imaging", 2008, None, None),
    ("HR 8799 e", "HR 8799", "Imaging", 2010, None, None),
    ("OGLE-2005-BLG-390L b", "OGLE-2005-BLG-390L", "Microlensing", 2005, None, None),
]
VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>", "\n", *[chr(c) for c in range(32, 127)]]
PAD, BOS, EOS, UNK = 0, 1, 2, 3

DEFAULTS: dict[str, Any] = {
    "hidden": 64,
    "layers": 2,
    "heads": 4,
    "block": 64,
    "rank": 8,
    "alpha": 16,
    "lora_dropout": 0.0,
    "repeats": 8,
    "model_path": None,
    "base_seed": 0,
    "val_fraction": 0.2,
    "split_seed": 0,
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


def sentence(row: dict[str, Any]) -> str:
    """One line about a planet from whichever columns it has."""
    name = str(row.get("pl_name") or "").strip()
    parts = [f"{name} orbits {row['hostname']}" if row.get("hostname") else name]
    if row.get("discoverymethod"):
        how = f"was found by {str(row['discoverymethod']).lower()}"
        if row.get("disc_year"):
            how += f" in {int(float(row['disc_year']))}"
        parts.append(how)
    if row.get("pl_orbper") not in (None, ""):
        parts.append(f"its year lasts {float(row['pl_orbper']):.2f} days")
    if row.get("pl_rade") not in (None, ""):
        parts.append(f"its radius is {float(row['pl_rade']):.2f} Earth radii")
    return ", ".join(parts) + "."


def builtin_rows() -> list[dict[str, Any]]:
    keys = ("pl_name", "hostname", "discoverymethod", "disc_year", "pl_orbper", "pl_rade")
    return [dict(zip(keys, p, strict=True)) for p in PLANETS]


def corpus_lines(data: Path | None) -> tuple[list[str], dict[str, Any]]:
    from astrobio_cli.errors import UserError

    if data is None:
        rows = builtin_rows()
        return [sentence(r) for r in rows], {
            "table": "built-in (llm_lora.PLANETS)",
            "planets": len(rows),
        }
    path = Path(data)
    if path.suffix.lower() == ".txt":
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        return lines, {"path": str(path), "lines": len(lines)}
    with path.open(newline="", encoding="utf-8") as fh:
        dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
        rows = [r for r in csv.DictReader(fh, dialect=dialect) if r.get("pl_name")]
    if not rows:
        raise UserError(f"{path}: no rows with a pl_name column; llm-lora needs an exoplanet table")
    return [sentence(r) for r in rows], {"path": str(path), "planets": len(rows)}


class LLMLoRAPlugin:
    name = NAME
    data_kind = "exoplanet-table"
    train_defaults = {"lr": 1e-2, "batch_size": 16, "steps": 300, "warmup": 20}
    smoke_config = {"hidden": 32, "layers": 1, "heads": 2, "block": 32, "repeats": 2}
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
        lines, provenance = corpus_lines(data)
        tr, va = split_indices(len(lines), c["val_fraction"], c["split_seed"])
        # The training text repeats its sentences in `repeats` shuffled orders (so blocks start
        # at different sentences); held-out planets are never in it.
        rng = np.random.default_rng(c["split_seed"])
        train_lines = [lines[i] for _ in range(c["repeats"]) for i in rng.permutation(tr)]
        blocks = {
            "train": _blocks(self._encode(train_lines), c["block"]),
            "val": _blocks(self._encode([lines[i] for i in va]), c["block"]),
        }
        provenance.update(
            {"train_planets": len(tr), "val_planets": len(va), "block": c["block"],
             "train_blocks": len(blocks["train"]), "val_blocks": len(blocks["val"])}
        )  # fmt: skip
        return Datasets(train=blocks["train"], val=blocks["val"], provenance=provenance)

    def build(self, datasets):
        from peft import LoraConfig, get_peft_model

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
            modules_to_save=["lm_head"],
            task_type="CAUSAL_LM",
        )
        return get_peft_model(base, lora)

    def loss(self, model, batch, datasets):
        return model(input_ids=batch, labels=batch).loss

    def _perplexity(self, model, blocks) -> float:
        device = next(model.parameters()).device
        total, count = 0.0, 0
        for s in range(0, len(blocks), 32):
            ids = torch.stack([blocks[i] for i in range(s, min(len(blocks), s + 32))]).to(device)
            out = model(input_ids=ids, labels=ids)
            n = ids.numel() - ids.shape[0]  # next-token predictions per block: T - 1
            total += float(out.loss) * n
            count += n
        return math.exp(total / max(1, count))

    def evaluate(self, model, datasets):
        return {"perplexity": self._perplexity(model, datasets.val)}

    def baseline(self, datasets):
        """The base model's held-out perplexity: built and scored without adapters. `astrobio
        eval` loads the checkpoint into the model it scores; the base weights are frozen, so a
        fresh build has the same base (same `base_seed` or `model_path`)."""
        model = self.build(datasets)
        model.eval()
        with torch.no_grad(), model.disable_adapter():
            return {"base-model": {"perplexity": self._perplexity(model, datasets.val)}}

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
