"""Signed media links: tampering and expiry are 403, a file that is gone is 404."""

import time

from editgraph.media import MediaSigner
from editgraph.settings import Settings
from tests.conftest import Api


async def test_signed_links(api: Api, settings: Settings) -> None:
    signer = MediaSigner(settings.secret_key, 60)
    key = "export/7/v3_final.mp4"
    path = settings.media_root / key
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0\0\0\x18ftypmp42" + b"x" * 100)
    url = signer.url(key)
    ok = await api.client.get(url)
    assert ok.status_code == 200 and ok.content == path.read_bytes()
    expires = url.split("exp=")[1].split("&")[0]
    signature = url.split("sig=")[1]
    later = str(int(expires) + 3600)
    for tampered in (
        url.replace("v3_final", "v2_final"),  # another key
        url.replace(f"exp={expires}", f"exp={later}"),  # a longer life
        url.replace(signature, signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")),
        f"/media/{key}",  # no signature at all
    ):
        assert (await api.client.get(tampered)).status_code == 403
    past = int(time.time()) - 1
    assert (
        await api.client.get(f"/media/{key}?exp={past}&sig={signer.signature(key, past)}")
    ).status_code == 403
    outside = "../secrets.txt"
    future = int(time.time()) + 60
    assert (
        await api.client.get(
            f"/media/{outside}?exp={future}&sig={signer.signature(outside, future)}"
        )
    ).status_code in (403, 404)
    # The link of an export the GC deleted: valid signature, no file.
    path.unlink()
    assert (await api.client.get(url)).status_code == 404
