"""Renders driven through the API: cancelling the proxies a test does not look at."""

from tests.helpers.api import Api

CANCEL = """mutation($id: ID!) { cancelRender(id: $id) { __typename
  ... on CancelRequested { render { id status error } } } }"""
PROXIES = "query($p: ID!) { project(id: $p) { versions { nodes { proxy { id status } } } } }"


async def without_proxies(api: Api, token: str, project_id: str) -> None:
    """Cancel the project's queued proxies, so that an export is the only render a worker
    started afterwards runs (the proxy of a long clip with a heavy edit costs seconds)."""
    data = await api.data(token, PROXIES, {"p": project_id})
    for version in data["project"]["versions"]["nodes"]:
        proxy = version["proxy"]
        if proxy is None or proxy["status"] != "QUEUED":
            continue
        cancelled = (await api.data(token, CANCEL, {"id": proxy["id"]}))["cancelRender"]
        assert cancelled["render"]["status"] == "CANCELLED"
