"""Interpretation (issue 12): attention maps and rollout, ROI/edge importance, group statistics, atlases, figures,
``explain`` and ``brainmass explain``."""

from __future__ import annotations

from importlib import resources

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from brainmass_hf.atlases import ATLASES, atlas_table, roi_table  # noqa: E402
from brainmass_hf.configuration_brainmass import BrainMassConfig  # noqa: E402
from brainmass_hf.connectivity import functional_connectivity  # noqa: E402
from brainmass_hf.interpret import (  # noqa: E402
    attention_maps,
    attention_received,
    attention_rollout,
    edge_attributions,
    edge_permutation_importance,
    encoder_feature_function,
    explain,
    gradient_x_input,
    group_difference,
    hedges_g,
    integrated_gradients,
    interpretation_section,
    permutation_importance,
    plot_matrices,
    plot_roi_markers,
    plot_top_edges,
    plot_top_regions,
    probe_gradient_importance,
    probe_score_function,
    roi_importance,
    roi_values_image,
    top_edges,
)
from brainmass_hf.modeling_brainmass import BrainMassForConnectomeClassification, BrainMassModel  # noqa: E402

R, A, B = 8, 2, 5  # planted ROIs A and B of an 8-ROI atlas


def tiny_config(num_rois: int = R, **kwargs) -> BrainMassConfig:
    return BrainMassConfig.from_preset(
        "tiny", num_rois=num_rois, mrm_num_masked=2, mrc_num_masked=2, classifier_hidden_sizes=[16], **kwargs
    )


def planted_scans(n: int = 80, t: int = 60, rho: float = 0.7, seed: int = 0):
    """Random scans ``(n, t, R)``; in class 1 ROI B follows ROI A with correlation ``rho``, nothing else differs."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    ts = rng.standard_normal((n, t, R)).astype(np.float32)
    ones = labels == 1
    ts[ones, :, B] = rho * ts[ones, :, A] + np.sqrt(1 - rho**2) * ts[ones, :, B]
    return ts, labels


@pytest.fixture(scope="module")
def planted():
    ts, labels = planted_scans()
    fc = functional_connectivity(torch.from_numpy(ts)).numpy()
    return ts, fc, labels


@pytest.fixture(scope="module")
def fine_tuned(planted):
    """A tiny classifier fine-tuned on the planted FC (full batch, 60 Adam steps: ~2 s on one CPU thread)."""
    _, fc, labels = planted
    torch.manual_seed(0)
    model = BrainMassForConnectomeClassification(tiny_config(num_labels=2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(fc), torch.from_numpy(labels)
    model.train()
    for _ in range(60):
        optimizer.zero_grad()
        model(connectivity=x, labels=y).loss.backward()
        optimizer.step()
    return model.eval()


# ----------------------------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------------------------
def test_attention_rows_sum_to_one(planted):
    torch.manual_seed(0)
    model = BrainMassModel(tiny_config())
    maps = attention_maps(model, planted[1][:5])
    assert maps.shape == (5, model.config.num_hidden_layers, model.config.num_attention_heads, R, R)
    np.testing.assert_allclose(maps.sum(axis=-1), 1.0, atol=1e-5)
    assert (maps >= 0).all()


def test_attention_maps_of_an_sdpa_model_equal_those_of_the_same_weights_under_eager(planted):
    torch.manual_seed(0)
    sdpa = BrainMassModel(tiny_config(attn_implementation="sdpa"))
    eager = BrainMassModel(tiny_config(attn_implementation="eager"))
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.config._attn_implementation == "sdpa"
    np.testing.assert_allclose(attention_maps(sdpa, planted[1][:3]), attention_maps(eager, planted[1][:3]), atol=1e-6)


def test_rollout_of_one_layer_without_residual_is_its_head_mean_attention():
    rng = np.random.default_rng(0)
    attn = rng.random((4, 1, 3, R, R))
    attn /= attn.sum(-1, keepdims=True)
    np.testing.assert_allclose(attention_rollout(attn, residual=0.0), attn[:, 0].mean(axis=1), atol=1e-12)


def test_attention_received_averages_over_the_other_rois():
    maps = np.array([[0.5, 0.5, 0.0], [0.2, 0.2, 0.6], [0.1, 0.3, 0.6]])
    np.testing.assert_allclose(attention_received(maps), [(0.2 + 0.1) / 2, (0.5 + 0.3) / 2, (0.0 + 0.6) / 2])
    np.testing.assert_allclose(attention_received(maps, exclude_self=False), maps.mean(axis=0))


def test_rollout_composes_residual_adjusted_layers_in_order():
    rng = np.random.default_rng(1)
    attn = rng.random((2, 2, R, R))  # two layers, two heads
    attn /= attn.sum(-1, keepdims=True)
    eye = np.eye(R)
    first, second = (0.5 * attn[l].mean(0) + 0.5 * eye for l in range(2))
    rollout = attention_rollout(attn, residual=0.5)
    np.testing.assert_allclose(rollout, second @ first, atol=1e-12)
    np.testing.assert_allclose(rollout.sum(-1), 1.0, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# Attribution on a planted signal
# ----------------------------------------------------------------------------------------------------------------
def _top2_and_edge(importance, edges):
    return set(np.argsort(-importance)[:2].tolist()), top_edges(edges, 1)[0][:2]


def test_fine_tuned_classifier_attributions_find_the_planted_regions_and_edge(planted, fine_tuned):
    _, fc, labels = planted
    assert (fine_tuned(connectivity=torch.from_numpy(fc)).logits.argmax(-1).numpy() == labels).mean() > 0.9
    for attributions in (gradient_x_input(fine_tuned, fc), integrated_gradients(fine_tuned, fc, steps=16)):
        edges = edge_attributions(attributions)
        top2, edge = _top2_and_edge(roi_importance(edges).mean(axis=0), np.abs(edges).mean(axis=0))
        assert top2 == {A, B}
        assert edge == (A, B)


def test_integrated_gradients_are_complete_against_the_identity_baseline(planted, fine_tuned):
    fc = planted[1][:6]
    attributions = integrated_gradients(fine_tuned, fc, baseline="identity", steps=64)
    with torch.no_grad():
        logits = fine_tuned(connectivity=torch.from_numpy(np.concatenate([fc, np.eye(R)[None]]))).logits
    score = (logits[:, 1] - logits[:, 0]).numpy()
    np.testing.assert_allclose(attributions.sum(axis=(1, 2)), score[:-1] - score[-1], rtol=0.02, atol=0.02)


@pytest.mark.parametrize("features", ["raw_fc", "frozen_brainmass"])
def test_permutation_importance_finds_the_planted_regions_and_edge(features, planted, fine_tuned):
    _, fc, labels = planted
    kwargs = {} if features == "raw_fc" else {"feature_function": encoder_feature_function(fine_tuned)}
    rois = permutation_importance(fc, labels, n_splits=3, n_permutations=3, seed=0, **kwargs)
    assert rois.importance.shape == (3, R) and rois.units == list(range(R))
    assert set(np.argsort(-rois.mean)[:2].tolist()) == {A, B}
    assert rois.baseline_auc.min() > 0.9
    edges = edge_permutation_importance(fc, labels, n_splits=3, n_permutations=3, seed=0, **kwargs)
    assert len(edges.units) == R * (R - 1) // 2
    assert edges.units[int(np.argmax(edges.mean))] == (A, B)


@pytest.mark.parametrize("classifier", ["svm", "logreg"])
def test_probe_score_function_equals_the_fitted_decision_function(classifier):
    from brainmass_hf.evaluation import make_classifier

    rng = np.random.default_rng(0)
    features = rng.standard_normal((60, 20))
    labels = (features[:, 0] + 0.5 * rng.standard_normal(60) > 0).astype(int)
    probe = make_classifier(classifier).fit(features, labels)
    torch_score = probe_score_function(probe, torch.float64)(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(torch_score, probe.decision_function(features), atol=1e-10)


@pytest.mark.parametrize("classifier", ["svm", "logreg"])
def test_probe_gradient_importance_finds_the_planted_regions_and_edge(classifier, planted, fine_tuned):
    _, fc, labels = planted
    result = probe_gradient_importance(fine_tuned.base_model, fc, labels, classifier=classifier, n_splits=3, seed=0)
    assert result.importance.shape == (3, R) and result.baseline_auc.min() > 0.9
    assert set(np.argsort(-result.mean)[:2].tolist()) == {A, B}
    assert top_edges(result.edges, 1)[0][:2] == (A, B)
    assert all(p.requires_grad for p in fine_tuned.parameters())  # weights frozen only during the backward passes


def test_probe_gradient_importance_is_the_gradient_of_the_held_out_decision_score(planted, fine_tuned):
    """Finite differences on one FC entry of one held-out scan agree with the probe's gradient × input."""
    from brainmass_hf.evaluation import make_classifier

    _, fc, labels = planted
    train, test = np.arange(0, 80, 2), np.arange(1, 80, 2)
    encoder = fine_tuned.base_model
    features = encoder_feature_function(encoder)(fc)
    probe = make_classifier("svm").fit(features[train], labels[train])
    result = probe_gradient_importance(encoder, fc, labels, splits=[(train, test)])
    scan, eps = fc[test[:1]].astype(np.float64), 1e-3
    bumped = scan.copy()
    bumped[0, A, B] += eps
    bumped[0, B, A] += eps  # an edge is the entry and its mirror
    slope = (probe.decision_function(encoder_feature_function(encoder)(bumped.astype(np.float32)))
             - probe.decision_function(encoder_feature_function(encoder)(scan.astype(np.float32)))) / eps
    from brainmass_hf.interpret.attribution import _encoder_probe_score, _input_gradient

    grad = _input_gradient(_encoder_probe_score(encoder, probe), torch.from_numpy(fc[test[:1]])).numpy()
    np.testing.assert_allclose(grad[0, A, B] + grad[0, B, A], slope[0], rtol=0.05, atol=1e-3)
    assert result.importance.shape == (1, R)


def test_permutation_importance_rejects_more_than_two_classes(planted):
    _, fc, labels = planted
    with pytest.raises(ValueError, match="exactly two classes"):
        permutation_importance(fc, np.arange(len(labels)) % 3)


def test_symmetrised_edges_have_zero_diagonal_and_roi_sums():
    a = np.arange(9.0).reshape(3, 3)
    edges = edge_attributions(a)
    np.testing.assert_array_equal(edges, [[0, 4, 8], [4, 0, 12], [8, 12, 0]])
    np.testing.assert_array_equal(roi_importance(edges), [12, 16, 20])


# ----------------------------------------------------------------------------------------------------------------
# Group statistics
# ----------------------------------------------------------------------------------------------------------------
def test_shuffled_labels_give_fdr_discoveries_within_the_nominal_rate():
    """Under the global null BH at q = 0.05 rejects anything in at most 5 % of repeats; 40 repeats, so more than
    7 (P < 0.001 under Binomial(40, 0.05)) means the p-values or the correction are wrong."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal((40, 10))
    labels = np.repeat([0, 1], 20)
    with_discovery = sum(
        group_difference(values, rng.permutation(labels), n_permutations=999, seed=s)["significant"].any()
        for s in range(40)
    )
    assert with_discovery <= 7


def test_group_difference_finds_a_planted_difference_with_effect_size():
    rng = np.random.default_rng(1)
    values = rng.standard_normal((40, 10))
    labels = np.repeat([0, 1], 20)
    values[labels == 1, 3] += 1.5
    table = group_difference(values, labels, class_names=["control", "patient"], n_permutations=999)
    assert table["significant"].tolist() == [i == 3 for i in range(10)]
    assert table.loc[3, "hedges_g"] > 1.0
    assert table.loc[3, "q_value"] < 0.05 <= table.drop(index=3)["q_value"].min()
    assert {"mean_control", "mean_patient", "difference", "p_value"} <= set(table.columns)


def test_hedges_g_matches_its_definition():
    a, b = np.array([[1.0], [2.0], [3.0]]), np.array([[3.0], [4.0], [5.0], [6.0]])
    pooled = np.sqrt((2 * 1.0 + 3 * np.var([3, 4, 5, 6], ddof=1)) / 5)
    np.testing.assert_allclose(hedges_g(a, b), [(4.5 - 2.0) / pooled * (1 - 3 / (4 * 7 - 9))])


# ----------------------------------------------------------------------------------------------------------------
# Atlases
# ----------------------------------------------------------------------------------------------------------------
def test_aal116_names_and_label_values_line_up_with_the_bundled_cohort_columns():
    from brainmass_hf.data import bundled_roi_names, load_devfmri, time_series_list

    table = atlas_table("AAL-116")
    bundled = pd.read_csv(resources.files("brainmass_hf") / "bundled" / "devfmri_aal116" / "rois_aal116.csv")
    assert table["name"].tolist() == bundled_roi_names("aal116")
    assert table["label_value"].tolist() == bundled["atlas_label_value"].tolist()
    assert table["label_value"].iloc[0] == 2001 and table["label_value"].iloc[-1] == 9170
    assert time_series_list(load_devfmri().select([0]))[0].shape[1] == len(table)


def _hemisphere_from_name(name: str) -> str | None:
    if name.endswith("_L") or "_LH_" in name:
        return "L"
    if name.endswith("_R") or "_RH_" in name:
        return "R"
    return None


@pytest.mark.parametrize("atlas", sorted(ATLASES))
def test_atlas_coordinates_sit_in_the_hemisphere_their_names_say(atlas):
    """A row shifted by one would put left regions at x > 0: each L/R name must match the sign of x."""
    table = atlas_table(atlas)
    assert table[["x_mni", "y_mni", "z_mni"]].notna().all().all()
    side = table["name"].map(_hemisphere_from_name)
    assert (side == "L").sum() > 40 and (side == "R").sum() > 40
    assert (table.loc[side == "L", "x_mni"] < 0).all() and (table.loc[side == "R", "x_mni"] > 0).all()
    assert (table.loc[side.notna(), "hemisphere"] == side[side.notna()]).all()
    assert table["source"].notna().all()


def test_the_atlas_travels_with_a_saved_feature_extractor(tmp_path):
    from brainmass_hf.data import bundled_roi_names
    from brainmass_hf.processing_brainmass import BrainMassFeatureExtractor

    names = bundled_roi_names("aal116")
    config = BrainMassConfig.from_preset("tiny", num_rois=116, atlas_name="AAL-116", roi_names=names)
    BrainMassFeatureExtractor.from_config(config).save_pretrained(str(tmp_path))
    loaded = BrainMassFeatureExtractor.from_pretrained(str(tmp_path))
    table = roi_table(loaded.num_rois, loaded.atlas_name, loaded.roi_names)
    pd.testing.assert_frame_equal(table, atlas_table("aal116"))


def test_aal116_orbitofrontal_regions_use_their_own_coordinates():
    table = atlas_table("aal116").set_index("name")
    orbital = table.loc[["Frontal_Sup_Orb_L", "Frontal_Mid_Orb_R", "Frontal_Inf_Orb_L"]]
    assert (orbital["source"] == "aal_v1_volume+offset").all()
    assert (orbital["z_mni"] < 0).all() and (orbital["y_mni"] > 25).all()  # orbital = ventral, anterior


def test_roi_table_follows_the_checkpoint_roi_names_and_rejects_unknown_ones():
    names = ["Amygdala_R", "Precentral_L"]
    table = roi_table(2, "aal116", names)
    assert table["name"].tolist() == names and table["index0"].tolist() == [0, 1]
    assert table["label_value"].tolist() == [4202, 2001]
    with pytest.raises(ValueError, match="not in atlas"):
        roi_table(1, "aal116", ["Nowhere_L"])
    with pytest.raises(ValueError, match="No shipped atlas"):
        atlas_table("destrieux")


# ----------------------------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------------------------
def _labels_of(fig) -> set[str]:
    return {label for ax in fig.axes for label in (ax.get_xlabel(), ax.get_ylabel()) if label}


def _check_png(path):
    assert path.is_file() and path.stat().st_size > 10_000
    image = mpimg.imread(path)
    assert image.reshape(-1, image.shape[-1]).std(axis=0).max() > 0.05  # not a blank canvas


def _draw(kind: str, path):
    """One figure of each kind on the AAL-116 table with random values; returns (figure, labels it must carry)."""
    table = atlas_table("aal116")
    rng = np.random.default_rng(0)
    values = rng.random(len(table))
    edges = rng.standard_normal((len(table), len(table)))
    edges = edges + edges.T
    if kind == "glass_brain_markers":
        return plot_roi_markers(values, table, path, title="Importance", value_label="Drop in AUC"), {"Drop in AUC"}
    if kind == "glass_brain_edges":
        return plot_top_edges(edges, table, path, title="Edges", value_label="Hedges' g"), {"Hedges' g"}
    if kind == "matrices":
        panels = [("A", edges / 10, "r"), ("B", values[:, None] * values, "flow")]
        return plot_matrices(panels, table, path, title="FC"), {"r", "flow", "ROI (grouped by lobe)"}
    names = table["name"].tolist()
    fig = plot_top_regions(rng.random((5, len(table))), names, path, title="Top", value_label="AUC drop")
    return fig, {"AUC drop", "Region"}


@pytest.mark.parametrize("kind", ["glass_brain_markers", "glass_brain_edges", "matrices", "top_regions"])
def test_every_figure_is_written_with_title_and_labelled_axes_and_colour_bars(kind, tmp_path):
    fig, expected = _draw(kind, tmp_path / f"{kind}.png")
    _check_png(tmp_path / f"{kind}.png")
    assert expected <= _labels_of(fig)  # axis labels and colour-bar labels (a colour bar's label is its y label)
    assert fig.get_suptitle() or any(ax.get_title() for ax in fig.axes)


def test_matrices_are_ordered_by_lobe_with_lobe_ticks(tmp_path):
    table = atlas_table("aal116")
    fig = plot_matrices([("FC", np.eye(len(table)), "r")], table, tmp_path / "fc.png", title="FC")
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks[:2] == ["Central", "Frontal"] and "Cerebellum" in ticks and len(ticks) == 8


def test_glass_brain_plots_refuse_rois_without_coordinates(tmp_path):
    with pytest.raises(ValueError, match="no MNI coordinates"):
        plot_roi_markers(np.ones(3), roi_table(3), tmp_path / "m.png", title="t", value_label="v")


# ----------------------------------------------------------------------------------------------------------------
# explain / brainmass explain
# ----------------------------------------------------------------------------------------------------------------
def _planted_dataset(ts, labels):
    import datasets

    return datasets.Dataset.from_dict(
        {
            "time_series": list(ts),
            "label": labels.tolist(),
            "subject_id": [f"sub-{i:02d}" for i in range(len(labels))],
        }
    )


def test_explain_a_fine_tuned_classifier_writes_a_top_table_with_the_planted_regions(planted, fine_tuned, tmp_path):
    ts, _, labels = planted
    result = explain(fine_tuned, _planted_dataset(ts, labels), out_dir=tmp_path, ig_steps=8,
                     n_group_permutations=999, top_k=3)
    assert set(result.top["index0"].iloc[:2]) == {A, B}
    assert result.edges[0][:2] == (A, B)
    text = (tmp_path / "explain.md").read_text()
    assert "| 1 | ROI_" in text and "Hedges' g" in text and "q |" in text
    for key in ("roi_table", "edges", "importance_rows", "attention_stats", "top_regions", "fc", "attention"):
        assert result.files[key].is_file(), key
    assert "glass_brain" not in result.files  # no atlas: no coordinates to draw


def test_interpretation_section_links_files_relative_to_the_report_and_finds_the_planted_regions(
    planted, fine_tuned, tmp_path
):
    import re

    ts, _, labels = planted
    encoder = fine_tuned.base_model  # frozen features + SVM path
    text = interpretation_section(encoder, _planted_dataset(ts, labels), tmp_path, n_splits=2,
                                  n_group_permutations=999, top_k=2, level=2)
    assert text.startswith("## Interpretation")
    assert "### Top 2 regions" in text and "gradient × input for frozen BrainMass features + SVM" in text
    top = re.findall(r"^\| [12] \| (ROI_\d) \|", text, flags=re.M)
    assert set(top) == {f"ROI_{A}", f"ROI_{B}"}
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links and all((tmp_path / link).is_file() for link in links)
    assert all(link.startswith("interpretation/") for link in links)


def test_explain_with_permutation_importance_finds_the_planted_regions(planted, fine_tuned, tmp_path):
    ts, _, labels = planted
    result = explain(fine_tuned.base_model, _planted_dataset(ts, labels), out_dir=tmp_path, encoder_method="permutation",
                     n_splits=2, n_permutations=1, n_group_permutations=999, top_k=2, show_progress=False)
    assert set(result.top["index0"]) == {A, B} and "permutation importance" in result.method


def _label_atlas(tmp_path, label_values):
    """A synthetic 3D label image: region ``r`` is the 2-voxel-thick slab ``x = 2r, 2r + 1`` labelled
    ``label_values[r]``; one background slab of 0 at the end."""
    import nibabel as nib

    grid = np.zeros((2 * len(label_values) + 2, 3, 4), dtype=np.int16)
    for r, value in enumerate(label_values):
        grid[2 * r:2 * r + 2] = value
    path = tmp_path / "atlas.nii.gz"
    nib.Nifti1Image(grid, np.diag([2.0, 2.0, 2.0, 1.0])).to_filename(str(path))
    return path, grid


def test_roi_values_image_fills_each_region_with_its_value_by_label_value(tmp_path):
    path, grid = _label_atlas(tmp_path, [30, 10, 20])
    image = roi_values_image([1.0, 2.0, 3.0], path, label_values=[10, 20, 30])  # column 0 is label 10
    data = np.asarray(image.dataobj)
    assert data.shape == grid.shape and np.allclose(image.affine, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert (data[grid == 10] == 1.0).all() and (data[grid == 20] == 2.0).all() and (data[grid == 30] == 3.0).all()
    assert (data[grid == 0] == 0.0).all()
    unlabelled = np.asarray(roi_values_image([1.0, 2.0, 3.0], path).dataobj)  # label order: 10, 20, 30
    np.testing.assert_array_equal(unlabelled, data)


def test_roi_values_image_names_missing_labels_and_wrong_region_counts(tmp_path):
    from brainmass_hf.validation import BrainMassDataError

    path, _ = _label_atlas(tmp_path, [1, 2, 3])
    with pytest.raises(BrainMassDataError, match=r"label values \[7\] are absent"):
        roi_values_image([1.0, 2.0, 3.0], path, label_values=[1, 2, 7])
    with pytest.raises(BrainMassDataError, match="holds 3 regions but the model has 2"):
        roi_values_image([1.0, 2.0], path)


def test_explain_writes_the_roi_importance_as_a_nifti_image_in_the_atlas_space(planted, fine_tuned, tmp_path):
    import nibabel as nib

    ts, _, labels = planted
    path, grid = _label_atlas(tmp_path, list(range(1, R + 1)))
    result = explain(fine_tuned.base_model, _planted_dataset(ts, labels), out_dir=tmp_path / "out", atlas_image=path,
                     n_splits=2, n_group_permutations=999, top_k=2, show_progress=False)
    image = nib.load(str(result.files["nifti"]))
    table = result.table.set_index("index0")
    for r in range(R):
        np.testing.assert_allclose(np.asarray(image.dataobj)[grid == r + 1], table.loc[r, "importance"], rtol=1e-6)
    assert "roi_importance.nii.gz" in (tmp_path / "out" / "explain.md").read_text()


def test_saved_checkpoints_load_as_classifier_or_encoder_for_explain(fine_tuned, tmp_path):
    from brainmass_hf.interpret import load_model_for_explain

    fine_tuned.save_pretrained(str(tmp_path / "classifier"))
    fine_tuned.base_model.save_pretrained(str(tmp_path / "encoder"))
    assert type(load_model_for_explain(str(tmp_path / "classifier"))) is BrainMassForConnectomeClassification
    assert type(load_model_for_explain(str(tmp_path / "encoder"))) is BrainMassModel


def test_explain_names_the_column_when_it_does_not_hold_two_classes(planted, fine_tuned, tmp_path):
    ts, _, labels = planted
    data = _planted_dataset(ts, labels).add_column("site", [f"s{i % 3}" for i in range(len(labels))])
    with pytest.raises(ValueError, match="'site' has 3"):
        explain(fine_tuned, data, label_column="site", out_dir=tmp_path)


@pytest.mark.slow
def test_brainmass_explain_cli_on_the_bundled_cohort_writes_named_regions_and_brain_figures(tmp_path):
    from brainmass_hf.cli import main
    from brainmass_hf.data import bundled_roi_names, load_devfmri

    data = load_devfmri()
    data = data.select(list(range(12)) + list(range(130, 142)))  # 12 children, 12 adults
    data.save_to_disk(str(tmp_path / "data"))
    torch.manual_seed(0)
    config = BrainMassConfig.from_preset(
        "tiny", num_rois=116, atlas_name="AAL-116", roi_names=bundled_roi_names("aal116")
    )
    BrainMassModel(config).save_pretrained(str(tmp_path / "encoder"))
    out = tmp_path / "explain"
    status = main(["explain", "--model", str(tmp_path / "encoder"), "--data", str(tmp_path / "data"), "--out",
                   str(out), "--n-splits", "2", "--n-permutations", "1", "--n-group-permutations", "999"])
    assert status == 0
    text = (out / "explain.md").read_text()
    table = pd.read_csv(out / "roi_importance.csv")
    assert len(table) == 116 and table["rank"].tolist() == list(range(1, 117))
    first = table.iloc[0]
    assert f"| 1 | {first['name']} | {first['group']} |" in text
    assert {"x_mni", "q_value", "hedges_g", "importance_sd"} <= set(table.columns)
    for name in ("roi_importance_glass_brain.png", "top_edges_glass_brain.png", "fc_by_class.png",
                 "attention_rollout_by_class.png", "top_regions.png"):
        _check_png(out / name)
