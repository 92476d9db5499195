"""Running a vendor tool: found on PATH, a short timeout, and a note in words instead of an exception."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

TIMEOUT_S = 5.0


@dataclass
class ToolResult:
    tool: str
    found: bool
    stdout: str = ""
    returncode: int | None = None
    note: str | None = None  # set when the tool is missing, timed out, or exited non-zero

    @property
    def ok(self) -> bool:
        return self.found and self.returncode == 0


def run_tool(argv: list[str], timeout: float = TIMEOUT_S) -> ToolResult:
    """Run ``argv`` (its first item looked up on PATH) and capture stdout; never raises for a missing,
    hung or failing tool — the returned ``note`` says what went wrong."""
    tool = argv[0]
    path = shutil.which(tool)
    if path is None:
        return ToolResult(tool, found=False, note=f"{tool} not found on PATH")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    try:
        proc = subprocess.Popen([path, *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, errors="replace", env=env,
                                start_new_session=True)
    except OSError as e:
        return ToolResult(tool, found=True, note=f"{tool} could not be started: {e}")
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out = ""
        try:
            out, _ = proc.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:  # stuck in the kernel (a wedged driver): leave it
            pass
        return ToolResult(tool, found=True, stdout=out or "", note=f"{tool} did not answer within {timeout:g} s")
    note = None
    if proc.returncode != 0:
        first = next((ln.strip() for ln in (err or out).splitlines() if ln.strip()), "")
        note = f"{' '.join([tool, *argv[1:2]])} exited with code {proc.returncode}" + (f": {first}" if first else "")
    return ToolResult(tool, found=True, stdout=out, returncode=proc.returncode, note=note)


def mib(value: float | int | None) -> int | None:
    return None if value is None else int(round(float(value) * 1024 * 1024))
