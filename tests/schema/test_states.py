"""The schema's enums are the tables' own vocabularies, under the names clients know."""

from enum import StrEnum

import pytest

from models import states
from schema.limits import QueryLimits
from schema.root import build_schema


@pytest.mark.parametrize("vocabulary", [states.RenderKind, states.RenderStatus, states.GcState])
def test_the_schema_shows_the_one_enum_of_each_vocabulary(vocabulary: type[StrEnum]) -> None:
    shown = build_schema(QueryLimits(), production=False).get_type_by_name(vocabulary.__name__)
    assert getattr(shown, "wrapped_cls", None) is vocabulary
    values = {value.name: value.value for value in getattr(shown, "values", [])}
    assert values == {member.name: member.value for member in vocabulary}
