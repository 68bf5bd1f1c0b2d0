"""The listening pages in a real headless Chromium (``deepclust.reports.listen``).

A real small evaluation (FSDD speech mixed by the mixing stage, 2 and 3 talkers, separated by the shipped
model, scored by the evaluation stage) writes ``listen.html``; opened from ``file://``, every player must load
its clip (duration within 0.1 s of the file's) and play, every picture must load, and the figures must be the
results table's. An archive job with a hostile input name must show that name as text.

Skipped like ``test_ui_browser.py`` where Debian's chromium / chromedriver or selenium are missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from test_ui_browser import chromium_driver

from deepclust import pretrained
from deepclust.archive import separate_archive
from deepclust.pipeline.driver import run_stage
from deepclust.pipeline.store import Stage
from deepclust.stages.corpus import CorpusConfig, plan_corpus
from deepclust.stages.evaluate import EvaluateConfig, plan_evaluate
from deepclust.stages.mixtures import MixStageConfig, plan_mixtures

pytestmark = pytest.mark.timeout(600)
HOSTILE = "<img src=x onerror=alert(1)>.wav"
BROKEN = "<b onclick=alert(2)>broken.wav"  # not audio: a failed row whose reason quotes the name


def quiet(message):
    pass


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, fsdd_dir):
    """A committed evaluation stage of 2- and 3-talker FSDD test mixtures separated by the shipped model."""
    root = str(tmp_path_factory.mktemp("listen-run"))
    corpus = run_stage(
        plan_corpus(
            root,
            CorpusConfig(name="folder", root=str(fsdd_dir), pattern="fsdd", test_speakers=["george", "lucas", "theo"]),
        ),
        log=quiet,
    )
    mixtures = run_stage(
        plan_mixtures(root, corpus, MixStageConfig(sizes={"tr": 2, "cv": 1, "tt": 4}, test_speaker_counts=(2, 3))),
        log=quiet,
    )
    separated = Path(root) / "separated"
    summary = separate_archive(pretrained.path(), mixtures, str(separated), device="cpu")
    assert summary["failed"] == 0, summary["failed_inputs"]
    url = run_stage(
        plan_evaluate(root, str(separated / "manifest.parquet"), mixtures, EvaluateConfig(oracles=("ibm",))),
        log=quiet,
    )
    info = Stage.of_manifest(url).info()
    return {"info": info, "results": pd.read_parquet(info["results_parquet"]), "page": Path(info["listen_html"])}


def open_and_check_media(driver, page: Path) -> list[dict]:
    """Open ``page`` and load + play every ``<audio>``: ``[{src, duration, played}]`` (and every image loaded)."""
    driver.get(page.as_uri())
    media = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const players = Array.from(document.querySelectorAll('audio'));
        Promise.all(players.map(a => new Promise(resolve => {
            const finish = played => resolve({src: a.getAttribute('src'), duration: a.duration, played: played,
                                              error: a.error ? a.error.code : null});
            const start = () => a.play().then(() => { a.pause(); finish(true); }, e => finish(String(e)));
            if (a.readyState >= 1) start(); else { a.addEventListener('loadedmetadata', start);
                                                   a.addEventListener('error', () => finish(false)); a.load(); }
        }))).then(done);
    """)
    pictures = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const images = Array.from(document.images);
        Promise.all(images.map(i => i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; })))
            .then(() => done(images.map(i => [i.getAttribute('src'), i.naturalWidth])));
    """)
    assert pictures and all(width > 0 for _, width in pictures), pictures
    return media


def assert_media_match_files(media: list[dict], folder: Path) -> None:
    assert media
    for player in media:
        info = sf.info(str(folder / player["src"]))
        assert player["played"] is True, player
        assert abs(player["duration"] - info.frames / info.samplerate) < 0.1, player


def test_evaluation_page_plays_every_clip_and_shows_the_results_table(evaluation, tmp_path):
    from selenium.webdriver.common.by import By

    page, results = evaluation["page"], evaluation["results"]
    assert page.name == "listen.html" and page.parent == Path(evaluation["info"]["report_md"]).parent
    driver = chromium_driver(tmp_path / "profile", extra_flags=["--autoplay-policy=no-user-gesture-required"])
    try:
        media = open_and_check_media(driver, page)
        assert_media_match_files(media, page.parent)
        examples = driver.find_elements(By.CSS_SELECTOR, "div.example")
        shown, players = {}, {}
        for example in examples:
            mixture_id = example.get_attribute("data-mixture")
            players.setdefault(mixture_id, []).append(len(example.find_elements(By.TAG_NAME, "audio")))
            for row in example.find_elements(By.CSS_SELECTOR, "tr[data-system]"):
                shown[(mixture_id, row.get_attribute("data-system"))] = (
                    row.find_element(By.CSS_SELECTOR, "td.sdri").text,
                    row.find_element(By.CSS_SELECTOR, "td.si_sdri").text,
                )
        headings = [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
    finally:
        driver.quit()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    model = results[(results["system"] == "model") & (results["status"] == "done")]
    # One section per condition of the results table: each speaker count, then each gender pair in it.
    expected = []
    for count, rows in model.groupby("num_speakers"):
        expected += [f"{count} talkers, all"] + [
            f"{count} talkers, {g} gender" for g in ("different", "same") if (rows["gender_condition"] == g).any()
        ]
    assert headings == expected and expected[0] == "2 talkers, all" and "3 talkers, all" in expected
    # The best, median and worst mixture of each speaker count, each with the model's and the IBM's figures.
    for count in (2, 3):
        ordered = model[model["num_speakers"] == count].sort_values("sdri", ascending=False)["mixture_id"].tolist()
        assert {ordered[0], ordered[len(ordered) // 2], ordered[-1]} <= {m for m, _ in shown}
    for (mixture_id, system), (sdri, si_sdri) in shown.items():
        row = results[(results["mixture_id"] == mixture_id) & (results["system"] == system)].iloc[0]
        assert (sdri, si_sdri) == (f"{row['sdri']:.2f}", f"{row['si_sdri']:.2f}")
    assert {s for _, s in shown} == {"model", "ibm"}
    # Per example: the mixture, and an estimate, a reference and an IBM estimate per talker (every section
    # that shows a mixture shows all of its players).
    talkers = results.drop_duplicates("mixture_id").set_index("mixture_id")["num_speakers"]
    expected_players = {m: [1 + 3 * int(talkers[m])] * len(counts) for m, counts in players.items()}
    assert players == expected_players, f"players per example {players}, expected {expected_players}"
    assert len(media) == sum(map(sum, players.values()))
    size = sum(f.stat().st_size for f in (page.parent / "listen").iterdir()) + page.stat().st_size
    print(f"listening page {page}: {size / 1e6:.2f} MB, {len(media)} players")
    assert size < 5e6


def test_estimates_are_heard_beside_their_references(evaluation):
    """Estimate s_k on the page is the one the metrics scored against reference s_k: its SI-SDR against that
    reference beats its SI-SDR against every other one, on the best mixture of each condition."""
    import json

    import numpy as np

    from deepclust.metrics.si_sdr import si_sdr

    folder = evaluation["page"].parent
    examples = json.loads((folder / "listen" / "examples.json").read_text())["examples"]
    best = [e for e in examples if "best" in e["role"]]
    assert best
    for example in best:
        clip = {c["label"]: sf.read(str(folder / c["src"]))[0] for c in example["clips"]}
        talkers = sum(1 for label in clip if label.startswith("estimate"))
        for k in range(1, talkers + 1):
            scores = [si_sdr(clip[f"reference s{j}"], clip[f"estimate s{k}"]) for j in range(1, talkers + 1)]
            assert int(np.argmax(scores)) == k - 1, (example["mixture_id"], k, scores)


def test_listen_command_rewrites_the_page_from_the_stage_folder(evaluation, tmp_path):
    from deepclust.cli import main

    folder = evaluation["page"].parent
    main(["listen", "--evaluation", str(folder / "results.parquet"), "--out", str(tmp_path)])
    page = (tmp_path / "listen.html").read_text()
    assert page.count("<audio") == evaluation["page"].read_text().count("<audio")
    assert "Content-Security-Policy" in page and "<script" not in page


def test_hostile_input_name_shows_as_text(tmp_path, fsdd_dir):
    """An archive input named like an HTML tag, and a broken one whose reason quotes its name: the spot-check
    page shows both names as text, runs no script and has only the pictures it made."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy(next(fsdd_dir.glob("*_jackson_*.wav")), archive / HOSTILE)
    shutil.copy(next(fsdd_dir.glob("*_nicolas_*.wav")), archive / "plain.wav")
    (archive / BROKEN).write_bytes(b"RIFF not really a wave file")
    out = tmp_path / "out"
    summary = separate_archive(pretrained.path(), str(archive), str(out), device="cpu", listen=6)
    assert summary["failed"] == 1 and summary["separated"] == 2
    page = Path(summary["listen"])
    assert page == out / ".listen" / "index.html"
    driver = chromium_driver(tmp_path / "profile", extra_flags=["--autoplay-policy=no-user-gesture-required"])
    try:
        media = open_and_check_media(driver, page)
        assert_media_match_files(media, page.parent)
        names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "code.input-name")]
        images = driver.find_elements(By.TAG_NAME, "img")
        bold = driver.find_elements(By.TAG_NAME, "b")
        alert = driver.execute_script("try { return !!window.__alerted; } catch (e) { return false; }")
        try:
            driver.switch_to.alert.dismiss()
            alerted = True
        except NoAlertPresentException:  # the wanted outcome
            alerted = False
    finally:
        driver.quit()
    assert HOSTILE in names and BROKEN in names, names
    assert len(images) == 2  # one picture per separated input, none made from a name
    assert not bold and not alerted and not alert
    assert len(media) == 2 * 3  # two inputs: the mixture and two outputs each


def test_listen_artifact_embeds_short_players_within_its_budget(evaluation):
    """``dpcl-listen``'s Markdown: the median and worst examples' mixture and estimates as 8 kHz 16-bit WAV
    data URIs of at most 4 s, under the byte budget, and the path of the full page."""
    import base64
    import io
    import re

    from deepclust.tasks.artifacts import LISTEN_ARTIFACT_BYTES, listen_markdown

    markdown = listen_markdown(str(evaluation["page"]), "Listen")
    uris = re.findall(r'<audio controls src="data:audio/wav;base64,([A-Za-z0-9+/=]+)"></audio>', markdown)
    assert uris and len(markdown) < LISTEN_ARTIFACT_BYTES + 10_000
    for uri in uris:
        info = sf.info(io.BytesIO(base64.b64decode(uri)))
        assert (info.samplerate, info.subtype) == (8000, "PCM_16") and 0 < info.frames <= 4 * 8000
    assert f"file://{evaluation['page']}" in markdown
    assert "worst" in markdown and "median" in markdown
    print(f"dpcl-listen markdown: {len(markdown) / 1e3:.0f} kB, {len(uris)} players")


def test_listen_artifact_plays_in_the_prefect_ui(evaluation, tmp_path):
    """The real Prefect server and UI: a flow publishes ``dpcl-listen`` for the evaluation's page; its artifact
    page renders the embedded players, and each loads (duration = the WAV's) and plays in Chromium."""
    import base64
    import io
    import subprocess
    import sys
    import textwrap

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
    from server_fixtures import _SESSION, REPO, _start_server
    from test_ui_browser import PAGE_TIMEOUT

    driver = chromium_driver(tmp_path / "profile", extra_flags=["--autoplay-policy=no-user-gesture-required"])
    # The server of the UI tests when this session has one, else our own (stopped at the end of this test).
    server = _SESSION.get("server") or _start_server(tmp_path / "prefect-home")
    try:
        script = textwrap.dedent(f"""
            from prefect import flow
            from deepclust.tasks.artifacts import publish_listen

            @flow(name="publish-listen-test")
            def publish():
                publish_listen({str(evaluation["page"])!r})

            publish()
        """)
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env=server.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        driver.get(f"{server.url}/artifacts/key/dpcl-listen")
        WebDriverWait(driver, PAGE_TIMEOUT).until(
            expected_conditions.element_to_be_clickable((By.XPATH, "//a[contains(@href, '/artifacts/artifact/')]"))
        ).click()
        WebDriverWait(driver, PAGE_TIMEOUT).until(
            expected_conditions.presence_of_element_located((By.XPATH, "//audio[starts-with(@src, 'data:audio/wav')]"))
        )
        media = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const players = Array.from(document.querySelectorAll('audio'));
            Promise.all(players.map(a => new Promise(resolve => {
                const finish = played => resolve({src: a.getAttribute('src'), duration: a.duration, played: played});
                const start = () => a.play().then(() => { a.pause(); finish(true); }, e => finish(String(e)));
                if (a.readyState >= 1) start(); else { a.addEventListener('loadedmetadata', start);
                                                       a.addEventListener('error', () => finish(false)); a.load(); }
            }))).then(done);
        """)
        driver.save_screenshot(str(tmp_path / "dpcl-listen.png"))
    finally:
        driver.quit()
        if server is not _SESSION.get("server"):
            server.shutdown()
    assert media
    for player in media:
        info = sf.info(io.BytesIO(base64.b64decode(player["src"].split(",", 1)[1])))
        assert player["played"] is True, player["played"]
        assert abs(player["duration"] - info.frames / info.samplerate) < 0.1
