"""Resolving a flow that resolves other flows (a condition's ``encoder=flow(NAME)``): the
flows being resolved are carried by the call, so cycles are found and nothing leaks from
one resolution into another, concurrent or not."""

from __future__ import annotations

import threading

from concurrency import in_threads

from flowspec.errors import Collector
from flowspec.ir import FlowSpec
from flowspec.loader import Loader
from flowspec.resolve import resolve

FLOWS = """
flow seg(ch = 3) {
  input ch x 8 x 8
  actnorm
}
flow img {
  input 2x8x8
  condition y: labels 3x8x8 encoder=flow(seg)
  condition z: labels 4x8x8 encoder=flow(seg(ch=4))
  actnorm
}
flow other {
  input 1x8x8
  condition y: labels 3x8x8 encoder=flow(seg)
  actnorm
}
flow outer {
  input 1x8x8
  condition y: image 2x8x8 encoder=flow(img)
}
flow ping {
  input 1x8x8
  condition y: image 1x8x8 encoder=flow(pong)
}
flow pong {
  input 1x8x8
  condition y: image 1x8x8 encoder=flow(ping)
}
"""


def run(flow: str) -> tuple[FlowSpec | None, list[str]]:
    diags = Collector()
    env = Loader(diags).load_text(FLOWS, "<flows>")
    return resolve(env, flow, {}, diags), [d.code for d in diags.items]


def test_a_flow_used_twice_as_an_encoder_is_no_cycle() -> None:
    spec, codes = run("img")
    assert codes == [] and spec is not None
    y, z = spec.condition("y").flow, spec.condition("z").flow
    assert y.name == z.name == "seg" and y.params == {"ch": 3} and z.params == {"ch": 4}


def test_encoders_nest() -> None:
    spec, codes = run("outer")
    assert codes == [] and spec is not None
    assert spec.condition("y").flow.condition("z").flow.input == (4, 8, 8)


def test_flows_that_condition_each_other_are_a_cycle() -> None:
    assert "E161" in run("ping")[1]
    # and the next resolution starts afresh
    assert run("img")[1] == []


def test_concurrent_resolutions_share_no_flows() -> None:
    """Both flows resolve `seg` as an encoder, often at the same time."""
    results: dict[str, list] = {"img": [], "other": []}
    lock = threading.Lock()

    def many(flow: str):
        def job() -> None:
            for _ in range(30):
                codes = run(flow)[1]
                with lock:
                    results[flow].append(codes)

        return job

    in_threads([many("img"), many("other")])
    assert all(codes == [] for runs in results.values() for codes in runs), results
