"""The pipeline as a Dagster Component in a team's own `dg` project.

A scratch `dg` project (pyproject with `[tool.dg]`, a defs folder holding the team's own asset and
a `defs.yaml` of `CdpPipelineComponent` pointing at a generated sample's `cdp.yml`) is loaded
through Dagster's own loader and through the `dg` and `dagster` command lines, and the sample is
materialized in-process from the loaded definitions with every check passing.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import dagster as dg
import pytest
import yaml

from cdp_assets.config import ConfigError, load_config
from cdp_assets.config.loader import REPO_ROOT
from cdp_assets.definitions import PIPELINE_JOB, build_definitions
from cdp_assets_tests.conftest import check_results, write_project

COMPONENT_TYPE = "cdp_assets.components.CdpPipelineComponent"
TEAM_ASSET = dg.AssetKey("team_orders_export")
BIN = Path(sys.executable).parent


def scratch_dg_project(root: Path, package: str) -> Path:
    """A minimal project as `create-dagster project` lays it out: pyproject with `[tool.dg]`, a
    package whose `definitions.py` loads the defs folder, and one asset of the team's own."""
    (root / package / "defs" / "team").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{package}"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
        'dependencies = ["dagster", "cdp_assets"]\n\n'
        '[tool.dg]\ndirectory_type = "project"\n\n'
        f'[tool.dg.project]\nroot_module = "{package}"\n'
    )
    (root / package / "__init__.py").write_text("")
    (root / package / "defs" / "__init__.py").write_text("")
    (root / package / "definitions.py").write_text(
        "from pathlib import Path\n\nimport dagster as dg\n\n\n@dg.definitions\ndef defs():\n"
        "    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n"
    )
    (root / package / "defs" / "team" / "assets.py").write_text(
        "import dagster as dg\n\n\n@dg.asset\ndef team_orders_export():\n    return 1\n"
    )
    return root


def add_component(project: Path, package: str, config_path: str, folder: str = "cdp_pipeline") -> Path:
    target = project / package / "defs" / folder
    target.mkdir(parents=True)
    (target / "defs.yaml").write_text(
        yaml.safe_dump({"type": COMPONENT_TYPE, "attributes": {"config_path": config_path}})
    )
    return target / "defs.yaml"


def load_project_defs(project: Path, package: str, monkeypatch) -> dg.Definitions:
    monkeypatch.syspath_prepend(str(project))
    importlib.invalidate_caches()
    return dg.load_from_defs_folder(path_within_project=project / package)


@pytest.mark.pipeline
def test_component_loads_beside_the_teams_assets_and_materializes_the_sample(tmp_path, monkeypatch):
    config = write_project(tmp_path / "sample", records=200)
    project = scratch_dg_project(tmp_path / "team", "team_loaded")
    # Relative to the defs.yaml's folder: team/team_loaded/defs/cdp_pipeline -> sample/cdp.yml
    add_component(project, "team_loaded", "../../../../sample/cdp.yml")

    defs = load_project_defs(project, "team_loaded", monkeypatch)
    expected = build_definitions(load_config(config))
    graph = defs.resolve_asset_graph()
    pipeline_keys = set(expected.resolve_asset_graph().get_all_asset_keys())
    assert len(pipeline_keys) > 20
    assert set(graph.get_all_asset_keys()) == pipeline_keys | {TEAM_ASSET}
    assert set(graph.asset_check_keys) == set(expected.resolve_asset_graph().asset_check_keys)
    assert {s.name for s in defs.schedules} == {s.name for s in expected.schedules}
    assert {s.name for s in defs.sensors} == {s.name for s in expected.sensors}
    assert {"warehouse", "table_io_manager"} <= set(defs.resources)

    job = defs.resolve_job_def(PIPELINE_JOB)
    # The pipeline's job runs the pipeline, not the team's assets beside it.
    assert set(job.asset_layer.executable_asset_keys) == pipeline_keys
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success
    checks = check_results(result)
    assert len(checks) == len(expected.resolve_asset_graph().asset_check_keys) > 40
    assert all(checks.values()), [name for name, passed in checks.items() if not passed]
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == pipeline_keys
    assert (tmp_path / "sample" / "report.md").exists() and (tmp_path / "sample" / "cdp.duckdb").exists()


def test_a_missing_config_fails_the_load_naming_the_file(tmp_path, monkeypatch):
    project = scratch_dg_project(tmp_path / "team", "team_missing")
    add_component(project, "team_missing", "no_such/cdp.yml")
    with pytest.raises(Exception) as err:
        load_project_defs(project, "team_missing", monkeypatch)
    (message,) = [str(e) for e in _chain(err.value) if isinstance(e, ConfigError)]
    folder = project / "team_missing" / "defs" / "cdp_pipeline"
    assert message == (
        f"{folder / 'defs.yaml'}: attributes.config_path: {folder / 'no_such' / 'cdp.yml'} does not exist; "
        "fix config_path (a relative path resolves against this defs.yaml's folder)"
    )


def _chain(exc: BaseException | None):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


# ---------------------------------------------------------------------- the command lines


@pytest.fixture(scope="module")
def installed_metadata(tmp_path_factory) -> Path:
    """This checkout's package metadata as pip installs it, for `dg` to discover the entry point.

    The wheel is built from a copy (nothing written into the checkout) and only its dist-info is
    put first on PYTHONPATH, ahead of whatever cdp_assets install the venv holds."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(REPO_ROOT / "cdp_assets", src / "cdp_assets", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    # The venv's setuptools when it has one (no download); a Python 3.12 venv has none, so pip
    # fetches the build requirements from the package index.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(work / "dist"), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (work / "dist").glob("cdp_assets-*.whl")
    site = work / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site, [n for n in zf.namelist() if ".dist-info/" in n])
    return site


def run_cli(
    args: list[str], cwd: Path, pythonpath: list[Path], venv: Path, home: Path, **extra_env: str
) -> subprocess.CompletedProcess:
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(map(str, pythonpath)),
        "VIRTUAL_ENV": str(venv),
        "DAGSTER_HOME": str(home),
    }
    env.pop("CDP_CONFIG", None)
    env.update(extra_env)
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def test_entry_point_is_declared_for_dg(installed_metadata):
    (entry_points,) = installed_metadata.glob("cdp_assets-*.dist-info/entry_points.txt")
    text = entry_points.read_text()
    assert "[dagster_dg_cli.registry_modules]\ncdp_assets = cdp_assets.components" in text


@pytest.mark.pipeline
def test_dg_scaffolds_lists_and_checks_the_component_in_a_scratch_project(tmp_path, installed_metadata):
    write_project(tmp_path / "sample", records=60)
    project = scratch_dg_project(tmp_path / "team", "team_cli")
    # dg runs the project's own .venv, as in a project created by create-dagster.
    (project / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    path = [installed_metadata, REPO_ROOT, project]

    def cli(*args: str) -> subprocess.CompletedProcess:
        # The component reads its defs.yaml, never $CDP_CONFIG: importing the package's
        # definitions module must not load that config either.
        return run_cli(
            list(args), project, path, project / ".venv", tmp_path / "home", CDP_CONFIG=str(tmp_path / "not_this.yml")
        )

    listed = cli(str(BIN / "dg"), "list", "components", "--json")
    assert COMPONENT_TYPE in listed.stdout  # found through the entry point alone

    cli(str(BIN / "dg"), "scaffold", "defs", COMPONENT_TYPE, "cdp_pipeline", "--config-path", "../sample/cdp.yml")
    scaffolded = yaml.safe_load((project / "team_cli" / "defs" / "cdp_pipeline" / "defs.yaml").read_text())
    assert scaffolded == {"type": COMPONENT_TYPE, "attributes": {"config_path": "../../../../sample/cdp.yml"}}

    listed = json.loads(cli(str(BIN / "dg"), "list", "defs", "--json").stdout)
    keys = {a["asset_key"] for a in listed["assets"]}
    assert (
        "team_orders_export" in keys
        and "acme_src/shop_customers" in keys
        and "customer_master" in {k.split("/")[-1] for k in keys}
    )
    sources = {a["source"] for a in listed["assets"] if a["asset_key"] != "team_orders_export"}
    assert sources == {"team_cli/defs/cdp_pipeline/defs.yaml:1"}
    assert len(listed["asset_checks"]) > 40
    assert {j["name"] for j in listed["jobs"]} >= {PIPELINE_JOB}

    assert "All definitions loaded successfully." in cli(str(BIN / "dg"), "check", "defs").stdout
    validated = cli(str(BIN / "dagster"), "definitions", "validate", "-m", "team_cli.definitions")
    assert "Validation successful" in validated.stdout + validated.stderr


@pytest.mark.pipeline
def test_this_repositorys_code_location_passes_dg_check_defs_and_dagster_definitions_validate(tmp_path):
    """`dg check defs` supersedes `dagster definitions validate`; both pass on the repository."""
    path = [REPO_ROOT]
    checked = run_cli(
        [str(BIN / "dg"), "check", "defs", "--use-active-venv"], REPO_ROOT, path, Path(sys.prefix), tmp_path
    )
    assert "All definitions loaded successfully." in checked.stdout
    validated = run_cli(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        REPO_ROOT,
        path,
        Path(sys.prefix),
        tmp_path,
    )
    assert "All code locations passed validation." in validated.stdout + validated.stderr
