"""Train/test splits: repeated stratified shuffles, k-fold, leave-one-site-out, few-shot draws.

Every splitter yields sorted `(train_idx, test_idx)` integer arrays and is reproducible from `seed`.
`sites` stratifies by label × site; `groups` (one subject id per scan) keeps every subject's scans on one
side of each split, so a multi-session cohort never tests on a subject it trained on.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, StratifiedShuffleSplit

__all__ = [
    "CV_SCHEMES",
    "few_shot_splits",
    "kfold_splits",
    "leave_one_site_out",
    "make_splits",
    "repeated_stratified_splits",
    "site_pairs",
]

CV_SCHEMES = ("repeated", "kfold", "leave_one_site_out")


def _check_labels(labels: Sequence[Any] | np.ndarray, *, name: str = "labels") -> np.ndarray:
    """Integer class codes `[N]`; every class must have at least two members."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"{name} must be a non-empty 1D sequence of class codes; got shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        integral = np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels))
        if integral and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise ValueError(
                f"{name} must be integer class codes 0..K-1 (got dtype {labels.dtype}); encode them first "
                "or pass a dataset whose label column is a ClassLabel."
            )
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"{name} hold a single class ({classes[0]}); classification needs at least two.")
    if not np.array_equal(classes, np.arange(classes.size)):
        raise ValueError(
            f"{name} must be class codes 0..K-1 with every code used; got classes {classes.tolist()}. "
            "Re-encode them (e.g. numpy.unique(labels, return_inverse=True)[1])."
        )
    if counts.min() < 2:
        rare = [int(c) for c, n in zip(classes, counts) if n < 2]
        raise ValueError(
            f"class(es) {rare} have fewer than 2 scans; every class needs at least 2 "
            "(one to train on, one to test on). Drop or merge those classes."
        )
    return labels


def _check_per_scan(values: Sequence[Any] | np.ndarray | None, n: int, what: str) -> np.ndarray | None:
    """Site or subject ids as strings `[N]` (None passes through)."""
    if values is None:
        return None
    values = np.asarray([str(v) for v in values])
    if values.shape[0] != n:
        raise ValueError(f"There are {values.shape[0]} {what} values for {n} scans; pass one per scan.")
    return values


def _strata(labels: np.ndarray, sites: Sequence[Any] | None) -> np.ndarray:
    """Label codes, or label × site codes; a label×site cell with one scan joins the largest cell of its
    label (a one-member stratum cannot be split)."""
    sites = _check_per_scan(sites, labels.shape[0], "site")
    if sites is None:
        return labels
    _, site_codes = np.unique(sites, return_inverse=True)
    strata = labels.astype(np.int64) * (site_codes.max() + 1) + site_codes
    for label in np.unique(labels):
        cells, counts = np.unique(strata[labels == label], return_counts=True)
        largest = cells[np.argmax(counts)]
        for cell, count in zip(cells, counts):
            if count < 2:
                strata[strata == cell] = largest
    return strata


def _grouped_fold_count(test_size: float | int, n: int) -> int:
    """Folds whose first fold holds about `test_size` of the scans (a fraction or a count)."""
    fraction = test_size / n if test_size >= 1 else test_size
    if not 0 < fraction < 1:
        raise ValueError(f"test_size must be a fraction in (0, 1) or a count below the scan count; got {test_size}.")
    return max(2, int(round(1 / fraction)))


def _check_split_sizes(strata: np.ndarray, n_labels: int, n_repeats: int, test_size: float | int) -> None:
    """Our words for what sklearn would refuse in its own: no repeats, or a test (or training) set smaller than
    the number of classes (label × site cells when stratifying by site), so a class could not appear in it."""
    if int(n_repeats) < 1:
        raise ValueError(f"n_repeats must be at least 1 split; got {n_repeats}.")
    n = strata.shape[0]
    n_test = int(np.ceil(test_size * n)) if test_size < 1 else int(test_size)
    cells = np.unique(strata).size
    by_site = " label × site cells" if cells > n_labels else " classes"
    if not 0 < n_test < n or min(n_test, n - n_test) < cells:
        raise ValueError(
            f"A cohort of {n} scans with {cells}{by_site} cannot be split with test_size={test_size}: the test set "
            f"would hold {n_test} scan(s) and the training set {n - n_test}, but each needs one scan of every "
            f"class{' and site' if cells > n_labels else ''}. Add scans, choose test_size so that both sides hold at "
            f"least {cells} scans{', or leave out site_column' if cells > n_labels else ''}."
        )


def repeated_stratified_splits(
    labels: Sequence[Any],
    *,
    n_repeats: int = 10,
    test_size: float | int = 0.2,
    seed: int = 0,
    sites: Sequence[Any] | None = None,
    groups: Sequence[Any] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`n_repeats` random train/test splits, stratified by label (label × site when `sites` given).

    With `groups`, repeat i is the first fold of `StratifiedGroupKFold(round(1 / test_size), shuffle=True,
    random_state=seed + i)`: every subject lands wholly in train or test, and the test fraction is about
    `test_size`.
    """
    labels = _check_labels(labels)
    strata = _strata(labels, sites)
    groups = _check_per_scan(groups, labels.shape[0], "group")
    if groups is None:
        _check_split_sizes(strata, int(labels.max()) + 1, n_repeats, test_size)
        splitter = StratifiedShuffleSplit(n_splits=n_repeats, test_size=test_size, random_state=seed)
        for train, test in splitter.split(np.zeros(labels.shape[0]), strata):
            yield np.sort(train), np.sort(test)
        return
    folds = _grouped_fold_count(test_size, labels.shape[0])
    for repeat in range(n_repeats):
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed + repeat)
        train, test = next(splitter.split(np.zeros(labels.shape[0]), strata, groups))
        yield np.sort(train), np.sort(test)


def kfold_splits(
    labels: Sequence[Any],
    n_splits: int = 5,
    seed: int = 0,
    sites: Sequence[Any] | None = None,
    groups: Sequence[Any] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled k-fold (`StratifiedGroupKFold` with `groups`); every scan is in exactly one
    test fold."""
    labels = _check_labels(labels)
    groups = _check_per_scan(groups, labels.shape[0], "group")
    if labels.shape[0] < n_splits:
        raise ValueError(f"{n_splits}-fold cross-validation needs at least {n_splits} scans; the cohort has "
                         f"{labels.shape[0]}. Add scans or use cv='repeated'.")
    splitter = (StratifiedKFold if groups is None else StratifiedGroupKFold)(
        n_splits=n_splits, shuffle=True, random_state=seed
    )
    for train, test in splitter.split(np.zeros(labels.shape[0]), _strata(labels, sites), groups):
        yield np.sort(train), np.sort(test)


def _without_shared_groups(
    train: np.ndarray, test: np.ndarray, groups: np.ndarray | None, *, drop_from: str
) -> tuple[np.ndarray, np.ndarray]:
    """Remove from `drop_from` ("train" or "test") every scan whose subject also appears on the other side."""
    if groups is None:
        return train, test
    if drop_from == "train":
        return train[~np.isin(groups[train], groups[test])], test
    return train, test[~np.isin(groups[test], groups[train])]


def leave_one_site_out(
    sites: Sequence[Any], groups: Sequence[Any] | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One split per site (sorted by name): that site's scans are the test set, all others train. A subject
    scanned at two sites (with `groups`) is left out of training when its other site is tested."""
    sites = _check_per_scan(sites, len(sites), "site")
    groups = _check_per_scan(groups, sites.shape[0], "group")
    unique = np.unique(sites)
    if unique.size < 2:
        raise ValueError(f"leave-one-site-out needs at least two sites; got {unique.tolist()}.")
    for site in unique:
        yield _without_shared_groups(np.flatnonzero(sites != site), np.flatnonzero(sites == site), groups,
                                     drop_from="train")


def few_shot_splits(
    labels: Sequence[Any], k: int, *, n_draws: int = 10, seed: int = 0, groups: Sequence[Any] | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`n_draws` draws of exactly `k` training scans per class; every other scan is a test scan (with
    `groups`, every scan of a subject not drawn).

    Draw i uses `numpy.random.default_rng([seed, i])`. Raises ValueError when the smallest class has fewer
    than `k + 1` scans (one must remain for testing).
    """
    labels = _check_labels(labels)
    groups = _check_per_scan(groups, labels.shape[0], "group")
    classes, counts = np.unique(labels, return_counts=True)
    if k < 1:
        raise ValueError(f"k must be at least 1 labelled scan per class; got {k}.")
    if counts.min() < k + 1:
        raise ValueError(
            f"k={k} labelled scans per class needs at least k+1 = {k + 1} scans in every class; the "
            f"smallest class ({classes[np.argmin(counts)]}) has {counts.min()}."
        )
    for draw in range(n_draws):
        rng = np.random.default_rng([seed, draw])
        train = np.concatenate([rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c in classes])
        train = np.sort(train)
        yield _without_shared_groups(train, np.setdiff1d(np.arange(labels.shape[0]), train), groups,
                                     drop_from="test")


def make_splits(
    cv: str,
    labels: np.ndarray,
    *,
    n_repeats: int = 10,
    test_size: float = 0.2,
    seed: int = 0,
    sites: Sequence[Any] | None = None,
    groups: Sequence[Any] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The splits of one `cv` scheme from `CV_SCHEMES` (`leave_one_site_out` needs `sites`)."""
    if cv == "repeated":
        return list(repeated_stratified_splits(labels, n_repeats=n_repeats, test_size=test_size, seed=seed,
                                               sites=sites, groups=groups))
    if cv == "kfold":
        return list(kfold_splits(labels, n_splits=5, seed=seed, sites=sites, groups=groups))
    if cv == "leave_one_site_out":
        if sites is None:
            raise ValueError("cv='leave_one_site_out' needs site_column= naming each scan's site/cohort.")
        return list(leave_one_site_out(sites, groups))
    raise ValueError(f"cv must be one of {CV_SCHEMES}; got {cv!r}.")


def site_pairs(sites: Sequence[Any], pairs: Sequence[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """All ordered (source, target) pairs of distinct sites, or the given pairs after checking them."""
    unique = np.unique(np.asarray([str(s) for s in sites])).tolist()
    if pairs is None:
        if len(unique) < 2:
            raise ValueError(f"zero-shot transfer needs at least two sites/cohorts; got {unique}.")
        return [(a, b) for a in unique for b in unique if a != b]
    checked = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"Each zero-shot pair must be (source, target); got {pair!r}.")
        source, target = str(pair[0]), str(pair[1])
        for name in (source, target):
            if name not in unique:
                raise ValueError(f"Site {name!r} of pair {pair!r} is not in the data; sites are {unique}.")
        if source == target:
            raise ValueError(f"Zero-shot pair {pair!r} uses the same site twice; pick two different sites.")
        checked.append((source, target))
    return checked
