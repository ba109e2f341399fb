"""SSG's part features (shapes, halves of the feature map, the global one equal to the test
feature) and the part task's triplet terms with their own labels."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from reidlab.adapt.parts import PartTask, extract_part_features, split_halves
from reidlab.config import LossConfig, ModelConfig
from reidlab.engine.evaluator import extract_features
from reidlab.engine.task import Batch
from reidlab.losses.objective import build_objective
from reidlab.losses.triplet import TripletLoss
from reidlab.models.build import build_model


def tiny_model(classes=0):
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone="resnet18", last_stride=1), classes).eval()


def loader(n=6):
    images = torch.randn(n, 3, 64, 32, generator=torch.Generator().manual_seed(1))
    return DataLoader(TensorDataset(images, torch.zeros(n), torch.zeros(n), torch.arange(n)),
                      batch_size=4)


def test_part_features_shapes_and_halves():
    model, dl = tiny_model(), loader()
    feats = extract_part_features(model, dl, torch.device("cpu"), flip=False)
    assert set(feats) == {"global", "upper", "lower"}
    for f in feats.values():
        assert f.shape == (6, 512)
        assert torch.allclose(f.norm(dim=1), torch.ones(6), atol=1e-5)
    images = next(iter(dl))[0]
    with torch.no_grad():
        fmap = model.backbone(images)  # (4, 512, 4, 2) at 64x32, last stride 1
        assert fmap.shape[2] == 4
        upper = F.normalize(fmap[:, :, :2].mean((2, 3)), dim=1)
        lower = F.normalize(fmap[:, :, 2:].mean((2, 3)), dim=1)
    assert torch.allclose(feats["upper"][:4], upper, atol=1e-5)
    assert torch.allclose(feats["lower"][:4], lower, atol=1e-5)


def test_global_part_is_the_test_feature_with_and_without_flip():
    model, dl = tiny_model(), loader()
    for flip in (False, True):
        parts = extract_part_features(model, dl, torch.device("cpu"), parts=["global"], flip=flip)
        test = extract_features(model, dl, torch.device("cpu"), flip=flip, desc=None)
        assert torch.allclose(parts["global"], test.feats, atol=1e-5)


def test_odd_heights_split_floor_up():
    upper, lower = split_halves(torch.zeros(1, 2, 5, 3))
    assert upper.shape[2] == 2 and lower.shape[2] == 3


def test_part_terms_use_their_own_labels_and_skip_unclustered_images():
    model = tiny_model().train()
    loss_cfg = LossConfig(name="triplet")
    triplet = TripletLoss(margin=0.3)
    upper = torch.tensor([0, 0, 1, 1, -1, -1, 2, 2])
    task = PartTask(model, build_objective(loss_cfg, 4, model.feat_dim), {"upper": upper},
                    triplet, part_weight=0.5)
    images = torch.randn(4, 3, 64, 32, generator=torch.Generator().manual_seed(2))
    index = torch.tensor([0, 1, 4, 5])  # records 4 and 5 are unclustered in the upper part
    pids = torch.tensor([3, 3, 1, 1])
    out = task(Batch(images, {"pid": pids}, torch.zeros(4), index))
    with torch.no_grad():
        fmap = model.backbone(images)
        up = fmap[:, :, :2].mean((2, 3))
        expected_upper = triplet(up[:2], torch.tensor([0, 0])).loss
        expected_global = triplet(fmap.mean((2, 3)), pids).loss
    assert torch.allclose(out.terms["triplet_upper"], expected_upper, atol=1e-5)
    assert torch.allclose(out.terms["triplet"], expected_global, atol=1e-5)
    assert torch.allclose(out.loss, expected_global + 0.5 * expected_upper, atol=1e-5)
    assert task.log_keys() == ["loss", "triplet", "triplet_upper"]
