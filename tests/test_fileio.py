import pytest

from dnahnet import fileio


def test_write_yaml_is_readable_and_leaves_no_temporary(tmp_path):
    import yaml

    path = tmp_path / "sub" / "c.yaml"
    data = {"b": [1, 2], "a": {"k": "v"}}
    fileio.write_yaml(path, data)
    assert yaml.safe_load(path.read_text()) == data
    assert path.read_text().startswith("b:")  # insertion order kept, not sorted
    assert [p.name for p in path.parent.iterdir()] == ["c.yaml"]


def test_a_failed_write_keeps_the_old_content_and_no_temporary(tmp_path):
    path = tmp_path / "x.txt"
    fileio.atomic_write_text(path, "old")

    with pytest.raises(TypeError):  # the write itself fails (not str) after the temporary file exists
        fileio.atomic_write_text(path, 12345)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_atomic_savefig_writes_the_format_of_the_suffix_and_leaves_no_temporary(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fileio.atomic_savefig(fig, tmp_path / "f.png", dpi=50)
    fileio.atomic_savefig(fig, tmp_path / "f.pdf")
    plt.close(fig)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_have_the_mode_the_umask_gives(tmp_path, umask):
    """0666 & ~umask, what `open(path, "w")` gives (mkstemp's temporary files are 0600, issue 25)."""
    import os
    import stat

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    old = os.umask(umask)
    try:
        fileio.atomic_write_text(tmp_path / "a.txt", "x")
        fileio.write_yaml(tmp_path / "b.yaml", {"k": 1})
        fig = plt.figure()
        fileio.atomic_savefig(fig, tmp_path / "c.png")
        plt.close(fig)
        with open(tmp_path / "reference.txt", "w") as fh:  # the independent reference: plain open
            fh.write("x")
    finally:
        os.umask(old)
    want = stat.S_IMODE((tmp_path / "reference.txt").stat().st_mode)
    assert want == 0o666 & ~umask
    for name in ("a.txt", "b.yaml", "c.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


def test_a_failed_write_names_the_target_not_the_temporary(tmp_path, monkeypatch):
    """A full disk surfaces as ENOSPC from the temporary file's write; the error names the file the caller asked
    for (the temporary is gone by then)."""
    import errno
    import os

    real = fileio._temp_file

    def temp_file_on_a_full_disk(path):
        fd, name = real(path)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name  # every write: ENOSPC (the device itself is not touched)

    monkeypatch.setattr(fileio, "_temp_file", temp_file_on_a_full_disk)
    with pytest.raises(OSError) as info:
        fileio.atomic_write_text(tmp_path / "result.json", "x" * 100_000)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "result.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
