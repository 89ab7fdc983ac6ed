"""The learned change model: data readers, a few CPU training steps, registered tiled inference."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import skimage.io

torch = pytest.importorskip("torch", reason="PyTorch not installed (optional extra sitewatch[ml])")

from sitewatch.detect.base import MASKED, ChangeResult, pairwise_methods  # noqa: E402
from sitewatch.errors import SitewatchError  # noqa: E402
from sitewatch.learn import register_learned_method  # noqa: E402
from sitewatch.learn.data import (  # noqa: E402
    ChangePair,
    PatchSampler,
    read_levir,
    read_oscd_city,
    read_sztaki,
    read_xbd,
    resample,
)
from sitewatch.learn.infer import (  # noqa: E402
    input_statistics,
    load_model,
    predict_probability,
    predict_to_raster,
)
from sitewatch.learn.train import Recipe, dice_loss, fit, train  # noqa: E402


def _synthetic_pair(rng, size=48):
    """Textured RGB before; after = before with 1-3 bright squares (the change)."""
    before = np.clip(0.4 + 0.1 * rng.standard_normal((size, size, 3)), 0, 1)
    after = before + 0.02 * rng.standard_normal(before.shape)
    label = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 4)):
        r, c = rng.integers(0, size - 10, 2)
        after[r:r + 10, c:c + 10] = [0.95, 0.9, 0.85]
        label[r:r + 10, c:c + 10] = 255
    to_png = lambda x: (np.clip(x, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    return to_png(before), to_png(after), label


@pytest.fixture(scope="module")
def levir_dir(tmp_path_factory):
    """Six synthetic pairs in LEVIR-CD layout (A/, B/, label/ PNGs)."""
    root = tmp_path_factory.mktemp("levir")
    for folder in ("A", "B", "label"):
        (root / folder).mkdir()
    rng = np.random.default_rng(1)
    for k in range(6):
        before, after, label = _synthetic_pair(rng)
        skimage.io.imsave(root / "A" / f"tile{k}.png", before, check_contrast=False)
        skimage.io.imsave(root / "B" / f"tile{k}.png", after, check_contrast=False)
        skimage.io.imsave(root / "label" / f"tile{k}.png", label, check_contrast=False)
    return root


@pytest.fixture(scope="module")
def trained(levir_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    torch.set_num_threads(1)
    return train(levir_dir, "levir", out, epochs=2, steps_per_epoch=15, patch=32, batch=8,
                 lr=1e-2, seed=0, val_cities=["tile5"], device="cpu", widths=(8, 16, 32))


def test_training_lowers_the_loss_and_writes_weights_card_and_log(trained):
    losses = trained.step_losses
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert trained.weights.is_file() and trained.card.is_file()
    with trained.log.open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["patches_per_s"]) > 0
    card = trained.card.read_text()
    assert "tile5" in card and "--val-city tile5" in card and "| seed | 0 |" in card
    assert "--loss bce+dice" in card and "--widths 8,16,32" in card
    assert trained.train_pairs == ["tile0", "tile1", "tile2", "tile3", "tile4"]
    assert 0 <= trained.validation["f1"] <= 1


def test_training_is_reproducible_with_a_seed(levir_dir, trained, tmp_path):
    reported = []
    again = train(levir_dir, "levir", tmp_path, epochs=1, steps_per_epoch=2, patch=32, batch=8,
                  lr=1e-2, seed=0, val_cities=["tile5"], device="cpu", widths=(8, 16, 32),
                  on_progress=lambda message, fraction: reported.append((message, fraction)))
    # the learning-rate schedule depends on the run length: only the first two steps share it
    assert again.step_losses == pytest.approx(trained.step_losses[:2], rel=1e-5)
    assert [fraction for _, fraction in reported] == [0.5, 1.0]  # the CLI's progress bar
    assert reported[-1][0].startswith("Epoch 1/1, step 2/2")


def test_learned_method_gives_a_masked_change_result(trained, levir_dir, monkeypatch):
    monkeypatch.setenv("SITEWATCH_MODEL", str(trained.weights))
    assert register_learned_method()
    pair = read_levir(levir_dir)[5]
    valid = np.ones(pair.truth.shape, bool)
    valid[:5, :] = False
    result = pairwise_methods()["learned"](pair.after, pair.after, valid,
                                           ["red", "green", "blue"], 0.5)
    assert isinstance(result, ChangeResult) and result.method == "learned"
    assert result.score.shape == pair.truth.shape and result.score.dtype == np.float32
    assert result.change.dtype == np.uint8
    assert np.all(result.change[:5] == MASKED) and np.all(np.isnan(result.score[:5]))
    assert set(np.unique(result.change[5:])) <= {0, 1}
    assert result.parameters["model_sha256"] == load_model(trained.weights).sha256
    # identical dates: (almost) nothing changed
    assert np.mean(result.change[5:] == 1) < 0.05


def test_learned_method_finds_the_synthetic_change(trained, levir_dir, monkeypatch):
    monkeypatch.setenv("SITEWATCH_MODEL", str(trained.weights))
    register_learned_method()
    pair = read_levir(levir_dir)[5]
    result = pairwise_methods()["learned"](pair.before[::-1], pair.after[::-1],
                                           np.ones(pair.truth.shape, bool),
                                           ["blue", "green", "red"], 0.5)
    changed = pair.truth == 1
    assert result.score[changed].mean() > result.score[~changed].mean() + 0.3


def test_learned_method_without_a_model_says_how_to_train_one(monkeypatch, tmp_path):
    register_learned_method()
    monkeypatch.setenv("SITEWATCH_MODEL", str(tmp_path / "missing.pt"))
    image = np.zeros((3, 8, 8), np.float32)
    with pytest.raises(SitewatchError, match="not found"):
        pairwise_methods()["learned"](image, image, np.ones((8, 8), bool), ["red"] * 3, 0.5)
    monkeypatch.delenv("SITEWATCH_MODEL")
    from sitewatch.learn import infer

    monkeypatch.setattr(infer, "PACKAGED_MODELS", {})
    with pytest.raises(SitewatchError, match="sitewatch train"):
        infer.model_path(["red", "green", "blue"])


def test_learned_method_names_missing_bands(trained, monkeypatch):
    monkeypatch.setenv("SITEWATCH_MODEL", str(trained.weights))
    register_learned_method()
    image = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(SitewatchError, match="lacks blue"):
        pairwise_methods()["learned"](image, image, np.ones((8, 8), bool), ["red", "green"], 0.5)


def test_tiled_inference_equals_untiled(trained):
    model = load_model(trained.weights, device="cpu")
    rng = np.random.default_rng(3)
    before = rng.uniform(0.2, 0.6, (3, 150, 130)).astype(np.float32)
    after = before.copy()
    after[:, 40:70, 60:100] += 0.4
    valid = np.ones((150, 130), bool)
    kwargs = dict(mean=model.mean, std=model.std)
    whole = predict_probability(model.network, before, after, valid, tile=160, **kwargs)
    tiled = predict_probability(model.network, before, after, valid, tile=64, overlap=32,
                                **kwargs)
    assert whole.shape == tiled.shape == (150, 130)
    assert np.abs(whole - tiled).max() < 0.05
    assert np.abs(whole - tiled).mean() < 0.001


def test_patches_are_balanced_and_augmented_consistently(levir_dir):
    pairs = read_levir(levir_dir)
    sampler = PatchSampler(pairs, 16, seed=0, max_shift=0, gain_jitter=0, offset_jitter=0)
    before, after, truth = sampler.sample(64)
    assert before.shape == after.shape == (64, 3, 16, 16) and truth.shape == (64, 16, 16)
    centre_changed = truth[:, 8, 8] == 1
    assert 0.3 < centre_changed.mean() < 0.9
    # without jitter or shift, after differs from before only on changed pixels
    differs = np.abs(after - before).max(axis=1) > 0.1
    assert np.all(differs <= (truth == 1))


def test_source_balance_gives_every_dataset_the_same_share_of_patches():
    def flat(value, size, source):
        image = np.full((3, size, size), value, np.float32)
        return ChangePair(source, image, image, np.zeros((size, size), np.int8),
                          ["red", "green", "blue"], 1.0, source)

    pairs = [flat(0.1, 128, "large"), flat(0.9, 16, "small")]
    shares = {}
    for balance in ("pixels", "source"):
        sampler = PatchSampler(pairs, 16, seed=0, max_shift=0, gain_jitter=0, offset_jitter=0,
                               balance=balance)
        before, _, _ = sampler.sample(400)
        shares[balance] = float(np.mean(before[:, 0, 8, 8] > 0.5))
    assert shares["pixels"] < 0.05  # 256 / 16640 of the pixels
    assert 0.4 < shares["source"] < 0.6
    with pytest.raises(SitewatchError, match="unknown balance"):
        PatchSampler(pairs, 16, seed=0, balance="cities")


def test_hard_patches_centre_on_the_pixels_with_the_largest_loss(levir_dir):
    pairs = read_levir(levir_dir)[:2]
    sampler = PatchSampler(pairs, 16, seed=0, change_fraction=0.0, hard_fraction=1.0,
                           max_shift=0, gain_jitter=0, offset_jitter=0)
    hard = [np.zeros(p.truth.shape) for p in pairs]
    for loss in hard:
        loss[20, 30] = 5.0  # one hard pixel per pair
    sampler.set_hardness(hard)
    before, _, _ = sampler.sample(12)
    expected = [p.before[:, 20, 30] for p in pairs]
    for patch in before:  # the hard pixel is one of the 4 central ones (rotations, flips)
        centre = patch[:, 7:9, 7:9].reshape(3, 4).T
        assert any(np.allclose(c, e) for c in centre for e in expected)
    with pytest.raises(SitewatchError, match="sum to at most 1"):
        PatchSampler(pairs, 16, seed=0, change_fraction=0.6, hard_fraction=0.6)


def test_levir_reader_skips_unlabelled_and_mismatched_pairs(data_dir):
    with pytest.warns(UserWarning, match="test_113_0256"):
        pairs = read_levir(data_dir / "levir-cd-samples")
    assert len(pairs) == 11
    assert all(p.before.shape == (3, 256, 256) and p.truth.shape == (256, 256) for p in pairs)
    assert any((p.truth == 1).any() for p in pairs)


def test_sztaki_reader_gives_thirteen_labelled_pairs_at_one_and_a_half_metres(data_dir):
    pairs = read_sztaki(data_dir / "sztaki-airchange")
    assert len(pairs) == 13
    assert {p.name.split("-")[0] for p in pairs} == {"archieve", "szada", "tiszadob"}
    assert all(p.pixel_size_m == 1.5 and p.before.shape == p.after.shape for p in pairs)
    assert all(0 < (p.truth == 1).mean() < 0.5 for p in pairs)


def test_xbd_reader_labels_damaged_buildings_only(data_dir):
    pairs = read_xbd(data_dir / "xbd-joplin")
    assert [p.name for p in pairs] == ["joplin-tornado_00000000", "joplin-tornado_00000001"]
    for pair in pairs:
        assert pair.before.shape == (3, 1024, 1024)
        assert set(np.unique(pair.truth)) == {-1, 0, 1}
        # a tornado tile: most labelled building pixels are destroyed or heavily damaged,
        # and the ground between buildings is not labelled
        assert (pair.truth == 1).sum() > (pair.truth == 0).sum() / 4
        assert (pair.truth == -1).mean() > 0.5


def test_resampling_a_pair_keeps_its_ground_extent_and_labels():
    truth = np.zeros((60, 90), np.int8)
    truth[30:, 45:] = 1
    truth[:3] = -1
    image = np.random.default_rng(0).random((3, 60, 90)).astype(np.float32)
    pair = ChangePair("p", image, image, truth, ["red", "green", "blue"], 0.5)
    coarse = resample(pair, 1.5)
    assert coarse.truth.shape == (20, 30) and coarse.before.shape == (3, 20, 30)
    assert coarse.pixel_size_m == 1.5
    assert set(np.unique(coarse.truth)) == {-1, 0, 1}
    assert abs((coarse.truth == 1).mean() - 0.25) < 0.03
    assert resample(pair, 0.5) is pair


def test_learned_method_predicts_a_coarser_pair_at_the_models_pixel_size(trained, levir_dir,
                                                                           monkeypatch):
    monkeypatch.setenv("SITEWATCH_MODEL", str(trained.weights))
    register_learned_method()
    pair = read_levir(levir_dir)[5]
    fine = resample(pair, 0.25)  # what a 0.25 m image of the same ground would be
    result = pairwise_methods()["learned"](fine.before, fine.after,
                                           np.ones(fine.truth.shape, bool), fine.bands, 0.25)
    assert result.score.shape == fine.truth.shape
    changed = fine.truth == 1
    assert result.score[changed].mean() > result.score[~changed].mean() + 0.3


def test_default_hands_vhr_rgb_to_the_packaged_model_and_keeps_classic_evidence_elsewhere(
        trained, levir_dir, monkeypatch):
    from sitewatch.learn import infer

    register_learned_method()
    monkeypatch.delenv("SITEWATCH_MODEL", raising=False)
    monkeypatch.setattr(infer, "PACKAGED_MODELS", {("red", "green", "blue"): trained.weights})
    pair = read_levir(levir_dir)[5]
    valid = np.ones(pair.truth.shape, bool)
    default = pairwise_methods()["default"]
    vhr = default(pair.before, pair.after, valid, pair.bands, 0.5)
    assert vhr.parameters["evidence"] == ["learned RGB change model"]
    assert vhr.parameters["model"] == str(trained.weights.resolve())
    assert "called_fraction" in vhr.diagnostics
    changed = pair.truth == 1
    assert (vhr.change[changed] == 1).mean() > 0.5 > (vhr.change[~changed] == 1).mean()
    for result in (default(pair.before, pair.after, valid, pair.bands, 0.5, learned_vhr=False),
                   default(pair.before, pair.after, valid, pair.bands, 10.0)):
        assert "learned RGB change model" not in result.parameters["evidence"]
    monkeypatch.setattr(infer, "PACKAGED_MODELS", {})
    classic = default(pair.before, pair.after, valid, pair.bands, 0.5)
    assert "learned RGB change model" not in classic.parameters["evidence"]


def test_oscd_reader_aligns_dates_by_coordinates(data_dir):
    pair = read_oscd_city(data_dir / "oscd" / "saclay_e", bands=["B02", "B04", "B11"])
    assert pair.before.shape == pair.after.shape == (3, 639, 688)
    assert pair.truth.shape == (639, 688)
    assert set(np.unique(pair.truth)) == {0, 1}
    usable = pair.usable
    assert usable.mean() > 0.95
    # co-registered dates: the blue band correlates strongly across dates
    correlation = np.corrcoef(pair.before[0][usable], pair.after[0][usable])[0, 1]
    assert correlation > 0.6


def test_unknown_layout_and_validation_city_are_user_errors(levir_dir, tmp_path):
    with pytest.raises(SitewatchError, match="unknown dataset layout"):
        train(levir_dir, "spacenet", tmp_path, epochs=1)
    with pytest.raises(SitewatchError, match="nowhere"):
        train(levir_dir, "levir", tmp_path, epochs=1, val_cities=["nowhere"])


def test_dice_loss_is_zero_for_a_perfect_prediction_and_high_for_the_opposite():
    truth = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert dice_loss(torch.tensor([20.0, 20.0, -20.0, -20.0]), truth) < 1e-3
    assert dice_loss(torch.tensor([-20.0, -20.0, 20.0, 20.0]), truth) > 0.6


def test_dihedral_averaging_commutes_with_rotation(trained):
    model = load_model(trained.weights, device="cpu")
    rng = np.random.default_rng(4)
    before = rng.uniform(0.2, 0.6, (3, 40, 40)).astype(np.float32)
    after = before.copy()
    after[:, 5:15, 20:35] += 0.4
    valid = np.ones((40, 40), bool)
    kwargs = dict(mean=model.mean, std=model.std, tta=True)
    plain = predict_probability(model.network, before, after, valid, **kwargs)
    turned = predict_probability(model.network, np.rot90(before, 1, (1, 2)).copy(),
                                 np.rot90(after, 1, (1, 2)).copy(), valid, **kwargs)
    np.testing.assert_allclose(np.rot90(plain), turned, atol=1e-5)
    single = predict_probability(model.network, before, after, valid, mean=model.mean,
                                 std=model.std)
    assert not np.allclose(plain, single, atol=1e-5)


def test_fit_on_pairs_in_memory_rejects_an_unknown_loss(levir_dir, tmp_path):
    pairs = read_levir(levir_dir)
    with pytest.raises(SitewatchError, match="unknown loss"):
        fit(pairs, tmp_path, Recipe(loss="hinge"))


def test_predict_to_raster_streams_blocks_like_whole_image_inference(trained, tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    model = load_model(trained.weights, device="cpu")
    rng = np.random.default_rng(5)
    before = rng.uniform(0.2, 0.6, (3, 90, 110)).astype(np.float32)
    after = before.copy()
    after[:, 30:60, 40:80] += 0.3
    paths = []
    for name, image in (("before", before), ("after", after)):
        digital = np.round(image * 10_000).astype(np.uint16)
        digital[:, :4, :] = 0  # nodata rows
        path = tmp_path / f"{name}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=110, height=90, count=3,
                           dtype="uint16", nodata=0, crs="EPSG:32631",
                           transform=from_origin(500_000, 5_000_000, 10, 10)) as dst:
            dst.write(digital)
            dst.scales = (1e-4,) * 3
            dst.descriptions = ("blue", "green", "red")  # reversed: found by name
        paths.append(path)
    out = predict_to_raster(*paths, tmp_path / "out" / "p.tif", model, block=48, tile=64,
                            overlap=32)
    with rasterio.open(out) as src:
        probability = src.read(1)
        assert src.crs.to_epsg() == 32631 and float(src.tags()["threshold"]) == model.threshold
    assert np.isnan(probability[:4]).all() and np.isfinite(probability[4:]).all()
    valid = np.ones((90, 110), bool)
    valid[:4] = False
    mean, std = input_statistics(model, before[::-1], after[::-1], valid)
    whole = predict_probability(model.network, before[::-1], after[::-1], valid, mean=mean,
                                std=std, tile=128, tta=model.tta)
    # blocks see less context than the whole image: differences only near block edges
    assert np.abs(probability[4:] - whole[4:]).max() < 0.2
    assert np.abs(probability[4:] - whole[4:]).mean() < 0.01
    assert [p.name for p in out.parent.iterdir()] == ["p.tif"]


def test_date_normalisation_ignores_a_gain_and_offset_of_the_after_date(trained, levir_dir,
                                                                        monkeypatch):
    monkeypatch.setenv("SITEWATCH_MODEL", str(trained.weights))
    register_learned_method()
    assert load_model(trained.weights).normalise == "date"
    pair = read_levir(levir_dir)[5]
    valid = np.ones(pair.truth.shape, bool)
    method = pairwise_methods()["learned"]
    plain = method(pair.before, pair.after, valid, ["red", "green", "blue"], 0.5)
    brighter = method(pair.before, 1.3 * pair.after + 0.05, valid, ["red", "green", "blue"], 0.5)
    np.testing.assert_allclose(plain.score, brighter.score, atol=1e-4)


def test_the_shipped_vhr_weights_are_small_and_the_default_reads_rgb_with_them(data_dir,
                                                                                 monkeypatch):
    from sitewatch.learn import infer

    monkeypatch.delenv("SITEWATCH_MODEL", raising=False)
    path = infer.packaged_model(["red", "green", "blue"])
    assert path is not None and path.stat().st_size < 3_000_000
    assert path.with_suffix(".md").is_file()  # its model card, with the reproduce command
    model = load_model(path, device="cpu")
    assert model.bands == ["red", "green", "blue"] and model.pixel_size_m == 1.0
    pair = read_levir(data_dir / "levir-cd-samples")[0]
    valid = np.ones(pair.truth.shape, bool)
    result = pairwise_methods()["default"](pair.before, pair.after, valid, pair.bands, 0.5)
    assert result.parameters["evidence"] == ["learned RGB change model"]
    # the same image twice, with sensor noise: (almost) nothing is called
    rng = np.random.default_rng(0)
    noisy = np.clip(pair.before + 0.01 * rng.standard_normal(pair.before.shape), 0, 1)
    unchanged = pairwise_methods()["default"](pair.before, noisy.astype(np.float32), valid,
                                              pair.bands, 0.5)
    assert unchanged.diagnostics["called_fraction"] < 0.01
    assert unchanged.diagnostics["warnings"] == []


def test_the_learned_default_warns_when_it_calls_nothing_over_strong_darkening(data_dir,
                                                                              monkeypatch):
    """Burnt or collapsed ground: a third of a LEVIR tile darkened, nothing like the new
    buildings the model learned. The shipped model calls (almost) none of it and says so."""
    monkeypatch.delenv("SITEWATCH_MODEL", raising=False)
    pair = read_levir(data_dir / "levir-cd-samples")[0]
    valid = np.ones(pair.truth.shape, bool)
    burnt = pair.before.copy()
    burnt[:, : burnt.shape[1] // 3] *= 0.3
    result = pairwise_methods()["default"](pair.before, burnt, valid, pair.bands, 0.5)
    diagnostics = result.diagnostics
    assert diagnostics["strong_index_change_fraction"] > 0.2
    assert diagnostics["called_fraction"] < 0.02
    assert any("little change called where the evidence is strong" in w
               for w in diagnostics["warnings"])
