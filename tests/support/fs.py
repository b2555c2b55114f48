"""Real, small filesystems for full-disk and read-only tests (tmpfs; ext4 on a loop device that the kernel turns
read-only under running processes), and a helper that fills one to the last byte."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path


class TinyFilesystem:
    """Mounts a tmpfs of `size_kib` on `path` (needs root or CAP_SYS_ADMIN, as in CI) and unmounts it."""

    def __init__(self, path: Path, size_kib: int = 1024) -> None:
        self.path = path
        self.size_kib = size_kib

    def __enter__(self) -> TinyFilesystem:
        self.path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_kib}k,mode=0700", "tmpfs", str(self.path)],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                "full-disk tests mount a tiny tmpfs and need root or CAP_SYS_ADMIN: " + result.stderr.strip()
            )
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=True)

    def remount(self, *, read_only: bool) -> None:
        """Make the filesystem read-only (EROFS for every write, root included) or writable again."""
        option = "ro" if read_only else "rw"
        subprocess.run(["mount", "-o", f"remount,{option}", str(self.path)], check=True, capture_output=True)


class Ext4Image:
    """A small ext4 filesystem on a loop device, mounted `errors=remount-ro`: the kernel turns it read-only
    under running processes (`trigger_fs_error`), as it does when a disk fails."""

    def __init__(self, path: Path, size_mib: int = 128) -> None:
        self.path, self.size_mib = path, size_mib
        self.image = path.with_suffix(".img")
        self.device = ""

    def __enter__(self) -> Ext4Image:
        self.path.mkdir(parents=True)
        with self.image.open("wb") as fh:
            fh.truncate(self.size_mib << 20)
        self.device = subprocess.run(["losetup", "-f", "--show", str(self.image)], check=True, capture_output=True,
                                     text=True).stdout.strip()
        subprocess.run(["mkfs.ext4", "-q", self.device], check=True, capture_output=True)
        self.mount()
        return self

    def mount(self) -> None:
        subprocess.run(["mount", "-o", "errors=remount-ro", self.device, str(self.path)], check=True,
                       capture_output=True)

    def make_read_only(self) -> None:
        name = Path(self.device).name
        Path(f"/sys/fs/ext4/{name}/trigger_fs_error").write_text("fault suite: read-only from now on")

    def repair(self) -> None:
        """What an operator does: unmount, check the filesystem, mount it again (writable)."""
        subprocess.run(["umount", str(self.path)], check=True, capture_output=True)
        subprocess.run(["e2fsck", "-fy", self.device], check=False, capture_output=True)
        self.mount()

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", self.device], check=False, capture_output=True)
        self.image.unlink(missing_ok=True)


def fill(directory: Path, name: str = "filler") -> Path:
    """Write a file in `directory` until the filesystem answers ENOSPC; returns it (unlink to free space)."""
    target = directory / name
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 1):  # big writes first, then squeeze out the last bytes
            chunk = b"\0" * size
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return target


def damage_pages(path: Path, first_page: int = 100, pages: int = 3, page_size: int = 4096) -> None:
    """Overwrite whole pages in the middle of a file with random bytes, as a bad disk block would."""
    with path.open("r+b") as fh:
        fh.seek(page_size * first_page)
        fh.write(os.urandom(page_size * pages))
