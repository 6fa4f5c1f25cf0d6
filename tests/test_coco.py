"""COCO files read quietly, and the subset a model is scored on (workshop.data.coco)."""

import json

from workshop.data.coco import load_coco, subset_coco


def dataset():
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48} for i in (1, 2, 3)]
    anns = [
        {"id": 10 * i + c, "image_id": i, "category_id": c, "bbox": [1, 2, 8, 6], "area": 48}
        for i in (1, 2, 3)
        for c in (1, 2, 3)
    ]
    cats = [{"id": c, "name": n} for c, n in ((1, "star"), (2, "ring"), (3, "cross"))]
    return {"images": images, "annotations": anns, "categories": cats}


def test_a_file_and_a_dict_load_the_same_without_printing(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps(dataset()))
    from_file, from_dict = load_coco(tmp_path / "a.json"), load_coco(dataset())
    assert capsys.readouterr().out == ""  # pycocotools prints "loading annotations..."
    assert from_file.dataset == from_dict.dataset == dataset()
    assert sorted(from_file.getAnnIds(imgIds=[2])) == [21, 22, 23]


def test_a_subset_keeps_only_those_images_and_categories():
    sub = subset_coco(load_coco(dataset()), image_ids=[1, 3], cat_ids=[2, 3])
    assert sorted(sub.getImgIds()) == [1, 3]
    assert sorted(sub.getCatIds()) == [2, 3]
    assert sorted(sub.getAnnIds()) == [12, 13, 32, 33]
