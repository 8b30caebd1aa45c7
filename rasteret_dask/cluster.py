"""One way to get a Dask cluster: ``connect(target)`` returns a ``distributed.Client``.

A target is ``None`` (a new LocalCluster sized to the machine), an existing ``Client``, a
scheduler address (``tcp://host:8786``, ``host:8786``), a kind name (``"local"``, ``"slurm"``,
... with the deployment's own Dask config) or a YAML file in our format (see ``cluster/``)::

    kind: local | scheduler | ssh | kubernetes | slurm | pbs | gateway
    cluster: {...}          # keyword arguments of the deployment class
    scale: 4                # or adapt: {minimum: 0, maximum: 20}
    client: {...}           # keyword arguments of distributed.Client

Closing the returned client also closes the cluster that ``connect`` created.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from distributed import Client

__all__ = [
    "KINDS",
    "SHIPPED_CONFIGS",
    "active_client",
    "connect",
    "load_cluster_config",
    "local_cluster_kwargs",
    "make_cluster",
    "make_gateway",
    "resolve_client",
    "validate_cluster_config",
]

KINDS = ("local", "scheduler", "ssh", "kubernetes", "slurm", "pbs", "gateway")

# kind -> (module to import, pip distribution, extra of rasteret-dask)
_EXTRAS = {
    "ssh": ("asyncssh", "asyncssh", "ssh"),
    "kubernetes": ("dask_kubernetes.operator", "dask-kubernetes", "kubernetes"),
    "slurm": ("dask_jobqueue", "dask-jobqueue", "jobqueue"),
    "pbs": ("dask_jobqueue", "dask-jobqueue", "jobqueue"),
    "gateway": ("dask_gateway", "dask-gateway", "gateway"),
}
_COMMON = {"kind", "description", "client"}
_SCALING = {"scale", "adapt"}
_KEYS = {
    "local": _COMMON | _SCALING | {"cluster"},
    "scheduler": _COMMON | {"address", "scheduler_file"},
    "ssh": _COMMON | {"hosts", "cluster"},
    "kubernetes": _COMMON | _SCALING | {"cluster", "cluster_spec"},
    "slurm": _COMMON | _SCALING | {"cluster"},
    "pbs": _COMMON | _SCALING | {"cluster"},
    "gateway": _COMMON | _SCALING | {"address", "proxy_address", "public_address", "auth",
                                     "cluster_options", "shutdown_on_close"},
}
_ADAPT_KEYS = {"minimum", "maximum", "interval", "wait_count", "target_duration"}
_GATEWAY_AUTH = ("basic", "jupyterhub", "kerberos")
_ADDRESS = re.compile(r"^(?:[a-z0-9+]+://)?(?:\[[0-9a-fA-F:]+\]|[\w.\-]+):\d{1,5}$")
_SCHEMES = ("tcp://", "tls://", "ucx://", "ws://", "wss://", "inproc://")
_WALLTIME = re.compile(r"^(?:\d+-)?\d+(?::\d{1,2}){0,2}$")
_GIB = 1024**3


class _ClusterClient(Client):
    """A Client that also closes the cluster ``connect`` created for it."""

    _owned_cluster: Any = None

    def close(self, timeout: float | None = None) -> Any:
        """Close the client (``timeout`` seconds, default Dask's), then the cluster it owns."""
        try:
            return super().close() if timeout is None else super().close(timeout=timeout)
        finally:
            cluster, self._owned_cluster = self._owned_cluster, None
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.close()


def _fail(message: str, source: str | None) -> None:
    raise ValueError(f"{source}: {message}" if source else message)


def _check_int(value: Any, name: str, source: str | None, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(f"{name} must be an integer >= {minimum}, got {value!r}", source)


def _check_mapping(value: Any, name: str, source: str | None) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        _fail(f"{name} must be a mapping with string keys, got {value!r}", source)


def _check_str_list(value: Any, name: str, source: str | None, min_len: int = 0) -> None:
    if (not isinstance(value, list) or len(value) < min_len
            or not all(isinstance(v, str) and v for v in value)):
        _fail(f"{name} must be a list of at least {min_len} non-empty strings, got {value!r}",
              source)


def _validate_kind_fields(kind: str, config: Mapping[str, Any], source: str | None) -> None:
    cluster = config.get("cluster", {})
    for key in ("n_workers", "threads_per_worker", "cores", "processes"):
        if key in cluster and not (kind == "local" and key == "processes"):
            minimum = 0 if key == "n_workers" else 1
            _check_int(cluster[key], f"cluster.{key}", source, minimum=minimum)
    if kind == "local" and "processes" in cluster and not isinstance(cluster["processes"], bool):
        _fail("cluster.processes must be true or false for kind 'local'", source)
    if kind == "scheduler":
        if ("address" in config) == ("scheduler_file" in config):
            _fail("kind 'scheduler' needs exactly one of 'address' or 'scheduler_file'", source)
        address = config.get("address")
        if address is not None and not (isinstance(address, str) and (
                address.startswith(_SCHEMES) or _ADDRESS.match(address))):
            _fail(f"address must look like tcp://host:port, got {address!r}", source)
    elif kind == "ssh":
        _check_str_list(config.get("hosts"), "hosts (scheduler host first, then workers)",
                        source, min_len=2)
    elif kind == "kubernetes":
        spec = config.get("cluster_spec")
        if spec is not None and not isinstance(spec, str):
            _check_mapping(spec, "cluster_spec", source)
            if (spec.get("apiVersion"), spec.get("kind")) != ("kubernetes.dask.org/v1",
                                                              "DaskCluster"):
                _fail("cluster_spec must be a kubernetes.dask.org/v1 DaskCluster", source)
            if not {"worker", "scheduler"} <= set(spec.get("spec") or {}):
                _fail("cluster_spec.spec needs 'worker' and 'scheduler'", source)
        resources = cluster.get("resources", {})
        _check_mapping(resources, "cluster.resources", source)
        if not set(resources) <= {"limits", "requests"}:
            _fail("cluster.resources may only hold 'limits' and 'requests'", source)
    elif kind in ("slurm", "pbs"):
        for key in ("queue", "memory", "account", "walltime", "job_name", "resource_spec"):
            if key in cluster and not (isinstance(cluster[key], str) and cluster[key]):
                _fail(f"cluster.{key} must be a non-empty string", source)
        if "walltime" in cluster and not _WALLTIME.match(cluster["walltime"]):
            _fail(f"cluster.walltime must look like HH:MM:SS, got {cluster['walltime']!r}", source)
        for key in ("job_extra_directives", "job_script_prologue", "worker_extra_args"):
            if key in cluster:
                _check_str_list(cluster[key], f"cluster.{key}", source)
    elif kind == "gateway":
        auth = config.get("auth")
        auth_type = auth.get("type") if isinstance(auth, Mapping) else auth
        if auth is not None and auth_type not in _GATEWAY_AUTH:
            _fail(f"auth must be one of {_GATEWAY_AUTH} (or {{type: ..., kwargs}}), got {auth!r}",
                  source)
        options = config.get("cluster_options", {})
        _check_mapping(options, "cluster_options", source)
        for key, value in options.items():
            if not isinstance(value, str | int | float | bool | list):
                _fail(f"cluster_options.{key} must be a scalar or a list, got {value!r}", source)
        for key in ("address", "proxy_address", "public_address"):
            if key in config and not isinstance(config[key], str | int):
                _fail(f"{key} must be a string", source)


def validate_cluster_config(config: Any, source: str | None = None) -> dict[str, Any]:
    """Check a cluster config (our YAML format) and return it as a dict; ValueError if invalid."""
    if not isinstance(config, Mapping):
        _fail(f"a cluster config must be a mapping with a 'kind', got {type(config).__name__}",
              source)
    kind = config.get("kind")
    if kind not in KINDS:
        _fail(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}", source)
    unknown = sorted(set(config) - _KEYS[kind])
    if unknown:
        _fail(f"unknown key(s) {unknown} for kind {kind!r}; allowed: {sorted(_KEYS[kind])}", source)
    for key in ("cluster", "client"):
        if key in config:
            _check_mapping(config[key], key, source)
    if "scale" in config and "adapt" in config:
        _fail("give either 'scale' or 'adapt', not both", source)
    if "scale" in config:
        _check_int(config["scale"], "scale", source)
    if "adapt" in config:
        adapt = config["adapt"]
        _check_mapping(adapt, "adapt", source)
        if not set(adapt) <= _ADAPT_KEYS or "maximum" not in adapt:
            _fail(f"adapt needs 'maximum' and may hold {sorted(_ADAPT_KEYS)}", source)
        _check_int(adapt.get("minimum", 0), "adapt.minimum", source)
        _check_int(adapt["maximum"], "adapt.maximum", source, minimum=1)
        if adapt.get("minimum", 0) > adapt["maximum"]:
            _fail("adapt.minimum must not exceed adapt.maximum", source)
    _validate_kind_fields(kind, config, source)
    return dict(config)


SHIPPED_CONFIGS = Path(__file__).with_name("cluster_configs")
"""Cluster files that ship inside the package (``local.yaml``): a relative path that does not
exist, named like one of them (``cluster/local.yaml``), is read from here."""


def _config_path(path: str | os.PathLike[str]) -> Path:
    """``path``, else the shipped file of that name when ``path`` is relative and absent."""
    given = Path(path).expanduser()
    if given.is_file() or given.is_absolute():
        return given
    shipped = SHIPPED_CONFIGS / given.name
    return shipped if shipped.is_file() else given


def load_cluster_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a cluster YAML file; a relative ``cluster_spec`` is read next to it.

    A relative path that does not exist falls back to the file of that name shipped with the
    package (:data:`SHIPPED_CONFIGS`: ``local.yaml``).
    """
    path = _config_path(path)
    if not path.is_file():
        shipped = ", ".join(sorted(p.name for p in SHIPPED_CONFIGS.glob("*.yaml")))
        raise FileNotFoundError(f"cluster config file not found: {path} (copy one from the "
                                f"repository's cluster/ folder; shipped: {shipped})")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    config = validate_cluster_config(config, source=str(path))
    if isinstance(config.get("cluster_spec"), str):
        spec_path = path.parent / Path(config["cluster_spec"]).expanduser()
        if not spec_path.is_file():
            raise FileNotFoundError(f"{path}: cluster_spec file not found: {spec_path}")
        try:
            config["cluster_spec"] = yaml.safe_load(spec_path.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"{spec_path}: not valid YAML: {exc}") from exc
        config = validate_cluster_config(config, source=str(path))
    return config


def local_cluster_kwargs(**overrides: Any) -> dict[str, Any]:
    """LocalCluster keyword arguments sized to this machine's CPUs and memory, then overrides."""
    from dask.system import CPU_COUNT
    from distributed.system import MEMORY_LIMIT

    cpus = max(1, CPU_COUNT)
    threads = overrides.get("threads_per_worker")
    workers = overrides.get("n_workers")
    if workers is None:
        threads = threads or (1 if cpus == 1 else 2 if cpus <= 4 else 4)
        # processes for Python-level parsing, threads for GIL-free decoding and I/O;
        # at least 2 GiB of memory per worker.
        workers = max(1, min(cpus // threads, MEMORY_LIMIT // (2 * _GIB)))
    if threads is None:
        threads = max(1, cpus // max(workers, 1))
    kwargs = {"n_workers": workers, "threads_per_worker": threads, "processes": True,
              "memory_limit": "auto"}
    kwargs.update(overrides)
    return kwargs


def _require(kind: str) -> Any:
    """Import the optional deployment library of ``kind``; a clear ImportError when missing."""
    module, package, extra = _EXTRAS[kind]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"kind {kind!r} needs {package}: pip install 'rasteret-dask[{extra}]'"
                          ) from exc


def _gateway_auth(auth: Any) -> Any:
    if auth is None or isinstance(auth, str):
        return auth
    from dask_gateway import auth as gateway_auth

    classes = {"basic": gateway_auth.BasicAuth, "jupyterhub": gateway_auth.JupyterHubAuth,
               "kerberos": gateway_auth.KerberosAuth}
    kwargs = {k: v for k, v in auth.items() if k != "type"}
    return classes[auth["type"]](**kwargs)


def _gateway_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    config = validate_cluster_config(config)
    if config["kind"] != "gateway":
        raise ValueError(f"expected kind 'gateway', got {config['kind']!r}")
    _require("gateway")
    kwargs = {k: config[k] for k in ("address", "proxy_address", "public_address") if k in config}
    return {**kwargs, "auth": _gateway_auth(config.get("auth"))}


def make_gateway(config: Mapping[str, Any]) -> Any:
    """A ``dask_gateway.Gateway`` for a gateway config; offline (no request until used)."""
    from dask_gateway import Gateway

    return Gateway(**_gateway_kwargs(config))


def make_cluster(config: Mapping[str, Any]) -> Any:
    """Build the (unscaled) cluster object of a config: LocalCluster, SSHCluster, SLURMCluster..."""
    config = validate_cluster_config(config)
    kind, kwargs = config["kind"], dict(config.get("cluster", {}))
    if kind == "local":
        from distributed import LocalCluster

        if "scale" in config:
            kwargs["n_workers"] = config["scale"]
        elif "adapt" in config:
            kwargs["n_workers"] = config["adapt"].get("minimum", 0)
        return LocalCluster(**local_cluster_kwargs(**kwargs))
    if kind in ("scheduler", "gateway"):
        raise ValueError(f"kind {kind!r} has no cluster object to build; use connect()")
    module = _require(kind)
    if kind == "ssh":
        from distributed import SSHCluster

        return SSHCluster(hosts=list(config["hosts"]), **kwargs)
    if kind == "kubernetes":
        if "cluster_spec" in config:
            kwargs["custom_cluster_spec"] = config["cluster_spec"]
        return module.KubeCluster(**kwargs)
    return (module.SLURMCluster if kind == "slurm" else module.PBSCluster)(**kwargs)


def _apply_scaling(cluster: Any, config: Mapping[str, Any]) -> None:
    if "adapt" in config:
        cluster.adapt(**config["adapt"])
    elif "scale" in config and config["kind"] != "local":
        cluster.scale(config["scale"])


def _owning_client(cluster: Any, config: Mapping[str, Any]) -> Client:
    try:
        _apply_scaling(cluster, config)
        client = _ClusterClient(cluster, **config.get("client", {}))
    except BaseException:
        cluster.close()
        raise
    client._owned_cluster = cluster
    return client


def _target_config(target: Any) -> dict[str, Any]:
    """Turn a connect() target (not a Client) into a validated config."""
    if target is None:
        return {"kind": "local"}
    if isinstance(target, Mapping):
        return validate_cluster_config(target)
    if isinstance(target, os.PathLike):
        return load_cluster_config(target)
    if not isinstance(target, str):
        raise TypeError(f"cannot connect to a {type(target).__name__}; give None, a Client, "
                        "an address or a YAML file")
    text = target.strip()
    if text in KINDS:
        return validate_cluster_config({"kind": text}, source=f"target {text!r}")
    if text.startswith(_SCHEMES) or _ADDRESS.match(text):
        return validate_cluster_config({"kind": "scheduler", "address": text})
    if text.lower().endswith((".yaml", ".yml")) or os.path.isfile(text):
        return load_cluster_config(text)
    if text.startswith(("http://", "https://")):
        raise ValueError(f"{text!r} is an http(s) URL; for Dask Gateway write a YAML file with "
                         "'kind: gateway' (see cluster/gateway.yaml)")
    raise ValueError(f"unrecognised cluster target {target!r}: expected None, a Client, "
                     "'tcp://host:port', 'host:port', a kind name "
                     f"({', '.join(KINDS)}) or a YAML file")


def connect(target: str | os.PathLike[str] | Client | Mapping[str, Any] | None = None,
            **kwargs: Any) -> Client:
    """A ``distributed.Client`` for ``target``.

    Parameters
    ----------
    target : str, os.PathLike, Client, mapping or None, default None
        ``None`` starts a new LocalCluster sized to the machine; a Client is returned as is;
        ``"tcp://host:port"`` or ``"host:port"`` connects to a running scheduler; a kind name
        (``"local"``, ``"slurm"``, ``"pbs"``, ``"kubernetes"``, ``"gateway"``, ``"ssh"``) starts
        that cluster with its defaults; a ``cluster/*.yaml`` path or an equivalent mapping is
        validated and started.
    **kwargs
        Extend the config's ``cluster:`` arguments (the Client's arguments for an address).

    Returns
    -------
    distributed.Client
        Closing it also closes a cluster that this call started.

    Raises
    ------
    ValueError
        For an unrecognised target or an invalid cluster config (the message names the file).
    ImportError
        When the cluster kind needs an extra that is not installed (the message names it).
    TypeError
        For keyword arguments with an existing Client, or a target of another type.
    """
    if isinstance(target, Client):
        if kwargs:
            raise TypeError("keyword arguments cannot be applied to an existing Client")
        return target
    config = _target_config(target)
    kind = config["kind"]
    if kind == "scheduler":
        client_kwargs = {**config.get("client", {}), **kwargs}
        if "scheduler_file" in config:
            return Client(scheduler_file=config["scheduler_file"], **client_kwargs)
        address = config["address"]
        if "://" not in address:
            address = f"tcp://{address}"
        return Client(address, **client_kwargs)
    if kind == "gateway":
        gateway_kwargs = _gateway_kwargs(config)  # a clear ImportError first
        from dask_gateway import GatewayCluster

        options = {**config.get("cluster_options", {}), **kwargs}
        cluster = GatewayCluster(**gateway_kwargs,
                                 shutdown_on_close=config.get("shutdown_on_close", True), **options)
        return _owning_client(cluster, config)
    if kwargs:
        config = {**config, "cluster": {**config.get("cluster", {}), **kwargs}}
        config = validate_cluster_config(config)
    return _owning_client(make_cluster(config), config)


def active_client(client: Any = None) -> Client | None:
    """``client``, else the active ``distributed`` client, else None (run on local threads)."""
    if client is not None:
        return client
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def resolve_client(client_or_target: Any = None) -> tuple[Client, bool]:
    """(client, owned) for an entry point's ``client``/``cluster`` argument; close it if owned.

    ``None`` reuses the active default client when there is one, else starts a LocalCluster.
    """
    if isinstance(client_or_target, Client):
        return client_or_target, False
    if client_or_target is None:
        from distributed import default_client

        with contextlib.suppress(ValueError):
            return default_client(), False
    return connect(client_or_target), True
