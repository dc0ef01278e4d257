"""The project's contract: three layers, no hub downloads, README and CI agree."""

import re

from tests.conftest import ROOT


def _py(folder):
    return [p for p in (ROOT / folder).rglob("*.py")]


def test_library_never_imports_streamlit_outside_ui():
    offenders = [
        str(p.relative_to(ROOT))
        for p in _py("memviz")
        if "ui" not in p.relative_to(ROOT).parts
        and re.search(r"^\s*(import streamlit|from streamlit)", p.read_text(), re.M)
    ]
    assert offenders == []


def test_no_hub_identifiers_in_code():
    hub = re.compile(r"from_pretrained\(\s*[\"'][A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+[\"']")
    offenders = [str(p) for folder in ("memviz", "pages", "bench") for p in _py(folder) if hub.search(p.read_text())]
    assert offenders == []


def test_readme_opens_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, re.S)
    assert "streamlit run app.py" in blocks[0] and "torch==2.13.0" in (ROOT / "requirements.txt").read_text()
    assert blocks[1].strip() == "bash .ci/run"


# The layers of memviz, bottom first: a module may import its own subpackage and the layers below it,
# never one above (function-level imports count too; only `if TYPE_CHECKING:` blocks are left out).
LAYERS = [
    "io",
    "data",
    "model",
    "runner",
    "neighbors",
    "lid",
    "hessian",
    "glossary",
    "train",
    "detect",
    "mitigate",
    "study",
    "figures",
    "report",
    "ui",
    "cli",
]


def _memviz_imports(path):
    import ast

    tree, mod = ast.parse(path.read_text()), ".".join(path.relative_to(ROOT).with_suffix("").parts)
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = mod.split(".")[: len(mod.split(".")) - node.level] if node.level else []
            name = ".".join(base + [node.module or ""]).strip(".")
            yield from ([f"{name}.{a.name}" for a in node.names] if name == "memviz" else [name])
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "memviz" and len(parts) > 1 else None


def test_imports_point_down_the_layers():
    upward = []
    for path in _py("memviz"):
        own = _unit(".".join(path.relative_to(ROOT).with_suffix("").parts))
        if own not in LAYERS:
            continue
        for target in map(_unit, _memviz_imports(path)):
            if target in LAYERS and LAYERS.index(target) > LAYERS.index(own):
                upward.append(f"{path.relative_to(ROOT)} imports memviz.{target}")
    assert upward == []


def test_every_subpackage_says_its_role_and_the_tree_has_no_flat_modules_but_the_glossary():
    import ast

    packages = sorted(p.parent.name for p in (ROOT / "memviz").glob("*/__init__.py"))
    assert set(packages) == set(LAYERS) - {"glossary"}
    for name in packages:
        doc = ast.get_docstring(ast.parse((ROOT / "memviz" / name / "__init__.py").read_text())) or ""
        assert len(doc) > 80 and "import" in doc, f"memviz/{name}/__init__.py: no docstring of its role and imports"
    flat = sorted(p.name for p in (ROOT / "memviz").glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "glossary.py"]


def test_the_house_the_project_asked_for():
    top = {p.name for p in ROOT.iterdir()}
    assert {"app.py", "pages", "memviz", "assets", "tests", "requirements.txt", "README.md"} <= top
    assert not (ROOT / "app_pages").exists() and not (ROOT / "memviz" / "assets").exists()
    assert (ROOT / "assets" / "models" / "demo-mnist" / "unet").is_dir()


def test_the_readme_is_a_front_door_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 170
    for doc in ("README.md", "CONTRIBUTING.md", *(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))):
        text, base = (ROOT / doc).read_text(), (ROOT / doc).parent
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            assert target.startswith("http") or (base / target).exists(), f"{doc} links to a missing {target}"
    assert "Add a detector" in (ROOT / "CONTRIBUTING.md").read_text()
    assert "Add a mitigation" in (ROOT / "CONTRIBUTING.md").read_text()
