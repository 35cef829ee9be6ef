"""Two `zoo tune` workers on one study in a real PostgreSQL server: a throw-away cluster in a temp dir, on a free
localhost port. CI installs Debian's `postgresql` package in `.ci/run` when `initdb` is missing. initdb refuses
to run as root, so as root the cluster belongs to the `postgres` user (or `nobody`) and is started through
`runuser`. The test skips, naming the reason, only when no server can be started."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.common.tune_helpers import (
    LR_SPACE,
    finished_params,
    load,
    tiny_recipe,
    tune_process,
    wait_all,
    write_space,
)

pytestmark = [pytest.mark.postgres, pytest.mark.subprocess, pytest.mark.timeout(900)]


def _bindir() -> Path | None:
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(os.path.realpath(initdb)).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    bindir = _bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb): install Debian's postgresql package")
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb and postgres refuse root
        for name in ("postgres", "nobody"):
            try:
                owner = pwd.getpwnam(name)
                break
            except KeyError:
                continue
        if owner is None or not shutil.which("runuser"):
            pytest.skip("running as root without a postgres/nobody user and runuser to own the cluster")
        as_user = ["runuser", "-u", owner.pw_name, "--"]
    root = Path(tempfile.mkdtemp(prefix="zoo-pg-"))  # not under pytest's tmp: that one is private to root
    data = root / "data"
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    env = dict(os.environ, LC_ALL="C")
    init = subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "zoo", "--auth=trust",
                           "--no-sync", "-E", "UTF8"], capture_output=True, text=True, env=env)
    started = False
    try:
        if init.returncode != 0:
            pytest.skip(f"initdb failed: {init.stderr.strip()[-500:]}")
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40"
        start = subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts,
                                "-l", str(root / "server.log"), "-w", "-t", "60", "start"],
                               capture_output=True, text=True, env=env)
        if start.returncode != 0:
            log = (root / "server.log").read_text()[-500:] if (root / "server.log").exists() else ""
            pytest.skip(f"PostgreSQL server did not start: {start.stderr.strip()[-300:]} {log}")
        started = True
        yield f"postgresql+psycopg2://zoo@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_on_one_postgres_study_complete_exactly_n_trials(tmp_path, postgres_url):
    recipe = tiny_recipe(tmp_path, max_epochs=1)
    space = write_space(tmp_path, LR_SPACE)
    workers = []
    for i in range(2):  # two "machines": own tune directory each, one study in the database
        args = ["--config", str(recipe), "--search", str(space), "--n-trials", "4", "--inline", "--no-plots",
                "--storage", postgres_url, "--study-name", "pg", "--dir", str(tmp_path / f"machine{i}"),
                "--sampler-seed", str(i), "--heartbeat", "2"]
        workers.append(tune_process(args, tmp_path, tmp_path / f"w{i}.log"))
    wait_all(workers, tmp_path)
    study = load(postgres_url, "pg")
    params = finished_params(study)
    assert len(params) == 4 and len(set(params)) == 4  # exactly N, no parameter set twice
    assert all((tmp_path / f"machine{i}" / "best.yaml").exists() for i in range(2))
    ran = [sorted(Path(tmp_path / f"machine{i}").glob("trial_*")) for i in range(2)]
    assert sum(map(len, ran)) >= 4
