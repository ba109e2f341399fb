"""Downloaded weights: fetched once into the cache, checked against their SHA-256 (full or
torch.hub's prefix) on every use, a wrong or damaged file an error that deletes it. The
files are generated here and served from ``file://`` URLs or an HTTP server on 127.0.0.1,
so no test touches the network."""

import hashlib
import http.server
import re
import threading
from pathlib import Path

import pytest
import torch

from reidlab.models.backbones.download import (
    RELEASES,
    DigestError,
    cache_dir,
    expected_digest,
    fetch,
)
from reidlab.models.backbones.pretrained import read_checkpoint

PAYLOAD = bytes((i * 7919 + 13) % 251 for i in range(300_000))  # 300 kB, not one byte repeated
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """urllib would send 127.0.0.1 through a proxy named in the environment."""
    for key in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
        monkeypatch.delenv(key.upper(), raising=False)


class Server:
    """A local HTTP server of the files in ``root``, counting the GET requests per path."""

    def __init__(self, root: Path) -> None:
        self.root, self.hits = root, []
        hits = self.hits

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):  # noqa: N802 - the http.server API
                hits.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "weights.pth").write_bytes(PAYLOAD)
    srv = Server(root)
    yield srv
    srv.close()


def test_right_digest_passes_and_the_second_use_reads_the_cache(server, tmp_path):
    cache = tmp_path / "cache"
    url = server.url("weights.pth")
    for digest in (DIGEST, DIGEST[:8], DIGEST.upper()):
        path = fetch(url, digest, folder=cache)
        assert path == cache / "weights.pth" and path.read_bytes() == PAYLOAD
    assert server.hits == ["/weights.pth"]  # downloaded once, then checked in the cache
    assert [p.name for p in cache.iterdir()] == ["weights.pth"]  # no partial file left


def test_wrong_digest_names_url_and_both_digests_and_keeps_nothing(server, tmp_path):
    cache = tmp_path / "cache"
    url = server.url("weights.pth")
    wrong = "0" * 64 if not DIGEST.startswith("0") else "1" * 64
    for bad in (wrong, wrong[:8]):
        with pytest.raises(DigestError) as err:
            fetch(url, bad, folder=cache)
        text = str(err.value)
        assert url in text and DIGEST in text and f"expected {bad}" in text
        assert "deleted" in text
        assert list(cache.iterdir()) == []  # neither the file nor a partial download


def test_a_cached_file_damaged_later_is_caught_on_next_use(server, tmp_path):
    cache = tmp_path / "cache"
    url = server.url("weights.pth")
    path = fetch(url, DIGEST, folder=cache)
    damaged = bytearray(path.read_bytes())
    damaged[1000] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(DigestError, match=f"SHA-256 is {hashlib.sha256(damaged).hexdigest()}"):
        fetch(url, DIGEST, folder=cache)
    assert not path.exists()  # removed, so that the next use downloads it again
    assert fetch(url, DIGEST, folder=cache).read_bytes() == PAYLOAD
    assert server.hits == ["/weights.pth", "/weights.pth"]


def test_file_url_and_the_prefix_in_the_file_name(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLAB_CACHE", str(tmp_path / "home-cache"))
    named = tmp_path / f"net-{DIGEST[:8]}.pth"
    named.write_bytes(PAYLOAD)
    url = named.as_uri()
    assert expected_digest(url) == DIGEST[:8]  # torch.hub's convention
    path = fetch(url)
    assert path == cache_dir() / named.name == tmp_path / "home-cache" / "pretrained" / named.name
    named.unlink()  # a cached file needs no source any more
    assert fetch(url).read_bytes() == PAYLOAD
    liar = tmp_path / "net-0badf00d.pth"
    liar.write_bytes(PAYLOAD)
    with pytest.raises(DigestError, match="expected 0badf00d"):
        fetch(liar.as_uri())
    assert not (cache_dir() / liar.name).exists()


def test_an_unreachable_url_is_an_oserror_that_says_what_to_do(tmp_path):
    srv = Server(tmp_path)
    url = srv.url("weights.pth")
    srv.close()  # nothing listens on that port now
    with pytest.raises(OSError, match="could not download .*give model.pretrained a local"):
        fetch(url, DIGEST, folder=tmp_path / "cache")


def test_read_checkpoint_of_a_url_goes_through_the_checked_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLAB_CACHE", str(tmp_path / "cache"))
    state = {"conv1.weight": torch.arange(6.0).reshape(1, 1, 2, 3)}
    raw = tmp_path / "raw.pth"
    torch.save(state, raw)
    named = tmp_path / f"tiny-{hashlib.sha256(raw.read_bytes()).hexdigest()[:8]}.pth"
    raw.rename(named)
    loaded = read_checkpoint(named.as_uri())
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"])
    assert (cache_dir() / named.name).is_file()


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_every_release_digest_fits_its_file_name(release):
    url, digest = RELEASES[release]
    assert url.startswith("https://")
    name = url.rsplit("/", 1)[1]
    assert name.startswith(release + "-")
    prefix = re.fullmatch(r".+-([0-9a-f]{8})\.pth", name)
    assert prefix, name
    assert re.fullmatch(r"[0-9a-f]{8}|[0-9a-f]{64}", digest), digest
    assert digest.startswith(prefix.group(1))  # a full digest extends the name's prefix
    assert expected_digest(url) == digest


def test_ibn_net_v1_releases_are_listed():
    base = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/"
    names = {"resnet18_ibn_a", "resnet34_ibn_a", "resnet50_ibn_a", "resnet101_ibn_a",
             "resnext101_ibn_a", "se_resnet101_ibn_a", "resnet50_ibn_b", "resnet101_ibn_b"}
    assert names <= set(RELEASES)
    assert all(RELEASES[n][0].startswith(base) for n in names)
    assert len(RELEASES["resnet50_ibn_a"][1]) == 64  # the one full digest known
