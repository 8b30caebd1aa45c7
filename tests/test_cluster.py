"""connect(), the cluster YAML format, every file under cluster/, and a real process cluster."""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import dask
import pytest
import yaml
from distributed import Client, LocalCluster

import rasteret_dask as rd
from rasteret_dask.cluster import (
    connect,
    load_cluster_config,
    local_cluster_kwargs,
    make_cluster,
    make_gateway,
    resolve_client,
    validate_cluster_config,
)
from rasteret_dask.testing.dask_cluster import DaskProcessCluster

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
CONNECT_FILES = {"local.yaml": "local", "ssh.yaml": "ssh", "slurm.yaml": "slurm",
                 "pbs.yaml": "pbs", "gateway.yaml": "gateway", "kubernetes.yaml": "kubernetes"}
SMALL = {"n_workers": 1, "threads_per_worker": 1, "processes": False, "dashboard_address": None}


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie awaiting its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return True


# -- cluster/ files --------------------------------------------------------------------------------
def test_every_file_in_cluster_dir_is_covered():
    names = {p.name for p in CLUSTER.iterdir()}
    assert names == set(CONNECT_FILES) | {"kubernetes-daskcluster.yaml", "reenrich-cronjob.yaml",
                                          "Dockerfile", "Dockerfile.dockerignore", "README.md"}


@pytest.mark.parametrize("name", sorted(CONNECT_FILES))
def test_connect_yaml_files_validate(name):
    raw = yaml.safe_load((CLUSTER / name).read_text())
    assert validate_cluster_config(raw)["kind"] == CONNECT_FILES[name]
    config = load_cluster_config(CLUSTER / name)
    assert config["kind"] == CONNECT_FILES[name]
    assert name in (CLUSTER / "README.md").read_text()


def test_kubernetes_yaml_embeds_the_daskcluster_manifest():
    config = load_cluster_config(CLUSTER / "kubernetes.yaml")
    manifest = yaml.safe_load((CLUSTER / "kubernetes-daskcluster.yaml").read_text())
    assert config["cluster_spec"] == manifest
    assert config["adapt"]["maximum"] >= config["adapt"]["minimum"]


def _container(pod_spec: dict, name: str) -> dict:
    return next(c for c in pod_spec["containers"] if c["name"] == name)


def test_daskcluster_manifest():
    doc = yaml.safe_load((CLUSTER / "kubernetes-daskcluster.yaml").read_text())
    assert doc["apiVersion"] == "kubernetes.dask.org/v1" and doc["kind"] == "DaskCluster"
    name = doc["metadata"]["name"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    worker, scheduler = doc["spec"]["worker"], doc["spec"]["scheduler"]
    assert isinstance(worker["replicas"], int) and worker["replicas"] >= 1
    w = _container(worker["spec"], "worker")
    s = _container(scheduler["spec"], "scheduler")
    assert w["image"] and w["image"] == s["image"]
    assert w["args"][:2] == ["dask", "worker"] and "$(DASK_WORKER_NAME)" in w["args"]
    assert s["args"][:2] == ["dask", "scheduler"]
    for c in (w, s):
        assert set(c["resources"]) == {"requests", "limits"}
    assert {p["name"] for p in s["ports"]} >= {"tcp-comm", "http-dashboard"}
    service = scheduler["service"]
    assert service["selector"]["dask.org/cluster-name"] == name
    assert {p["port"] for p in service["ports"]} >= {8786}


_CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def _valid_cron(expr: str) -> bool:
    fields = expr.split()
    if len(fields) != 5:
        return False
    for field, (low, high) in zip(fields, _CRON_RANGES):
        for part in field.split(","):
            m = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
            if not m or (m.group(4) is not None and int(m.group(4)) < 1):
                return False
            if m.group(2) is not None:
                a, b = int(m.group(2)), int(m.group(3) or m.group(2))
                if not low <= a <= b <= high:
                    return False
    return True


def test_cron_validator():
    assert _valid_cron("30 2 * * *") and _valid_cron("*/15 0-6 1,15 * 1-5")
    assert not _valid_cron("60 2 * * *") and not _valid_cron("* * * *")
    assert not _valid_cron("0 2 * * * *") and not _valid_cron("0 5-2 * * *")


def test_reenrich_cronjob():
    docs = [d for d in yaml.safe_load_all((CLUSTER / "reenrich-cronjob.yaml").read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) == {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "CronJob"}
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"]
    cron = by_kind["CronJob"]
    assert cron["apiVersion"] == "batch/v1"
    assert _valid_cron(cron["spec"]["schedule"])
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    assert pod["serviceAccountName"] == by_kind["ServiceAccount"]["metadata"]["name"]
    binding = by_kind["RoleBinding"]
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    assert binding["roleRef"]["name"] == by_kind["Role"]["metadata"]["name"]
    (container,) = pod["containers"]
    assert container["image"]
    command = container["command"] + container.get("args", [])
    assert command[:3] == ["rasteret-dask", "workflow", "reenrich"]
    index, cluster_file = (command[command.index(flag) + 1] for flag in ("--index", "--cluster"))
    assert index and cluster_file == "/etc/rasteret/cluster.yaml"
    (mount,) = container["volumeMounts"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = by_kind["ConfigMap"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    key = os.path.relpath(cluster_file, mount["mountPath"])
    config = validate_cluster_config(yaml.safe_load(configmap["data"][key]))
    assert config["kind"] == "kubernetes" and config["cluster"]["image"] == container["image"]
    daskcluster = yaml.safe_load((CLUSTER / "kubernetes-daskcluster.yaml").read_text())
    worker = _container(daskcluster["spec"]["worker"]["spec"], "worker")
    assert worker["image"] == container["image"]


def _dockerfile_instructions() -> list[tuple[str, str]]:
    logical, current = [], ""
    for line in (CLUSTER / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def test_dockerfile_builds_a_worker_image_with_the_package():
    instructions = _dockerfile_instructions()
    assert instructions[0][0] in ("FROM", "ARG")
    base = next(arg for op, arg in instructions if op == "FROM")
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", base)
    copied = " ".join(arg for op, arg in instructions if op == "COPY")
    assert "pyproject.toml" in copied and "rasteret_dask" in copied
    pip = [arg for op, arg in instructions if op == "RUN" and "pip install" in arg]
    assert pip and '".[${EXTRAS}]"' in pip[0]
    extras = next(arg for op, arg in instructions if op == "ARG" and arg.startswith("EXTRAS="))
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert set(extras.split("=", 1)[1].split(",")) <= set(declared)
    entrypoint = next(arg for op, arg in instructions if op == "ENTRYPOINT")
    assert yaml.safe_load(entrypoint)  # exec form: a JSON list
    assert any(op == "CMD" and "dask" in arg for op, arg in instructions)
    assert "!rasteret_dask/" in (CLUSTER / "Dockerfile.dockerignore").read_text()


@pytest.mark.parametrize("name, expected", [
    ("slurm.yaml", ["#SBATCH -p compute", "#SBATCH -A my-project", "#SBATCH --cpus-per-task=16",
                    "#SBATCH --mem=64G", "#SBATCH -t 01:00:00", "#SBATCH --constraint=intel",
                    "--nthreads 4", "--nworkers 4", "--lifetime 55m"]),
    ("pbs.yaml", ["#PBS -q workq", "#PBS -A my-project", "#PBS -l select=1:ncpus=24:mem=96GB",
                  "#PBS -l walltime=02:00:00", "--nthreads 6", "--nworkers 4"]),
])
def test_jobqueue_configs_build_job_scripts(name, expected):
    config = load_cluster_config(CLUSTER / name)
    cluster = make_cluster({**config, "cluster": {**config["cluster"], "dashboard_address": None}})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for text in expected:
        assert text in script, (text, script)
    assert "module load python/3.11" in script and "python -m distributed.cli.dask_worker" in script


def test_gateway_config_builds_offline(monkeypatch):
    from dask_gateway.auth import BasicAuth, JupyterHubAuth

    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "not-a-real-token")
    config = load_cluster_config(CLUSTER / "gateway.yaml")
    # no request is made; (Gateway.close() is not idempotent: let __del__ close it once)
    gateway = make_gateway(config)
    assert gateway.address == config["address"]
    assert isinstance(gateway.auth, JupyterHubAuth)
    assert gateway.proxy_address.startswith("gateway://")
    del gateway
    gateway = make_gateway({**config, "auth": {"type": "basic", "username": "u", "password": "p"}})
    assert isinstance(gateway.auth, BasicAuth) and gateway.auth.username == "u"
    del gateway
    gc.collect()


# -- validation and targets ------------------------------------------------------------------------
@pytest.mark.parametrize("config, message", [
    ({"kind": "mesos"}, "unknown kind"),
    ([1, 2], "must be a mapping"),
    ({"kind": "local", "workers": 3}, "unknown key"),
    ({"kind": "local", "scale": 2, "adapt": {"maximum": 3}}, "not both"),
    ({"kind": "slurm", "adapt": {"minimum": 5, "maximum": 3}}, "must not exceed"),
    ({"kind": "slurm", "adapt": {"minimum": 1}}, "needs 'maximum'"),
    ({"kind": "local", "scale": -1}, "scale must be"),
    ({"kind": "scheduler"}, "exactly one"),
    ({"kind": "scheduler", "address": "not an address"}, "address must look like"),
    ({"kind": "ssh", "hosts": ["only-one"]}, "hosts"),
    ({"kind": "slurm", "cluster": {"walltime": "two hours"}}, "walltime"),
    ({"kind": "slurm", "cluster": {"cores": 0}}, "cluster.cores"),
    ({"kind": "kubernetes", "cluster_spec": {"apiVersion": "v1", "kind": "Pod"}}, "DaskCluster"),
    ({"kind": "kubernetes", "cluster": {"resources": {"gpus": 1}}}, "resources"),
    ({"kind": "gateway", "auth": "password"}, "auth must be"),
    ({"kind": "gateway", "cluster_options": {"x": {"nested": 1}}}, "cluster_options.x"),
])
def test_invalid_configs_raise_value_error(config, message):
    with pytest.raises(ValueError, match=message):
        validate_cluster_config(config)


def test_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        connect(missing)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        connect(str(missing))
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [local\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*not valid YAML"):
        connect(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("kind: yarn\n")
    with pytest.raises(ValueError, match=r"unknown\.yaml.*unknown kind 'yarn'"):
        connect(unknown)
    spec = tmp_path / "k8s.yaml"
    spec.write_text("kind: kubernetes\ncluster_spec: missing-manifest.yaml\n")
    with pytest.raises(FileNotFoundError, match="missing-manifest.yaml"):
        load_cluster_config(spec)


def test_unrecognised_targets():
    with pytest.raises(ValueError, match="unrecognised cluster target"):
        connect("not-a-target")
    with pytest.raises(ValueError, match="kind: gateway"):
        connect("https://hub.example.org/services/dask-gateway")
    with pytest.raises(ValueError, match="exactly one"):
        connect("scheduler")
    with pytest.raises(TypeError):
        connect(8786)


@pytest.mark.parametrize("name, modules, extra", [
    ("slurm.yaml", ["dask_jobqueue"], "jobqueue"),
    ("pbs.yaml", ["dask_jobqueue"], "jobqueue"),
    ("kubernetes.yaml", ["dask_kubernetes", "dask_kubernetes.operator"], "kubernetes"),
    ("gateway.yaml", ["dask_gateway"], "gateway"),
    ("ssh.yaml", ["asyncssh"], "ssh"),
])
def test_missing_extra_gives_a_clear_import_error(monkeypatch, name, modules, extra):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError, match=re.escape(f"pip install 'rasteret-dask[{extra}]'")):
        connect(CLUSTER / name)


def test_local_cluster_sizing(monkeypatch):
    import dask.system
    import distributed.system

    gib = 1024**3
    for cpus, memory, expected in [(16, 64 * gib, (4, 4)), (16, 4 * gib, (2, 4)),
                                   (2, 8 * gib, (1, 2)), (1, 1 * gib, (1, 1)),
                                   (4, 16 * gib, (2, 2))]:
        monkeypatch.setattr(dask.system, "CPU_COUNT", cpus)
        monkeypatch.setattr(distributed.system, "MEMORY_LIMIT", memory)
        kwargs = local_cluster_kwargs()
        assert (kwargs["n_workers"], kwargs["threads_per_worker"]) == expected, cpus
        assert kwargs["processes"] is True
    monkeypatch.setattr(dask.system, "CPU_COUNT", 8)
    assert local_cluster_kwargs(n_workers=2)["threads_per_worker"] == 4
    assert local_cluster_kwargs(threads_per_worker=1)["n_workers"] == 8
    assert local_cluster_kwargs(processes=False)["processes"] is False


# -- connect() -------------------------------------------------------------------------------------
def test_connect_none_starts_and_closes_a_local_cluster():
    assert rd.connect is connect and "connect" in rd.__all__
    client = connect(None, **SMALL)
    cluster = client.cluster
    try:
        assert isinstance(cluster, LocalCluster)
        assert client.submit(sum, [1, 2, 3]).result() == 6
        assert len(client.scheduler_info()["workers"]) == 1
    finally:
        client.close()
    assert cluster.status.name == "closed"


def test_connect_local_yaml():
    with connect(CLUSTER / "local.yaml", **SMALL) as client:
        assert client.submit(pow, 2, 10).result() == 1024
        cluster = client.cluster
    assert cluster.status.name == "closed"
    with connect("local", **SMALL) as client:
        assert client.submit(pow, 3, 2).result() == 9


def test_connect_to_a_running_scheduler_and_resolve_client():
    with LocalCluster(**SMALL) as cluster:
        with connect(cluster.scheduler_address) as client:
            assert client.submit(abs, -4).result() == 4
            assert resolve_client(client) == (client, False)
            assert resolve_client(None) == (client, False)  # the active default client
        assert cluster.status.name == "running"  # a connected cluster is not ours to close
        client, owned = resolve_client({"kind": "scheduler", "address": cluster.scheduler_address})
        assert owned and isinstance(client, Client)
        client.close()
        assert connect(client) is client


def test_connect_with_adapt_on_local():
    config = {"kind": "local", "cluster": SMALL, "adapt": {"minimum": 1, "maximum": 2}}
    with connect(config) as client:
        assert client.submit(len, "abc").result() == 3


# -- a real process cluster ------------------------------------------------------------------------
def test_process_cluster_computes_on_two_workers_and_cleans_up_after_a_failure():
    with pytest.raises(RuntimeError, match="boom"), \
            DaskProcessCluster(n_workers=2, nthreads=1) as dask_cluster:
        pids = dask_cluster.worker_pids()
        assert len(pids) == 2 and all(_pid_alive(p) for p in pids)
        assert all(a.startswith("tcp://127.0.0.1:") for a in dask_cluster.worker_addresses)
        host_port = dask_cluster.address.removeprefix("tcp://")
        with connect(host_port) as client:

            def work(i):
                time.sleep(0.2)
                return i * i, os.getpid()

            results = client.gather(client.map(work, range(8), pure=False))
            # the workers run in the environment a nanny gives its worker
            environ = dask.config.get("distributed.nanny.pre-spawn-environ")
            seen = client.run(lambda: {k: os.environ.get(k) for k in environ})
        assert [r for r, _ in results] == [i * i for i in range(8)]
        assert {pid for _, pid in results} == set(pids)
        assert all(env == {k: str(v) for k, v in environ.items()} for env in seen.values())
        raise RuntimeError("boom")  # the test body fails: every process must still go
    assert not any(_pid_alive(p) for p in pids)


def test_killed_worker_tasks_are_rescheduled():
    with DaskProcessCluster(n_workers=2, nthreads=1) as dask_cluster, \
            connect(dask_cluster.address) as client:
        victim = dask_cluster.worker_addresses[0]

        def slow_square(i):
            time.sleep(0.25)
            return i * i

        futures = client.map(slow_square, range(10), pure=False)
        deadline = time.monotonic() + 30
        while not (client.processing().get(victim) and sum(f.done() for f in futures) >= 2):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        killed = dask_cluster.kill_worker(0)
        assert not _pid_alive(killed)
        assert client.gather(futures) == [i * i for i in range(10)]
        assert list(client.scheduler_info()["workers"]) == dask_cluster.worker_addresses[1:]


ORPHAN_SCRIPT = """
import time
from rasteret_dask.testing.dask_cluster import DaskProcessCluster
cluster = DaskProcessCluster(n_workers=1, nthreads=1).start()
print(cluster._scheduler.pid, *cluster.worker_pids(), flush=True)
time.sleep(120)
"""


def test_process_cluster_exits_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_pid_alive(p) for p in pids)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    deadline = time.monotonic() + 20
    while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_pid_alive(p) for p in pids)


def test_local_yaml_is_laptop_sized_and_ships_in_the_package(tmp_path, monkeypatch):
    from rasteret_dask.cluster import SHIPPED_CONFIGS

    shipped = SHIPPED_CONFIGS / "local.yaml"
    assert shipped.read_text() == (CLUSTER / "local.yaml").read_text()
    config = load_cluster_config(CLUSTER / "local.yaml")
    workers, threads = config["cluster"]["n_workers"], config["cluster"]["threads_per_worker"]
    assert workers * threads <= 4
    monkeypatch.chdir(tmp_path)  # no cluster/ folder here: the shipped file is read
    assert load_cluster_config("cluster/local.yaml") == config
    assert load_cluster_config("local.yaml") == config
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "local.yaml").write_text("kind: local\ncluster: {n_workers: 1}\n")
    assert load_cluster_config("cluster/local.yaml")["cluster"] == {"n_workers": 1}
    with pytest.raises(FileNotFoundError, match="shipped: local.yaml"):
        load_cluster_config("cluster/nowhere.yaml")
