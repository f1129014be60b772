"""Atomic writes: all or nothing, and the same permissions a plain write would give."""

import json

import pytest

from guitar_distill.common.artifacts import atomic_path, write_json
from guitar_distill.common.config import apply_overrides, load_preset
from guitar_distill.common.errors import ToolkitError


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
    cfg = apply_overrides(
        load_preset("smoke"),
        ["teacher.max_epochs=5", "student.widths=[4, 8, 16]", "teacher.weights=none", "teacher.mixed_precision=true"],
    )
    assert cfg.teacher.max_epochs == 5 and cfg.student.widths == (4, 8, 16)
    assert cfg.teacher.weights == "none" and cfg.teacher.mixed_precision is True
    with pytest.raises(ToolkitError, match="unknown field 'max_epoch'"):
        apply_overrides(cfg, ["teacher.max_epoch=5"])
    # Values must have the field's type, checked before any work starts.
    assert apply_overrides(cfg, ["teacher.learning_rate=1"]).teacher.learning_rate == 1.0
    assert apply_overrides(cfg, ["student.mixed_precision=bfloat16"]).student.mixed_precision == "bfloat16"
    assert apply_overrides(cfg, ['student.corrupt=["blur", "jpeg"]']).student.corrupt == ("blur", "jpeg")
    for bad, expected in (
        ("teacher.max_epochs=abc", "expected int"),
        ("teacher.nesterov=1", "expected bool"),
        ("student.widths=8", "expected a list"),
        ("student.widths=[8, 'a']", r"student.widths\[1\]: expected int"),
        ("teacher.learning_rate=fast", "expected float"),
        ("teacher.mixed_precision=3", "mixed_precision = '3': use one of 'float16'"),
        ("teacher.optimizer=adam", "use one of 'sgd', 'adamw'"),
        ("teacher.phases=[{'from_epoch': 1, 'image_size': 32}]", "start at from_epoch = 0"),
        ("student.phases=[{'from_epoch': 0, 'image_size': 32}]", "student trains and ships at data.image_size"),
        ("nothing.at_all=1", "unknown field 'nothing'"),
    ):
        with pytest.raises(ToolkitError, match=expected):
            apply_overrides(cfg, [bad])
    with pytest.raises(ToolkitError, match="not found"):
        load_preset("no-such-preset")


def test_a_preset_with_a_typo_or_a_wrong_type_fails_naming_the_field(tmp_path):
    typo = tmp_path / "typo.toml"
    typo.write_text('base = "smoke"\n[teacher]\nmax_epoch = 3\n')
    with pytest.raises(ToolkitError, match=r"preset 'typo'.*teacher.*unknown field 'max_epoch'"):
        load_preset(str(typo))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('base = "smoke"\n[student]\nwidths = "wide"\n')
    with pytest.raises(ToolkitError, match="student.widths: expected a list"):
        load_preset(str(wrong))


def test_presets_inherit_and_state_only_their_changes(tmp_path):
    cpu, full = load_preset("cpu"), load_preset("full")
    assert cpu.name == "cpu" and cpu.data.image_size == 64 and full.data.image_size == 224
    assert cpu.data.split == full.data.split  # inherited whole
    assert cpu.teacher.momentum == full.teacher.momentum and cpu.teacher.schedule == "cosine"
    stretch = load_preset("stretch")  # two levels: stretch -> cpu -> full
    assert stretch.teacher.head == "avg" and stretch.teacher.batch_size == 64 and full.teacher.head == "flatten"
    demo = load_preset("demo")  # three levels: demo -> stretch -> cpu -> full
    assert demo.data.image_size == stretch.data.image_size == 112 and demo.teacher.zero_init_residual is True
    assert (demo.student.max_epochs, stretch.student.max_epochs, demo.distill.stored_epochs) == (30, 30, 4)
    assert (demo.student.mixed_precision, stretch.student.mixed_precision) == ("bfloat16", False)
    assert demo.student.widths == stretch.student.widths and demo.distill.temperature == full.distill.temperature
    assert demo.export.qat_steps_per_epoch == 40
    smoke = load_preset("smoke")
    assert smoke.data.split.counts == {"train": 6, "val": 2, "test": 2} and smoke.data.split.fractions is None
    loop = tmp_path / "loop.toml"
    loop.write_text(f'base = "{loop}"\n')
    with pytest.raises(ToolkitError, match="loops back"):
        load_preset(str(loop))


def test_a_config_round_trips_through_its_json(tmp_path):
    from guitar_distill.common.config import as_dict, read_config

    for name in ("grow", "smoke"):
        cfg = load_preset(name)
        write_json(tmp_path / "config.json", {**as_dict(cfg), "extended": []})
        assert read_config(tmp_path / "config.json") == cfg
    # A config written before a field existed reads it as its default.
    old = as_dict(load_preset("smoke"))
    del old["teacher"]["ema_momentum"], old["student"]["architecture"]
    write_json(tmp_path / "config.json", old)
    assert read_config(tmp_path / "config.json") == load_preset("smoke")


def test_precision_policy_falls_back_where_the_cpu_lacks_bfloat16(monkeypatch):
    from guitar_distill.common import devices

    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: False)
    policy, why = devices.precision_policy("bfloat16", accelerators=False)
    assert policy == "float32" and "no AVX512-BF16" in why
    assert devices.precision_policy("bfloat16", accelerators=True)[0] == "mixed_bfloat16"
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: True)
    assert devices.precision_policy("bfloat16", accelerators=False)[0] == "mixed_bfloat16"
    assert devices.precision_policy(True, False)[0] == "mixed_float16"
    assert devices.precision_policy(False, False)[0] == "float32"
    with pytest.raises(ToolkitError, match="mixed_precision 'int4'"):
        devices.precision_policy("int4", False)


def test_recipe_schedules_and_label_smoothing():
    from dataclasses import replace

    import numpy as np

    from guitar_distill.common.recipe import recipe_loss, recipe_optimizer

    cfg = replace(
        load_preset("full").teacher,
        learning_rate=0.1,
        decay=0.0,
        steps_per_epoch=10,
        max_epochs=5,
        schedule="cosine",
        warmup_epochs=1,
        weight_decay=1e-3,
    )
    opt = recipe_optimizer(cfg)
    schedule = opt._learning_rate
    assert float(schedule(0)) == pytest.approx(0.0, abs=1e-7)  # warmup starts at 0
    assert float(schedule(10)) == pytest.approx(0.1, rel=1e-5)  # peak after one epoch
    assert float(schedule(30)) == pytest.approx(0.05, rel=1e-4)  # half-way down the cosine
    assert float(schedule(50)) == pytest.approx(0.0, abs=1e-6)  # zero at max_epochs
    assert opt.weight_decay == pytest.approx(1e-3)
    legacy = recipe_optimizer(replace(cfg, schedule="inverse_time", decay=1e-2))._learning_rate
    assert float(legacy(100)) == pytest.approx(0.1 / 2)  # lr / (1 + decay * iterations)
    y, p = np.array([0, 1]), np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]], np.float32)
    plain = float(recipe_loss(replace(cfg, label_smoothing=0.0))(y, p))
    smooth = float(recipe_loss(replace(cfg, label_smoothing=0.3))(y, p))
    targets = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])  # 0.3 spread over 3 classes
    assert smooth == pytest.approx(float(np.mean(-(targets * np.log(p)).sum(1))), rel=1e-5)
    assert plain == pytest.approx(float(np.mean(-np.log([0.9, 0.8]))), rel=1e-5)


def test_a_run_may_grow_its_epoch_budget_and_nothing_else(tmp_path, capsys):
    from guitar_distill.common.resume import prepare_run_dir

    cfg = load_preset("smoke")
    prepare_run_dir(tmp_path, "teacher", cfg, False, keys=("data", "teacher"), grows="teacher")
    (tmp_path / "teacher" / "backup").mkdir()
    (tmp_path / "teacher" / "backup" / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    longer = apply_overrides(cfg, ["teacher.max_epochs=9", "teacher.patience=30"])
    prepare_run_dir(tmp_path, "teacher", longer, False, keys=("data", "teacher"), grows="teacher")
    assert "max_epochs 2 -> 9" in capsys.readouterr().out
    saved = json.loads((tmp_path / "teacher" / "config.json").read_text())
    assert saved["extended"] == [
        {"after_epoch": 2, "max_epochs": {"from": 2, "to": 9}, "patience": {"from": 20, "to": 30}}
    ]
    for changed, named in (
        (["teacher.max_epochs=5"], r"teacher.max_epochs \(9 -> 5: it may only grow\)"),
        (["teacher.learning_rate=0.5"], "teacher.learning_rate changed"),
        (["data.image_size=48"], "data.image_size changed"),
    ):
        with pytest.raises(ToolkitError, match=named):
            prepare_run_dir(
                tmp_path, "teacher", apply_overrides(longer, changed), False, keys=("data", "teacher"), grows="teacher"
            )
    prepare_run_dir(tmp_path, "teacher", apply_overrides(longer, []), False, keys=("data", "teacher"), grows="teacher")
    assert len(json.loads((tmp_path / "teacher" / "config.json").read_text())["extended"]) == 1
    # where a run started from and when this invocation stops are not what the run is: a resumed run restores its
    # own weights (a run carried through git starts from its carry on the next machine)
    moved = apply_overrides(longer, ["teacher.weights=runs/grow-teacher", "teacher.max_minutes=30"])
    prepare_run_dir(tmp_path, "teacher", moved, False, keys=("data", "teacher"), grows="teacher")


def test_distillation_may_grow_the_student_table_it_trains_from(tmp_path, capsys):
    """The distillation stage keeps [student], [distill] and [data]; its recipe table, [student], may grow."""
    from guitar_distill.common.resume import prepare_run_dir

    cfg = load_preset("smoke")
    keys = ("data", "student", "distill")
    prepare_run_dir(tmp_path, "distill", cfg, False, keys=keys, grows="student")
    longer = apply_overrides(cfg, ["student.max_epochs=6"])
    prepare_run_dir(tmp_path, "distill", longer, False, keys=keys, grows="student")
    assert "max_epochs 2 -> 6" in capsys.readouterr().out
    with pytest.raises(ToolkitError, match="distill.temperature changed"):
        prepare_run_dir(
            tmp_path, "distill", apply_overrides(longer, ["distill.temperature=2.0"]), False, keys, "student"
        )


def test_a_stage_refuses_inputs_made_with_another_preset(tmp_path):
    from guitar_distill.common.artifacts import write_json
    from guitar_distill.common.config import as_dict
    from guitar_distill.common.resume import check_upstream, prepare_run_dir

    write_json(tmp_path / "data" / "config.json", as_dict(load_preset("demo")))
    full = load_preset("full")
    with pytest.raises(
        ToolkitError,
        match=r"made with preset 'demo', whose \[data\] differs .* in: image_size.*"
        r"--preset demo",
    ):
        prepare_run_dir(tmp_path, "teacher", full, False, keys=("data", "teacher"), grows="teacher")
    assert not (tmp_path / "teacher" / "config.json").exists()
    demo = load_preset("demo")
    check_upstream(tmp_path, demo, {"data": ("data",)})
    prepare_run_dir(tmp_path, "teacher", demo, False, keys=("data", "teacher"), grows="teacher")
