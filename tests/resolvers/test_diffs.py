"""Each op in a few words, as a diff's summary shows it."""

import pytest

from resolvers.diffs import describe


@pytest.mark.parametrize(
    ("op_type", "params", "words"),
    [
        ("gaussian-blur", {"radius": 5, "start": 0, "end": 60}, "blur radius 5 at 0\u201360 s"),
        ("trim", {"start": 0, "end": 10}, "trim 0\u201310 s"),
        ("brightness", {"brightness": 20}, "brightness 20"),
        ("mute", {"start": 2, "end": 4}, "mute at 2\u20134 s"),
        ("text", {"text": "Hi", "start": 3}, "text 'Hi' from 3 s"),
        ("rotate", {"degrees": 90}, "rotate degrees 90"),
        ("grayscale", {}, "grayscale"),
        ("speed", {"factor": 2.0}, "speed factor 2"),
    ],
)
def test_an_op_in_a_few_words(op_type: str, params: dict[str, object], words: str) -> None:
    assert describe(op_type, params).startswith(words)
