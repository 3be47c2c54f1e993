"""syncos_jax.backbones.weights_folder.atomic_folder: all or nothing, and nothing left behind on failure."""

import os

import pytest

from syncos_jax.backbones.weights_folder import atomic_folder


def test_success_renames_the_temporary_folder_into_place(tmp_path):
    dst = tmp_path / "a" / "b" / "dst"
    with atomic_folder(str(dst)) as tmp:
        open(os.path.join(tmp, "x.txt"), "w").write("x")
        assert not dst.exists()  # nothing at DST until the block succeeds
    assert sorted(os.listdir(dst)) == ["x.txt"] and sorted(os.listdir(dst.parent)) == ["dst"]


def test_failure_leaves_no_temporary_folder_and_no_parent_it_created(tmp_path):
    (tmp_path / "keep").mkdir()
    dst = tmp_path / "keep" / "new1" / "new2" / "dst"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_folder(str(dst)) as tmp:
            open(os.path.join(tmp, "x.txt"), "w").write("x")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path / "keep") == []  # new1/new2 made by the call are gone; keep/ was there before


def test_a_failure_to_make_the_temporary_folder_leaves_no_parent_it_created(tmp_path):
    dst = tmp_path / "new1" / "new2" / ("d" * 250)  # a legal name; ".NAME.tmp-XXXX" next to it is too long
    with pytest.raises(OSError):
        with atomic_folder(str(dst)):
            raise AssertionError("not reached")
    assert os.listdir(tmp_path) == []


def test_failure_keeps_an_existing_empty_dst_and_a_parent_that_gained_other_files(tmp_path):
    dst = tmp_path / "dst"
    dst.mkdir()
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(str(dst)):
            raise KeyboardInterrupt
    assert dst.is_dir() and os.listdir(dst) == [] and os.listdir(tmp_path) == ["dst"]
    nested = tmp_path / "made" / "dst"
    with pytest.raises(RuntimeError):
        with atomic_folder(str(nested)):
            open(tmp_path / "made" / "other.txt", "w").write("someone else's")
            raise RuntimeError
    assert os.listdir(tmp_path / "made") == ["other.txt"]  # a created parent is removed only while empty


def test_a_non_empty_dst_is_refused_before_anything_is_written(tmp_path):
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "old").write_text("old")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        with atomic_folder(str(dst)):
            raise AssertionError("not reached")
    assert os.listdir(tmp_path) == ["dst"] and os.listdir(dst) == ["old"]
