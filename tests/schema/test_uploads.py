"""Uploads over the GraphQL multipart spec: limits, refusals, and an empty temp/ after each."""

from pathlib import Path

import pytest

from editgraph.settings import Settings
from tests.helpers.api import Api, AppFactory


async def test_refused_media_is_invalid_media_and_leaves_temp_empty(
    api: Api, tokens: dict[str, str], hostile: dict[str, Path], settings: Settings
) -> None:
    for name in ("text", "playlist", "image", "truncated", "audio_only"):
        response = await api.upload(tokens["alice"], hostile[name])
        result = response.json()["data"]["uploadVideo"]
        assert result["__typename"] == "InvalidMedia", name
        assert result["message"]
    assert list((settings.media_root / "temp").iterdir()) == []
    assert list((settings.media_root / "videos").iterdir()) == []


async def test_names_are_kept_only_as_sanitized_metadata(
    api: Api, tokens: dict[str, str], media: dict[str, Path], settings: Settings
) -> None:
    response = await api.upload(tokens["alice"], media["clip"], filename="../../etc/clip.mp4")
    video = response.json()["data"]["uploadVideo"]["video"]
    assert video["filename"] == "clip.mp4"
    [stored] = (settings.media_root / "videos").iterdir()
    assert stored.name == f"{video['sha256']}.mp4"


async def test_upload_over_the_limit(
    make_api: AppFactory, settings: Settings, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    limit = 10_000
    async with make_api(max_upload_bytes=limit) as api:
        assert media["clip"].stat().st_size > limit
        result = (await api.upload(tokens["alice"], media["clip"])).json()["data"]["uploadVideo"]
        assert result["__typename"] == "TooLarge"
        assert result["limitBytes"] == limit
        # A body that declares far more than the limit is refused before it is read.
        refused = await api.client.post(
            "/graphql",
            content=b"x" * 100,
            headers={
                "Content-Type": "multipart/form-data; boundary=b",
                "Content-Length": str(50 * 1024 * 1024),
                "Authorization": f"Bearer {tokens['alice']}",
            },
        )
        assert refused.status_code == 413
    assert list((settings.media_root / "temp").iterdir()) == []


@pytest.mark.parametrize(
    ("operations", "files_map", "status"),
    [
        ("not json", '{"0": ["variables.f"]}', 400),
        ('{"query": "{ me { id } }"}', '{"9": ["variables.f"]}', 400),
    ],
)
async def test_malformed_multipart_is_a_400_and_leaves_temp_empty(
    api: Api,
    tokens: dict[str, str],
    media: dict[str, Path],
    settings: Settings,
    operations: str,
    files_map: str,
    status: int,
) -> None:
    with media["clip"].open("rb") as fh:
        response = await api.client.post(
            "/graphql",
            data={"operations": operations, "map": files_map},
            files={"0": ("clip.mp4", fh, "video/mp4")},
            headers={"Authorization": f"Bearer {tokens['alice']}"},
        )
    assert response.status_code == status
    assert response.text
    assert list((settings.media_root / "temp").iterdir()) == []


async def test_a_file_sent_as_json_is_invalid_media(api: Api, tokens: dict[str, str]) -> None:
    body = await api.query(
        tokens["alice"],
        "mutation($f: Upload!) { uploadVideo(file: $f) { __typename ... on InvalidMedia { message } } }",
        {"f": "AAAA"},
    )
    assert body["data"]["uploadVideo"]["__typename"] == "InvalidMedia"


async def test_anonymous_uploads_are_refused_before_they_are_read(
    api: Api, media: dict[str, Path], settings: Settings
) -> None:
    with media["clip"].open("rb") as fh:
        response = await api.client.post(
            "/graphql",
            data={"operations": '{"query": "{ me { id } }"}', "map": '{"0": ["variables.f"]}'},
            files={"0": ("clip.mp4", fh, "video/mp4")},
        )
    assert response.status_code == 401
    assert list((settings.media_root / "temp").iterdir()) == []


async def test_a_part_named_twice_is_refused(
    api: Api, tokens: dict[str, str], settings: Settings
) -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="0"; filename="a.mp4"\r\n\r\nxxxx\r\n'
        b'--b\r\nContent-Disposition: form-data; name="0"; filename="b.mp4"\r\n\r\nyyyy\r\n'
        b"--b--\r\n"
    )
    response = await api.client.post(
        "/graphql",
        content=body,
        headers={
            "Content-Type": "multipart/form-data; boundary=b",
            "Authorization": f"Bearer {tokens['alice']}",
        },
    )
    assert response.status_code == 400 and "twice" in response.text
    assert list((settings.media_root / "temp").iterdir()) == []
