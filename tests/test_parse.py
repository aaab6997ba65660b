"""Parsing keeps no state between calls: concurrent parses each get their own comments."""

from __future__ import annotations

from collections.abc import Callable

from concurrency import in_threads

from flowspec.parse import parse

ONE = """flowspec 0.2
# the first spec
flow one {  # trailing
  input 1x8x8
  let s = "a # in a string"  # after "a string"
  actnorm
}
"""
TWO = "\n".join(
    ["# the second spec, with more comments"]
    + [f"let x{i} = {i}  # comment {i}" for i in range(30)]
    + ['flow two { input 3x4x4 }  # "quoted"', ""]
)


def test_comments_are_collected_per_parse() -> None:
    one, two = parse(ONE).comments, parse(TWO).comments
    assert [c.text for c in one] == ["# the first spec", "# trailing", '# after "a string"']
    assert (one[1].line, one[1].column) == (3, 13)
    assert len(two) == 32 and two[-1].text == '# "quoted"'

    def parse_many(text: str, expected: list) -> Callable[[], None]:
        def job() -> None:
            for _ in range(40):
                assert parse(text).comments == expected

        return job

    in_threads([parse_many(ONE, one), parse_many(TWO, two)])
