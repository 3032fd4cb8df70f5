import numpy as np
import pytest
import torch
from nilearn.connectome import ConnectivityMeasure
from sklearn.covariance import EmpiricalCovariance

import brainmass_hf.connectivity as connectivity_module
from brainmass_hf.connectivity import (
    connectivity_view,
    connectivity_views,
    fc_upper_triangle,
    functional_connectivity,
    pad_time_series,
    pseudo_fc_time_mask,
    pseudo_functional_connectivity,
)
from brainmass_hf.validation import count_constant_rois
from conftest import tiny_config


def test_ledoit_wolf_fc_equals_nilearn_default_on_real_scans(devfmri_scans):
    scans = devfmri_scans[:10]
    expected = ConnectivityMeasure(kind="correlation").fit_transform(scans)
    ours = functional_connectivity(np.stack(scans), kind="ledoit_wolf").numpy()
    assert np.abs(ours - expected).max() < 1e-5


def test_ledoit_wolf_fc_equals_nilearn_on_raw_scale_419_parcel_scans():
    from brainmass_hf.data import load_dataset_auto, time_series_list
    from pathlib import Path

    slice_dir = Path(__file__).parent / "data" / "stages_slice"
    scans = time_series_list(load_dataset_auto(slice_dir, orientation="time_by_roi"))[:3]
    assert scans[0].shape[1] == 419 and np.abs(scans[0].mean()) > 10  # raw scale, not demeaned
    expected = ConnectivityMeasure(kind="correlation").fit_transform(scans)
    ours = functional_connectivity(np.stack(scans), kind="ledoit_wolf").numpy()
    assert np.abs(ours - expected).max() < 1e-5


def test_pearson_fc_equals_empirical_correlation_on_real_scans(devfmri_scans):
    scans = devfmri_scans[:5]
    expected = ConnectivityMeasure(kind="correlation", cov_estimator=EmpiricalCovariance()).fit_transform(scans)
    ours = functional_connectivity(np.stack(scans), kind="pearson").numpy()
    assert np.abs(ours - expected).max() < 1e-5
    assert np.abs(ours[0] - np.corrcoef(scans[0].T)).max() < 1e-5


def test_padded_variable_length_batch_equals_per_scan_fc(devfmri_scans):
    scans = [devfmri_scans[0][:77], devfmri_scans[1], devfmri_scans[2][:120]]
    padded, mask = pad_time_series(scans)
    assert padded.shape == (3, 168, 116) and mask.sum(1).tolist() == [77, 168, 120]
    batch = functional_connectivity(padded, mask, kind="ledoit_wolf")
    for i, scan in enumerate(scans):
        single = functional_connectivity(scan, kind="ledoit_wolf")
        assert torch.allclose(batch[i], single, atol=1e-5)


def test_constant_roi_gives_zero_correlations_not_nan_and_is_counted(devfmri_scans):
    scan = devfmri_scans[0].copy()
    scan[:, 7] = 3.0
    for kind in ("pearson", "ledoit_wolf"):
        fc = functional_connectivity(scan, kind=kind)
        assert torch.isfinite(fc).all()
        assert fc[7, torch.arange(116) != 7].abs().max() == 0
        assert fc[7, 7] == 1
    expected = ConnectivityMeasure(kind="correlation").fit_transform([scan])[0]
    assert np.abs(functional_connectivity(scan, kind="ledoit_wolf").numpy() - expected).max() < 1e-5
    assert int(count_constant_rois(scan)) == 1


def test_fisher_z_is_arctanh_of_the_off_diagonal(devfmri_scans):
    r = functional_connectivity(devfmri_scans[0])
    z = functional_connectivity(devfmri_scans[0], fisher_z=True)
    off = ~torch.eye(116, dtype=torch.bool)
    assert torch.allclose(z[off], torch.atanh(r[off]), atol=1e-4)
    assert (torch.diagonal(z) == 0).all()


def test_pfc_drops_exactly_int_ratio_of_valid_points_per_scan():
    lengths = torch.tensor([77, 168, 1200, 100])
    mask = torch.arange(1200)[None] < lengths[:, None]
    kept = pseudo_fc_time_mask(mask, drop_ratio=0.2)
    assert (kept & ~mask).sum() == 0  # never keeps padding
    assert kept.sum(1).tolist() == [77 - int(0.2 * 77), 168 - 33, 1200 - 240, 100 - 20]


def test_pfc_dropped_points_are_spread_not_one_block():
    mask = torch.ones(50, 168, dtype=torch.bool)
    kept = pseudo_fc_time_mask(mask, drop_ratio=0.2, generator=torch.Generator().manual_seed(0))
    dropped = ~kept
    # a contiguous block of 33 points has exactly one start; random drops have many
    starts = (dropped[:, 1:] & ~dropped[:, :-1]).sum(1) + dropped[:, 0].long()
    assert (starts > 5).all()


def test_two_pfc_views_differ_and_differ_from_full_fc(devfmri_scans):
    x = torch.tensor(np.stack(devfmri_scans[:4]))
    v1 = pseudo_functional_connectivity(x)
    v2 = pseudo_functional_connectivity(x)
    full = functional_connectivity(x)
    assert (v1 - v2).abs().amax(dim=(1, 2)).min() > 1e-3
    assert (v1 - full).abs().amax(dim=(1, 2)).min() > 1e-3


def test_pfc_is_reproducible_with_a_generator(devfmri_scans):
    x = torch.tensor(np.stack(devfmri_scans[:2]))
    a = pseudo_functional_connectivity(x, generator=torch.Generator().manual_seed(3))
    b = pseudo_functional_connectivity(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_crop_keeps_one_contiguous_window_of_crop_length():
    lengths = torch.tensor([168, 20])
    mask = torch.arange(168)[None] < lengths[:, None]
    kept = pseudo_fc_time_mask(mask, mask_way="crop", crop_length=30)
    assert kept.sum(1).tolist() == [30, 20]
    idx = kept[0].nonzero().flatten()
    assert (idx[1:] - idx[:-1] == 1).all()


def test_fc_with_fewer_than_two_points_is_an_error():
    with pytest.raises(ValueError, match="at least 2 valid time points"):
        functional_connectivity(torch.randn(1, 5), kind="pearson")


def test_unknown_fc_kind_is_an_error():
    with pytest.raises(ValueError, match="Unknown FC kind"):
        functional_connectivity(torch.randn(20, 5), kind="tangent")


def test_upper_triangle_has_r_choose_2_entries():
    fc = functional_connectivity(torch.randn(2, 30, 6))
    tri = fc_upper_triangle(fc)
    assert tri.shape == (2, 15)
    assert tri[0, 0] == fc[0, 0, 1]


@pytest.mark.parametrize("fill", [float("nan"), float("inf"), 1e30, 0.0])
@pytest.mark.parametrize("pfc", [False, True])
def test_values_in_the_padding_never_reach_the_fc(devfmri_scans, fill, pfc):
    scans = [devfmri_scans[0][:90], devfmri_scans[1]]
    padded, mask = pad_time_series(scans)
    dirty = padded.clone()
    dirty[0, 90:] = fill  # whatever a loader left after the scan's end
    settings = tiny_config()
    clean = connectivity_view(padded, mask, settings=settings, pfc=pfc, generator=torch.Generator().manual_seed(1))
    fc = connectivity_view(dirty, mask, settings=settings, pfc=pfc, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(fc).all()
    assert torch.equal(fc, clean)
    if not pfc:
        assert torch.allclose(fc[0], functional_connectivity(scans[0], kind="ledoit_wolf"), atol=1e-5)


def test_model_path_fc_has_no_host_synchronisation_or_graph_break(devfmri_scans):
    padded, mask = pad_time_series([devfmri_scans[0][:90], devfmri_scans[1]])
    settings = tiny_config()
    explanation = torch._dynamo.explain(lambda x, m: connectivity_view(x, m, settings=settings, pfc=True))(
        padded, mask
    )
    assert explanation.graph_break_count == 0, explanation.break_reasons
    explanation = torch._dynamo.explain(lambda x, m: connectivity_views(x, m, settings=settings))(padded, mask)
    assert explanation.graph_break_count == 0, explanation.break_reasons


def _dirty_padded_batch(devfmri_scans):
    """Three scans of 77-168 points (one with a constant ROI), NaN in the padding."""
    scans = [devfmri_scans[0][:77].copy(), devfmri_scans[1], devfmri_scans[2][:120] * 50.0 + 900.0]
    scans[0][:, 7] = 3.0
    padded, mask = pad_time_series(scans)
    padded[~mask] = float("nan")
    return padded, mask


@pytest.mark.parametrize("kind", ["ledoit_wolf", "pearson"])
@pytest.mark.parametrize("fisher_z", [False, True])
def test_views_together_equal_one_view_at_a_time_with_the_same_draws(devfmri_scans, kind, fisher_z):
    # the shared-product path must give what pseudo_fc_time_mask + the plain FC give, draw for draw
    padded, mask = _dirty_padded_batch(devfmri_scans)
    settings = tiny_config(fc_kind=kind, fisher_z=fisher_z)
    generator = torch.Generator().manual_seed(3)
    one_by_one = [connectivity_view(padded, mask, settings=settings, pfc=True, generator=generator) for _ in range(3)]
    together = connectivity_views(padded, mask, settings=settings, num_views=3,
                                  generator=torch.Generator().manual_seed(3))
    assert len(together) == 3
    for a, b in zip(one_by_one, together):
        assert torch.isfinite(b).all()
        assert (a - b).abs().max() < 1e-5
    assert (together[0] - together[1]).abs().max() > 1e-3  # independent draws
    # and each equals the FC of exactly the points its mask keeps (nilearn-equal per scan)
    kept = pseudo_fc_time_mask(mask, settings.pfc_drop_ratio, generator=torch.Generator().manual_seed(3))
    scan = padded[2][kept[2]]
    assert (together[0][2] - functional_connectivity(scan, kind=kind, fisher_z=fisher_z)).abs().max() < 1e-5


@pytest.mark.parametrize("mask_way", ["crop", "window"])
def test_views_of_other_mask_ways_are_one_view_at_a_time(devfmri_scans, mask_way):
    padded, mask = _dirty_padded_batch(devfmri_scans)
    settings = tiny_config(pfc_mask_way=mask_way, pfc_crop_length=40)
    generator = torch.Generator().manual_seed(5)
    expected = [connectivity_view(padded, mask, settings=settings, pfc=True, generator=generator) for _ in range(2)]
    got = connectivity_views(padded, mask, settings=settings, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(expected, got))


@pytest.mark.parametrize("kind, fisher_z", [("ledoit_wolf", False), ("pearson", True)])
def test_cpu_blocks_give_the_whole_batch_result(devfmri_scans, monkeypatch, kind, fisher_z):
    # on CPU the batch is cut into cache-sized blocks written straight into the output; the numbers must not depend
    # on the cut
    padded, mask = _dirty_padded_batch(devfmri_scans)
    settings = tiny_config(fc_kind=kind, fisher_z=fisher_z)
    whole_full = connectivity_view(padded, mask, settings=settings, pfc=False)
    whole_views = connectivity_views(padded, mask, settings=settings, generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(connectivity_module, "_CPU_BLOCK_VALUES", 1)  # one scan per block
    assert len(connectivity_module._batch_blocks(padded)) == 3
    blocked_full = connectivity_view(padded, mask, settings=settings, pfc=False)
    blocked_views = connectivity_views(padded, mask, settings=settings, generator=torch.Generator().manual_seed(2))
    assert (whole_full - blocked_full).abs().max() < 1e-6
    assert all((a - b).abs().max() < 1e-6 for a, b in zip(whole_views, blocked_views))


# ----------------------------------------------------------------------------------------------
# Tangent space (issue 19): the numbers of nilearn's ConnectivityMeasure(kind="tangent")
# ----------------------------------------------------------------------------------------------


def _ledoit_wolf_covariances(num_scans=12, num_rois=8, seed=0):
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((num_rois, num_rois))
    scans = [rng.standard_normal((int(rng.integers(20, 40)), num_rois)) @ mixing for _ in range(num_scans)]
    return scans, np.stack([LedoitWolf(store_precision=False).fit(x).covariance_ for x in scans])


def test_tangent_space_at_the_geometric_mean_equals_nilearn_tangent_to_1e_5():
    from sklearn.covariance import LedoitWolf

    from brainmass_hf.connectivity import spd_geometric_mean, sym_matrix_vector, tangent_space

    scans, covariances = _ledoit_wolf_covariances()
    measure = ConnectivityMeasure(kind="tangent", cov_estimator=LedoitWolf(store_precision=False), vectorize=True)
    expected = measure.fit_transform(scans)
    reference = spd_geometric_mean(covariances)
    np.testing.assert_allclose(reference.numpy(), measure.mean_, atol=1e-5)
    np.testing.assert_allclose(sym_matrix_vector(tangent_space(covariances, reference)).numpy(), expected, atol=1e-5)


def test_sym_matrix_vector_is_nilearns_vectorisation_and_vector_sym_matrix_inverts_it():
    from nilearn.connectome import sym_matrix_to_vec

    from brainmass_hf.connectivity import sym_matrix_vector, vector_sym_matrix

    _, covariances = _ledoit_wolf_covariances(num_scans=3, num_rois=5)
    vectors = sym_matrix_vector(torch.as_tensor(covariances))
    np.testing.assert_allclose(vectors.numpy(), sym_matrix_to_vec(covariances), atol=1e-12)
    np.testing.assert_allclose(vector_sym_matrix(vectors).numpy(), covariances, atol=1e-12)
    with pytest.raises(ValueError, match="not the lower triangle"):
        vector_sym_matrix(torch.zeros(3, 7))


def test_geometric_mean_of_commuting_matrices_is_the_elementwise_geometric_mean():
    from brainmass_hf.connectivity import spd_geometric_mean

    diagonals = torch.tensor([[1.0, 4.0], [4.0, 9.0], [16.0, 1.0]], dtype=torch.float64)
    mean = spd_geometric_mean(torch.diag_embed(diagonals))
    np.testing.assert_allclose(torch.diagonal(mean).numpy(), diagonals.log().mean(dim=0).exp().numpy(), rtol=1e-6)


def test_tangent_space_names_a_matrix_that_is_not_positive_definite():
    from brainmass_hf.connectivity import tangent_space

    matrices = torch.eye(3, dtype=torch.float64).repeat(4, 1, 1)
    matrices[2, 0, 0] = -1.0
    with pytest.raises(ValueError, match=r"positions \[2\] are not positive definite.*ledoit_wolf"):
        tangent_space(matrices, torch.eye(3))
