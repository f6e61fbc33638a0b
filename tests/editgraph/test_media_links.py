"""Signed media links: tampering, expiry and odd values are 403, a file that is gone is 404;
the development secret is random, and links stay out of the access log."""

import time
from pathlib import Path
from urllib.parse import quote

import httpx

from editgraph.media import SECRET_FILE, MediaSigner
from editgraph.redis_embed import free_port
from editgraph.settings import DEFAULT_SECRET, Settings
from tests.helpers.api import Api
from tests.helpers.processes import server_process


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


async def test_odd_expiry_and_signature_values_are_refused(api: Api, settings: Settings) -> None:
    signer = MediaSigner(settings.secret_key, 60)
    key = "export/7/v3_final.mp4"
    path = settings.media_root / key
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0\0\0\x18ftypmp42")
    future = int(time.time()) + 60
    good = signer.signature(key, future)
    fullwidth = "".join(chr(0xFF10 + int(d)) for d in str(future))  # fullwidth Unicode digits
    for query in (
        f"exp=%C2%B2&sig={good}",  # "²"
        f"exp={'9' * 5000}&sig={good}",
        f"exp={'9' * 30}&sig={signer.signature(key, int('9' * 30))}",
        f"exp={quote(fullwidth)}&sig={good}",
        f"exp={future}&sig=%C3%A9",  # a non-ASCII signature
        f"exp={future}&sig={'A' * 5000}",
    ):
        assert (await api.client.get(f"/media/{key}?{query}")).status_code == 403, query[:30]
    assert (await api.client.get(f"/media/{key}?exp={future}&sig={good}")).status_code == 200


def test_development_secret_and_redacted_access_log(tmp_path: Path, redis_url: str) -> None:
    data_dir = tmp_path / "data"
    env = {
        "EDITGRAPH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'dev.db'}",
        "EDITGRAPH_REDIS_URL": redis_url,
        "EDITGRAPH_MEDIA_ROOT": str(tmp_path / "uploads"),
        "EDITGRAPH_DATA_DIR": str(data_dir),
    }
    key = "export/1/v0_final.mp4"
    log = tmp_path / "server.log"
    with server_process(env, free_port(), log) as base:
        secret_file = data_dir / SECRET_FILE
        secret = secret_file.read_text()
        assert len(secret) >= 32 and secret != DEFAULT_SECRET
        assert secret_file.stat().st_mode & 0o077 == 0  # its owner's alone
        (tmp_path / "uploads" / key).parent.mkdir(parents=True)
        (tmp_path / "uploads" / key).write_bytes(b"\0\0\0\x18ftypmp42")
        link = MediaSigner(secret, 3600).url(key)
        assert httpx.get(base + link).status_code == 200
        # Links signed with the shipped development secret are worthless.
        assert httpx.get(base + MediaSigner(DEFAULT_SECRET, 3600).url(key)).status_code == 403
    # The access log shows which file was fetched, never a replayable link.
    text = log.read_text()
    assert f"GET /media/{key}?(redacted) HTTP/1.1" in text
    assert "sig=" not in text and "exp=" not in text
    # The next start reuses the secret: links handed out before a restart keep working.
    with server_process(env, free_port(), tmp_path / "again.log") as base:
        assert (data_dir / SECRET_FILE).read_text() == secret
        assert httpx.get(base + link).status_code == 200
