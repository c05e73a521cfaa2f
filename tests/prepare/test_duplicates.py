import numpy as np

from dermsight.prepare.duplicates import (
    cluster_labels,
    hashes_to_uint64,
    merge_groups,
    near_duplicate_pairs,
)


def test_pairs_within_distance_only():
    hashes = hashes_to_uint64(["0000000000000000", "0000000000000003", "ffffffffffffffff",
                               "0000000000000001"])
    pairs = near_duplicate_pairs(hashes, max_distance=2, chunk=2)
    assert sorted(pairs) == [(0, 1, 2), (0, 3, 1), (1, 3, 1)]


def test_thumbnail_check_separates_different_images_with_one_phash():
    hashes = hashes_to_uint64(["00000000000000ff", "00000000000000ff"])
    thumbs = np.zeros((2, 768), dtype=np.uint8)
    thumbs[1, :] = 10  # RMS distance 10
    assert near_duplicate_pairs(hashes, 0, thumbs=thumbs, max_thumb_distance=4) == []
    assert near_duplicate_pairs(hashes, 0, thumbs=thumbs, max_thumb_distance=12) == [(0, 1, 0)]


def test_clusters_are_connected_components():
    labels = cluster_labels(5, [(0, 1, 0), (1, 2, 0)])
    assert labels[0] == labels[1] == labels[2]
    assert len({labels[0], labels[3], labels[4]}) == 3


def test_merge_groups_unions_groups_touched_by_duplicates():
    groups = ["g1", "g1", "g2", "g3", "g4"]
    # image 1 (g1) duplicates image 2 (g2): every image of g1 and g2 shares a group now
    merged = merge_groups(groups, [(1, 2, 0)])
    assert merged == ["g1", "g1", "g1", "g3", "g4"]
