"""The declared public API (custodes.__doc__): the package's ``__all__`` and, for each module in
``custodes.PUBLIC_MODULES``, its ``__all__``. The README, those ``__all__``s and docs/reference.md agree: every name
the README uses is public, every public name is documented, the reference page is what scripts/apidoc writes now.
Every check derives from the declarations, so a module or name added later is held to the same rule."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path

import custodes

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
APIDOC = ROOT / "scripts" / "apidoc"
#: Names in the README that start like the package but are files: the policy file and the service's socket.
FILE_NAMES = {"custodes.toml", "custodes.sock"}


def python_api_section() -> str:
    return README.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]


def public_names(module: str) -> set[str]:
    return set(importlib.import_module(module).__all__)


def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def name_problem(reference: str) -> str | None:
    """Why ``custodes.a.b...`` is not a public name, or None when it is (``b``'s attributes are ``b``'s). The
    module is the longest importable prefix (``custodes.testing.conformance.check_driver``)."""
    parts = reference.split(".")
    if len(parts) == 1:
        return None
    depth = max((n for n in range(2, len(parts) + 1) if is_module(".".join(parts[:n]))), default=0)
    if depth:
        module = ".".join(parts[:depth])
        if module not in custodes.PUBLIC_MODULES:
            return f"{module} is not a public module (custodes.PUBLIC_MODULES)"
        if len(parts) > depth and parts[depth] not in public_names(module):
            return f"{parts[depth]} is not in {module}.__all__"
        return None
    if parts[1] not in custodes.__all__:
        return f"{parts[1]} is not in custodes.__all__"
    return None


def code_references(code: str) -> list[str]:
    """Every ``custodes...`` name a README code block uses: its imports, and the attributes it reads from a name
    bound to ``custodes`` or one of its modules (``from custodes import merkle`` ... ``merkle.verify_inclusion``)."""
    bound: dict[str, str] = {}
    found: list[str] = []
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "custodes":
                    found.append(alias.name)
                    bound[alias.asname or alias.name.split(".")[0]] = alias.asname and alias.name or "custodes"
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "custodes":
            for alias in node.names:
                found.append(f"{node.module}.{alias.name}")
                if is_module(f"{node.module}.{alias.name}"):
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            found.append(f"{bound[node.value.id]}.{node.attr}")
    return found


def test_every_public_module_declares_its_names_and_defines_them() -> None:
    assert custodes.PUBLIC_MODULES == tuple(sorted(set(custodes.PUBLIC_MODULES))), "one entry each, sorted"
    for module_name in custodes.PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        assert (module.__doc__ or "").strip(), f"{module_name} has no docstring"
        assert isinstance(getattr(module, "__all__", None), list), f"{module_name} has no __all__ list"
        assert len(set(module.__all__)) == len(module.__all__), f"{module_name}.__all__ lists a name twice"
        undefined = [n for n in module.__all__ if not hasattr(module, n)]
        assert undefined == [], f"{module_name}.__all__ names what it does not define: {undefined}"


def test_the_package_reexports_only_public_modules_names() -> None:
    """A class or function in ``custodes.__all__`` is defined in a public module (so it is documented there)."""
    foreign = []
    for name in custodes.__all__:
        obj = getattr(custodes, name)
        home = getattr(obj, "__module__", None) if inspect.isclass(obj) or inspect.isfunction(obj) else None
        if home is not None and home not in custodes.PUBLIC_MODULES:
            foreign.append(f"{name} ({home})")
        elif home is not None and name not in public_names(home):
            foreign.append(f"{name} (not in {home}.__all__)")
    assert foreign == []


def test_the_readme_names_exactly_the_public_modules() -> None:
    declaration = python_api_section().split("```", 1)[0]
    named = set(re.findall(r"`(custodes(?:\.[a-z_]+)+)`", declaration))
    assert named == set(custodes.PUBLIC_MODULES), (
        f"README only: {sorted(named - set(custodes.PUBLIC_MODULES))}; "
        f"PUBLIC_MODULES only: {sorted(set(custodes.PUBLIC_MODULES) - named)}"
    )


def test_every_name_the_readme_python_api_uses_is_public() -> None:
    blocks = re.findall(r"```python\n(.*?)```", python_api_section(), flags=re.S)
    assert len(blocks) >= 3
    used = [ref for code in blocks for ref in code_references(code)]
    assert {"custodes.hash_files", "custodes.archive.open_archive", "custodes.merkle.verify_inclusion"} <= set(used)
    problems = {ref: name_problem(ref) for ref in used if name_problem(ref)}
    assert problems == {}


def test_every_custodes_name_anywhere_in_the_readme_is_public() -> None:
    """Prose too: ``custodes.policy.require_current(archive)``, ``custodes.storage.ObjectStore``."""
    found = set(re.findall(r"(?<![\w/.-])custodes(?:\.[A-Za-z_]\w*)+", README)) - FILE_NAMES
    assert "custodes.policy.require_current" in found
    problems = {ref: name_problem(ref) for ref in sorted(found) if name_problem(ref)}
    assert problems == {}


def test_name_problem_refuses_internal_modules_and_unlisted_names() -> None:
    """The checks above can fail: an internal module, a name outside a public ``__all__``, an unknown name."""
    assert (
        name_problem("custodes.ledger.VerifierKey")
        == "custodes.ledger is not a public module (custodes.PUBLIC_MODULES)"
    )
    assert name_problem("custodes.reports._catalog_findings") == "_catalog_findings is not in custodes.reports.__all__"
    assert name_problem("custodes.no_such_thing") == "no_such_thing is not in custodes.__all__"
    assert name_problem("custodes.merkle.verify_inclusion") is None
    refs = code_references("from custodes import merkle, ledger\nmerkle.root([])\nledger.parse_checkpoint(x)\n")
    assert refs == ["custodes.merkle", "custodes.ledger", "custodes.merkle.root", "custodes.ledger.parse_checkpoint"]


def run_apidoc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(APIDOC), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_reference_page_is_current_and_documents_every_public_name() -> None:
    done = run_apidoc("--check")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    page = (ROOT / "docs" / "reference.md").read_text()
    for module_name in custodes.PUBLIC_MODULES:
        assert f"## `{module_name}`" in page
        for name in importlib.import_module(module_name).__all__:
            assert f"`{module_name}.{name}" in page, f"{module_name}.{name} is not on the page"


def test_a_stale_page_is_named(tmp_path: Path) -> None:
    page = tmp_path / "reference.md"
    page.write_text((ROOT / "docs" / "reference.md").read_text().replace("merkle", "merkel", 1))
    done = run_apidoc("--check", "--page", str(page))
    assert (done.returncode, done.stderr) == (1, f"apidoc: {page} is stale: run scripts/apidoc\n")
    assert run_apidoc("--page", str(page)).returncode == 0
    assert page.read_text() == (ROOT / "docs" / "reference.md").read_text()
