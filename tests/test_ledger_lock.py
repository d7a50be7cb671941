"""One ledger per file, whatever name it is opened by (issue 18, point 5)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hedgerd.ledger import InventoryLedger, LedgerError
from tests.daemon_proc import daemon_env, free_port, running_daemon
from tests.test_ledger import make_fill

# Each alias makes a second name for ``tmp/real/hedgerd.sqlite`` and returns it.
Alias = Callable[[Path], Path]


def _symlink(tmp: Path) -> Path:
    alias = tmp / "alias.sqlite"
    alias.symlink_to(tmp / "real" / "hedgerd.sqlite")
    return alias


def _relative_symlink(tmp: Path) -> Path:
    alias = tmp / "real" / "alias.sqlite"
    alias.symlink_to("hedgerd.sqlite")
    return alias


def _hard_link(tmp: Path) -> Path:
    alias = tmp / "hard.sqlite"
    os.link(tmp / "real" / "hedgerd.sqlite", alias)
    return alias


def _symlinked_directory(tmp: Path) -> Path:
    (tmp / "dirlink").symlink_to(tmp / "real", target_is_directory=True)
    return tmp / "dirlink" / "hedgerd.sqlite"


def _relative_path(tmp: Path) -> Path:
    """Relative to the working directory, which the tests set to ``tmp``."""
    return Path("real/hedgerd.sqlite")


ALIASES = {"symlink": _symlink, "relative symlink": _relative_symlink, "hard link": _hard_link,
           "symlinked directory": _symlinked_directory, "relative path": _relative_path}


@pytest.fixture
def real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An existing ledger file at ``tmp/real/hedgerd.sqlite`` (absolute), cwd = ``tmp``."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "real" / "hedgerd.sqlite"
    path.parent.mkdir()
    path.touch()
    return path


@contextmanager
def ledger_in_another_process(path: Path) -> Iterator[None]:
    """A ledger held open on ``path`` by a child process until the block ends."""
    script = textwrap.dedent("""
        import asyncio, sys
        from hedgerd.ledger import InventoryLedger

        async def main() -> None:
            async with InventoryLedger(sys.argv[1]):
                print("open", flush=True)
                await asyncio.to_thread(sys.stdin.read)

        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "open\n", proc.stderr.read() if proc.stderr else line
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


def posix_locks_on(path: Path) -> list[str]:
    """The POSIX record locks the kernel lists on ``path``'s inode (SQLite's own locks)."""
    inode = os.stat(path).st_ino
    return [line.split(":", 1)[1].strip()  # without the list's ordinal, which others' locks shift
            for line in Path("/proc/locks").read_text().splitlines()
            if " POSIX " in line and f":{inode} " in line]


@pytest.mark.parametrize("alias", ALIASES.values(), ids=ALIASES.keys())
async def test_a_ledger_held_by_another_process_is_refused_under_another_name(real: Path, alias: Alias) -> None:
    other_name = alias(real.parent.parent)
    with ledger_in_another_process(real):
        second = InventoryLedger(other_name)
        with pytest.raises(LedgerError, match="in use by another process"):
            await second.open()
    # the lock went with the process: the same name now opens
    async with InventoryLedger(other_name) as ledger:
        assert await ledger.record_fill(make_fill("after"))


async def test_the_holder_may_be_the_alias_and_the_second_the_real_name(real: Path) -> None:
    alias = _symlink(real.parent.parent)
    with (ledger_in_another_process(alias),
          pytest.raises(LedgerError, match=r"in use by another process.*symlink or hard link")):
        await InventoryLedger(real).open()


@pytest.mark.parametrize("alias", ALIASES.values(), ids=ALIASES.keys())
async def test_a_second_instance_in_this_process_is_refused_and_leaves_the_first_intact(
        real: Path, alias: Alias) -> None:
    other_name = alias(real.parent.parent)
    fds_before = len(os.listdir("/proc/self/fd"))
    async with InventoryLedger(real) as first:
        await first.record_fill(make_fill("t1"))
        sqlite_locks = posix_locks_on(real)
        assert sqlite_locks, "an open WAL ledger holds a POSIX lock on its file"
        with pytest.raises(LedgerError, match=f"in use by the ledger opened as {real} in this process"):
            await InventoryLedger(other_name).open()
        # closing a descriptor of the file would have dropped SQLite's locks for the whole process
        assert posix_locks_on(real) == sqlite_locks
        assert await first.record_fill(make_fill("t2"))
    assert len(os.listdir("/proc/self/fd")) == fds_before, "the refused open's descriptor is closed with the first"
    async with InventoryLedger(other_name) as ledger:
        assert ledger.fill_count == 2


async def test_a_file_that_cannot_be_created_is_a_ledger_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").touch()
    with pytest.raises(LedgerError, match="cannot create"):
        await InventoryLedger(tmp_path / "a-file" / "ledger.sqlite").open()


def test_a_second_daemon_on_a_symlink_to_the_ledger_exits_naming_it(tmp_path: Path) -> None:
    first_dir = tmp_path / "first"
    with running_daemon(first_dir) as first:
        alias = tmp_path / "alias.sqlite"
        alias.symlink_to(first_dir / "ledger.sqlite")
        second_dir = tmp_path / "second"
        (second_dir / "secrets").mkdir(parents=True)
        env = daemon_env(second_dir, free_port(), {"HEDGERD_LEDGER__PATH": str(alias)})
        second = subprocess.run([sys.executable, "-m", "hedgerd.cli", "run"], env=env, cwd=second_dir,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stderr
        real = os.path.realpath(first_dir / "ledger.sqlite")
        assert f"ledger {alias} (-> {real}) is in use by another process" in second.stderr
        assert first.get("/healthz")[0] == 200
