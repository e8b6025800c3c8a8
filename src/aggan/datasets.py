"""The CycleGAN datasets: ``aggan data list``, ``download`` and ``verify``.

A download resumes where an interrupted one stopped (HTTP Range), extracts into a hidden temp
folder that is renamed to ``OUT/NAME`` only once the archive is proven safe and its files verified
(file counts, and every file's SHA-256 where a manifest ships in ``aggan/manifests``), so a failed
run never leaves half a dataset or a file outside ``OUT``.
"""

from __future__ import annotations

import http.client
import os
import shutil
import stat
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from aggan.errors import AgganError
from aggan.images import file_hexdigest, prepare_output_dir, staging_dir

# The CycleGAN archives moved from people.eecs to this host (per the CUT maintainers).
BASE_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
SPLITS = ("trainA", "trainB", "testA", "testB")
# No CycleGAN archive unpacks to more than a few GB; a zip claiming more is broken or hostile.
MAX_UNPACKED_BYTES = 32 * 2**30
CHUNK_BYTES = 1 << 20


class BadArchive(AgganError):
    """The archive itself is at fault (not a zip, unsafe, or not the dataset): fetch it anew."""


@dataclass(frozen=True)
class Dataset:
    name: str
    content: str

    @property
    def url(self) -> str:
        return f"{BASE_URL}/{self.name}.zip"


CATALOGUE = {dataset.name: dataset for dataset in (
    Dataset("horse2zebra", "horses <-> zebras (ImageNet)"),
    Dataset("apple2orange", "apples <-> oranges (ImageNet)"),
    Dataset("summer2winter_yosemite", "Yosemite in summer <-> winter (Flickr)"),
    Dataset("monet2photo", "Monet paintings <-> landscape photos"),
    Dataset("cezanne2photo", "Cezanne paintings <-> landscape photos"),
    Dataset("ukiyoe2photo", "Ukiyo-e prints <-> landscape photos"),
    Dataset("vangogh2photo", "Van Gogh paintings <-> landscape photos"),
    Dataset("iphone2dslr_flower", "flowers: iPhone <-> DSLR shallow depth of field"),
    Dataset("maps", "Google Maps <-> aerial photos"),
    Dataset("facades", "facade labels <-> photos"),
    Dataset("cityscapes", "Cityscapes labels <-> street photos"),
)}


# --- manifests and verification ---------------------------------------------------------------

def read_manifest(text: str) -> dict[str, str]:
    """``sha256sum`` output -> {relative path: hex digest}."""
    manifest = {}
    for line in text.splitlines():
        if line.strip():
            digest, _, relative = line.partition("  ")
            manifest[relative.strip()] = digest.strip().lower()
    return manifest


def packaged_manifest(name: str) -> dict[str, str] | None:
    """The SHA-256 of every file of dataset ``name`` as aggan ships it, or None if unknown."""
    entry = resources.files("aggan") / "manifests" / f"{name}.sha256"
    return read_manifest(entry.read_text()) if entry.is_file() else None


def verify_folder(root: Path, manifest: dict[str, str] | None, *,
                  shown_as: str | None = None) -> dict[str, int]:
    """Checks a dataset folder; returns the file count per split.

    Every split must exist and hold files; with a manifest, the files must be exactly the
    manifest's, each with its SHA-256. Raises :class:`AgganError` naming the first problem, the
    folder called ``shown_as`` in messages if given.
    """
    shown = Path(shown_as) if shown_as else root
    counts = {}
    found = set()
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise AgganError(f"{shown / split} is missing (a CycleGAN dataset has "
                             f"{', '.join(SPLITS)})")
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise AgganError(f"{shown / split} holds no files")
        counts[split] = len(files)
        found.update(f"{split}/{p.name}" for p in files)
    if manifest is None:
        return counts
    expected = {path for path in manifest if path.split("/")[0] in SPLITS}
    if missing := sorted(expected - found):
        raise AgganError(f"{shown / missing[0]} is missing ({len(missing)} files of the manifest "
                         "are)")
    if extra := sorted(found - expected):
        raise AgganError(f"{shown / extra[0]} is not in the dataset's manifest ({len(extra)} "
                         "such files)")
    for relative in sorted(expected):
        if file_hexdigest(root / relative, "sha256") != manifest[relative]:
            raise AgganError(f"{shown / relative} does not match its SHA-256 in the manifest "
                             "(corrupt or altered)")
    return counts


# --- download -----------------------------------------------------------------------------------

def _offline_message(url: str, reason: object, name: str, out_dir: Path) -> str:
    return (f"cannot download {url} ({reason}); fetch {name}.zip elsewhere and pass --url "
            f"/path/to/{name}.zip, or unpack it as {out_dir / name}/{{{','.join(SPLITS)}}} and "
            f"check it with: aggan data verify {out_dir / name}")


def fetch(url: str, target: Path, *, timeout_s: float, progress: bool) -> None:
    """Downloads ``url`` to ``target`` through ``target.part``, resuming a ``.part`` left by an
    interrupted run with an HTTP Range request. The ``.part`` file is kept on failure so that the
    next run resumes; ``target`` appears only when every byte arrived."""
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "aggan"} | ({"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the .part already holds the whole file
            os.replace(part, target)
            return
        raise AgganError(f"cannot download {url}: HTTP {error.code} {error.reason}") from None
    with response:
        resumed = have > 0 and response.status == 206
        if not resumed:
            have = 0  # the server ignored Range: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        try:
            with open(part, "ab" if resumed else "wb") as handle, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, disable=not progress,
                    desc=target.name) as bar:
                # The socket timeout bounds every read: a server that stops sending fails here.
                while chunk := response.read(CHUNK_BYTES):
                    handle.write(chunk)
                    bar.update(len(chunk))
        except TimeoutError:
            raise AgganError(f"download of {url} stalled (nothing received for {timeout_s:g} s) "
                             f"at {part.stat().st_size} bytes; run the same command again to "
                             "resume") from None
        except (OSError, http.client.HTTPException):
            pass  # a dropped connection: the size check below says how far it got
    received = part.stat().st_size
    if total is not None and received != total:
        raise AgganError(f"download of {url} stopped at {received} of {total} bytes; run the "
                         "same command again to resume")
    os.replace(part, target)


# --- extraction ---------------------------------------------------------------------------------

def _check_member(info: zipfile.ZipInfo, archive: Path) -> None:
    name = info.filename
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise BadArchive(f"{archive} holds an absolute path {name!r}: refused")
    if ".." in path.parts:
        raise BadArchive(f"{archive} holds {name!r}, which escapes the target folder: refused")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise BadArchive(f"{archive} holds a symbolic link {name!r}: refused")


def _dataset_root(unpacked: Path, name: str, archive: Path) -> Path:
    """The folder with trainA/...: the archive's top folder (``NAME/``, as CycleGAN's are) or
    the archive's root."""
    for candidate in (unpacked / name, unpacked):
        if (candidate / SPLITS[0]).is_dir():
            return candidate
    tops = sorted(p.name for p in unpacked.iterdir())
    raise BadArchive(f"{archive} has no {SPLITS[0]}/ folder (its top level: "
                     f"{', '.join(tops[:5]) or 'nothing'})")


def unpack(archive: Path, out_dir: Path, name: str, manifest: dict[str, str] | None, *,
           max_unpacked_bytes: int = MAX_UNPACKED_BYTES) -> dict[str, int]:
    """Extracts ``archive`` to ``out_dir/name`` all at once or not at all: every entry is checked
    before any is written, and the verified folder is renamed into place."""
    try:
        with zipfile.ZipFile(archive) as opened:
            members = opened.infolist()
            for info in members:
                _check_member(info, archive)
            unpacked_bytes = sum(info.file_size for info in members)
            if unpacked_bytes > max_unpacked_bytes:
                raise BadArchive(f"{archive} claims {unpacked_bytes / 2**30:.1f} GiB unpacked "
                                 f"(limit {max_unpacked_bytes / 2**30:.1f} GiB): refused as a "
                                 "decompression bomb")
            free = shutil.disk_usage(out_dir).free
            if unpacked_bytes > free:
                raise AgganError(f"{archive} unpacks to {unpacked_bytes / 2**30:.2f} GiB but "
                                 f"{out_dir} has {free / 2**30:.2f} GiB free")
            temp = staging_dir(out_dir / name)
            try:
                # zipfile reads no more than an entry's declared size, so the sum above bounds
                # what lands on disk even if the archive lies about its sizes.
                opened.extractall(temp)
                root = _dataset_root(temp, name, archive)
                try:
                    counts = verify_folder(root, manifest, shown_as=f"{archive}:{name}")
                except AgganError as problem:
                    raise BadArchive(f"{problem}; nothing was extracted") from None
                os.rename(root, out_dir / name)
            finally:
                shutil.rmtree(temp, ignore_errors=True)
    except (zipfile.BadZipFile, EOFError) as error:
        raise BadArchive(f"{archive} is not a complete zip archive ({error})") from None
    except OSError as error:  # the disk filled up, or the folder is not writable
        raise AgganError(f"cannot extract {archive} into {out_dir} "
                         f"({error.strerror or error}); nothing was kept") from None
    return counts


# --- the command ---------------------------------------------------------------------------------

def download_dataset(name: str, out_dir: Path, *, url: str | None = None,
                     manifest: dict[str, str] | None = None, timeout_s: float = 60.0,
                     progress: bool = True,
                     max_unpacked_bytes: int = MAX_UNPACKED_BYTES) -> tuple[Path, dict[str, int]]:
    """Downloads (or takes the local archive ``url``), extracts and verifies dataset ``name``
    into ``out_dir/name``; returns that folder and its file counts. A dataset already there is
    verified, never overwritten."""
    if url is None and name not in CATALOGUE:
        raise AgganError(f"unknown dataset {name!r}: one of {', '.join(CATALOGUE)} (or pass "
                         "--url)")
    target = out_dir / name
    if target.exists():
        try:
            return target, verify_folder(target, manifest)
        except AgganError as problem:
            raise AgganError(f"{target} exists and is not a complete {name} ({problem}); move "
                             "it away to download again") from None
    prepare_output_dir(out_dir, "--out")
    source = url or CATALOGUE[name].url
    local = Path(source.removeprefix("file://"))
    if "://" not in source or source.startswith("file://"):
        if not local.is_file():
            raise AgganError(f"--url {source}: no such file")
        return target, unpack(local, out_dir, name, manifest,
                              max_unpacked_bytes=max_unpacked_bytes)
    archive = out_dir / f"{name}.zip"
    if not archive.exists():  # a verified-size archive from an earlier run is reused
        try:
            fetch(source, archive, timeout_s=timeout_s, progress=progress)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise AgganError(_offline_message(source, reason, name, out_dir)) from None
    try:
        counts = unpack(archive, out_dir, name, manifest, max_unpacked_bytes=max_unpacked_bytes)
    except BadArchive:
        archive.unlink()
        raise
    archive.unlink()  # extracted and verified: the archive is no longer needed
    return target, counts
