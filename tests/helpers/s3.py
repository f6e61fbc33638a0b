"""An S3 endpoint on loopback for the tests: moto's server, one per test process, and a
fresh bucket per test (nothing is shared, nothing needs cleaning)."""

import secrets
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import obstore
from moto.server import ThreadedMotoServer

from models.bucket import BucketStore, s3_store

# moto accepts any credentials; the variables are what a deployment sets too.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "editgraph-test",
    "AWS_SECRET_ACCESS_KEY": "editgraph-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
REGION = "us-east-1"


@dataclass(frozen=True)
class Endpoint:
    """A running S3 endpoint."""

    url: str

    def new_bucket(self) -> str:
        """Create an empty bucket; returns its name (moto takes an unsigned request)."""
        name = f"editgraph-{secrets.token_hex(6)}"
        request = urllib.request.Request(f"{self.url}/{name}", method="PUT")
        with urllib.request.urlopen(request) as answer:
            assert answer.status == 200
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in a bucket (under ``prefix``), with a client of its own."""
        client = s3_store(f"s3://{bucket}", endpoint=self.url, region=REGION)
        return sorted(m["path"] for batch in obstore.list(client, prefix=prefix) for m in batch)

    def store(self, bucket: str, cache: Path, *, cache_bytes: int = 1 << 30) -> BucketStore:
        """editgraph's media store on ``bucket``."""
        store = BucketStore(
            s3_store(f"s3://{bucket}", endpoint=self.url, region=REGION),
            cache=cache,
            cache_bytes=cache_bytes,
        )
        store.ensure_layout()
        return store


def bucket_env(endpoint: Endpoint, bucket: str, cache: Path) -> dict[str, str]:
    """The settings (and AWS variables) of a server or worker keeping media in ``bucket``."""
    return {
        "EDITGRAPH_STORAGE_URL": f"s3://{bucket}",
        "EDITGRAPH_S3_ENDPOINT_URL": endpoint.url,
        "EDITGRAPH_S3_REGION": REGION,
        "EDITGRAPH_CACHE_DIR": str(cache),
        **CREDENTIALS,
    }


@contextmanager
def moto_endpoint() -> Iterator[Endpoint]:
    """moto's S3 server on a free loopback port for as long as the block runs."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield Endpoint(f"http://{host}:{port}")
    finally:
        server.stop()


# A module whose tests must hold on both backends: pytestmark = parametrize("storage", STORAGES)
STORAGES = ["local", "s3"]
