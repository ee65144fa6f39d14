"""Helper accounts ([telegram] helpers): reads spread over the main account and helper bots, each
with its own pool, DC authorisations and file references; an account under FLOOD_PREMIUM_WAIT is
routed around while another can serve. Two replicas against one sandbox: "solo" (the user alone) and
"duo" (the user and a helper bot), "pair" (the user and a second user logged in with
`tgdav login --session helper1`); the flood is injected for the main user only."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import sha256, stop
from tests.scale.conftest import delta, login, replica_config, serve
from tests.scale.test_replicas import get


@pytest.fixture(scope="module")
def replicas(scale_sandbox, tmp_path_factory):
    sb = scale_sandbox
    root = tmp_path_factory.mktemp("helpers")
    procs, urls = [], {}
    try:
        for name, helpers in (("solo", []), ("duo", sb.info["bots"][:1]), ("pair", ["helper1"])):
            extra = "helpers = [" + ", ".join(f'"{t}"' for t in helpers) + "]"
            config, port = replica_config(root / name, sb.admin_json, extra=extra)
            login(config, sb.info)
            if name == "pair":      # a second user, logged in once into its own session
                login(config, sb.info, phone=sb.info["helper_phone"], session="helper1")
            url, proc = serve(config, port, root / f"serve-{name}")
            procs.append(proc)
            urls[name] = f"{url}{sb.info['channel']}/"
        yield urls
    finally:
        for proc in procs:
            stop(proc)


def metric(base_url: str, name: str, **labels: str) -> float:
    """One sample of a replica's /metrics (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families
    _, body, _ = get(base_url + ":tgdav/metrics")
    return sum(s.value for family in text_string_to_metric_families(body.decode())
               for s in family.samples if s.name == name and s.labels == labels)


def test_a_flood_premium_wait_on_one_account_leaves_reads_working_on_the_other(scale_sandbox, replicas):
    sb = scale_sandbox
    flood = {"flood_wait": [{"dc": 4, "method": "GetFile", "seconds": 60, "count": 1, "premium": True,
                             "account": sb.info["user_id"]}]}
    # the user alone: told to come back (the control: the flood really stops this account)
    sb.faults(flood)
    before = sb.counters()
    status, _, headers = get(replicas["solo"] + "far.bin", "0-99999")
    assert status == 503 and int(headers["Retry-After"]) > 1
    assert delta(before, sb.counters(), "errors:FLOOD_PREMIUM_WAIT_X", dc=4) == 1

    # the user with a helper bot: the same flood, and every byte still arrives
    sb.faults(flood)
    before = sb.counters()
    status, body, _ = get(replicas["duo"] + "big.bin")
    assert status == 200 and sha256(body) == sb.sha("big.bin")
    after = sb.counters()
    assert delta(before, after, "errors:FLOOD_PREMIUM_WAIT_X", dc=4) == 1
    # the helper fetched its own file reference (channels.getMessages) and its own DC 4 authorisation
    assert delta(before, after, "requests:GetMessages") >= 1
    assert delta(before, after, "imports", dc=4) == 2          # the user once, the helper once
    # every account reports to the same metrics: both DC 4 authorisations are counted
    assert metric(replicas["duo"].removesuffix(f"{sb.info['channel']}/"), "tgdav_exports_total", dc="4") == 2


def test_a_helper_user_session_reads_when_the_main_account_is_flooded(scale_sandbox, replicas):
    sb = scale_sandbox
    sb.faults({"flood_wait": [{"dc": 3, "method": "GetFile", "seconds": 60, "count": 1, "premium": True,
                               "account": sb.info["user_id"]}]})
    before = sb.counters()
    status, body, _ = get(replicas["pair"] + "hot.bin")
    assert status == 200 and sha256(body) == sb.sha("hot.bin")
    after = sb.counters()
    assert delta(before, after, "errors:FLOOD_PREMIUM_WAIT_X", dc=3) == 1
    # the helper user fetched its own file reference (the main user lists with messages.getHistory)
    assert delta(before, after, "requests:GetMessages") >= 1
