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
