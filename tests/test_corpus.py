"""Several cohorts as one pretraining corpus (`pretraining_corpus`, `brainmass pretrain --data a,b`)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainmass_hf.cli import main
from brainmass_hf.data import BrainMassDataError, load_devfmri, pretraining_corpus, select_sites
from conftest import TINY_OVERRIDES

SHARED_ABIDE = Path(__file__).resolve().parents[2] / "shared" / "data" / "abide1_aal116"


def _cohort(folder: Path, prefix: str, num_scans: int = 6, num_rois: int = 116, num_timepoints: int = 40) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(prefix))
    for i in range(num_scans):
        scan = rng.normal(size=(num_timepoints + i, num_rois)).astype("float32")  # lengths differ: orientation is clear
        np.save(folder / f"{prefix}{i:03d}.npy", scan)
    pd.DataFrame({"subject_id": [f"{prefix}{i:03d}" for i in range(num_scans)]}).to_csv(folder / "subjects.csv", index=False)
    return folder


def test_corpus_concatenates_sources_in_order_keeping_ids_and_scans(tmp_path):
    folder = _cohort(tmp_path / "a", "a")
    corpus = pretraining_corpus([str(folder), "devfmri"])
    dev = load_devfmri()
    assert len(corpus) == 6 + len(dev)
    assert corpus.column_names == ["subject_id", "time_series"]
    assert corpus["subject_id"][:6] == [f"a{i:03d}" for i in range(6)]
    np.testing.assert_array_equal(np.asarray(corpus[6]["time_series"]), np.asarray(dev[0]["time_series"]))


def _sited_cohort(folder: Path, sites=("A", "A", "B", "B", "C", "C")) -> Path:
    _cohort(folder, "x", num_scans=len(sites))
    table = pd.read_csv(folder / "subjects.csv").assign(site=list(sites))
    table.to_csv(folder / "subjects.csv", index=False)
    return folder


def test_corpus_exclude_sites_leaves_out_every_scan_of_those_sites(tmp_path):
    folder = _sited_cohort(tmp_path / "s")
    corpus = pretraining_corpus([str(folder), "devfmri"], exclude_sites="A,C")
    assert corpus["subject_id"][:3] == ["x002", "x003", "sub-pixar001"]
    assert len(corpus) == 2 + len(load_devfmri())


def test_corpus_exclude_sites_names_a_site_no_source_holds(tmp_path):
    folder = _sited_cohort(tmp_path / "t")
    with pytest.raises(BrainMassDataError, match=r"\['NYUU'\].*spelling"):
        pretraining_corpus([str(folder), "devfmri"], exclude_sites=["A", "NYUU"])


def test_select_sites_keeps_the_named_sites_and_refuses_unknown_ones(tmp_path):
    from brainmass_hf.data import resolve_dataset

    data = resolve_dataset(str(_sited_cohort(tmp_path / "u")))
    assert select_sites(data, keep="B")["subject_id"] == ["x002", "x003"]
    assert select_sites(data, keep=["A", "B"], exclude="A")["subject_id"] == ["x002", "x003"]
    assert select_sites(data) is data
    with pytest.raises(BrainMassDataError, match=r"\['Z'\] are not in column 'site'.*\['A', 'B', 'C'\]"):
        select_sites(data, keep="Z")
    with pytest.raises(BrainMassDataError, match="No scan"):
        select_sites(data, keep="A", exclude="A")


@pytest.mark.skipif(not SHARED_ABIDE.is_dir(), reason="../shared/data/abide1_aal116 is not here (kept outside the repo)")
@pytest.mark.slow
def test_held_out_site_protocol_leaves_the_172_nyu_scans_out_of_the_corpus():
    corpus = pretraining_corpus([str(SHARED_ABIDE), "devfmri"], exclude_sites="NYU")
    assert len(corpus) == 938 - 172


def test_corpus_refuses_sources_with_different_roi_counts(tmp_path):
    folder = _cohort(tmp_path / "b", "b", num_rois=20)
    with pytest.raises(BrainMassDataError, match="different numbers of ROIs.*same atlas"):
        pretraining_corpus([str(folder), "devfmri"])


def test_corpus_refuses_an_id_found_in_two_sources(tmp_path):
    first, second = _cohort(tmp_path / "c", "s"), tmp_path / "d"
    _cohort(second, "s")
    with pytest.raises(BrainMassDataError, match="s000"):
        pretraining_corpus([str(first), str(second)])


def test_cli_pretrain_takes_comma_separated_sources(tmp_path):
    folder = _cohort(tmp_path / "e", "e")
    out = tmp_path / "run"
    code = main(["pretrain", "--data", f"{folder},devfmri", "--preset", "tiny", "--config_overrides", TINY_OVERRIDES,
                 "--output_dir", str(out), "--max_steps", "1", "--per_device_train_batch_size", "8",
                 "--warmup_steps", "0", "--lr_scheduler_type", "linear", "--save_strategy", "no"])
    assert code == 0
    assert (out / "encoder" / "config.json").is_file()


@pytest.mark.skipif(not SHARED_ABIDE.is_dir(), reason="../shared/data/abide1_aal116 is not here (kept outside the repo)")
@pytest.mark.slow
def test_abide_and_the_bundled_cohort_make_the_938_scan_aal116_corpus():
    corpus = pretraining_corpus([str(SHARED_ABIDE), "devfmri"])
    assert len(corpus) == 938
    assert np.asarray(corpus[0]["time_series"]).shape[1] == 116
