"""The job service's configuration: `service.toml`, then `RUINMAP_SERVICE_*` variables.

Every setting has a default, can be set in the file and can be overridden by an environment
variable named `RUINMAP_SERVICE_<TABLE>_<KEY>` (upper case), for example
`RUINMAP_SERVICE_JOBS_MAX_RUNNING=4`.
Lists in variables are comma-separated (`RUINMAP_SERVICE_AUTH_TOKENS=a,b`), except path lists,
which use the OS path separator (`RUINMAP_SERVICE_PATHS_DATA_ROOTS=/data:/more`). Relative
paths in the file resolve against the file's folder, in variables against the working folder.

::

    [server]
    host = "127.0.0.1"          # RUINMAP_SERVICE_SERVER_HOST
    port = 8080                 # RUINMAP_SERVICE_SERVER_PORT
    max_body_bytes = 1048576    # RUINMAP_SERVICE_SERVER_MAX_BODY_BYTES: request body limit
    public_url = ""             # RUINMAP_SERVICE_SERVER_PUBLIC_URL: origin of absolute links
                                # (e.g. "https://maps.example.org"); "": relative links. The
                                # request's Host header is never used to build a link.
    [auth]
    tokens = []                 # RUINMAP_SERVICE_AUTH_TOKENS: bearer tokens for submit/dismiss,
                                # plain or "sha256:<hex>", or named tables
                                # {name = "unosat", token = "sha256:...", admin = true};
                                # none: nobody may submit
    public_read = true          # RUINMAP_SERVICE_AUTH_PUBLIC_READ: false = reads need a token
    [paths]
    data_roots = []             # RUINMAP_SERVICE_PATHS_DATA_ROOTS: job inputs must lie under one
    output_root = "results"     # RUINMAP_SERVICE_PATHS_OUTPUT_ROOT: job outputs go under it
    [store]
    db = "jobs.sqlite"          # RUINMAP_SERVICE_STORE_DB: the SQLite job store
    [cluster]
    address = "local"           # RUINMAP_SERVICE_CLUSTER_ADDRESS: "local" or tcp://host:port
    [jobs]
    max_running = 2             # RUINMAP_SERVICE_JOBS_MAX_RUNNING: jobs run at once; rest queue
    chunk_px = 512              # RUINMAP_SERVICE_JOBS_CHUNK_PX: ingest chunk side
    shard_px = 2048             # RUINMAP_SERVICE_JOBS_SHARD_PX: ingest shard = tile side
    retention_days = 0          # RUINMAP_SERVICE_JOBS_RETENTION_DAYS: ended jobs' records and
                                # output folders are removed this long after they end; 0 = kept
    max_pixels = 1000000000     # RUINMAP_SERVICE_JOBS_MAX_PIXELS: the most pixels of one date
                                # a job's grid may have (width x height)
    max_dates = 400             # RUINMAP_SERVICE_JOBS_MAX_DATES: pre + post dates of one job
    max_tasks = 200000          # RUINMAP_SERVICE_JOBS_MAX_TASKS: a job's Dask tasks (ingest
                                # shards x dates, and tiles); each limit is checked on the
                                # headers at submission (400) and when the job starts
    [page]
    basemap_url = ""            # RUINMAP_SERVICE_PAGE_BASEMAP_URL: XYZ raster tiles under the
                                # results map, e.g. "https://tiles.example.org/{z}/{x}/{y}.png"
                                # (the browser fetches them); "": a plain background (offline)

Tokens are hashed (SHA-256) as soon as they are read; only the hashes are kept, so a config file
may hold `sha256:` hashes only (`ruinmap serve --hash-token TOKEN` prints one). Each token has a
name (given, or `token-<first 8 hex of its hash>`); a job records the name that submitted it,
and only that token or an `admin = true` one may dismiss it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.budget import JobBudget
from ruinmap.errors import SpecError

__all__ = ["DEFAULTS", "ServiceConfig", "Token", "hash_token", "load_config"]

ENV_PREFIX = "RUINMAP_SERVICE_"

#: Every setting by table and key, with its default (paths relative to the working folder).
DEFAULTS: dict[str, dict[str, Any]] = {
    "server": {"host": "127.0.0.1", "port": 8080, "max_body_bytes": 1_048_576,
               "public_url": ""},
    "auth": {"tokens": [], "public_read": True},
    "paths": {"data_roots": [], "output_root": "results"},
    "store": {"db": "jobs.sqlite"},
    "cluster": {"address": "local"},
    "jobs": {"max_running": 2, "chunk_px": 512, "shard_px": 2048, "retention_days": 0.0,
             "max_pixels": 1_000_000_000, "max_dates": 400, "max_tasks": 200_000},
    "page": {"basemap_url": ""},
}

_HASHED = re.compile(r"^sha256:([0-9a-fA-F]{64})$")


def hash_token(token: str) -> str:
    """The `sha256:<hex>` form of a bearer token, as kept in memory and in config files."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Token:
    """A configured bearer token: who it is, its SHA-256, and whether it may dismiss any job."""

    name: str
    hash: str
    admin: bool = False


@dataclass(frozen=True)
class ServiceConfig:
    """The parsed settings (see the module docstring for keys, defaults and variables)."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1_048_576
    public_url: str = ""  # no trailing slash; "" = relative links
    tokens: tuple[Token, ...] = ()
    public_read: bool = True
    data_roots: tuple[Path, ...] = ()
    output_root: Path = field(default_factory=lambda: Path("results").absolute())
    db: Path = field(default_factory=lambda: Path("jobs.sqlite").absolute())
    cluster_address: str = "local"
    max_running: int = 2
    chunk_px: int = 512
    shard_px: int = 2048
    retention_days: float = 0.0  # 0: ended jobs are kept
    max_pixels: int = 1_000_000_000
    max_dates: int = 400
    max_tasks: int = 200_000
    basemap_url: str = ""  # "" = no basemap under the results map

    @property
    def ingest_options(self) -> IngestOptions:
        """How the service ingests a job's imagery (`[jobs] chunk_px`, `shard_px`), every
        input file opened confined to the data roots (`storage.confined`)."""
        return IngestOptions(chunk=self.chunk_px, shard=self.shard_px,
                             confine_to=tuple(os.path.realpath(r) for r in self.data_roots))

    @property
    def budget(self) -> JobBudget:
        """What one job may ask for (`[jobs] max_pixels`, `max_dates`, `max_tasks`)."""
        return JobBudget(self.max_pixels, self.max_dates, self.max_tasks,
                         setting="the service config's [jobs] table")

    @property
    def token_hashes(self) -> tuple[str, ...]:
        return tuple(t.hash for t in self.tokens)

    def token_named(self, token: str | None) -> Token | None:
        """The configured token `token` is, or None (every entry compared in constant time)."""
        if not token:
            return None
        digest = hash_token(token)
        found = None
        for known in self.tokens:
            if hmac.compare_digest(digest, known.hash):
                found = known
        return found

    def token_allowed(self, token: str | None) -> bool:
        """Whether `token` is one of the configured ones (constant-time comparison)."""
        return self.token_named(token) is not None

    def with_overrides(self, **changes: Any) -> ServiceConfig:
        """A copy with the given fields replaced (command-line flags)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _from_env(table: str, key: str, default: Any) -> Any:
    name = f"{ENV_PREFIX}{table.upper()}_{key.upper()}"
    text = os.environ.get(name)
    if text is None:
        return _MISSING
    if isinstance(default, bool):
        if text.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if text.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise SpecError(f"{name}={text!r}: expected true or false")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise SpecError(f"{name}={text!r}: expected a whole number") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise SpecError(f"{name}={text!r}: expected a number") from None
    if isinstance(default, list):
        separator = os.pathsep if table == "paths" else ","
        return [part.strip() for part in text.split(separator) if part.strip()]
    return text


_MISSING = object()


def _settings(data: Mapping[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """Defaults, overlaid by the file's tables, overlaid by the environment; types checked."""
    values = {table: dict(keys) for table, keys in DEFAULTS.items()}
    for table, keys in data.items():
        if table not in DEFAULTS:
            raise SpecError(f"{source}: unknown table [{table}]; known: {', '.join(DEFAULTS)}")
        if not isinstance(keys, Mapping):
            raise SpecError(f"{source}: [{table}] must be a table")
        for key, value in keys.items():
            if key not in DEFAULTS[table]:
                known = ", ".join(DEFAULTS[table])
                raise SpecError(f"{source}: unknown key {table}.{key}; known: {known}")
            default = DEFAULTS[table][key]
            expected: type | tuple[type, ...] = type(default)
            if isinstance(default, bool):
                expected = bool
            elif isinstance(default, float):
                expected = (int, float)  # `retention_days = 30` is a number of days too
            ok = isinstance(value, expected) and not (
                expected is int and isinstance(value, bool)
            )
            if isinstance(default, list):
                # token entries may also be {name, token, admin} tables (checked in _token)
                kinds = (str, Mapping) if (table, key) == ("auth", "tokens") else (str,)
                ok = isinstance(value, list) and all(isinstance(v, kinds) for v in value)
            if not ok:
                raise SpecError(
                    f"{source}: {table}.{key} = {value!r}: expected {type(default).__name__}"
                )
            values[table][key] = value
    for table, keys in DEFAULTS.items():
        for key, default in keys.items():
            env = _from_env(table, key, default)
            if env is not _MISSING:
                values[table][key] = env
    return values


def _token_hash(entry: str, source: str) -> str:
    match = _HASHED.match(entry.strip())
    if match:
        return "sha256:" + match[1].lower()
    if not entry.strip():
        raise SpecError(f"{source}: auth.tokens holds an empty token")
    return hash_token(entry.strip())


def _token(entry: Any, source: str) -> Token:
    """One `auth.tokens` entry: a token string, or a {name, token, admin} table."""
    if isinstance(entry, str):
        digest = _token_hash(entry, source)
        return Token(name=f"token-{digest[7:15]}", hash=digest)
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"name", "token", "admin"}
        name, text, admin = entry.get("name"), entry.get("token"), entry.get("admin", False)
        if unknown or not isinstance(name, str) or not name.strip() \
                or not isinstance(text, str) or not isinstance(admin, bool):
            raise SpecError(f"{source}: auth.tokens entry {dict(entry)!r}: give name "
                            "(text), token (text) and optionally admin (true/false)")
        return Token(name=name.strip(), hash=_token_hash(text, source), admin=admin)
    raise SpecError(f"{source}: auth.tokens entry {entry!r}: a token string or a table "
                    "{name, token, admin}")


def _tokens(entries: list[Any], source: str) -> tuple[Token, ...]:
    tokens = tuple(_token(entry, source) for entry in entries)
    names = [t.name for t in tokens]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SpecError(f"{source}: auth.tokens names {twice} more than once; each token "
                        "needs a name of its own (it decides who may dismiss a job)")
    return tokens


def load_config(path: str | Path | None = None) -> ServiceConfig:
    """Read `path` (a service.toml; None: defaults only), then the environment.

    Raises SpecError naming the file or variable and the bad key.
    """
    data: Mapping[str, Any] = {}
    base = Path.cwd()
    source = "service config"
    if path is not None:
        file = Path(path)
        source = str(file)
        try:
            with file.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise SpecError(f"{file}: no such service config file") from None
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{file}: not valid TOML: {exc}") from None
        base = file.parent.absolute()
    values = _settings(data, source)

    def absolute(text: str) -> Path:
        if "://" in text:
            raise SpecError(f"{source}: {text!r} is a URL; give a local folder")
        return Path(os.path.normpath(base / Path(text).expanduser()))

    jobs = values["jobs"]
    for key in ("max_running", "chunk_px", "shard_px", "max_pixels", "max_dates", "max_tasks"):
        if jobs[key] < 1:
            raise SpecError(f"{source}: jobs.{key} = {jobs[key]}: must be at least 1")
    if jobs["shard_px"] % jobs["chunk_px"]:
        raise SpecError(
            f"{source}: jobs.shard_px ({jobs['shard_px']}) must be a multiple of jobs.chunk_px "
            f"({jobs['chunk_px']})"
        )
    if not 0 <= jobs["retention_days"] <= 36_500:
        raise SpecError(f"{source}: jobs.retention_days = {jobs['retention_days']}: give 0 "
                        "(keep ended jobs) or a number of days up to 36500")
    if values["server"]["max_body_bytes"] < 1024:
        raise SpecError(f"{source}: server.max_body_bytes must be at least 1024")
    public_url = values["server"]["public_url"].strip().rstrip("/")
    if public_url and not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", public_url):
        raise SpecError(f"{source}: server.public_url = {public_url!r}: give an http(s) URL "
                        "such as https://maps.example.org (no query), or \"\" for relative "
                        "links")
    basemap_url = values["page"]["basemap_url"].strip()
    if basemap_url and not (re.match(r"^https?://", basemap_url)
                            and all(k in basemap_url for k in ("{z}", "{x}", "{y}"))):
        raise SpecError(f"{source}: page.basemap_url = {basemap_url!r}: give an http(s) XYZ "
                        "tile URL with {z}, {x} and {y}, or \"\" for no basemap")
    return ServiceConfig(
        host=values["server"]["host"],
        port=values["server"]["port"],
        max_body_bytes=values["server"]["max_body_bytes"],
        public_url=public_url,
        tokens=_tokens(values["auth"]["tokens"], source),
        public_read=values["auth"]["public_read"],
        data_roots=tuple(absolute(p) for p in values["paths"]["data_roots"]),
        output_root=absolute(values["paths"]["output_root"]),
        db=absolute(values["store"]["db"]),
        cluster_address=values["cluster"]["address"],
        max_running=jobs["max_running"],
        chunk_px=jobs["chunk_px"],
        shard_px=jobs["shard_px"],
        retention_days=float(jobs["retention_days"]),
        max_pixels=jobs["max_pixels"],
        max_dates=jobs["max_dates"],
        max_tasks=jobs["max_tasks"],
        basemap_url=basemap_url,
    )
