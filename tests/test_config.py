from pathlib import Path

import pytest
import yaml

from reidlab.config import Config, ConfigError, load_config, save_config


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_the_published_recipe():
    cfg = load_config()
    assert (cfg.data.batch_size, cfg.data.num_instances) == (64, 4)
    assert cfg.solver.lr == 3.5e-4 and cfg.solver.milestones == [40, 70]
    assert cfg.loss.label_smooth == 0.1 and cfg.loss.triplet_margin == 0.3
    assert cfg.data.train == ["synthetic"]


def test_yaml_and_overrides(tmp_path):
    text = "solver:\n  lr: 0.01\n  milestones: [5, 8]\nmodel:\n  backbone: resnet18\n"
    path = write(tmp_path, text)
    cfg = load_config(path, ["solver.lr=1e-3", "data.train=[market1501, dukemtmc]",
                             "test.flip=true", "model.pretrained=null"])
    assert cfg.solver.lr == 1e-3  # the override wins
    assert cfg.solver.milestones == [5, 8]
    assert cfg.model.backbone == "resnet18"
    assert cfg.data.train == ["market1501", "dukemtmc"]
    assert cfg.test.flip is True
    assert cfg.model.pretrained is None


def test_int_accepted_where_float_expected_and_tuple_converted():
    cfg = load_config(None, ["solver.lr=1", "augment.erasing_area=[0.1, 0.5]"])
    assert isinstance(cfg.solver.lr, float) and cfg.solver.lr == 1.0
    assert cfg.augment.erasing_area == (0.1, 0.5)


@pytest.mark.parametrize(
    "override, words",
    [
        ("solver.lrr=0.1", ["'solver.lrr'", "did you mean 'solver.lr'?"]),
        ("data.synthetic.idz=3", ["'data.synthetic.idz'", "did you mean 'data.synthetic.ids'?"]),
        ("slover.lr=0.1", ["slover", "'solver'"]),
        ("data.batch_size=64.5", ["data.batch_size", "integer", "64.5"]),
        ("solver.lr=fast", ["solver.lr", "number", "fast"]),
        ("test.flip=yes please", ["test.flip", "true or false"]),
        ("test.flip=yes", ["test.flip: expected true or false, got 'yes'"]),  # YAML 1.1's bool
        ("solver.amp=off", ["solver.amp: expected true or false, got 'off'"]),
        ("model.pooling=max", ["model.pooling", "'avg'", "'gem'"]),
        ("augment.erasing_area=[0.1]", ["augment.erasing_area: expected a list of 2 values, "
                                        "got [0.1]"]),
        ("augment.mean=[0.1, 0.2, 0.3, 0.4]", ["augment.mean", "3 values"]),
        ("seed=true", ["seed", "integer", "True"]),
        ("solver.lr=true", ["solver.lr", "number"]),
        ("data.train=[1]", ["data.train[0]", "string"]),
        ("data.roots=3", ["data.roots", "mapping"]),
        ("mode=lifelong", ["mode", "'lifelong'", "'supervised'"]),
        ("mode=adapt", ["mode 'adapt' needs an 'adapt' section"]),
        ("mode=continual", ["mode 'continual' needs a 'continual' section"]),
        # cross-field rules
        ("data.batch_size=62", ["data.batch_size 62", "data.num_instances 4"]),
        ("data.num_instances=0", ["data.num_instances", "at least 1"]),
        ("solver.milestones=[40, 40]", ["solver.milestones", "strictly increasing"]),
        ("solver.milestones=[0, 10]", ["solver.milestones", "positive"]),
        ("solver.epochs=0", ["solver.epochs", "at least 1"]),
        ("loss.weight_solver.nesterov=true", ["loss.weight_solver.nesterov", "momentum"]),
        ("solver.eval_period=0", ["solver.eval_period", "at least 1"]),
        ("solver.checkpoint_period=0", ["solver.checkpoint_period", "at least 1"]),
        # names, checked at load time
        ("model.backbone=resnet5", ["model.backbone", "'resnet5'", "did you mean 'resnet50'?"]),
        ("loss.name=softmax_tripet", ["loss.name", "'tripet'", "'triplet'"]),
        ("loss.name=arcface_triplet", ["loss.name", "arcface needs the softmax term"]),
        ("data.train=[market1501, duke]", ["data.train", "'duke'", "'dukemtmc'"]),
        ("data.test=[synthetic-d]", ["data.test", "'synthetic-d'"]),
        ("test.best_by=dukemtmc", ["test.best_by", "'dukemtmc'", "'mean_of_datasets'",
                                   "'synthetic-a'"]),
        ("solver", ["key.sub=value"]),
    ],
)
def test_errors_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    for word in words:
        assert word in str(err.value)


def test_yaml_files_read_only_true_and_false_as_booleans(tmp_path):
    assert load_config(write(tmp_path, "test:\n  flip: True\n")).test.flip is True
    with pytest.raises(ConfigError, match=r"test\.flip: expected true or false, got 'on'"):
        load_config(write(tmp_path, "test:\n  flip: on\n"))
    cfg = load_config(None, ["notebook.tricks=yes"])  # a string field keeps the word
    assert cfg.notebook.tricks == "yes"
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_error_names_the_file(tmp_path):
    path = write(tmp_path, "solver:\n  epoch: 3\n")
    expected = r"'solver\.epoch'; did you mean 'solver\.epochs'\?.*c\.yaml"
    with pytest.raises(ConfigError, match=expected):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = write(tmp_path, "solver: [1, 2\n", "bad.yaml")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)


def test_base_inheritance(tmp_path):
    write(tmp_path, "solver:\n  lr: 0.5\n  epochs: 7\n", "base.yaml")
    child = write(tmp_path, "_base_: base.yaml\nsolver:\n  epochs: 9\n", "child.yaml")
    cfg = load_config(child)
    assert (cfg.solver.lr, cfg.solver.epochs) == (0.5, 9)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["seed=3", "data.roots={market1501: /x}", "augment.pad=4"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["seed"] == 3
    assert isinstance(again, Config)


def test_every_shipped_config_loads():
    root = Path(__file__).resolve().parents[1] / "configs"
    # base.yaml and _*.yaml are shared parents, not runs (a continual base names no
    # distillation term of its own); each is loaded through the rows built on it
    files = sorted(p for p in root.rglob("*.yaml")
                   if p.name != "base.yaml" and not p.name.startswith("_"))
    assert files, "configs/ holds no YAML file"
    for path in files:
        load_config(path)


def test_per_dataset_roots_from_several_overrides_are_all_kept():
    cfg = load_config(None, ["data.roots.market1501=/a", "data.roots.dukemtmc=/b"])
    assert cfg.data.roots == {"market1501": "/a", "dukemtmc": "/b"}


def test_best_by_a_test_dataset_and_the_synthetic_aliases():
    cfg = load_config(None, ["data.train=[market1501, dukemtmc]", "test.best_by=dukemtmc"])
    assert cfg.test.best_by == "dukemtmc"
    assert load_config(None, ["test.best_by=synthetic-a"]).test.best_by == "synthetic-a"
    joint = ["data.train=[synthetic-a, synthetic-b, synthetic-c]", "test.best_by=synthetic-c"]
    assert load_config(None, joint).data.train == ["synthetic-a", "synthetic-b", "synthetic-c"]
    assert load_config().test.best_by == "mean_of_datasets" and load_config().mode == "supervised"


def test_a_short_run_keeps_milestones_beyond_its_epochs():
    assert load_config(None, ["solver.epochs=2"]).solver.milestones == [40, 70]
