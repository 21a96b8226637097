"""The error tree drawn in `server/errors.py`'s docstring is the code's: every error class the app's packages define
is drawn, under its real parent, with its module and its status, the drawing names no class that does not exist,
and every domain error answers as a problem whose `type` is documented with the same status."""

from __future__ import annotations

import asyncio
import builtins
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import orjson
import pytest
from starlette.requests import Request

import preference_center
import server
from server import errors
from server.api.ops import problem_type, problem_types
from server.errors import ConsentError
from server.kernel.problems import EXCEPTION_HANDLERS, consent_error

PACKAGES = (server, preference_center)
ROOT = re.compile(r"^    (?P<name>[A-Z]\w+)(?:\s+(?P<status>\d{3}))?(?:\s+(?P<text>\S.*))?$")
CHILD = re.compile(
    r"^    (?P<branches>(?:│   |    )*)[├└]── (?P<name>[A-Z]\w+)(?:\s+(?P<status>\d{3}))?\s+(?P<text>\S.*)$"
)


@dataclass(frozen=True)
class Drawn:
    name: str
    parent: str | None
    status: int | None
    text: str


def _drawing() -> dict[str, Drawn]:
    """The classes drawn in the docstring, by name. A line that is neither a root nor a branch continues the text of
    the entry above it."""
    drawn: dict[str, Drawn] = {}
    ancestors: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        child = CHILD.match(line)
        entry = child or ROOT.match(line)
        if entry is None:
            continue
        depth = len(child["branches"]) // 4 + 1 if child else 0
        assert depth <= len(ancestors), f"{line!r} hangs below no entry"
        del ancestors[depth:]
        name = entry["name"]
        assert name not in drawn, f"{name} is drawn twice"
        status = entry["status"]
        drawn[name] = Drawn(
            name, ancestors[-1] if ancestors else None, int(status) if status else None, entry["text"] or ""
        )
        ancestors.append(name)
    return drawn


def _modules() -> Iterator[ModuleType]:
    for package in PACKAGES:
        yield package
        for found in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not found.name.endswith(".__main__"):  # runs the command line
                yield importlib.import_module(found.name)


def _defined_errors() -> dict[str, type[BaseException]]:
    """Every exception class the app's packages define, by name (each module imported)."""
    found: dict[str, type[BaseException]] = {}
    for module in _modules():
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                assert found.setdefault(value.__name__, value) is value, f"two errors are named {value.__name__}"
    return found


def _domain_errors() -> list[type[ConsentError]]:
    """`ConsentError` and its subclasses at any depth, the app's packages all imported."""
    _defined_errors()
    found: list[type[ConsentError]] = []
    pending: list[type[ConsentError]] = [ConsentError]
    while pending:
        error = pending.pop(0)
        found.append(error)
        pending.extend(error.__subclasses__())
    return [error for error in found if error.__module__.split(".")[0] in {p.__name__ for p in PACKAGES}]


DOMAIN_ERRORS = _domain_errors()


def _check_drawn(error: type[BaseException], drawn: dict[str, Drawn]) -> Drawn:
    name = error.__name__
    assert name in drawn, f"{name} ({error.__module__}) is not drawn in server/errors.py"
    entry = drawn[name]
    bases = [base.__name__ for base in error.__bases__]
    if error is ConsentError:
        assert entry.parent is None, "ConsentError is the root of the domain tree"
    else:
        assert entry.parent in bases, f"{name} is drawn under {entry.parent}, its bases are {bases}"
    if error.__module__ != errors.__name__:
        assert entry.text.startswith(f"{error.__module__}: "), f"{name}: the drawing does not name {error.__module__}"
    assert entry.text, f"{name}: the drawing does not say when it is raised"
    return entry


def test_the_walk_finds_the_errors_of_every_package() -> None:
    modules = {error.__module__ for error in DOMAIN_ERRORS}
    assert {"server.errors", "server.banner.errors", "server.staff.oidc", "server.links.tokens"} <= modules
    assert {"ExportLinkRefused", "MigrationError", "PolicySourceError", "SettingsError"} <= set(_defined_errors())


def test_every_domain_error_is_drawn_under_its_parent_with_its_status() -> None:
    drawn = _drawing()
    assert drawn["ConsentError"].parent is None
    for error in DOMAIN_ERRORS:
        entry = _check_drawn(error, drawn)
        assert entry.status == error.status, f"{error.__name__} is drawn with {entry.status}, answers {error.status}"


def test_every_other_error_the_packages_define_is_drawn_outside_the_tree() -> None:
    drawn = _drawing()
    for error in _defined_errors().values():
        if issubclass(error, ConsentError):
            continue
        entry = _check_drawn(error, drawn)
        assert entry.status is None, f"{error.__name__} is no problem and has no status"
        root = entry
        while root.parent is not None:
            root = drawn[root.parent]
        assert isinstance(getattr(builtins, root.name, None), type), f"{error.__name__} hangs below {root.name}"


def test_the_drawing_names_only_errors_that_exist() -> None:
    defined = _defined_errors()
    for name in _drawing():
        builtin = getattr(builtins, name, None)
        assert name in defined or (inspect.isclass(builtin) and issubclass(builtin, BaseException)), name


def _raised(error: type[ConsentError]) -> ConsentError:
    """An instance, with a placeholder for each keyword its constructor requires (a scope, a delay, a reason)."""
    parameters = inspect.signature(error).parameters.values()
    required = {p.name: 1 for p in parameters if p.kind is p.KEYWORD_ONLY and p.default is p.empty}
    return error("why it was refused", **required)


def _request(**scope: object) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [], **scope})


@pytest.mark.parametrize("error", DOMAIN_ERRORS, ids=lambda error: error.__name__)
def test_every_domain_error_answers_a_documented_problem(error: type[ConsentError]) -> None:
    assert EXCEPTION_HANDLERS[ConsentError] is consent_error
    assert "slug" in vars(error), f"{error.__name__} has no problem type of its own"
    response = asyncio.run(consent_error(_request(), _raised(error)))
    body = orjson.loads(bytes(response.body))
    assert (response.status_code, body["status"]) == (error.status, error.status)
    assert body["type"] == f"/problems/{error.slug}"
    assert response.headers["content-type"] == "application/problem+json"

    documented = problem_types()[error.slug]
    assert (documented.status, documented.title) == (error.status, error.title)
    page = asyncio.run(problem_type(_request(path="/problems/" + error.slug, path_params={"slug": error.slug})))
    assert page.status_code == 200
    assert f"HTTP status {error.status}." in bytes(page.body).decode()
