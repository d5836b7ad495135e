"""The Dagster UI in a real browser: `dagster dev` on loopback, driven by headless Chromium.

Each test generates a small project, starts `dagster dev` on it in its own process group, and
drives the UI the way an operator does: open the asset graph, click "Materialize all", wait for
the run, open the asset pages and read the checks there. Screenshots land in
``artifacts/screenshots/`` (``$CDP_SCREENSHOT_DIR`` overrides it); on a failure the page's
screenshot, its HTML and the tail of `dagster dev`'s log are saved there too.
``CDP_DOCS_SCREENSHOTS=1`` also rewrites the README's pictures in ``docs/images/``.

Chromium is Debian's (``/usr/bin/chromium``, ``$CDP_CHROMIUM`` overrides it; `.ci/run` installs it
when missing) driven by Playwright. A browser that cannot start fails these tests: it never
skips them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from cdp_assets.config.loader import REPO_ROOT
from cdp_assets_tests.conftest import write_project

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("CDP_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium keeps trying to reach Google's hosts,
# which this machine's closed network refuses. Playwright adds --headless and its own new,
# empty --user-data-dir to every launch().
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
SCREENSHOTS = Path(os.environ.get("CDP_SCREENSHOT_DIR") or REPO_ROOT / "artifacts" / "screenshots")
DOCS_IMAGES = REPO_ROOT / "docs" / "images"
WRITE_DOCS = os.environ.get("CDP_DOCS_SCREENSHOTS") == "1"

MASTER = "cdp_unification_customer_360/customer_master"
MASTER_STEP = "cdp_unification_customer_360__customer_master"
SERVER_START_TIMEOUT = 120  # seconds; seen: 6-20 s
RUN_TIMEOUT = 240  # seconds; seen: about 20 s for 300 records
UI_TIMEOUT = 30_000  # milliseconds, for one element to show up
expect.set_options(timeout=UI_TIMEOUT)


# --- dagster dev ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDev:
    """`dagster dev` on a project, in its own process group, with a small GraphQL client."""

    def __init__(self, config: Path, home: Path, log: Path):
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CDP_ALERT_", "CDP_SLACK_"))}
        env.update(CDP_CONFIG=str(config), DAGSTER_HOME=str(home))
        dagster = Path(sys.executable).with_name("dagster")
        cmd = [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(self.port), "-m", "cdp_assets.definitions"]
        self._log_file = log.open("wb")
        # Its own session and process group: the webserver, the daemon and the code servers are
        # all stopped together, and a Ctrl-C on pytest does not reach them half-way.
        self.proc = subprocess.Popen(
            cmd, cwd=config.parent, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = SERVER_START_TIMEOUT) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError(f"dagster dev did not answer /server_info within {timeout}s:\n{self.log_tail()}")
        # The code location loads after the webserver answers: wait until it has its assets.
        while time.monotonic() - start < timeout:
            data = self.graphql("{ assetNodes { id } }", check=False)
            if data and data.get("assetNodes"):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the code location did not load within {timeout}s:\n{self.log_tail()}")
        # Without this the UI opens a "Join the community" modal over the page on localhost.
        assert self.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
        return time.monotonic() - start

    def graphql(self, query: str, variables: dict | None = None, check: bool = True) -> dict | None:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                payload = json.loads(resp.read())
        except OSError:
            if check:
                raise
            return None
        if check:
            assert not payload.get("errors"), payload["errors"]
        return payload.get("data")

    def runs(self) -> list[dict]:
        data = self.graphql("{ runsOrError { ... on Runs { results { runId status jobName startTime endTime } } } }")
        return data["runsOrError"]["results"]

    def wait_for_new_run(self, known: set[str], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = [r for r in self.runs() if r["runId"] not in known]
            if new:
                return min(new, key=lambda r: r["startTime"] or float("inf"))["runId"]
            time.sleep(0.5)
        raise AssertionError(f"no run started within {timeout}s of the click:\n{self.log_tail()}")

    def wait_for_run_end(self, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = next(r for r in self.runs() if r["runId"] == run_id)
            if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                return run
            time.sleep(1)
        raise AssertionError(f"run {run_id} did not end within {timeout}s:\n{self.log_tail()}")

    def checks(self) -> dict[str, dict[str, dict]]:
        """asset key -> check name -> {blocking, status, success} for the latest materialization."""
        data = self.graphql(
            "{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name blocking"
            " executionForLatestMaterialization { status evaluation { success } } } } } } }"
        )
        out: dict[str, dict[str, dict]] = {}
        for node in data["assetNodes"]:
            key = "/".join(node["assetKey"]["path"])
            for check in (node["assetChecksOrError"] or {}).get("checks", []):
                execution = check["executionForLatestMaterialization"] or {}
                out.setdefault(key, {})[check["name"]] = {
                    "blocking": check["blocking"],
                    "status": execution.get("status"),
                    "success": (execution.get("evaluation") or {}).get("success"),
                }
        return out

    def materializations(self, key: str) -> list[dict]:
        data = self.graphql(
            "query($path: [String!]!) { assetOrError(assetKey: {path: $path}) {"
            " ... on Asset { assetMaterializations(limit: 5) { runId timestamp } } } }",
            {"path": key.split("/")},
        )
        return data["assetOrError"].get("assetMaterializations") or []

    def step_stats(self, run_id: str) -> dict[str, str]:
        """step key -> status (SUCCESS, FAILURE, SKIPPED, ...) of the steps that were planned."""
        data = self.graphql(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { stepStats { stepKey status } } } }", {"id": run_id}
        )
        return {s["stepKey"]: s["status"] for s in data["runOrError"]["stepStats"]}

    def log_tail(self, chars: int = 4000) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 3) -> None:
        """SIGTERM to the whole group, then SIGKILL to whatever is left of it after ``timeout``
        (the code servers otherwise linger until their heartbeat times out). Its state is a
        temporary folder: nothing needs a graceful shutdown."""
        t0 = time.monotonic()
        pgid = self.proc.pid  # the group leader: start_new_session made its pid the group id
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self._log_file.close()
        print(f"dagster dev stopped in {time.monotonic() - t0:.1f}s")


@contextmanager
def dagster_dev(tmp_path: Path, config: Path, page: Page, name: str) -> Iterator[DagsterDev]:
    """`dagster dev` on ``config`` for the duration of the block; a failure inside it saves the
    page (screenshot and HTML) and the server's log under SCREENSHOTS before the server stops."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    server = DagsterDev(config, tmp_path / "dagster_home", tmp_path / "dagster_dev.log")
    try:
        startup = server.wait_ready()
        print(f"dagster dev answered after {startup:.1f}s on {server.url}")
        yield server
    except BaseException:
        save_debug(page, name, server)
        raise
    finally:
        server.stop()


def small_project(tmp_path: Path, coverage_min_pct: float | None = None) -> Path:
    def mutate(cfg: dict) -> None:
        # The test clicks "Materialize all" itself: file-drop sensors would start ingestion runs
        # of their own at startup (they do in real use) and those would queue before ours.
        cfg["sensors"] = {"file_drop": False}
        if coverage_min_pct is not None:
            cfg.setdefault("checks", {})["coverage_min_pct"] = coverage_min_pct

    return write_project(tmp_path / "project", records=300, mutate=mutate)


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium chromium-driver; "
            ".ci/run does it) or point $CDP_CHROMIUM at a Chromium binary",
            pytrace=False,
        )
    with sync_playwright() as pw:
        # The first start of a new Chromium can hang: Playwright gives up after this timeout.
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=90_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT)
    context.set_default_navigation_timeout(60_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def save_debug(page: Page, name: str, server: DagsterDev) -> None:
    stem = SCREENSHOTS / f"FAILED_{name}"
    shutil.copy(server.log, f"{stem}.dagster_dev.log")
    try:
        page.screenshot(path=f"{stem}.png", full_page=True, timeout=15_000)
        Path(f"{stem}.html").write_text(page.content())
        print(f"debug: page {page.url} saved as {stem}.png and {stem}.html, the server's log as {stem}.dagster_dev.log")
    except Exception as exc:  # the page itself may be what broke
        print(f"debug: could not save the page: {exc}")


def shot(page: Page, name: str, docs_name: str | None = None) -> Path:
    """A screenshot under SCREENSHOTS, and in docs/images when asked for."""
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    if docs_name and WRITE_DOCS:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMAGES / docs_name)
    return path


def open_asset_graph(page: Page, server: DagsterDev) -> None:
    page.goto(f"{server.url}/asset-groups")
    expect(page.get_by_text("Global asset lineage").first).to_be_visible()
    # The graph's five groups, one per phase, are drawn.
    for group in ("ingestion", "hist_union", "staging", "unification", "report"):
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    expect(page.get_by_role("button", name="Materialize all")).to_be_enabled()


def materialize_all(page: Page, server: DagsterDev) -> dict:
    """Click "Materialize all" on the asset graph and wait for the run it starts to end."""
    known = {r["runId"] for r in server.runs()}
    page.get_by_role("button", name="Materialize all").click()
    run_id = server.wait_for_new_run(known)
    run = server.wait_for_run_end(run_id)
    print(f"run {run_id}: {run['status']} in {run['endTime'] - run['startTime']:.1f}s")
    return run


def open_run(page: Page, server: DagsterDev, run_id: str, status_text: str) -> None:
    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.get_by_text(run_id[:8]).first).to_be_visible()
    # The run's status tag in the header, and the run's last event in the log.
    expect(page.get_by_text(status_text, exact=True).first).to_be_visible()
    event = "RUN_SUCCESS" if status_text == "Success" else "RUN_FAILURE"
    expect(page.get_by_text(event, exact=True).first).to_be_visible(timeout=60_000)


def open_check(page: Page, server: DagsterDev, asset: str, check: str, about: str) -> None:
    """The asset's Checks tab with ``check`` selected: its description (``about``) shows."""
    page.goto(f"{server.url}/assets/{asset}?view=checks")
    expect(page.get_by_text(re.compile(r"^Checks \(\d+\)$")).first).to_be_visible()
    page.get_by_text(check, exact=True).first.click()
    expect(page.get_by_text("Latest execution")).to_be_visible()
    expect(page.get_by_text(about).first).to_be_visible()


def lineage_picture(page: Page, server: DagsterDev, docs_name: str | None) -> None:
    """One source's way to the master table and the report, groups expanded, for the README."""
    page.goto(f"{server.url}/asset-groups")
    expect(page.get_by_role("button", name="Materialize all")).to_be_enabled()
    page.locator("#zoom-slider-container").get_by_role("button", name="settings").click()
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.keyboard.press("Escape")
    page.get_by_text("Hide navigation").click()
    jump = page.get_by_placeholder("Jump to…")
    box = jump.bounding_box()
    if box:  # the asset tree's toggle sits right of its search field
        page.mouse.click(box["x"] + box["width"] + 22, box["y"] + box["height"] / 2)
    selection = " or ".join(
        [
            'key:"acme_src/shop_customers"+2',
            'key:"cdp_unification_customer_360/enriched_shop_customers_stg"',
            'key:"cdp_unification_customer_360/unified_id_lookup"',
            f'key:"{MASTER}"',
            'key:"cdp_report"',
        ]
    )
    search = page.locator(".CodeMirror").filter(has=page.get_by_text("Search and filter assets"))
    search.click()
    page.keyboard.insert_text(selection)
    page.keyboard.press("Enter")
    expect(page.get_by_text("customer_master", exact=True).first).to_be_visible()
    expect(page.get_by_text("cdp_report", exact=True).first).to_be_visible()
    page.mouse.click(300, 780)  # blur the search field
    page.wait_for_timeout(1500)  # the graph eases into place
    shot(page, "asset_graph_after_run", docs_name)


# --- the tests --------------------------------------------------------------------------------


def test_materialize_all_from_the_ui_passes_every_check(tmp_path, page):
    started = time.monotonic()
    config = small_project(tmp_path)
    with dagster_dev(tmp_path, config, page, "materialize_all") as server:
        open_asset_graph(page, server)
        shot(page, "asset_graph")

        run = materialize_all(page, server)
        assert run["status"] == "SUCCESS", server.log_tail()

        open_run(page, server, run["runId"], "Success")
        shot(page, "run_succeeded")

        # The master table: materialized by that run, and its checks passed.
        assert run["runId"] in {m["runId"] for m in server.materializations(MASTER)}
        checks = server.checks()
        assert checks[MASTER] and all(c["success"] for c in checks[MASTER].values()), checks[MASTER]
        page.goto(f"{server.url}/assets/{MASTER}?view=checks")
        for name in checks[MASTER]:
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
        open_check(page, server, MASTER, "one_row_per_canonical_id", "One row per canonical id of the lookup")
        expect(page.get_by_text("Succeeded").first).to_be_visible()
        expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
        expect(page.get_by_text("Failed", exact=True)).to_have_count(0)
        shot(page, "master_checks_passed")

        # The blocking coverage check of each enriched table passed too.
        coverage = {k: v["coverage"] for k, v in checks.items() if "coverage" in v}
        assert len(coverage) == 4 and all(c["blocking"] and c["success"] for c in coverage.values()), coverage
        open_check(page, server, next(iter(coverage)), "coverage", "Rows with a canonical id / rows >= 90")
        expect(page.get_by_text("This is a blocking asset check", exact=False).first).to_be_visible()
        expect(page.get_by_text("Passed", exact=True).first).to_be_visible()

        # The report: Markdown in the metadata of cdp_report, opened from its asset page.
        page.goto(f"{server.url}/assets/cdp_report")
        page.get_by_text("Show Markdown").first.click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_text("CDP pipeline report: acme")).to_be_visible()
        expect(dialog.get_by_text(re.compile(r"Data quality"))).to_be_visible()
        dialog.get_by_text("CDP pipeline report: acme").scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        shot(page, "report", "report.png")
        page.keyboard.press("Escape")

        lineage_picture(page, server, "asset_graph.png")
    print(f"test took {time.monotonic() - started:.1f}s")


def test_a_failed_coverage_check_shows_in_the_ui_and_blocks_the_master_table(tmp_path, page):
    started = time.monotonic()
    # 300 generated records leave some rows of most tables without an id: 100% cannot be met.
    config = small_project(tmp_path, coverage_min_pct=100)
    with dagster_dev(tmp_path, config, page, "coverage_failure") as server:
        open_asset_graph(page, server)

        run = materialize_all(page, server)
        assert run["status"] == "FAILURE", server.log_tail()

        open_run(page, server, run["runId"], "Failure")
        shot(page, "run_failed")

        checks = server.checks()
        failed = sorted(k for k, v in checks.items() if v.get("coverage", {}).get("success") is False)
        assert failed, {k: v.get("coverage") for k, v in checks.items()}
        # The master table was never built: its step did not run after the blocking failure.
        assert server.materializations(MASTER) == []

        open_check(page, server, failed[0], "coverage", "Rows with a canonical id / rows >= 100")
        expect(page.get_by_text("Failed", exact=True).first).to_be_visible()
        expect(page.get_by_text("This is a blocking asset check", exact=False).first).to_be_visible()
        expect(page.get_by_text(re.compile(r"\(threshold: at least 100%\)")).first).to_be_visible()
        shot(page, "coverage_check_failed", "check_failure.png")

        # In the run, the master table's step never ran: the blocking failure stopped it.
        steps = server.step_stats(run["runId"])
        assert steps.get(MASTER_STEP) in (None, "SKIPPED"), steps
        # An enriched table's checks run as one step of their own, `<asset>__checks` (docs/checks.md).
        assert {f"{k.replace('/', '__')}__checks" for k in failed} <= {k for k, v in steps.items() if v == "FAILURE"}

        # Its asset page says the latest materialization failed in that run.
        page.goto(f"{server.url}/assets/{MASTER}")
        expect(page.get_by_text("customer_master").first).to_be_visible()
        expect(page.get_by_text("Latest materialization")).to_be_visible()
        expect(page.get_by_text("Failed in", exact=False).first).to_be_visible()
        expect(page.get_by_role("link", name=run["runId"][:8]).first).to_be_visible()
        shot(page, "master_not_materialized")
    print(f"test took {time.monotonic() - started:.1f}s")
