"""``aggan data download/verify/list`` against an HTTP server on 127.0.0.1 that serves zips the
tests build: clean, interrupted and resumed, hanging, truncated, tampered and hostile."""

from __future__ import annotations

import hashlib
import http.server
import io
import shutil
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aggan.datasets import SPLITS, download_dataset, packaged_manifest, read_manifest
from aggan.errors import AgganError
from conftest import SHARED_DATA
from test_cli import assert_one_line_error, run_cli


def dataset_files(name: str = "toy") -> dict[str, bytes]:
    """Archive paths -> bytes of a small dataset in the CycleGAN layout."""
    return {f"{name}/{split}/img{index}.jpg": f"{split}-{index}".encode() * 200
            for split in SPLITS for index in range(3)}


def build_zip(files: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        for name, points_to in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, points_to)
    return buffer.getvalue()


def manifest_of(files: dict[str, bytes]) -> dict[str, str]:
    return {path.split("/", 1)[1]: hashlib.sha256(data).hexdigest()
            for path, data in files.items()}


@dataclass
class Server:
    """Serves ``files`` (path -> bytes) with HTTP Range; ``cut_after`` drops the connection of
    the first full-body response after that many bytes; ``hang_s`` stalls after the headers."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: int | None = None
    hang_s: float = 0.0
    ranges: list[str | None] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = state.files.get(self.path.lstrip("/"))
            if data is None:
                self.send_error(404)
                return
            requested = self.headers.get("Range")
            state.ranges.append(requested)
            start = int(requested.removeprefix("bytes=").rstrip("-")) if requested else 0
            self.send_response(206 if requested else 200)
            if requested:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if state.hang_s:
                time.sleep(state.hang_s)
                return
            body = data[start:]
            if state.cut_after is not None and not requested:
                body = body[:state.cut_after]
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_clean_download_extracts_verifies_and_cleans_up(server: Server, tmp_path: Path) -> None:
    files = dataset_files()
    server.files["toy.zip"] = build_zip(files)
    folder, counts = download_dataset("toy", tmp_path, url=server.url("toy.zip"),
                                      manifest=manifest_of(files), progress=False)
    assert folder == tmp_path / "toy"
    assert counts == dict.fromkeys(SPLITS, 3)
    assert (folder / "testB" / "img2.jpg").read_bytes() == files["toy/testB/img2.jpg"]
    assert left_in(tmp_path) == ["toy"]  # no archive, .part or temp folder left
    assert stat.S_IMODE(folder.stat().st_mode) & 0o755 == 0o755  # not mkdtemp's private 0700
    # A second run verifies what is there and does not download again.
    download_dataset("toy", tmp_path, url=server.url("toy.zip"), manifest=manifest_of(files),
                     progress=False)
    assert len(server.ranges) == 1


def test_interrupted_download_resumes_with_a_range_request(server: Server,
                                                           tmp_path: Path) -> None:
    files = dataset_files()
    archive = build_zip(files)
    server.files["toy.zip"] = archive
    server.cut_after = len(archive) // 3
    with pytest.raises(AgganError, match=rf"stopped at {len(archive) // 3} of {len(archive)} "
                                         "bytes; run the same command again to resume"):
        download_dataset("toy", tmp_path, url=server.url("toy.zip"), progress=False)
    assert (tmp_path / "toy.zip.part").stat().st_size == len(archive) // 3
    assert not (tmp_path / "toy").exists()

    download_dataset("toy", tmp_path, url=server.url("toy.zip"), manifest=manifest_of(files),
                     progress=False)
    assert server.ranges == [None, f"bytes={len(archive) // 3}-"]
    assert left_in(tmp_path) == ["toy"]


def test_hanging_server_fails_in_bounded_time(server: Server, tmp_path: Path) -> None:
    server.files["toy.zip"] = build_zip(dataset_files())
    server.hang_s = 5.0
    began = time.monotonic()
    with pytest.raises(AgganError, match=r"stalled \(nothing received for 0.5 s\)"):
        download_dataset("toy", tmp_path, url=server.url("toy.zip"), timeout_s=0.5,
                         progress=False)
    assert time.monotonic() - began < 3.0
    assert not (tmp_path / "toy").exists()


def test_checksum_mismatch_is_refused_and_nothing_is_left(server: Server, tmp_path: Path) -> None:
    files = dataset_files()
    manifest = manifest_of(files)
    files["toy/trainB/img1.jpg"] = b"tampered"
    server.files["toy.zip"] = build_zip(files)
    with pytest.raises(AgganError, match=r"toy.zip:toy/trainB/img1.jpg does not match its "
                                         "SHA-256.*nothing was extracted"):
        download_dataset("toy", tmp_path, url=server.url("toy.zip"), manifest=manifest,
                         progress=False)
    assert left_in(tmp_path) == []


@pytest.mark.parametrize(("entry", "problem"), [
    ("../escaped.txt", "escapes the target folder"),
    ("toy/trainA/../../../escaped.txt", "escapes the target folder"),
    ("/tmp/escaped.txt", "absolute path"),
    ("symlink", "symbolic link"),
])
def test_hostile_entries_are_refused_before_anything_is_written(
        server: Server, tmp_path: Path, entry: str, problem: str) -> None:
    files = dataset_files()
    if entry == "symlink":
        archive = build_zip(files, symlinks={"toy/trainA/link.jpg": "/etc/passwd"})
    else:
        archive = build_zip(files | {entry: b"outside"})
    server.files["toy.zip"] = archive
    out = tmp_path / "data"
    with pytest.raises(AgganError, match=problem):
        download_dataset("toy", out, url=server.url("toy.zip"), progress=False)
    assert left_in(out) == []
    assert not (tmp_path / "escaped.txt").exists()


def test_truncated_zip_is_refused(server: Server, tmp_path: Path) -> None:
    server.files["toy.zip"] = build_zip(dataset_files())[:-200]  # complete download, cut archive
    with pytest.raises(AgganError, match=r"toy\.zip is not a complete zip archive"):
        download_dataset("toy", tmp_path, url=server.url("toy.zip"), progress=False)
    assert left_in(tmp_path) == []


def test_decompression_bomb_is_refused_by_its_declared_size(server: Server,
                                                            tmp_path: Path) -> None:
    files = dataset_files() | {"toy/trainA/huge.jpg": bytes(2_000_000)}  # 2 MB of zeros: ~2 KB
    server.files["toy.zip"] = build_zip(files)
    with pytest.raises(AgganError, match="refused as a decompression bomb"):
        download_dataset("toy", tmp_path, url=server.url("toy.zip"), progress=False,
                         max_unpacked_bytes=1_000_000)
    assert left_in(tmp_path) == []


def test_existing_folder_is_verified_never_overwritten(server: Server, tmp_path: Path) -> None:
    mine = tmp_path / "toy" / "trainA"
    mine.mkdir(parents=True)
    (mine / "precious.jpg").write_bytes(b"mine")
    server.files["toy.zip"] = build_zip(dataset_files())
    with pytest.raises(AgganError, match=r"toy exists and is not a complete toy .*move it away"):
        download_dataset("toy", tmp_path, url=server.url("toy.zip"), progress=False)
    assert (mine / "precious.jpg").read_bytes() == b"mine"
    assert server.ranges == []


def test_local_archive_given_as_url(tmp_path: Path) -> None:
    files = dataset_files()
    local = tmp_path / "mirror" / "toy.zip"
    local.parent.mkdir()
    local.write_bytes(build_zip(files))
    download_dataset("toy", tmp_path / "data", url=str(local), manifest=manifest_of(files),
                     progress=False)
    assert (tmp_path / "data" / "toy" / "trainA" / "img0.jpg").exists()
    assert local.exists()  # the user's own copy is never deleted


def test_cli_download_uses_the_shipped_manifest(server: Server, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # Same layout and names as horse2zebra would have, wrong bytes: the shipped SHA-256 refuse it.
    manifest = packaged_manifest("horse2zebra")
    assert manifest is not None and len(manifest) == 2661
    files = {f"horse2zebra/{path}": b"not a horse" for path in manifest}
    server.files["horse2zebra.zip"] = build_zip(files)
    code, _, err = run_cli(capsys, "data", "download", "horse2zebra", "--out", tmp_path,
                           "--url", server.url("horse2zebra.zip"), "--no-progress")
    assert_one_line_error(code, err, "horse2zebra.zip:horse2zebra/", "does not match its SHA-256")
    assert left_in(tmp_path) == []


def test_cli_offline_message_names_the_url_and_the_way_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 on 127.0.0.1 refuses connections: the same path as a machine without internet.
    code, _, err = run_cli(capsys, "data", "download", "horse2zebra", "--out", tmp_path,
                           "--url", "http://127.0.0.1:9/horse2zebra.zip", "--no-progress")
    assert_one_line_error(code, err, "http://127.0.0.1:9/horse2zebra.zip", "--url",
                          "aggan data verify")


def test_cli_unknown_name_lists_the_catalogue(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "data", "download", "horse2zebro", "--out", tmp_path)
    assert_one_line_error(code, err, "horse2zebro", "horse2zebra", "apple2orange")
    code, out, _ = run_cli(capsys, "data", "list")
    assert code == 0 and "horse2zebra" in out and "2661 files" in out


def test_shared_horse2zebra_verifies_against_the_shipped_manifest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The real photos (shared/, as in CI): every file's SHA-256 must match what aggan ships.
    code, out, _ = run_cli(capsys, "data", "verify", SHARED_DATA / "horse2zebra")
    assert code == 0, out
    assert "trainA 1067, trainB 1334, testA 120, testB 140" in out
    # One changed byte in one test image is found and named.
    copy = tmp_path / "horse2zebra"
    shutil.copytree(SHARED_DATA / "horse2zebra", copy)
    victim = copy / "testA" / "n02381460_1000.jpg"
    data = bytearray(victim.read_bytes())
    data[1000] ^= 1
    victim.write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "data", "verify", copy)
    assert_one_line_error(code, err, "testA/n02381460_1000.jpg", "does not match its SHA-256")


def test_manifest_parsing_matches_sha256sum_format() -> None:
    text = "ab12  trainA/x.jpg\n\nCD34  testB/y y.jpg\n"
    assert read_manifest(text) == {"trainA/x.jpg": "ab12", "testB/y y.jpg": "cd34"}
