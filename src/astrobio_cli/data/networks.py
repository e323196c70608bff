"""The metabolic-network kind: a genome-scale metabolic model, read once into plain data.

`read_metabolic_network(source)` reads an SBML file (`.xml`, `.sbml`, also gzip `.xml.gz`), a
cobra JSON model (`.json`) or the name of a model cobra ships offline (`textbook`: E. coli core,
`iJO1366`: E. coli, `salmonella`: iYS1720; a `cobra:` prefix is allowed) through cobra, and
returns a `MetabolicNetwork`: plain, picklable dataclasses (no cobra object leaks out) with

- `metabolites`, in the model's order: id, name, compartment (id, "" when the model gives none),
  formula, `elements` (atom counts parsed from the formula by cobra, {} when there is no formula
  or it does not parse) and charge (None when the model gives none);
- `reactions`, in the model's order: id, name, `stoichiometry` (metabolite id -> coefficient,
  negative for a substrate), lower and upper flux bounds (`reversible` when lower < 0 < upper,
  cobra's rule) and the gene-protein-reaction rule as text;
- `compartments` (id -> name), `genes` (ids), the model's id and name;
- provenance: `source` (as given), `format` (sbml, cobra-json or builtin), `sha256` of the file
  read (for a built-in name, of the file cobra ships: `cobra/data/<name>.xml.gz`), the cobra
  version, and the built-in name. `provenance()` gives them as a dict for run cards.

A missing file, a file cobra cannot read, or one that holds no reactions or no metabolites is a
`UsageError` naming the file and what to give instead. cobra is imported only when reading.
No torch, no plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrobio_cli.data.lineage import file_sha256
from astrobio_cli.errors import UsageError

BUILTIN = ("textbook", "iJO1366", "salmonella")
JSON_SUFFIXES = (".json",)
SBML_SUFFIXES = (".xml", ".sbml", ".gz")
_GIVE = (
    "give an SBML file (.xml, .sbml), a cobra JSON model (.json; cobra.io.write_sbml_model and "
    f"save_json_model write them) or one of the models cobra ships: {', '.join(BUILTIN)}"
)


@dataclass(frozen=True)
class Metabolite:
    id: str
    name: str
    compartment: str  # "" when the model gives none
    formula: str  # "" when the model gives none
    elements: dict[str, float] = field(default_factory=dict)  # atom counts from the formula
    charge: float | None = None


@dataclass(frozen=True)
class Reaction:
    id: str
    name: str
    stoichiometry: dict[str, float]  # metabolite id -> coefficient (< 0: consumed)
    lower_bound: float
    upper_bound: float
    gene_rule: str = ""  # gene-protein-reaction rule, e.g. "b0351 or b1241"

    @property
    def reversible(self) -> bool:
        return self.lower_bound < 0 < self.upper_bound

    @property
    def metabolites(self) -> tuple[str, ...]:
        return tuple(self.stoichiometry)


@dataclass(frozen=True)
class MetabolicNetwork:
    id: str
    name: str
    metabolites: tuple[Metabolite, ...]
    reactions: tuple[Reaction, ...]
    compartments: dict[str, str]  # id -> name
    genes: tuple[str, ...]
    source: str  # as given: a path or a built-in name
    format: str  # "sbml", "cobra-json" or "builtin"
    sha256: str | None  # of the file read (for a built-in, cobra's shipped file) if found
    cobra_version: str
    builtin: str | None = None  # the built-in model's name

    def metabolite_index(self) -> dict[str, int]:
        """Metabolite id -> position in `metabolites`."""
        return {m.id: i for i, m in enumerate(self.metabolites)}

    def provenance(self) -> dict[str, Any]:
        """What a run card records about the network: where it came from and its size."""
        out: dict[str, Any] = {
            "source": self.source,
            "format": self.format,
            "sha256": self.sha256,
            "cobra_version": self.cobra_version,
            "model_id": self.id,
            "metabolites": len(self.metabolites),
            "reactions": len(self.reactions),
        }
        if self.builtin is not None:
            out["builtin"] = self.builtin
        return out


def _builtin_file(name: str) -> Path | None:
    """The SBML file cobra ships for a built-in model, if it is there."""
    try:
        from importlib.resources import files

        p = Path(str(files("cobra.data") / f"{name}.xml.gz"))
    except Exception:
        return None
    return p if p.is_file() else None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 160:  # cobra's messages run on: keep the first sentence
        first = text.split(". ", 1)[0]
        text = first if len(first) <= 160 else first[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _convert(model: Any, **prov: Any) -> MetabolicNetwork:
    mets = []
    for m in model.metabolites:
        try:
            elements = dict(m.elements or {})
        except Exception:  # a formula cobra cannot parse: no atom counts
            elements = {}
        mets.append(
            Metabolite(
                id=str(m.id),
                name=str(m.name or ""),
                compartment=str(m.compartment or ""),
                formula=str(m.formula or ""),
                elements=elements,
                charge=m.charge,
            )
        )
    reactions = tuple(
        Reaction(
            id=str(r.id),
            name=str(r.name or ""),
            stoichiometry={str(m.id): float(c) for m, c in r.metabolites.items()},
            lower_bound=float(r.lower_bound),
            upper_bound=float(r.upper_bound),
            gene_rule=str(r.gene_reaction_rule or ""),
        )
        for r in model.reactions
    )
    return MetabolicNetwork(
        id=str(model.id or ""),
        name=str(model.name or ""),
        metabolites=tuple(mets),
        reactions=reactions,
        compartments={str(k): str(v or "") for k, v in (model.compartments or {}).items()},
        genes=tuple(str(g.id) for g in model.genes),
        **prov,
    )


def read_metabolic_network(source: str | Path) -> MetabolicNetwork:
    """Read a metabolic model (SBML, cobra JSON or a built-in name) into a `MetabolicNetwork`."""
    import logging

    logging.getLogger("cobra").setLevel(logging.ERROR)  # cobra logs every SBML quirk
    given = str(source)
    name = given.removeprefix("cobra:")
    if not given.strip():
        raise UsageError(f"no metabolic network given; {_GIVE}")
    if isinstance(source, str) and name in BUILTIN:
        import cobra

        try:
            model = cobra.io.load_model(name)
        except Exception as exc:
            raise UsageError(
                f"cannot load cobra's built-in model {name!r} ({_one_line(exc)}); reinstall "
                f"cobra or give an SBML / cobra JSON file"
            ) from None
        shipped = _builtin_file(name)
        prov = {
            "source": given,
            "format": "builtin",
            "sha256": file_sha256(shipped) if shipped else None,
            "cobra_version": cobra.__version__,
            "builtin": name,
        }
        return _check(_convert(model, **prov), given)
    path = Path(source)
    if not path.exists():
        raise UsageError(
            f"metabolic network {path} does not exist (nor is it a model cobra ships); {_GIVE}"
        )
    if not path.is_file():
        raise UsageError(f"metabolic network {path} is not a file; {_GIVE}")
    import cobra

    is_json = path.suffix.lower() in JSON_SUFFIXES
    try:
        if is_json:
            model = cobra.io.load_json_model(str(path))
        else:
            model = cobra.io.read_sbml_model(str(path))
    except Exception as exc:
        what = "a cobra JSON model" if is_json else "SBML"
        raise UsageError(
            f"cannot read {path} as {what} ({_one_line(exc)}); it is not a metabolic model "
            f"cobra can read: {_GIVE}"
        ) from None
    prov = {
        "source": given,
        "format": "cobra-json" if is_json else "sbml",
        "sha256": file_sha256(path),
        "cobra_version": cobra.__version__,
    }
    return _check(_convert(model, **prov), given)


def _check(net: MetabolicNetwork, given: str) -> MetabolicNetwork:
    if not net.metabolites or not net.reactions:
        raise UsageError(
            f"{given} holds no metabolic model: {len(net.reactions)} reactions and "
            f"{len(net.metabolites)} metabolites; {_GIVE}"
        )
    return net
