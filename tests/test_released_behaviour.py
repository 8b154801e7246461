"""What the released training code does in a round (METHOD.md, "Released behaviour"), checked on
real trained models: no dropout in the student, the post-ReLU relational map, the M-P2P head's
constant learning rate, and the settings that switch each back to the paper's description."""

import math

import pytest
import torch
import yaml

from conftest import read_record, run_rdd
from rdd import checkpoints, settings as settings_mod
from rdd.losses.objective import DistillObjective
from rdd.checkpoints import load_classifier, load_denoiser
from rdd.train.round import round_student


def _distill_settings(tiny, **overrides):
    record = yaml.safe_load(tiny["distill"].read_text())
    return settings_mod.resolve("distill", {**record, **overrides})


def _two_forwards(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(4, net.in_channels, net.img_resolution, net.img_resolution, generator=g)
    t = torch.full((4,), 3.0)
    with torch.no_grad():
        return net(z, t), net(z, t)


def test_round_student_has_no_active_dropout(teacher):
    net, kwargs, _ = load_denoiser(teacher)
    assert kwargs["dropout"] == 0.1  # the base teacher trained with dropout
    student, student_kwargs = round_student(net, kwargs, 0.0)
    assert student.training and student_kwargs["dropout"] == 0.0
    first, second = _two_forwards(student)
    assert torch.equal(first, second)
    # The teacher's dropout kept (dropout: null) is active in a training-mode student.
    kept, kept_kwargs = round_student(net, kwargs, None)
    assert kept_kwargs["dropout"] == 0.1
    first, second = _two_forwards(kept)
    assert not torch.equal(first, second)
    with pytest.raises(ValueError, match="dropout"):
        round_student(net, kwargs, 1.0)


def test_exported_student_records_the_rounds_dropout(teacher, classifier, tiny, tmp_path):
    out = tmp_path / "student.pt"
    run_rdd("distill", "--settings", tiny["distill"], "--set", "method=pd", "--set", "train.iters=2",
            "--teacher", teacher, "--out", out, "--resume-dir", tmp_path / "resume")
    assert load_denoiser(out)[1]["dropout"] == 0.0
    assert read_record(out)["student_dropout"] == 0.0


def _final_norm_output(classifier, images):
    """The classifier's last BatchNorm output, read by a forward hook (not through features())."""
    seen = []
    handle = classifier.final_norm.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    classifier(images)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("feature_map", ["post_relu", "pre_relu"])
def test_relational_map_is_post_relu_as_released(feature_map, teacher, classifier, tiny):
    net, _, grid = load_denoiser(teacher)
    clf = load_classifier(classifier)[0]
    settings = _distill_settings(tiny, feature_map=feature_map)
    objective = DistillObjective(net, grid, settings, clf, clf.num_features)
    images = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    F_map = _final_norm_output(clf, images)
    assert (F_map < 0).float().mean() > 0.2  # half the entries of F are negative
    relational, pooled = objective.features(images)
    expected = F_map.clamp(min=0) if feature_map == "post_relu" else F_map
    assert torch.allclose(relational, expected, atol=1e-6)
    # The pooled vector of CFD is avgpool(relu(F)) with either map.
    assert torch.allclose(pooled, F_map.clamp(min=0).mean(dim=(2, 3)), atol=1e-6)


@pytest.mark.parametrize("head_lr", ["constant", "cosine"])
def test_m_p2p_head_lr_is_constant_as_released(head_lr, teacher, classifier, tiny, tmp_path):
    iters = 4
    run_rdd("distill", "--settings", tiny["distill"], "--set", f"train.iters={iters}",
            "--set", f"m_p2p_head_lr={head_lr}", "--teacher", teacher, "--classifier", classifier,
            "--out", tmp_path / "s.pt", "--resume-dir", tmp_path / "resume")
    state = checkpoints.load_torch(tmp_path / "resume" / "resume.pt")
    base = read_record(tmp_path / "s.pt")["settings"]["train"]["lr"]
    last_factor = 0.5 * (1 + math.cos(math.pi * (iters - 1) / iters))  # the lr of the last step
    student_lr = state["optimizers"]["student"]["param_groups"][0]["lr"]
    head_lr_seen = state["optimizers"]["m_p2p_head"]["param_groups"][0]["lr"]
    assert student_lr == pytest.approx(base * last_factor, rel=1e-12)
    assert head_lr_seen == pytest.approx(base if head_lr == "constant" else base * last_factor, rel=1e-12)
    head = state["modules"]["m_p2p"]
    assert "head.0.bias" not in head and "head.3.bias" not in head  # bias-free 1x1 convolutions


@pytest.mark.parametrize("key,value", [("feature_map", "relu"), ("m_p2p_enqueue", "rows"),
                                       ("m_p2p_wrap", "ring"), ("m_p2p_anchors", "random"),
                                       ("m_p2p_head_lr", "step"), ("classifier_input", "normalised"),
                                       ("is_p2p_group_size", 0), ("is_p2p_group_size", 2.5)])
def test_released_behaviour_settings_reject_unknown_values(key, value):
    with pytest.raises(settings_mod.SettingsError, match=key):
        settings_mod.resolve("distill", {key: value})


@pytest.mark.parametrize("classifier_input", ["raw", "as_trained"])
def test_classifier_is_fed_raw_images_as_released(classifier_input, teacher, classifier, tiny):
    net, _, grid = load_denoiser(teacher)
    clf = load_classifier(classifier)[0]
    clf.input_norm = {"mean": [0.2860], "std": [0.3530]}  # as if trained on mean/std-normalised inputs
    settings = _distill_settings(tiny, classifier_input=classifier_input, feature_map="pre_relu")
    objective = DistillObjective(net, grid, settings, clf, clf.num_features)
    images = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    fed = images if classifier_input == "raw" else ((images + 1) / 2 - 0.2860) / 0.3530
    assert torch.allclose(objective.features(images)[0], _final_norm_output(clf, fed), atol=1e-5)


@pytest.mark.parametrize("classifier_input", ["raw", "as_trained"])
def test_dataset_terms_read_the_classifiers_logits_of_the_students_x0(classifier_input, teacher, classifier, tiny):
    """RCFD's alpha * (beta * entropy + (1 - beta) * diversity) on the logits of the student's x0, fed
    to the classifier like the CFD features (raw [-1, 1] as released)."""
    net, kwargs, grid = load_denoiser(teacher)
    clf = load_classifier(classifier)[0]
    clf.input_norm = {"mean": [0.2860], "std": [0.3530]}
    alpha, beta = 0.3, 0.25
    settings = _distill_settings(tiny, method="rcfd", classifier_input=classifier_input,
                                 weights={"entropy": alpha * beta, "diversity": alpha * (1 - beta)})
    objective = DistillObjective(net, grid, settings, clf, clf.num_features)
    student = round_student(net, kwargs, 0.0)[0]
    seen = []
    handle = student.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    images = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    torch.manual_seed(0)
    total, terms = objective(student, images)
    handle.remove()
    x0 = seen[0] if classifier_input == "raw" else ((seen[0] + 1) / 2 - 0.2860) / 0.3530
    with torch.no_grad():
        p = torch.softmax(clf(x0).double(), dim=1)
    entropy = -(p * p.log()).sum(dim=1).mean().item()
    p_mean = p.mean(dim=0)
    diversity = (p_mean * p_mean.log()).sum().item()
    assert terms["entropy"] == pytest.approx(entropy, rel=1e-4)
    assert terms["diversity"] == pytest.approx(diversity, rel=1e-4)
    assert total.item() == pytest.approx(terms["cfd"] + alpha * (beta * entropy + (1 - beta) * diversity), rel=1e-4)
