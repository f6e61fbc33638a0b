"""Previews after an edit (segmented proxies), on 1080p30 sources with sound, 60 s and 600 s:

- time to playable: appendOps answered -> ProxyPlayable on a renderEvents websocket, against
  ffmpeg alone writing its first 2 s HLS segment of the same edit from the 480p copy;
- the whole proxy: appendOps -> ProxyReady, against ffmpeg alone rendering the same graph
  with the same encoder settings from the 480p copy in one process;
- on the shorter source, once its proxy is done: a text op over 4 s (time, and segments
  encoded), a revert to the version before, a 10 s clip appended (segments encoded);
- quality: the proxy's SSIM against the export scaled to 480p at three x264 presets, each
  encoded by the segment encoder's own command line, with its encode time.

The server runs in this process (uvicorn), the renders in a real `editgraph worker` process.
``EDITGRAPH_BENCH_PREVIEW_SECONDS`` lists the source lengths (default ``60,600``; the first
gets the incremental figures and the quality), ``EDITGRAPH_BENCH_PREVIEW_RUNS`` the runs
each median is taken over (default 5).
"""

import asyncio
import dataclasses
import os
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.websockets import WebsocketsTransport
from sqlmodel import func, select

from bench.common import Stack, emit, rendering_stack, run_timed, upload_video
from bench.render import gql
from jobs import edl, proxy, segments
from models.states import RenderKind, RenderStatus
from models.tables import Blob, PlanSegment, ProxyPlan, Render, Segment, Video
from resolvers import ids, ops
from resolvers.presets import PROXY
from tests.helpers.media import make_video

LENGTHS = [float(s) for s in os.environ.get("EDITGRAPH_BENCH_PREVIEW_SECONDS", "60,600").split(",")]
RUNS = int(os.environ.get("EDITGRAPH_BENCH_PREVIEW_RUNS", "5"))
FPS = 30
CLIP_S = 10  # the appended clip
TEXT_S = 4  # the text op's stretch
PRESETS = ("ultrafast", "superfast", "veryfast")
PATTERNS = ("testsrc", "smptebars", "smptehdbars", "rgbtestsrc", "testsrc2")
WAIT_S = 3600.0

EVENTS = """subscription($p: ID!) { renderEvents(projectId: $p) { __typename
  render { id kind version status error }
  ... on ProxyPlayable { segmentsDone segmentsTotal } } }"""
PLAYABLE = "subscription($p: ID!) { proxyPlayable(projectId: $p) { id version status } }"
READY = "subscription($p: ID!) { proxyReady(projectId: $p) { id version status } }"
CREATE = """mutation($v: ID!) { createProject(videoId: $v, name: "previews") {
  ... on ProjectCreated { project { id } } } }"""
EDITED = """__typename ... on OpsAppended { version { number } }
  ... on InvalidOps { errors { index field message } }"""
APPEND = "mutation($p: ID!, $ops: [OpInput!]!) { appendOps(projectId: $p, ops: $ops) { %s } }"
REVERT = "mutation($p: ID!, $n: Int!) { revertToVersion(projectId: $p, version: $n) { %s } }"
EXPORT_V = """mutation($p: ID!, $n: Int!) { requestExport(projectId: $p, version: $n) {
  __typename } }"""
# A proxy DONE this long without the event a bench waits for: the event is not coming.
MISSING_AFTER_S = 10.0


class Watch:
    """One project's renderEvents, proxyPlayable and proxyReady, each item stamped when it
    arrived."""

    def __init__(self, session: AsyncClientSession, pid: str) -> None:
        self.pid = pid
        self.seen: list[tuple[float, str, dict[str, Any]]] = []  # (when, typename, render)
        self.arrived = asyncio.Event()
        self.tasks = [
            asyncio.create_task(self._follow(session, EVENTS, "renderEvents")),
            asyncio.create_task(self._follow(session, PLAYABLE, "proxyPlayable")),
            asyncio.create_task(self._follow(session, READY, "proxyReady")),
        ]

    async def _follow(self, session: AsyncClientSession, document: str, field: str) -> None:
        request = GraphQLRequest(document, variable_values={"p": self.pid})
        async for data in session.subscribe(request):
            item = data[field]
            now = time.perf_counter()
            if field != "renderEvents":
                self.seen.append((now, field, item))
            else:
                extra = {k: v for k, v in item.items() if k not in ("__typename", "render")}
                self.seen.append((now, item["__typename"], {**item["render"], **extra}))
            self.arrived.set()

    async def when(self, kind: str, version: int) -> tuple[float, dict[str, Any]]:
        """When the first ``kind`` for a proxy of ``version`` arrived, and its render; a
        failed or cancelled proxy of that version stops the bench with its error."""
        found = await self.unless_done(kind, version)
        if found is None:
            raise RuntimeError(f"the proxy of version {version} is DONE, yet no {kind} came")
        return found

    async def unless_done(self, kind: str, version: int) -> tuple[float, dict[str, Any]] | None:
        """As ``when``, or None if the proxy finished ``MISSING_AFTER_S`` ago without it."""
        deadline = time.monotonic() + WAIT_S
        while True:
            ready_at = None
            for at, typename, render in self.seen:
                if render["version"] != version or render.get("kind", "PROXY") != "PROXY":
                    continue
                if typename in ("RenderFailed", "RenderCancelled"):
                    raise RuntimeError(f"the proxy of version {version}: {typename}: {render}")
                if typename == kind:
                    return at, render
                if typename == "ProxyReady":
                    ready_at = at
            if ready_at is not None and time.perf_counter() - ready_at > MISSING_AFTER_S:
                return None
            for task in self.tasks:
                if task.done():
                    raise RuntimeError(f"a subscription ended: {task.exception()!r}")
            self.arrived.clear()
            left = min(deadline - time.monotonic(), 1.0)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no {kind} for version {version} within {WAIT_S:.0f} s")
            with suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)


@asynccontextmanager
async def watching(stack: Stack, pid: str) -> AsyncIterator[Watch]:
    """A websocket client (graphql-transport-ws) following one project."""
    transport = WebsocketsTransport(
        url=stack.base.replace("http://", "ws://") + "/graphql",
        init_payload={"authorization": f"Bearer {stack.token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    async with Client(transport=transport) as session:
        watch = Watch(session, pid)
        try:
            yield watch
        finally:
            for task in watch.tasks:
                task.cancel()
            await asyncio.gather(*watch.tasks, return_exceptions=True)


async def edit(stack: Stack, document: str, variables: dict[str, Any]) -> tuple[float, int]:
    """Send an edit: when its answer arrived, and the version it made."""
    data = await gql(stack.client, document % EDITED, variables)
    answered = time.perf_counter()
    result = next(iter(data.values()))
    assert result["__typename"] == "OpsAppended", result
    return answered, int(result["version"]["number"])


async def encoded(stack: Stack, render: dict[str, Any]) -> tuple[int, int]:
    """(segments this proxy encoded, segments in its playlist), from the records."""
    render_id = ids.decode(render["id"], "Render")
    async with stack.db.read() as session:
        made = (
            await session.exec(
                select(func.count()).select_from(Segment).where(Segment.render_id == render_id)
            )
        ).one()
        total = (
            await session.exec(
                select(func.count())
                .select_from(PlanSegment)
                .where(PlanSegment.render_id == render_id)
            )
        ).one()
    return int(made), int(total)


async def has_sound(stack: Stack, render: dict[str, Any]) -> bool:
    """Whether a DONE proxy's HLS sound is there, whole (its playlist ends)."""
    async with stack.db.read() as session:
        plan = await session.get(ProxyPlan, ids.decode(render["id"], "Render"))
    return (
        plan is not None
        and plan.audio_key is not None
        and await proxy.sound_finished(stack.store, plan.audio_key)
    )


@dataclasses.dataclass
class Source:
    """An uploaded source: its video id, and its 480p copy as ffmpeg reads it."""

    video_id: str
    sha256: str
    mezzanine: edl.Source
    frame: ops.Frame


async def uploaded(stack: Stack, path: Path, seconds: float) -> Source:
    """Upload a 1080p30 file and wait for its 480p copy (made by the worker after upload)."""
    video_id = await upload_video(stack.client, path)
    deadline = time.monotonic() + WAIT_S
    while True:
        async with stack.db.read() as session:
            video = await session.get(Video, ids.decode(video_id, "Video"))
            assert video is not None
            blob = await session.get(Blob, video.blob_id)
            assert blob is not None
        if blob.mezzanine_key and stack.store.path(blob.mezzanine_key).is_file():
            break
        assert time.monotonic() < deadline, "no 480p copy"
        await asyncio.sleep(0.5)
    width, height = edl.mezzanine_size(video.width, video.height)
    copy = edl.Source(
        stack.store.path(blob.mezzanine_key), "mov", width, height, video.fps, seconds, True
    )
    return Source(video_id, blob.sha256, copy, ops.Frame(video.width, video.height, seconds))


def look(run: int) -> list[ops.Op]:
    """The edit of run ``run``: blur + brightness over the whole clip. The brightness
    differs from run to run, so no run reuses another's segments."""
    return [ops.GaussianBlur(radius=5), ops.Brightness(brightness=20 + run)]


def as_input(op_list: list[ops.Op]) -> list[dict[str, Any]]:
    fields = {"gaussian-blur": "gaussianBlur", "brightness": "brightness"}
    return [{fields[op.type]: op.model_dump(exclude_none=True)} for op in op_list]


def with_encoder(argv: list[str], output: Path, extra: list[str], *, container: str) -> list[str]:
    """A compiled whole-file command given the segment encoder's settings (no B-frames, no
    scene cuts, a keyframe at each segment start) and another container, before ``output``."""
    argv = list(argv)
    at = argv.index("-movflags")
    del argv[at : at + 2]
    argv[len(argv) - argv[::-1].index("-f")] = container  # the output's -f: the last one
    per = edl.segment_frames(FPS)
    codec = proxy.VIDEO_CODEC
    settings = ["-bf", str(codec["bf"]), "-sc_threshold", str(codec["sc_threshold"])]
    settings += ["-g", str(per), "-force_key_frames", f"expr:eq(mod(n,{per}),0)"]
    out = argv.index(str(output))
    argv[out:out] = [*settings, *extra]
    return argv


def raw_argv(source: Source, op_list: list[ops.Op], output: Path, work: Path) -> list[str]:
    """The same edit compiled into one ffmpeg over the 480p copy, proxy preset, with sound."""
    plan = edl.compile_edl(
        op_list=op_list,
        source=source.mezzanine,
        source_frame=source.frame,
        concat_sources={},
        preset=PROXY,
        output=output,
        workdir=work,
    )
    assert not plan.text_files
    return plan.argv


def first_segment_s(source: Source, op_list: list[ops.Op], folder: Path) -> float:
    """ffmpeg alone, from start to its first 2 s HLS segment listed in its playlist."""
    folder.mkdir(parents=True, exist_ok=True)
    playlist = folder / "index.m3u8"
    hls = [
        "-hls_time", str(edl.SEGMENT_S), "-hls_segment_type", "fmp4",
        "-hls_playlist_type", "event", "-hls_segment_filename", str(folder / "s%05d.m4s"),
    ]  # fmt: skip
    argv = with_encoder(raw_argv(source, op_list, playlist, folder), playlist, hls, container="hls")
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if "#EXTINF" in playlist.read_text():
                    return time.perf_counter() - start
            except FileNotFoundError:
                pass
            if child.poll() is not None:
                raise RuntimeError(f"ffmpeg ended ({child.returncode}) before a segment")
            time.sleep(0.002)
    finally:
        child.kill()
        child.wait()


def whole_s(source: Source, op_list: list[ops.Op], output: Path) -> float:
    """ffmpeg alone rendering the whole proxy (picture and sound) in one process."""
    argv = raw_argv(source, op_list, output, output.parent)
    argv = with_encoder(argv, output, ["-movflags", "+faststart"], container="mp4")
    return run_timed(argv)[0]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def rounded(samples: list[float]) -> list[float]:
    return [round(x, 3) for x in samples]


def machine() -> dict[str, Any]:
    """The machine as the figure was taken: shared, 2 cores, other work running."""
    return {"cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 1)}


def timings(
    figure: str, samples: list[float], baseline: float, name: str, goal: str, **extra: Any
) -> None:
    """One figure in seconds: the median of its runs, against its baseline."""
    emit(
        figure,
        median(samples),
        "s",
        baseline=baseline,
        baseline_name=name,
        goal=goal,
        runs=len(samples),
        all_runs=rounded(samples),
        **extra,
        **machine(),
    )


def text_span(seconds: float) -> tuple[float, float]:
    """Seconds 20-24, or a 4 s stretch on the 2 s grid of a shorter clip."""
    start = 20.0 if seconds >= 26 else float(2 * (int(seconds) // 6))
    return start, start + TEXT_S


async def one_length(
    stack: Stack, work: Path, seconds: float, clips: list[str] | None
) -> tuple[Source, str]:
    """Every figure on one source length; the source and the first run's project."""
    path = await asyncio.to_thread(
        make_video, work / f"source-{seconds:g}.mp4", seconds=seconds, size="1920x1080", rate=FPS
    )
    source = await uploaded(stack, path, seconds)
    playable: list[float] = []
    playable_sub: list[float] = []
    claimed: list[float] = []
    ready: list[float] = []
    at_playable: list[int] = []
    small: dict[str, list[float]] = {k: [] for k in ("text", "text_n", "revert", "revert_n")}
    small.update(concat=[], concat_n=[], total=[], revert_silent=[])
    missing = 0  # proxies DONE without a ProxyPlayable
    first_project = ""
    for run in range(1, RUNS + 1):
        created = await gql(stack.client, CREATE, {"v": source.video_id})
        pid = created["createProject"]["project"]["id"]
        first_project = first_project or pid
        async with watching(stack, pid) as watch:
            # Version 0's proxy is DONE, and the client hears the project: proxyReady sends
            # the current proxy first.
            await watch.when("proxyReady", 0)
            answered, version = await edit(stack, APPEND, {"p": pid, "ops": as_input(look(run))})
            ready_at, _ = await watch.when("ProxyReady", version)
            ready.append(ready_at - answered)
            running = [
                t for t, _, r in watch.seen if r["version"] == version and r["status"] == "RUNNING"
            ]
            claimed.append(min(running, default=ready_at) - answered)
            on_events = await watch.unless_done("ProxyPlayable", version)
            on_own = await watch.unless_done("proxyPlayable", version)
            if on_events is None or on_own is None:
                missing += 1
            else:
                playable.append(on_events[0] - answered)
                at_playable.append(on_events[1]["segmentsDone"])
                playable_sub.append(on_own[0] - answered)
            if clips is None:
                continue
            start, end = text_span(seconds)
            text = {"text": {"text": f"bench {run}", "size": 48, "start": start, "end": end}}
            answered, texted = await edit(stack, APPEND, {"p": pid, "ops": [text]})
            at, render = await watch.when("ProxyReady", texted)
            made, total = await encoded(stack, render)
            small["text"].append(at - answered)
            small["text_n"].append(made)
            small["total"].append(total)
            answered, reverted = await edit(stack, REVERT, {"p": pid, "n": version})
            at, render = await watch.when("ProxyReady", reverted)
            small["revert"].append(at - answered)
            small["revert_n"].append((await encoded(stack, render))[0])
            small["revert_silent"].append(0 if await has_sound(stack, render) else 1)
            joined = [{"concat": {"videoId": clips[run - 1]}}]
            answered, longer = await edit(stack, APPEND, {"p": pid, "ops": joined})
            at, render = await watch.when("ProxyReady", longer)
            small["concat"].append(at - answered)
            small["concat_n"].append((await encoded(stack, render))[0])

    # The baselines, with the worker idle.
    first_hls = [
        await asyncio.to_thread(first_segment_s, source, look(run), work / f"hls-{seconds:g}-{run}")
        for run in range(1, RUNS + 1)
    ]
    raw = [
        await asyncio.to_thread(whole_s, source, look(run), work / f"raw-{seconds:g}-{run}.mp4")
        for run in range(1, RUNS + 1)
    ]
    what = f"{seconds:g} s 1080p30 with sound, blur + brightness"
    if playable:
        timings(
            f"time to playable: appendOps answered to ProxyPlayable on renderEvents ({what})",
            playable,
            median(first_hls),
            "ffmpeg alone: first 2 s HLS segment of the same edit from the 480p copy",
            "<= 0.5 s, the same at every length",
            proxy_playable_subscription_s=round(median(playable_sub), 3),
            claimed_by_worker_s=round(median(claimed), 3),
            segments_done_at_playable=at_playable,
            done_without_proxy_playable=missing,
        )
    else:
        emit(f"time to playable ({what})", missing, "proxies DONE without ProxyPlayable")
    timings(
        f"whole proxy: appendOps answered to ProxyReady ({what})",
        ready,
        median(raw),
        "ffmpeg alone: the same graph and encoder settings from the 480p copy, one process, "
        "picture and sound",
        "ratio <= 1.15",
        baseline_runs=rounded(raw),
    )
    if clips is None:
        return source, first_project
    start, end = text_span(seconds)
    on = f"on the done proxy of {what}"
    whole = "the whole proxy of the same source, this run"
    timings(
        f"incremental edit: text over {start:g}-{end:g} s, appendOps answered to ProxyReady ({on})",
        small["text"],
        median(ready),
        whole,
        "ratio <= 0.2",
    )
    emit(
        f"incremental edit: segments encoded for text over {start:g}-{end:g} s ({on})",
        median(small["text_n"]),
        "segments",
        baseline=median(small["total"]),
        baseline_name="segments in the version's playlist",
        goal="2 or 3",
        all_runs=small["text_n"],
    )
    timings(
        f"revert to the version before: revertToVersion answered to ProxyReady ({on})",
        small["revert"],
        median(ready),
        whole,
        "<= 0.3 s",
        segments_encoded=small["revert_n"],
        done_without_finished_sound=int(sum(small["revert_silent"])),
    )
    emit(
        f"append a {CLIP_S} s 1080p30 clip (concat): segments encoded ({on})",
        median(small["concat_n"]),
        "segments",
        baseline=CLIP_S * FPS / edl.segment_frames(FPS),
        baseline_name="segments of the appended clip",
        goal="the new clip's only",
        all_runs=small["concat_n"],
        to_proxy_ready_s=rounded(small["concat"]),
    )
    return source, first_project


def ssim(distorted: Path, reference: Path, *, concat: bool = False) -> float:
    """SSIM (All) of a 480p picture against a reference scaled to it."""
    graph = "[1:v]scale=854:480:flags=bicubic,setsar=1[ref];[0:v]setsar=1[out];[out][ref]ssim"
    head = ["-f", "concat", "-safe", "0"] if concat else []
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", *head, "-i", str(distorted),
         "-i", str(reference), "-lavfi", graph, "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.findall(r"All:([0-9.]+)", done.stderr)
    assert found, done.stderr[-2000:]
    return float(found[-1])


def preset_quality(
    source: Source, preset_name: str, reference: Path, folder: Path
) -> tuple[float, float, float]:
    """The whole clip through the segment encoder at an x264 preset: (SSIM, median wall s,
    median CPU s)."""
    preset = dataclasses.replace(PROXY, x264_preset=preset_name)
    plan = segments.plan(
        op_list=look(1),
        frame=source.frame,
        stream=(source.mezzanine.width, source.mezzanine.height),
        fps=source.mezzanine.fps,
        clips={},  # nothing appended
        sources={0: source.sha256},
        preset=preset,
    )
    folder.mkdir(parents=True, exist_ok=True)
    text_files: dict[Path, str] = {}
    argv = proxy.run_argv(
        plan=plan,
        run=list(plan.segments),
        source=source.mezzanine,
        preset=preset,
        folder=folder,
        listing=folder / "closed.csv",
        text_files=text_files,
    )
    for path, text in text_files.items():
        path.write_text(text)
    times = [run_timed(argv) for _ in range(RUNS)]  # each run writes the same files again
    wall, cpu = median([t[0] for t in times]), median([t[1] for t in times])
    parts = sorted(folder.glob("*.mp4"))
    assert len(parts) == len(plan.segments), (len(parts), len(plan.segments))
    listing = folder / "all.ffconcat"
    listing.write_text("ffconcat version 1.0\n" + "".join(f"file '{p}'\n" for p in parts))
    return ssim(listing, reference, concat=True), wall, cpu


async def finished(stack: Stack, pid: str, kind: RenderKind, version: int) -> Path:
    """The file of a project's render once it is DONE."""
    project_id = ids.decode(pid, "Project")
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        async with stack.db.read() as session:
            row = (
                await session.exec(
                    select(Render).where(
                        Render.project_id == project_id,
                        Render.kind == kind,
                        Render.version == version,
                    )
                )
            ).one()
        if row.status == RenderStatus.DONE and row.output_key:
            return stack.store.path(row.output_key)
        assert row.status not in (RenderStatus.FAILED, RenderStatus.CANCELLED), row.error
        await asyncio.sleep(1)
    raise TimeoutError(f"the {kind} of version {version} did not finish")


async def quality(stack: Stack, work: Path, source: Source, pid: str) -> None:
    """Run 1's proxy against its export scaled to 480p; the same clip through the segment
    encoder at each x264 preset, with its encode time."""
    await gql(stack.client, EXPORT_V, {"p": pid, "n": 1})
    reference = await finished(stack, pid, RenderKind.EXPORT, 1)
    made = await finished(stack, pid, RenderKind.PROXY, 1)
    ours = await asyncio.to_thread(ssim, made, reference)
    what = f"{source.frame.duration:g} s 1080p30, blur + brightness"
    emit(
        f"proxy SSIM against the export scaled to 480p, the proxy as made ({what})",
        ours,
        "SSIM",
        x264_preset=PROXY.x264_preset,
        bitrate=PROXY.video_bitrate,
    )
    figures = {}
    for name in PRESETS:
        figures[name] = await asyncio.to_thread(
            preset_quality, source, name, reference, work / f"preset-{name}"
        )
    _, base_wall, base_cpu = figures.get(PROXY.x264_preset, figures["veryfast"])
    for name, (value, wall, cpu) in figures.items():
        emit(
            f"proxy SSIM against the export scaled to 480p, segment encoder at x264 {name} "
            f"({what})",
            value,
            "SSIM",
            encode_s=round(wall, 3),
            encode_cpu_s=round(cpu, 3),
            bitrate=PROXY.video_bitrate,
        )
        emit(
            f"segment encoder, whole clip in one process, x264 {name} ({what})",
            wall,
            "s",
            baseline=base_wall,
            baseline_name=f"the same at x264 {PROXY.x264_preset} (the proxy preset now)",
            cpu_s=round(cpu, 3),
            cpu_ratio=round(cpu / base_cpu, 3),
            runs=RUNS,
            **machine(),
        )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        async with rendering_stack(work, rate_proxies=100000) as stack:
            # One clip to append per run, each different: a clip appended before would be
            # reused, segments and all.
            clips = []
            for run in range(RUNS):
                path = await asyncio.to_thread(
                    make_video,
                    work / f"clip-{run}.mp4",
                    seconds=CLIP_S,
                    size="1920x1080",
                    rate=FPS,
                    pattern=PATTERNS[run % len(PATTERNS)],
                    sample_rate=(44100, 48000, 32000, 22050)[run // len(PATTERNS) % 4],
                )
                clips.append((await uploaded(stack, path, CLIP_S)).video_id)
            for index, seconds in enumerate(LENGTHS):
                done = await one_length(stack, work, seconds, None if index else clips)
                if index == 0:
                    await quality(stack, work, *done)


if __name__ == "__main__":
    asyncio.run(main())
