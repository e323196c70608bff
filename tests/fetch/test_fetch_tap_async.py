"""`--async`: a TAP/UWS job on a loopback server: submit, poll with backoff, fetch, abort."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from httpserver import Reply

from astrobio_cli.net.errors import ContentError
from astrobio_cli.net.tap import PollPolicy
from astrobio_data_sources import nasa_exoplanet as nx

ARCHIVE_DATA = Path(__file__).resolve().parents[1] / "data" / "nasa-exoplanet-archive"
BODY = (ARCHIVE_DATA / "pscomppars-default.csv").read_bytes()
FAST = PollPolicy(first=0.01, factor=1.5, cap=0.05, max_wait=30)


class UwsJob:
    """One UWS job: phases served in order (the last repeats); records phase changes."""

    def __init__(self, srv, phases, body=BODY, honour_run=True):
        self.srv, self.phases, self.body = srv, list(phases), body
        self.job = f"{srv.base_url}/TAP/async/job1"
        self.honour_run = honour_run
        srv.route("POST", "/TAP/async", self.create)
        srv.route("GET", "/TAP/async/job1/phase", self.phase)
        srv.route("POST", "/TAP/async/job1/phase", self.set_phase)
        srv.route("GET", "/TAP/async/job1", self.document)
        srv.route("GET", "/files/job1.csv", Reply(200, body, content_type="text/csv"))
        srv.route(
            "GET",
            "/TAP/async/job1/error",
            Reply(
                200,
                b"<VOTABLE><INFO name='QUERY_STATUS' value='ERROR'>ORA-01722: invalid number</INFO></VOTABLE>",
            ),
        )

    def create(self, req):
        if req.q("phase") != "RUN" or not self.honour_run:
            self.phases.insert(0, "PENDING")
        return Reply(303, headers={"Location": "/TAP/async/job1"})

    def phase(self, req):
        now = self.phases.pop(0) if len(self.phases) > 1 else self.phases[0]
        return Reply(200, now.encode())

    def set_phase(self, req):
        if req.q("PHASE") == "RUN" and self.phases[0] == "PENDING":
            self.phases.pop(0)
        return Reply(303, headers={"Location": "/TAP/async/job1"})

    def document(self, req):
        doc = (
            '<uws:job xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" '
            'xmlns:xlink="http://www.w3.org/1999/xlink"><uws:jobId>job1</uws:jobId>'
            f"<uws:phase>{self.phases[0]}</uws:phase><uws:results>"
            f'<uws:result id="result" xlink:href="{self.srv.base_url}/files/job1.csv"/>'
            "</uws:results></uws:job>"
        )
        return Reply(200, doc.encode(), content_type="text/xml")


def test_async_submit_poll_fetch_and_share_the_cache_with_sync(loopback, archive_env, tmp_path):
    UwsJob(loopback, ["QUEUED", "EXECUTING", "EXECUTING", "COMPLETED"])
    query = nx.ExoplanetQuery.from_options(where="pl_rade < 20")
    res = nx.fetch(query, use_async=True, poll=FAST)
    assert res.rows == 6

    (submit,) = loopback.hits("/TAP/async", "POST")
    assert submit.q("query") == query.adql()
    assert submit.q("format") == "csv" and submit.q("lang") == "ADQL"
    assert len(loopback.hits("/TAP/async/job1/phase", "GET")) == 4
    assert len(loopback.hits("/files/job1.csv")) == 1  # the href of the job document
    assert res.cache_path.read_bytes() == BODY

    again = nx.fetch(query)  # sync: the same question, answered by the cache
    assert again.from_cache
    assert loopback.hits("/TAP/sync") == []


def test_async_pending_job_is_started(loopback, archive_env):
    job = UwsJob(loopback, ["EXECUTING", "COMPLETED"], honour_run=False)
    res = nx.fetch(nx.ExoplanetQuery.from_options(), use_async=True, poll=FAST)
    assert res.rows == 6
    runs = [r for r in loopback.hits("/TAP/async/job1/phase", "POST") if r.q("PHASE") == "RUN"]
    assert len(runs) == 1
    assert job.phases == ["COMPLETED"]


def test_async_error_quotes_the_server_and_writes_nothing(loopback, archive_env, tmp_path):
    UwsJob(loopback, ["EXECUTING", "ERROR"])
    out = tmp_path / "o" / "p.parquet"
    with pytest.raises(ContentError, match="job1 failed on the server: ORA-01722: invalid number"):
        nx.fetch(nx.ExoplanetQuery.from_options(), out=out, use_async=True, poll=FAST)
    assert not out.exists()
    assert not list((tmp_path / "cache").rglob("*.body"))


def test_ctrl_c_aborts_the_job_on_the_server(loopback, archive_env, tmp_path):
    UwsJob(loopback, ["EXECUTING"])
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("astrobio")), "fetch", "nasa-exoplanet", "--async"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 60
        while len(loopback.hits("/TAP/async/job1/phase", "GET")) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the job was never polled"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; aborted the TAP job" in err and "Traceback" not in err
    aborts = [r for r in loopback.hits("/TAP/async/job1/phase", "POST") if r.q("PHASE") == "ABORT"]
    assert len(aborts) == 1
    assert not list((tmp_path / "data").rglob("*.parquet"))


def test_async_job_reports_its_phase_and_elapsed_time(loopback, archive_env, capsys):
    UwsJob(loopback, ["QUEUED", "QUEUED", "EXECUTING", "COMPLETED"])
    nx.fetch(nx.ExoplanetQuery.from_options(where="pl_rade < 3"), use_async=True, poll=FAST)
    lines = capsys.readouterr().err.splitlines()
    job = f"{loopback.base_url}/TAP/async/job1"
    # one line per phase change (not per poll), each with the time since submission
    assert [ln.split(",")[0] for ln in lines] == [
        f"TAP job {job}: QUEUED",
        f"TAP job {job}: EXECUTING",
        f"TAP job {job}: COMPLETED",
    ]
    assert all(ln.endswith(" s elapsed") for ln in lines)
