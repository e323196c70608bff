"""ExoplanetTable: Parquet -> tensors, with explicit missing-value handling and train-only stats."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astrobio_cli.data.datasets import ExoplanetTable
from astrobio_cli.data.splits import make_splits
from astrobio_cli.errors import UsageError

N = 40
FEATURES = ("pl_orbper", "pl_rade", "st_teff")
TARGET = ("pl_eqt",)


@pytest.fixture
def table(tmp_path):
    """A typed Parquet like `astrobio fetch nasa-exoplanet` writes: nulls and NaN for blanks."""
    rng = np.random.default_rng(0)
    orbper = rng.uniform(1, 400, N)
    rade = [None if i % 7 == 3 else float(v) for i, v in enumerate(rng.uniform(0.5, 15, N))]
    teff = rng.uniform(3000, 7000, N)
    teff[[5, 18]] = np.nan
    eqt = rng.uniform(200, 2000, N)
    eqt[[2, 11]] = np.nan
    t = pa.table(
        {
            "pl_name": [f"planet {i}" for i in range(N)],
            "pl_orbper": pa.array(orbper, pa.float64()),
            "pl_rade": pa.array(rade, pa.float64()),
            "st_teff": pa.array(teff, pa.float64()),
            "pl_eqt": pa.array(eqt, pa.float64()),
            "disc_year": pa.array(rng.integers(1995, 2024, N), pa.int64()),
            "sy_pnum": pa.array([None if i % 9 == 4 else i % 5 + 1 for i in range(N)], pa.int64()),
        }
    )
    path = tmp_path / "planets.parquet"
    pq.write_table(t, path)
    frame = {
        "pl_orbper": orbper,
        "pl_rade": np.array([np.nan if v is None else v for v in rade]),
        "st_teff": teff,
        "pl_eqt": eqt,
    }
    return path, frame


def reference_rows(frame, rows, policy):
    f = np.stack([frame[c][rows] for c in FEATURES], axis=1)
    t = frame["pl_eqt"][rows]
    ok = ~np.isnan(t)
    if policy == "drop":
        ok &= ~np.isnan(f).any(axis=1)
    return rows[ok], f[ok], t[ok]


def test_drop_keeps_complete_rows_and_normalises_with_train_stats(table):
    path, frame = table
    splits = make_splits(N, seed=0)
    _, tf, tt = reference_rows(frame, np.array(splits.train), "drop")
    for split in ("train", "test"):
        ds = ExoplanetTable(path, split, features=FEATURES, targets=TARGET, missing="drop")
        rows, f, t = reference_rows(frame, np.array(splits[split]), "drop")
        np.testing.assert_array_equal(ds.row_ids, rows)
        want = (f - tf.mean(axis=0)) / tf.std(axis=0)
        np.testing.assert_allclose(ds.features.numpy(), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            ds.targets.numpy()[:, 0], (t - tt.mean()) / tt.std(), rtol=1e-5, atol=1e-6
        )
        assert not np.isnan(ds.features.numpy()).any()


def test_impute_median_uses_the_train_median_and_still_drops_missing_targets(table):
    path, frame = table
    splits = make_splits(N, seed=0)
    _, train_f, _ = reference_rows(frame, np.array(splits.train), "impute-median")
    medians = np.nanmedian(train_f, axis=0)
    ds = ExoplanetTable(
        path, "train", features=FEATURES, targets=TARGET, missing="impute-median", normalize=False
    )
    rows, f, t = reference_rows(frame, np.array(splits.train), "impute-median")
    assert np.isnan(f).any()  # the fixture has gaps to fill
    filled = np.where(np.isnan(f), medians[None, :], f)
    np.testing.assert_array_equal(ds.row_ids, rows)
    np.testing.assert_allclose(ds.features.numpy(), filled, rtol=1e-6)
    np.testing.assert_allclose(ds.targets.numpy()[:, 0], t, rtol=1e-6)
    assert ds.stats["median"]["pl_rade"] == pytest.approx(medians[1], rel=1e-12)
    assert len(ds) > len(ExoplanetTable(path, "train", features=FEATURES, targets=TARGET))
    x, y = ds[0]
    assert x.shape == (3,) and y.shape == (1,)


def test_bad_columns_and_policies_are_clear_errors(table, tmp_path):
    path, _ = table
    with pytest.raises(UsageError, match=r"no column.*pl_massj"):
        ExoplanetTable(path, features=("pl_massj",))
    with pytest.raises(UsageError, match=r"'pl_name' .* not numeric"):
        ExoplanetTable(path, features=("pl_name",))
    with pytest.raises(UsageError, match="missing-value policy"):
        ExoplanetTable(path, features=FEATURES, missing="zero")
    (tmp_path / "x.parquet").write_text("pl_name,pl_rade\n")
    with pytest.raises(UsageError, match=r"cannot read .* as Parquet"):
        ExoplanetTable(tmp_path / "x.parquet")


def test_integer_columns_with_nulls_are_missing_values(table):
    path, _ = table
    sy_pnum = np.array([np.nan if i % 9 == 4 else i % 5 + 1 for i in range(N)])
    ds = ExoplanetTable(path, "train", features=("sy_pnum",), targets=TARGET, normalize=False)
    rows = np.array(make_splits(N, seed=0).train)
    eqt = pq.read_table(path, columns=["pl_eqt"]).column(0).to_numpy()
    keep = rows[~np.isnan(sy_pnum[rows]) & ~np.isnan(eqt[rows])]
    np.testing.assert_array_equal(ds.row_ids, keep)
    np.testing.assert_array_equal(ds.features.numpy()[:, 0], sy_pnum[keep].astype(np.float32))
