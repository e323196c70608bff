"""`astrobio fetch cds` against a loopback Copernicus Climate Data Store (retrieve API).

The server plays the CDS's OGC-API-Processes job flow with the job documents recorded in
tests/data/cds/ (accepted -> running -> successful, failed with the CDS's own traceback, a 404
for an unknown dataset) and serves a small ERA5-format NetCDF (`make_era5_samples.py` there) as
the job's asset. Expected cube values come from reading that NetCDF with netCDF4 directly and
applying the documented conversion by hand (lat flipped, hPa -> Pa, J m-2 per day / 86400),
never from the code under test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from httpserver import Reply

DATA = Path(__file__).resolve().parents[1] / "data" / "cds"
API = "https://cds.climate.copernicus.eu/api"
STORE = "https://object-store.data.compute.cci2.ecmwf.int"
PRESSURE = "reanalysis-era5-pressure-levels-monthly-means"
SECRET = "a1b2c3d4-e5f6-4789-abcd-0123456789ef"
JOB = "5b3c8f2e-9d41-4a7e-b0c6-2f8e1d7a4c90"
FAILED = "d1e0c9a7-3b52-4f18-9e6d-7a2c4b8f0e13"
NC = DATA / "era5-pressure-levels-monthly-means.nc"


def doc(name: str, srv) -> bytes:
    """A recorded CDS document, its links pointed at the loopback server."""
    text = (DATA / name).read_text()
    return text.replace(API, srv.base_url).replace(STORE, srv.base_url + "/store").encode()


def asset_path() -> str:
    href = json.loads((DATA / "results-successful.json").read_text())["asset"]["value"]["href"]
    return "/store" + href[len(STORE) :]


def as_json(body: bytes, status: int = 200, **kw) -> Reply:
    return Reply(status, body, content_type="application/json", **kw)


class FakeCds:
    """The job flow: POST .../execution answers `submit`, each GET of the job the next of
    `polls` (the last repeats), results and asset from the recordings. Another dataset, job
    or asset file: the recorded documents with those names substituted."""

    def __init__(
        self, srv, polls=("job-running.json", "job-successful.json"), job=JOB, dataset=PRESSURE,
        nc=NC,
    ):  # fmt: skip
        self.srv, self.job = srv, job
        self.asset = asset_path() if nc == NC else asset_path().replace(".nc", f"-{nc.stem}.nc")

        def rec(name: str) -> bytes:
            body = doc(name, srv).replace(JOB.encode(), job.encode())
            return body.replace(PRESSURE.encode(), dataset.encode()).replace(
                asset_path().encode(), self.asset.encode()
            )

        self.execution = f"/retrieve/v1/processes/{dataset}/execution"
        self.monitor = f"/retrieve/v1/jobs/{job}"
        srv.route("POST", self.execution, as_json(rec("job-accepted.json"), 201))
        srv.route("GET", self.monitor, *[as_json(rec(p)) for p in polls])
        srv.route("GET", self.monitor + "/results", as_json(rec("results-successful.json")))
        srv.route(
            "GET", self.asset, Reply(200, nc.read_bytes(), content_type="application/x-netcdf")
        )


@pytest.fixture
def cds(server, point):
    point("cds", server, API_KEY=SECRET)
    return server


def args(out: Path, *more: str) -> list[str]:
    return ["fetch", "cds", "--variable", "t,q", "--pressure-level", "1000,850,500",
            "--year", "2020", "--month", "1-4", "--out", str(out), *more]  # fmt: skip


def expected_pressure() -> dict[str, np.ndarray]:
    """t, q and the coordinates as the cube must hold them (independent netCDF4 read)."""
    with netCDF4.Dataset(NC) as nc:
        t = np.asarray(nc["t"][:], dtype=np.float64)
        q = np.asarray(nc["q"][:], dtype=np.float64)
        lat = np.asarray(nc["latitude"][:])
        lev = np.asarray(nc["pressure_level"][:])
    order = np.argsort(lat)  # south to north
    return {
        "ta": t[:, :, order],
        "hus": q[:, :, order],
        "lat": lat[order],
        "plev": lev * 100.0,  # stored 1000 hPa first: already surface first
    }


def check_cube(path: Path) -> None:
    want = expected_pressure()
    with netCDF4.Dataset(path) as nc:
        assert nc["ta"].dimensions == ("sample", "plev", "lat", "lon")
        assert nc["ta"].units == "K" and nc["hus"].units == "kg kg-1"
        assert nc["ta"].era5_name == "t" and nc["ta"].GRIB_paramId == 130  # ERA5 attrs kept
        assert nc["plev"].units == "Pa" and nc["lat"].units == "degrees_north"
        np.testing.assert_allclose(nc["plev"][:], want["plev"])
        np.testing.assert_allclose(nc["lat"][:], want["lat"])
        np.testing.assert_allclose(nc["ta"][:], want["ta"], rtol=1e-7)
        np.testing.assert_allclose(nc["hus"][:], want["hus"], rtol=1e-7)
        assert nc.institution == "European Centre for Medium-Range Weather Forecasts"
        assert nc.cds_dataset == PRESSURE and nc.cds_job_id == JOB
        assert json.loads(nc.cds_request)["pressure_level"] == ["1000", "850", "500"]
        times = netCDF4.num2date(nc["time"][:], nc["time"].units)
        assert [d.month for d in times] == [1, 2, 3, 4]


def test_job_queued_running_successful_then_cache(cds, tmp_path):
    from astrobio_data_sources import cds as src

    fake = FakeCds(cds, polls=("job-accepted.json", "job-running.json", "job-running.json",
                               "job-successful.json"))  # fmt: skip
    said: list[str] = []
    q = src.CdsQuery.from_options(
        "pressure", ["t,q"], ["1000,850,500"], ["2020"], ["1-4"], grid="30"
    )
    out = tmp_path / "era5.nc"
    res = src.fetch(q, out=out, say=said.append)
    (post,) = cds.hits(fake.execution, "POST")
    body = json.loads(post.body)
    assert body == {"inputs": q.inputs}
    assert body["inputs"]["variable"] == ["temperature", "specific_humidity"]
    assert body["inputs"]["month"] == ["01", "02", "03", "04"]
    assert body["inputs"]["grid"] == ["30", "30"]
    assert post.headers["private-token"] == SECRET
    assert len(cds.hits(fake.monitor)) == 4
    assert all(r.headers.get("private-token") == SECRET for r in cds.hits(fake.monitor))
    (asset,) = cds.hits(asset_path())
    assert "private-token" not in asset.headers  # the key stays with the API
    # every status change is announced with the elapsed time
    states = [line.split()[3] for line in said]
    assert states == ["accepted", "running", "successful"], said
    assert all("s elapsed)" in line and JOB in line for line in said)
    check_cube(out)
    assert res.job_id == JOB and res.samples == 4 and res.grid == {"plev": 3, "lat": 7, "lon": 12}
    prov = json.loads(res.provenance.read_text())
    assert prov["job_id"] == JOB and prov["dataset"] == PRESSURE
    assert prov["requests"][0]["url"].endswith(asset_path())
    assert prov["request"] == {"inputs": q.inputs}
    assert SECRET not in res.provenance.read_text()
    # Asked again: the cache answers, the CDS sees no new job.
    said.clear()
    again = src.fetch(q, out=tmp_path / "again.nc", say=said.append)
    assert again.from_cache and again.job_id == JOB
    assert len(cds.hits(fake.execution)) == 1 and len(cds.hits(asset_path())) == 1
    assert "cache hit" in said[0]
    check_cube(tmp_path / "again.nc")


def test_failed_job_quotes_the_cds_error(cds, cli, tmp_path):
    fake = FakeCds(cds, job=FAILED)
    cds.route("POST", fake.execution, as_json(doc("job-failed.json", cds), 201))
    cds.route(
        "GET", f"/retrieve/v1/jobs/{FAILED}/results", as_json(doc("results-failed.json", cds), 400)
    )
    out = tmp_path / "x.nc"
    r = cli(*args(out, "--pressure-level", "1013"))
    assert r.exit_code == 1, r.output
    msg = " ".join(r.output.split())
    assert f"CDS job {FAILED}" in msg and "failed" in msg
    assert "Your request has not produced a valid combination of values" in msg
    assert "The job has failed" in msg
    assert not out.exists() and SECRET not in r.output
    assert "Traceback" not in r.output.split("The job has failed")[0]  # no Python traceback


def test_429_and_5xx_are_retried(cds, tmp_path):
    from astrobio_data_sources import cds as src

    fake = FakeCds(cds)
    cds.route(
        "POST",
        fake.execution,
        as_json(b'{"title": "too many requests"}', 429, headers={"Retry-After": "0"}),
        as_json(doc("job-accepted.json", cds), 201),
    )
    cds.route(
        "GET",
        fake.monitor,
        Reply(
            503, b"<html><title>503 Service Unavailable</title></html>", content_type="text/html"
        ),
        as_json(doc("job-running.json", cds)),
        Reply(502, b"bad gateway"),
        as_json(doc("job-successful.json", cds)),
    )
    q = src.CdsQuery.from_options("pressure", ["t,q"], ["1000,850,500"], ["2020"], ["1-4"])
    said: list[str] = []
    src.fetch(q, out=tmp_path / "r.nc", say=said.append)
    assert len(cds.hits(fake.execution)) == 2
    assert len(cds.hits(fake.monitor)) == 4
    check_cube(tmp_path / "r.nc")


def test_truncated_download_resumes_with_range(cds, tmp_path):
    from astrobio_data_sources import cds as src

    fake = FakeCds(cds, polls=("job-successful.json",))
    body = NC.read_bytes()
    cut = len(body) // 3
    cds.route(
        "GET",
        asset_path(),
        Reply(200, body, ranges=True, send_bytes=cut, headers={"ETag": '"v1"'}),
        Reply(200, body, ranges=True, headers={"ETag": '"v1"'}),
    )
    q = src.CdsQuery.from_options("pressure", ["t,q"], ["1000,850,500"], ["2020"], ["1-4"])
    res = src.fetch(q, out=tmp_path / "t.nc", say=lambda _l: None)
    first, second = cds.hits(asset_path())
    assert "range" not in first.headers
    assert second.headers["range"] == f"bytes={cut}-"
    assert len(cds.hits(fake.execution)) == 1  # the job is not submitted again
    prov = json.loads(res.provenance.read_text())
    import hashlib

    assert prov["requests"][0]["sha256"] == hashlib.sha256(body).hexdigest()
    check_cube(tmp_path / "t.nc")


def test_a_job_queued_past_the_command_deadline_is_a_clear_error(server, point, tmp_path):
    from astrobio_cli.net.errors import NetworkError
    from astrobio_data_sources import cds as src

    point("cds", server, API_KEY=SECRET, BACKOFF="0.5", COMMAND_DEADLINE="3")
    fake = FakeCds(server, polls=("job-accepted.json",))  # queued for ever
    q = src.CdsQuery.from_options("pressure", ["t"], ["500"], ["2020"], ["1"])
    with pytest.raises(NetworkError) as err:
        src.fetch(q, out=tmp_path / "d.nc", say=lambda _l: None)
    msg = str(err.value)
    assert f"CDS job {JOB}" in msg and "still accepted" in msg
    assert "sources.cds.command_deadline" in msg and "run the same command again later" in msg
    assert 1 <= len(server.hits(fake.monitor)) <= 5 and not (tmp_path / "d.nc").exists()


def test_unknown_dataset_is_not_found(cds, cli, tmp_path):
    path = "/retrieve/v1/processes/reanalysis-era5-nope/execution"
    cds.route("POST", path, as_json(doc("dataset-not-found.json", cds), 404))
    r = cli("fetch", "cds", "--dataset", "reanalysis-era5-nope", "--variable", "t", "--year",
            "2020", "--out", str(tmp_path / "n.nc"))  # fmt: skip
    assert r.exit_code == 1, r.output
    msg = " ".join(r.output.split())
    assert "CDS dataset 'reanalysis-era5-nope' not found" in msg
    assert "process reanalysis-era5-nope not found" in msg  # the CDS's own words
    assert len(cds.hits(path)) == 1 and not (tmp_path / "n.nc").exists()


def test_missing_api_key_names_the_setting(server, point, cli, tmp_path):
    point("cds", server)  # no API_KEY
    r = cli(*args(tmp_path / "k.nc"))
    assert r.exit_code == 2, r.output
    msg = " ".join(r.output.split())
    assert "sources.cds.api_key" in msg and "ASTROBIO_SOURCES__CDS__API_KEY" in msg
    assert server.requests == []


def test_key_is_masked_in_config_show(cds, cli):
    r = cli("config", "show", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["settings"]
    assert rows["sources.cds.api_key"]["value"] == "**********"
    assert rows["sources.cds.api_key"]["source"] == "env ASTROBIO_SOURCES__CDS__API_KEY"
    assert SECRET not in r.output


def test_rejected_key_and_licence(cds, cli, tmp_path):
    fake = FakeCds(cds)
    cds.route(
        "POST",
        fake.execution,
        as_json(b'{"title": "required licences not accepted", "status": 403}', 403),
    )
    r = cli(*args(tmp_path / "l.nc"))
    assert r.exit_code == 2
    msg = " ".join(r.output.split())
    assert "required licences not accepted" in msg and f"datasets/{PRESSURE}" in msg


def test_single_levels_conversion_against_netcdf4():
    import xarray as xr

    from astrobio_data_sources import cds as src

    path = DATA / "era5-single-levels-monthly-means.nc"
    with xr.open_dataset(path) as raw:
        cube = src.to_cube(raw.load(), dataset=src.SINGLE, request={"x": 1}, job_id="j")
    with netCDF4.Dataset(path) as nc:
        lat = np.asarray(nc["latitude"][:])
        order = np.argsort(lat)
        skt = np.asarray(nc["skt"][:], dtype=np.float64)[:, order]
        lsm = np.asarray(nc["lsm"][:], dtype=np.float64)[:, order]
        tisr = np.asarray(nc["tisr"][:], dtype=np.float64)[:, order]
    assert set(cube.data_vars) == {"ts", "land_mask", "rsdt"}
    assert cube["ts"].dims == ("sample", "lat", "lon")
    assert cube["rsdt"].dims == ("sample", "lat") and cube["rsdt"].attrs["units"] == "W m-2"
    np.testing.assert_allclose(cube["ts"].values, skt, rtol=1e-7)
    np.testing.assert_allclose(cube["land_mask"].values, lsm)
    rsdt = tisr.sum(axis=-1) / tisr.shape[-1] / 86400.0  # zonal mean, J m-2 per day -> W m-2
    np.testing.assert_allclose(cube["rsdt"].values, rsdt, rtol=1e-6, atol=1e-9)
    # the equator gets S0/pi of the daily mean insolation in this synthetic file
    assert abs(float(cube["rsdt"].sel(lat=0.0)[0]) - 1361.0 / np.pi) < 1e-2


def test_model_ready_cube_has_every_model_variable(cds, tmp_path):
    from astrobio_cli.data.climate import MODEL_INPUTS, MODEL_TARGETS, open_climate_cube
    from astrobio_data_sources import cds as src

    single_nc = DATA / "era5-single-levels-monthly-means.nc"
    job2 = "0c9e8d7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f"
    p = FakeCds(cds)
    s = FakeCds(cds, polls=("job-successful.json",), job=job2, dataset=src.SINGLE, nc=single_nc)
    q = src.CdsQuery.from_options(
        "pressure", ["t,q"], ["1000,850,500"], ["2020"], ["1-4"], model_ready=True
    )
    res = src.fetch(q, out=tmp_path / "m.nc", say=lambda _l: None)
    (post,) = cds.hits(s.execution, "POST")
    assert json.loads(post.body)["inputs"]["variable"] == list(src.MODEL_READY_SINGLE)
    assert json.loads(post.body)["inputs"]["month"] == ["01", "02", "03", "04"]
    assert len(cds.hits(p.execution)) == 1 and res.job_id == f"{JOB} {job2}"
    cube = open_climate_cube(tmp_path / "m.nc", variables=(*MODEL_INPUTS, *MODEL_TARGETS))
    item = cube.read(0)
    assert item["ta"].shape == (3, 7, 12) and item["rsdt"].shape == (7,)
    check_cube_values = expected_pressure()
    with netCDF4.Dataset(tmp_path / "m.nc") as nc:
        np.testing.assert_allclose(nc["ta"][:], check_cube_values["ta"], rtol=1e-7)
        np.testing.assert_allclose(nc["stellar_flux"][:], [1361.0] * 4)
        np.testing.assert_allclose(nc["obliquity"][:], [23.44] * 4, rtol=1e-6)
        assert nc["greenhouse_factor"].astrobio_assumed == "Earth constant"
        assert "not ERA5 data" in nc.astrobio_planet_parameters
        with netCDF4.Dataset(single_nc) as raw:
            order = np.argsort(raw["latitude"][:])
            np.testing.assert_allclose(nc["ts"][:], np.asarray(raw["skt"][:])[:, order])


def test_dry_run_and_bad_options(server, point, cli):
    point("cds", server, API_KEY=SECRET)
    r = cli("fetch", "cds", "--year", "2019-2020", "--month", "6,7", "--area", "60/-10/35/30",
            "--dry-run")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"POST {server.base_url}/retrieve/v1/processes/{PRESSURE}/execution" in r.output
    assert SECRET not in r.output and "PRIVATE-TOKEN: ***" in r.output
    body = json.loads(r.output.split("body ", 1)[1].splitlines()[0])
    assert body["inputs"]["year"] == ["2019", "2020"] and body["inputs"]["month"] == ["06", "07"]
    assert body["inputs"]["area"] == [60.0, -10.0, 35.0, 30.0]
    assert server.requests == []
    for bad, words in (
        (["--year", "20"], "--year '20'"),
        (["--year", "2020", "--area", "10/0/20/5"], "SOUTH < NORTH"),
        (["--year", "2020", "--dataset", "single", "--pressure-level", "500"], "has none"),
        (["--year", "2020", "--month", "13"], "--month '13'"),
        (["--year", "2020", "--grid", "abc"], "--grid 'abc'"),
        (["--year", "2020", "--input", "nokey"], "KEY=VALUE"),
        ([], "give the year(s)"),
        (["--year", "2020", "--dataset", "single", "--model-ready"], "leave --dataset"),
        (["--year", "2020", "--variable", "u", "--model-ready"], "needs temperature"),
    ):
        r = cli("fetch", "cds", *bad, "--dry-run")
        assert r.exit_code == 2, (bad, r.output)
        assert words in " ".join(r.output.split()), (bad, r.output)


def test_end_to_end_installed_cli_then_preprocess(cds, run_cli, tmp_path):
    FakeCds(cds)
    out = tmp_path / "era5.nc"
    r = run_cli(*args(out, "--json"), timeout=120)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["job_id"] == JOB and summary["output"] == str(out)
    assert summary["variables"]["ta"]["era5_name"] == "t"
    assert summary["variables"]["hus"]["dims"] == ["sample", "plev", "lat", "lon"]
    assert f"cds: job {JOB} accepted" in r.stderr and f"cds: job {JOB} successful" in r.stderr
    check_cube(out)
    # the key never reaches the outputs, the logs or the cache
    cache_dir = Path(os.environ["XDG_CACHE_HOME"])
    cache_text = "".join(p.read_text() for p in cache_dir.rglob("cds/*.json"))
    assert JOB in cache_text  # the cache record was found (and names the job)
    for text in (r.stdout, r.stderr, out.with_name(out.name + ".provenance.json").read_text()):
        assert SECRET not in text
    assert SECRET not in cache_text
    with netCDF4.Dataset(out) as nc:
        assert SECRET not in json.dumps({k: str(nc.getncattr(k)) for k in nc.ncattrs()})
    store = tmp_path / "era5.zarr"
    p = run_cli("preprocess", str(out), str(store), "--split", "train", "--train-fraction", "0.5")
    assert p.returncode == 0, p.stderr
    from astrobio_cli.data.climate import open_climate_cube

    cube = open_climate_cube(store)
    assert cube.form == "preprocessed" and set(cube.variables) == {"ta", "hus"}
    assert cube.n_samples == 4 and list(cube.splits.train) == [0, 1]
    np.testing.assert_allclose(cube.plev, expected_pressure()["plev"])
    item = cube.dataset("val").raw_item(0)
    assert item["ta"].shape == (3, 7, 12)
    # normalised with the train months' stats: undo it and compare with the raw month 3
    i = cube.stats.names.index("ta")
    ta = item["ta"] * cube.stats.std[i] + cube.stats.mean[i]
    np.testing.assert_allclose(ta, expected_pressure()["ta"][2], rtol=1e-5)
