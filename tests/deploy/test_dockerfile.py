"""deploy/docker/Dockerfile checked with a small parser of Dockerfile instructions (no Docker
engine here): pinned base, non-root user, writable numba cache, GDAL cloud settings, and an
entrypoint of ruinmap or dask."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

import pytest

from tests.support.repo import DEPLOY, REPO

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    text: str  # the arguments, continuation lines joined

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/RUN, else None (shell form)."""
        if self.text.startswith("["):
            value = json.loads(self.text)
            assert isinstance(value, list) and all(isinstance(v, str) for v in value)
            return value
        return None


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, `\\` continuations joined (comment lines
    inside a continuation are skipped, as Docker does)."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # a comment or blank line, also inside a continuation
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        joined = " ".join(pending)
        pending = []
        keyword, _, rest = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), rest.strip()))
    assert not pending, "a continuation runs off the end of the file"
    return instructions


def parse_env(text: str) -> dict[str, str]:
    """The variables of one `ENV k=v k2="v 2"` instruction."""
    pairs = {}
    for word in shlex.split(text):
        key, sep, value = word.partition("=")
        assert sep, f"ENV {text!r}: use the key=value form"
        pairs[key] = value
    return pairs


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def _all(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in instructions if i.keyword == keyword]


def _env(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in _all(instructions, "ENV"):
        env.update(parse_env(instruction.text))
    return env


def test_the_parser_reads_continuations_and_exec_forms():
    parsed = parse_dockerfile('FROM a:1\n# c\nENV A=1 \\\n  # inside\n  B="x y"\n'
                              'ENTRYPOINT ["ruinmap"]\n')
    assert [i.keyword for i in parsed] == ["FROM", "ENV", "ENTRYPOINT"]
    assert parse_env(parsed[1].text) == {"A": "1", "B": "x y"}
    assert parsed[2].exec_form() == ["ruinmap"]


def test_the_base_image_is_python_311_slim_bookworm_pinned_by_version(instructions):
    [base] = _all(instructions, "FROM")
    assert instructions[0].keyword == "FROM" or instructions[0].keyword == "ARG"
    image = base.text.split()[0]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image


def test_the_image_runs_as_a_non_root_user(instructions):
    users = _all(instructions, "USER")
    assert users, "no USER: the image would run as root"
    user = users[-1].text.split(":")[0]
    assert user not in ("root", "0")
    created = " ".join(i.text for i in _all(instructions, "RUN"))
    assert "useradd" in created and user in created
    # the last USER comes after every RUN, so nothing later runs as root
    last_user = max(i for i, ins in enumerate(instructions) if ins.keyword == "USER")
    assert all(n < last_user for n, ins in enumerate(instructions) if ins.keyword == "RUN")


def test_the_numba_cache_is_writable_by_that_user(instructions):
    env = _env(instructions)
    cache = env["NUMBA_CACHE_DIR"]
    user = _all(instructions, "USER")[-1].text.split(":")[0]
    runs = " ".join(i.text for i in _all(instructions, "RUN"))
    owned = re.findall(rf"chown -R {user}:\S+ ([^&;]+)", runs)
    assert any(cache == d or cache.startswith(d.rstrip("/") + "/")
               for group in owned for d in group.split()), (cache, owned)


def test_gdal_is_set_up_for_cloud_reads(instructions):
    env = _env(instructions)
    assert env["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    extensions = env["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"].split(",")
    assert ".tif" in extensions and ".tiff" in extensions
    assert int(env["GDAL_CACHEMAX"]) <= 256


def test_the_entrypoint_is_ruinmap_in_exec_form(instructions):
    [entrypoint] = _all(instructions, "ENTRYPOINT")
    words = entrypoint.exec_form()
    assert words is not None, "shell form would swallow signals (no clean shutdown)"
    assert words[0] in ("ruinmap", "dask")


def test_the_project_is_copied_from_the_build_context_and_installed(instructions):
    for copy in _all(instructions, "COPY"):
        *sources, _ = copy.text.split()
        for source in sources:
            assert (REPO / source).exists(), source
    installs = [i.text for i in _all(instructions, "RUN") if "pip install" in i.text]
    assert any(re.search(r"pip install \"?\.(\[[a-z,]+\])?\"?", text) for text in installs)
    assert (REPO / ".dockerignore").read_text().count(".venv")
