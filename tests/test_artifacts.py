"""Atomic writes: all or nothing, and the same permissions a plain write would give."""
import pytest

from common.artifacts import atomic_path, write_json
from common.config import apply_overrides, load_preset


def test_failed_write_leaves_the_old_file_and_no_temporaries(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_files_have_plain_file_permissions(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = write_json(tmp_path / "atomic.json", {})
    assert atomic.stat().st_mode == plain.stat().st_mode


def test_overrides_parse_values_and_reject_unknown_fields():
    cfg = apply_overrides(load_preset("smoke"), ["teacher.max_epochs=5", "student.widths=[4, 8, 16]",
                                                  "teacher.weights=none", "teacher.mixed_precision=true"])
    assert cfg["teacher"]["max_epochs"] == 5 and cfg["student"]["widths"] == [4, 8, 16]
    assert cfg["teacher"]["weights"] is None and cfg["teacher"]["mixed_precision"] is True
    with pytest.raises(SystemExit, match="unknown field 'max_epoch'"):
        apply_overrides(cfg, ["teacher.max_epoch=5"])
    with pytest.raises(SystemExit, match="not found"):
        load_preset("no-such-preset")
