"""FITS products and a loopback MAST, for tests/sources/test_source_mast.py.

The FITS files follow the product layouts MAST serves (column names, formats and units):
- TESS SPOC light curves (`tess<date>-s<sector>-<tic>-<id>-s_lc.fits`): primary header TELESCOP,
  OBJECT, TICID, SECTOR; LIGHTCURVE binary table TIME [D, 'BJD - 2457000, days'], TIMECORR,
  CADENCENO, SAP_FLUX/PDCSAP_FLUX [E, 'e-/s'] and their _ERR, SAP_BKG, QUALITY [J], with
  TIMEDEL in days; an APERTURE image.
- Kepler light curves (`kplr<kic>-<date>_llc.fits`): the same table with TIME in
  'BJD - 2454833, days' and SAP_QUALITY; primary header KEPLERID, QUARTER.
- JWST x1d (`jw<program>..._x1d.fits`): primary TELESCOP='JWST', INSTRUME, TARGPROP, PROGRAM;
  one or more EXTRACT1D tables: WAVELENGTH [D, 'um'], FLUX/FLUX_ERROR [D, 'Jy'], SURF_BRIGHT
  [D, 'MJy/sr'], DQ [J], NPIXELS.
References: TESS Science Data Products Description Document (EXP-TESS-ARC-ICD-0014), Kepler
Archive Manual (KDMC-10008), JWST pipeline `x1d` product documentation (jwst.readthedocs.io).
Values are synthetic (seeded); the arrays each builder wrote are returned for comparison.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
from astropy.io import fits
from httpserver import Reply, Request


def _bytes(hdul: fits.HDUList) -> bytes:
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def lightcurve(
    mission: str,
    ident: int,
    period: int,
    n: int,
    seed: int,
    cadence_days: float,
    drop: str | None = None,
) -> tuple[bytes, dict[str, np.ndarray]]:
    """A TESS (period = sector) or Kepler (period = quarter) light curve; `drop` omits a column."""
    rng = np.random.default_rng(seed)
    t0 = 1325.3 if mission == "TESS" else 169.5
    time = t0 + cadence_days * np.arange(n, dtype=np.float64)
    flux = (1.0e4 + rng.normal(0, 5.0, n)).astype(np.float32)
    flux[3] = np.nan  # a gap, as in real products
    err = np.full(n, 5.0, dtype=np.float32)
    sap = (flux * 0.98).astype(np.float32)
    quality = np.zeros(n, dtype=np.int32)
    quality[[1, 5]] = [128, 1024]  # manual exclude, stray light
    prim = fits.PrimaryHDU()
    h = prim.header
    h["TELESCOP"] = mission
    if mission == "TESS":
        h["OBJECT"], h["TICID"], h["SECTOR"] = f"TIC {ident}", ident, period
        tunit, qname = "BJD - 2457000, days", "QUALITY"
    else:
        h["OBJECT"], h["KEPLERID"], h["QUARTER"] = f"KIC {ident}", ident, period
        tunit, qname = "BJD - 2454833, days", "SAP_QUALITY"
    cols = [
        fits.Column("TIME", "D", unit=tunit, array=time),
        fits.Column("TIMECORR", "E", unit="d", array=np.zeros(n, np.float32)),
        fits.Column("CADENCENO", "J", array=np.arange(n, dtype=np.int32)),
        fits.Column("SAP_FLUX", "E", unit="e-/s", array=sap),
        fits.Column("SAP_FLUX_ERR", "E", unit="e-/s", array=err),
        fits.Column("SAP_BKG", "E", unit="e-/s", array=np.ones(n, np.float32)),
        fits.Column("PDCSAP_FLUX", "E", unit="e-/s", array=flux),
        fits.Column("PDCSAP_FLUX_ERR", "E", unit="e-/s", array=err),
        fits.Column(qname, "J", array=quality),
    ]
    cols = [c for c in cols if c.name != drop]
    lc = fits.BinTableHDU.from_columns(cols, name="LIGHTCURVE")
    lc.header["TIMEDEL"] = cadence_days
    lc.header["TIMEUNIT"] = "d"
    ap = fits.ImageHDU(np.ones((11, 11), np.int32), name="APERTURE")
    arrays = {
        "time": time,
        "flux": flux.astype(np.float64),
        "sap": sap.astype(np.float64),
        "err": err.astype(np.float64),
        "quality": quality.astype(np.int64),
    }
    return _bytes(fits.HDUList([prim, lc, ap])), arrays


def x1d(target: str, program: str, n: int, seed: int, extensions: int = 1, flux_unit: str = "Jy"):
    rng = np.random.default_rng(seed)
    prim = fits.PrimaryHDU()
    prim.header.update(TELESCOP="JWST", INSTRUME="NIRSPEC", TARGPROP=target, PROGRAM=program)
    hdus, arrays = [prim], []
    for k in range(extensions):
        wav = np.linspace(0.6 + k, 5.3 + k, n)
        flux = 1e-3 * (1 + 0.01 * rng.normal(size=n))
        err = np.full(n, 1e-5)
        dq = np.zeros(n, np.int32)
        dq[0] = 1  # DO_NOT_USE
        cols = [
            fits.Column("WAVELENGTH", "D", unit="um", array=wav),
            fits.Column("FLUX", "D", unit=flux_unit, array=flux),
            fits.Column("FLUX_ERROR", "D", unit=flux_unit, array=err),
            fits.Column("SURF_BRIGHT", "D", unit="MJy/sr", array=flux * 10),
            fits.Column("DQ", "J", array=dq),
            fits.Column("NPIXELS", "D", array=np.full(n, 5.0)),
        ]
        hdus.append(fits.BinTableHDU.from_columns(cols, name="EXTRACT1D"))
        arrays.append(
            {"wavelength": wav, "flux": flux, "flux_error": err, "dq": dq.astype(np.int64)}
        )
    return _bytes(fits.HDUList(hdus)), arrays


class FakeMast:
    """Mast.Name.Lookup, Mast.Caom.Filtered(.Position), Mast.Caom.Products and Download/file.

    names: {name: (ra, dec)}; observations: CAOM rows (obsid, obs_collection, dataproduct_type,
    target_name, sequence_number, proposal_id, s_ra, s_dec); products: {obsid: [product rows]};
    files: {dataURI: bytes}. `executing` answers the first N invokes with status EXECUTING; `throttle` the first N
    downloads with 429.
    """

    def __init__(
        self, srv, names=None, observations=None, products=None, files=None, executing=0, throttle=0
    ):
        self.names, self.obs = names or {}, observations or []
        self.products, self.files = products or {}, files or {}
        self.executing, self.throttle = executing, throttle
        self.services: list[str] = []
        srv.route("POST", "/v0/invoke", self.invoke)
        srv.route("GET", "/v0.1/Download/file", self.download)

    def invoke(self, req: Request) -> Reply:
        r = json.loads(req.form["request"][0])
        self.services.append(r["service"])
        if self.executing:
            self.executing -= 1
            return self._json({"status": "EXECUTING", "msg": "", "data": []})
        if r["service"] == "Mast.Name.Lookup":
            hit = self.names.get(r["params"]["input"])
            coords = (
                [{"ra": hit[0], "decl": hit[1], "canonicalName": r["params"]["input"]}]
                if hit
                else []
            )
            return self._json({"resolvedCoordinate": coords, "status": ""})
        if r["service"].startswith("Mast.Caom.Filtered"):
            rows = [o for o in self.obs if self._matches(o, r["params"])]
        elif r["service"] == "Mast.Caom.Products":
            ids = r["params"]["obsid"].split(",")
            rows = [p for i in ids for p in self.products.get(i, [])]
        else:
            return self._json({"status": "ERROR", "msg": f"unknown service {r['service']}"})
        size, page = int(r.get("pagesize", 50000)), int(r.get("page", 1))
        pages = max(math.ceil(len(rows) / size), 1)
        data = rows[(page - 1) * size : page * size]
        paging = {
            "page": page,
            "pageSize": size,
            "pagesFiltered": pages,
            "rows": len(data),
            "rowsFiltered": len(rows),
            "rowsTotal": len(rows),
        }
        return self._json(
            {"status": "COMPLETE", "msg": "", "data": data, "fields": [], "paging": paging}
        )

    @staticmethod
    def _matches(o: dict, params: dict) -> bool:
        for f in params.get("filters", []):
            if o.get(f["paramName"]) not in f["values"]:
                return False
        if "position" in params:
            ra, dec, radius = (float(x) for x in params["position"].split(","))
            if (
                math.hypot((o["s_ra"] - ra) * math.cos(math.radians(dec)), o["s_dec"] - dec)
                > radius
            ):
                return False
        return True

    def download(self, req: Request) -> Reply:
        if self.throttle:  # MAST's answer to too many requests: 429 + Retry-After
            self.throttle -= 1
            return Reply(429, b"Too Many Requests", {"Retry-After": "0"})
        body = self.files.get(req.q("uri"))
        if body is None:
            return Reply(
                404, b"<html><title>404 Not Found</title></html>", content_type="text/html"
            )
        return Reply(200, body, content_type="application/octet-stream")

    @staticmethod
    def _json(doc) -> Reply:
        return Reply(200, json.dumps(doc).encode(), content_type="application/json")


def product(obsid: str, uri: str, sub: str, ptype: str = "SCIENCE", **more) -> dict:
    return {
        "obsID": obsid,
        "obs_id": more.pop("obs_id", obsid),
        "dataURI": uri,
        "productFilename": uri.rsplit("/", 1)[-1],
        "productSubGroupDescription": sub,
        "productType": ptype,
        "size": 0,
        **more,
    }
