"""A small ffmpeg filter graph: nodes by identity, compiled to argv without recursion.

ffmpeg-python merges nodes that look alike (the same file opened twice becomes one input,
the same filter on it one filter, and ffmpeg then wants a split) and sorts its graph
recursively (a long edit history hits Python's recursion limit). Here every input and
filter is its own node however alike it looks, each stream feeds exactly one consumer, and
compilation is one iterative pass. The argv text matches ffmpeg-python's for the same graph.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

FILTER_ESCAPES = "\\'=:"
GRAPH_ESCAPES = "\\'[],;"


def _escape(text: object, chars: str) -> str:
    out = str(text)
    # The backslash first, so the escapes added for the other characters stay single.
    for ch in sorted(set(chars), key=lambda c: c != "\\"):
        out = out.replace(ch, "\\" + ch)
    return out


class Node:
    """An input or a filter; compared by identity, never by what it contains."""

    def __init__(self, sources: list["Stream"]) -> None:
        self.sources = sources


class Input(Node):
    """One ``-i``: a file or a lavfi source, with its input options."""

    def __init__(self, filename: str, options: dict[str, Any]) -> None:
        super().__init__([])
        self.filename = filename
        self.options = options

    @property
    def video(self) -> "Stream":
        """The input's video stream (``[N:v]``)."""
        return Stream(self, None, "v")

    @property
    def audio(self) -> "Stream":
        """The input's audio stream (``[N:a]``)."""
        return Stream(self, None, "a")

    def args(self) -> list[str]:
        """``-f FORMAT``, the other options sorted, then ``-i FILE``."""
        options = dict(self.options)
        fmt = options.pop("f", None)
        head = ["-f", str(fmt)] if fmt else []
        return [*head, *_options(options), "-i", self.filename]


class Filter(Node):
    """One filter of the graph with its positional and named parameters."""

    def __init__(
        self, sources: list["Stream"], name: str, args: Iterable[object], kwargs: dict[str, Any]
    ) -> None:
        super().__init__(sources)
        self.name = name
        self.args = list(args)
        self.kwargs = kwargs

    def __getitem__(self, label: int) -> "Stream":
        return Stream(self, label, None)

    def spec(self) -> str:
        """``name=arg:key=value`` escaped the way ffmpeg's graph parser reads it."""
        params = [_escape(_escape(a, FILTER_ESCAPES), FILTER_ESCAPES) for a in self.args]
        params += [
            f"{_escape(k, FILTER_ESCAPES)}={_escape(self.kwargs[k], FILTER_ESCAPES)}"
            for k in sorted(self.kwargs)
        ]
        text = _escape(self.name, FILTER_ESCAPES)
        if params:
            text += "=" + ":".join(params)
        return _escape(text, GRAPH_ESCAPES)


@dataclass(frozen=True, eq=False)
class Stream:
    """One output pad of a node: a filter's ``label``-th output, or an input's ``v``/``a``."""

    node: Node
    label: int | None
    selector: str | None

    def filter(self, name: str, *args: object, **kwargs: Any) -> "Stream":
        """This stream through one more filter."""
        return Stream(Filter([self], name, args, kwargs), None, None)

    @property
    def key(self) -> tuple[int, int | None, str | None]:
        """Which pad this is: two Stream objects for the same pad share it."""
        return id(self.node), self.label, self.selector


def file_input(filename: str, **options: Any) -> Input:
    """A new input, even when another one reads the same file."""
    return Input(filename, options)


def concat(*streams: Stream, v: int, a: int) -> Filter:
    """ffmpeg's concat of ``n`` segments of ``v`` video and ``a`` audio streams each."""
    return Filter(list(streams), "concat", [], {"a": a, "n": len(streams) // (v + a), "v": v})


@dataclass
class Output:
    """The output file, its mapped streams and options, and the global options."""

    streams: list[Stream]
    filename: str
    options: dict[str, Any]
    global_args: list[str] = field(default_factory=list)


def _options(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key in sorted(options):
        args.append(f"-{key}")
        if options[key] is not None:
            args.append(str(options[key]))
    return args


def _ordered(outputs: list[Stream]) -> list[Node]:
    """Every node before its consumers, depth first from the mapped streams, no recursion."""
    order: list[Node] = []
    done: set[int] = set()
    for root in outputs:
        stack: list[tuple[Node, int]] = [(root.node, 0)]
        while stack:
            node, next_source = stack.pop()
            if id(node) in done:
                continue
            if next_source < len(node.sources):
                stack.append((node, next_source + 1))
                stack.append((node.sources[next_source].node, 0))
            else:
                done.add(id(node))
                order.append(node)
    return order


def compile_argv(out: Output, *, overwrite: bool = True) -> list[str]:
    """The ffmpeg command line of a graph."""
    nodes = _ordered(out.streams)
    inputs = [n for n in nodes if isinstance(n, Input)]
    filters = [n for n in nodes if isinstance(n, Filter)]
    names: dict[tuple[int, int | None, str | None], str] = {}
    for index, source in enumerate(inputs):
        for selector in ("v", "a"):
            names[(id(source), None, selector)] = f"{index}:{selector}"
    consumed: set[tuple[int, int | None, str | None]] = set()
    for stream in [s for f in filters for s in f.sources] + out.streams:
        if stream.key in consumed:
            # Two readers of one pad make ffmpeg buffer everything one of them has not read yet.
            raise ValueError("a stream of the filter graph feeds two filters; give each its own")
        consumed.add(stream.key)
    pads: dict[int, list[int | None]] = {}
    for node_id, label, _ in consumed:
        pads.setdefault(node_id, []).append(label)
    for labels in pads.values():
        labels.sort(key=lambda label: -1 if label is None else label)
    count = 0
    for step in filters:
        for label in pads.get(id(step), []):
            names[(id(step), label, None)] = f"s{count}"
            count += 1
    specs = [
        "".join(f"[{names[s.key]}]" for s in step.sources)
        + step.spec()
        + "".join(f"[{names[(id(step), label, None)]}]" for label in pads.get(id(step), []))
        for step in filters
    ]
    argv = ["ffmpeg"]
    for node in inputs:
        argv += node.args()
    if specs:
        argv += ["-filter_complex", ";".join(specs)]
    for stream in out.streams:
        name = names[stream.key]
        argv += ["-map", name if isinstance(stream.node, Input) else f"[{name}]"]
    options = dict(out.options)
    fmt = options.pop("f", None)
    if fmt:
        argv += ["-f", str(fmt)]
    argv += [*_options(options), out.filename, *out.global_args]
    if overwrite:
        argv.append("-y")
    return argv
