"""Every kind of source people bring renders, through the real job: uploaded, probed, its 480p
copy made, then one proxy and one export, each with the source's length, rate and picture."""

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from jobs import edl
from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from resolvers import ids
from resolvers.users import Actor
from tests.helpers import measure
from tests.helpers.db import SQLITE_ONLY
from tests.helpers.domain import new_project
from tests.helpers.media import SOURCE_KINDS, make_kind
from tests.helpers.render_job import append, output_of, proxy_and_export, runtime


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One 1 s file of each kind."""
    folder = tmp_path_factory.mktemp("kinds")
    return {kind: make_kind(folder, kind) for kind in SOURCE_KINDS}


def streams(path: Path) -> dict[str, dict[str, Any]]:
    return {s["codec_type"]: s for s in measure.probe(path)["streams"]}


@SQLITE_ONLY  # what ffmpeg makes of each source, not the database
@pytest.mark.parametrize("kind", list(SOURCE_KINDS))
async def test_each_kind_of_source_renders_a_proxy_and_an_export(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    kinds: dict[str, Path],
    kind: str,
) -> None:
    rt = runtime(db, queue, store)
    project = await new_project(db, queue, store, alice, kinds[kind])
    source = streams(kinds[kind])
    width, height = int(source["video"]["width"]), int(source["video"]["height"])
    rate = Fraction(source["video"]["r_frame_rate"])
    proxy, export = await proxy_and_export(rt, queue, alice, project, 0)
    for output in (proxy, export):
        assert measure.duration(output) == pytest.approx(1.0, abs=0.1)
        found = streams(output)
        assert Fraction(found["video"]["r_frame_rate"]) == rate
        assert ("audio" in found) == ("audio" in source)
        if "audio" in found:
            assert (int(found["audio"]["sample_rate"]), found["audio"]["channels"]) == (48000, 2)
    # The export keeps the picture (cut to even sides); the proxy is its 480p copy's.
    assert measure.size(export) == (width // 2 * 2, height // 2 * 2)
    assert measure.size(proxy) == edl.mezzanine_size(width, height)


@SQLITE_ONLY
async def test_every_kind_appended_to_one_renders_a_proxy_and_an_export(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, kinds: dict[str, Path]
) -> None:
    rt = runtime(db, queue, store)
    first = "29.97fps-stereo-44k"
    project = await new_project(db, queue, store, alice, kinds[first])
    others = [await new_project(db, queue, store, alice, kinds[k]) for k in kinds if k != first]
    batch: list[dict[str, Any]] = [{"type": "speed", "params": {"factor": 2}}]
    batch += [
        {"type": "concat", "params": {"videoId": ids.encode("Video", p.source_video_id)}}
        for p in others
    ]
    version, proxy_job = await append(rt, queue, alice, project, batch)
    proxy, export = await proxy_and_export(rt, queue, alice, project, version.number)
    assert proxy == await output_of(rt, proxy_job)
    expected = 0.5 + len(others)
    for output in (proxy, export):
        assert measure.duration(output) == pytest.approx(expected, abs=0.2)
        found = streams(output)
        assert Fraction(found["video"]["r_frame_rate"]) == Fraction(30000, 1001)
        assert float(found["audio"]["duration"]) == pytest.approx(expected, abs=0.2)
