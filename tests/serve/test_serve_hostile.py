"""`astrobio serve` under hostile request bodies (issue 13, items 14 and 16): NaN, Infinity and
`1e400` are a 422 naming the field (never a 500 from a body that cannot be encoded), and `"23.4"`
or `true` are not numbers. Checked on any adapter (a toy one, in process) and on a real cube-unet
server started from a `--quick-smoke` checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from astrobio_cli.serve import Served, create_app
from tests.serve.test_serve import _planet

NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e400")


class ToyInput(BaseModel):
    """Declared the lax way (the pydantic default) on purpose: the core makes it strict."""

    model_config = ConfigDict(extra="forbid")
    x: float = Field(ge=-10, le=10)
    n: int = Field(1, ge=1, le=5)
    grid: list[list[float]] | None = None


class ToyAdapter:
    input_model = ToyInput

    def describe(self) -> dict[str, Any]:
        return {}

    def predict(self, items):
        return [{"x": it.x, "n": it.n} for it in items]


@pytest.fixture(scope="module")
def client():
    served = Served("toy", Path("toy.ckpt"), {}, None, ToyAdapter(), "cpu")
    with TestClient(create_app(served), raise_server_exceptions=False) as c:
        yield c


def post(client, path: str, raw: str):
    return client.post(path, content=raw, headers={"content-type": "application/json"})


def assert_422_naming(res, field: str) -> list[dict]:
    assert res.status_code == 422, (res.status_code, res.text)
    body = json.loads(res.text)  # standard JSON: parses without NaN/Infinity extensions
    assert "NaN" not in res.text and "Infinity" not in res.text  # not echoed
    locs = [d["loc"] for d in body["detail"]]
    assert any(field in loc for loc in locs), locs
    return body["detail"]


@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_number_is_422_naming_the_field(client, value):
    res = post(client, "/v1/predict", '{"instances": [{"x": ' + value + "}]}")
    detail = assert_422_naming(res, "x")
    assert all("input" not in d for d in detail if "x" in d["loc"])
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_value_inside_a_list_is_422_naming_the_field(client, value):
    res = post(client, "/v1/predict", '{"instances": [{"x": 1, "grid": [[0.5, ' + value + "]]}]}")
    assert_422_naming(res, "grid")


@pytest.mark.parametrize("field", ["max_new_tokens", "temperature"])
def test_generate_non_finite_is_422(client, field):
    res = post(client, "/v1/generate", '{"prompt": "hi", "' + field + '": NaN}')
    assert_422_naming(res, field)


@pytest.mark.parametrize("value", ['"2.5"', "true", "false", '"1"', "[1]"])
def test_strings_and_booleans_are_not_numbers(client, value):
    res = post(client, "/v1/predict", '{"instances": [{"x": ' + value + "}]}")
    assert_422_naming(res, "x")
    res = post(client, "/v1/predict", '{"instances": [{"x": 1, "n": ' + value + "}]}")
    assert_422_naming(res, "n")


def test_generate_strict_types(client):
    for body in ('{"prompt": "hi", "max_new_tokens": "5"}', '{"prompt": "hi", "stream": "yes"}'):
        assert post(client, "/v1/generate", body).status_code == 422


def test_integers_are_fine_floats(client):
    res = post(client, "/v1/predict", '{"instances": [{"x": 1, "n": 2, "grid": [[0, 1]]}]}')
    assert res.status_code == 200, res.text
    assert res.json()["predictions"] == [{"x": 1.0, "n": 2}]
    assert post(client, "/v1/predict", '{"instances": [{"x": -2.5}]}').status_code == 200


# -- a real cube-unet server ---------------------------------------------------------------------


def _raw(planet: dict, **literal: str) -> str:
    """The request body with some fields written as raw JSON text (NaN, 1e400, "23.4")."""
    body = json.dumps({"instances": [{**planet, **{k: f"@{k}@" for k in literal}}]})
    for k, text in literal.items():
        body = body.replace(f'"@{k}@"', text)
    return body


def _post_raw(base: str, raw: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/predict", content=raw, headers={"content-type": "application/json"}, timeout=60
    )


def test_cube_unet_non_finite_inputs_are_422(server):
    base = server[0]
    for field, text in [("stellar_flux", "NaN"), ("stellar_flux", "1e400"),
                        ("obliquity", "Infinity"), ("surface_albedo", "-Infinity")]:  # fmt: skip
        assert_422_naming(_post_raw(base, _raw(_planet(), **{field: text})), field)
    (m,) = httpx.get(f"{base}/v1/models").json()["data"]
    nlat, nlon = len(m["describe"]["grid"]["lat"]), len(m["describe"]["grid"]["lon"])
    for text in ("NaN", "Infinity", "1e400"):
        rows = [[0.0] * nlon for _ in range(nlat)]
        mask = json.dumps(rows).replace("0.0", text, 1)
        assert_422_naming(_post_raw(base, _raw(_planet(), land_mask=mask)), "land_mask")
        rsdt = json.dumps([300.0] * nlat).replace("300.0", text, 1)
        assert_422_naming(_post_raw(base, _raw(_planet(), rsdt=rsdt)), "rsdt")
    assert httpx.get(f"{base}/health").status_code == 200


def test_cube_unet_strict_numbers(server):
    base = server[0]
    for text in ('"23.4"', "true"):
        assert_422_naming(_post_raw(base, _raw(_planet(), obliquity=text)), "obliquity")
    # integers are numbers: 1 for a float field is accepted, in a land mask too
    (m,) = httpx.get(f"{base}/v1/models").json()["data"]
    nlat, nlon = len(m["describe"]["grid"]["lat"]), len(m["describe"]["grid"]["lon"])
    body = {"instances": [_planet(rotation_period=1, obliquity=23, land_mask=[[0] * nlon] * nlat)]}
    res = httpx.post(f"{base}/v1/predict", json=body, timeout=120)
    assert res.status_code == 200, res.text
