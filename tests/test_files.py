"""minigrad.files: the one atomic writer (checkpoints, run-folder files, the ids cache, generated kernels)."""

import os

import pytest

from minigrad.files import atomic_replacement, write_atomically


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["a.bin"]


def test_an_interrupted_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_replacement(target, durable=False) as file:
            file.write(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["a.bin"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_a_link_is_replaced_never_written_through(tmp_path):
    elsewhere = tmp_path / "notes.txt"
    elsewhere.write_bytes(b"mine")
    target = tmp_path / "run.json"
    target.symlink_to(elsewhere)
    write_atomically(target, b"{}")
    assert elsewhere.read_bytes() == b"mine"
    assert not target.is_symlink() and target.read_bytes() == b"{}"


def test_the_file_can_be_mapped_while_written(tmp_path):
    np = pytest.importorskip("numpy")
    target = tmp_path / "ids.bin"
    with atomic_replacement(target, durable=False) as file:
        ids = np.memmap(file, dtype=np.uint16, mode="w+", shape=(5,))
        ids[:] = np.arange(5)
        ids.flush()
        del ids
    assert np.fromfile(target, dtype=np.uint16).tolist() == [0, 1, 2, 3, 4]
