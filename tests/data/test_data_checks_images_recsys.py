"""zoo.data.checks on image folders and interaction logs built to contain each defect (duplicate and near-duplicate
images, an image under two labels, cold users and items, repeated interactions, a split that is not in time
order): each found with its rows; clean data gives no finding."""

from __future__ import annotations

import shutil

import numpy as np
import torch
from PIL import Image

from zoo.data.checks import inspect_datamodule
from zoo.data.checks.images import phash_arrays
from zoo.data.checks.near import hash_near_pairs
from zoo.data.image import ImageDataModule
from zoo.data.recsys import InteractionDataModule, synthetic_log


def _image(rng, path):
    small = rng.integers(0, 255, (4, 4, 3)).astype(np.uint8)
    Image.fromarray(small).resize((16, 16), Image.Resampling.BILINEAR).save(path)
    return str(path)


def _folders(tmp_path, rng, per_class=12, test_per_class=5):
    for root, n in (("train", per_class), ("test", test_per_class)):
        for cls in ("cat", "dog"):
            (tmp_path / root / cls).mkdir(parents=True)
            for k in range(n):
                _image(rng, tmp_path / root / cls / f"{k}.png")
    return tmp_path / "train", tmp_path / "test"


def _images(train, test, **kwargs):
    return ImageDataModule(folder=str(train), test_folder=str(test), val_fraction=0.0, **kwargs)


def test_clean_image_folders_give_no_finding(tmp_path):
    train, test = _folders(tmp_path, np.random.default_rng(0))
    report = inspect_datamodule(_images(train, test))
    assert report["findings"] == [] and report["figures"]["rows"] == {"train": 24, "test": 10}


def test_duplicate_near_duplicate_and_relabelled_images_are_found(tmp_path):
    train, test = _folders(tmp_path, np.random.default_rng(1))
    shutil.copy(train / "cat" / "3.png", test / "cat" / "copy.png")  # byte-identical, same label
    shutil.copy(train / "cat" / "4.png", test / "dog" / "relabelled.png")  # byte-identical, other label
    brighter = np.asarray(Image.open(train / "dog" / "5.png")).astype(np.int16) + 3
    Image.fromarray(brighter.clip(0, 255).astype(np.uint8)).save(test / "dog" / "near.png")
    report = inspect_datamodule(_images(train, test))
    found = {f["kind"]: f for f in report["findings"]}
    assert set(found) == {"duplicates_across", "near_duplicates_across", "conflicting_labels"}
    assert sorted(found["duplicates_across"]["rows"]) == [
        [str(test / "cat" / "copy.png"), str(train / "cat" / "3.png")],
        [str(test / "dog" / "relabelled.png"), str(train / "cat" / "4.png")]]
    assert [r["ids"] for r in found["near_duplicates_across"]["rows"]] == [[str(test / "dog" / "near.png"),
                                                                             str(train / "dog" / "5.png")]]
    assert found["conflicting_labels"]["rows"] == [[[str(train / "cat" / "4.png"), "cat"],
                                                    [str(test / "dog" / "relabelled.png"), "dog"]]]
    dm = _images(train, test, dedupe="across")
    dm.setup("fit")
    assert dm.dropped_rows == {"test": 2} and len(dm.splits["test"]) == 10 + 3 - 2


def test_array_phash_agrees_with_imagehash_and_band_search_with_brute_force():
    import imagehash

    rng = np.random.default_rng(0)
    small = torch.tensor(rng.integers(0, 255, (30, 1, 6, 6)).astype(np.float32))
    images = torch.nn.functional.interpolate(small, size=(28, 28), mode="bilinear").round().to(torch.uint8)
    ours, thumbs = phash_arrays(images)
    weights = 2 ** np.arange(63, -1, -1, dtype=np.uint64)
    ref = np.array([(imagehash.phash(Image.fromarray(i[0].numpy())).hash.flatten().astype(np.uint64) * weights)
                    .sum() for i in images], dtype=np.uint64)
    assert np.bitwise_count(ours ^ ref).max() <= 10  # bilinear vs Lanczos resizing moves a few bits
    assert np.median(np.bitwise_count(ours[:15] ^ ours[15:])) >= 20 and thumbs.shape == (30, 1024)
    a = rng.integers(0, 2 ** 63, size=3000, dtype=np.uint64)
    b = np.concatenate([a[:40] ^ np.uint64(0b1001), rng.integers(0, 2 ** 63, size=200, dtype=np.uint64)])
    brute = []
    for j, x in enumerate(b):
        d = np.bitwise_count(a ^ x)
        if d.min() <= 4:
            brute.append((j, int(d.argmin()), int(d.min())))
    assert hash_near_pairs(a, b) == brute and len(brute) == 40


def _log(path, rows):
    path.write_text("user_id,item_id,rating,timestamp,split\n" + "\n".join(rows) + "\n")
    return str(path)


def test_cold_users_and_items_and_repeated_interactions(tmp_path):
    rows = [f"u{u},i{i},4,{10 * u + i},train" for u in range(1, 6) for i in range(1, 5)]  # data rows 1-20
    rows += ["u1,i1,5,99,train",  # 21: repeats row 1 within train
             "u2,i9,4,100,test",  # 22: item i9 never in train
             "u7,i2,4,101,test",  # 23: user u7 never in train
             "u3,i2,3,102,test",  # 24: repeats a train pair in test
             "u4,i1,4,103,val"]
    dm = InteractionDataModule(path=_log(tmp_path / "log.csv", rows), split="column", duplicates="keep")
    report = inspect_datamodule(dm)
    found = {(f["kind"], f["figures"].get("split")): f for f in report["findings"]}
    assert found[("cold_items", "test")]["rows"] == [{"id": "i9"}]
    assert found[("cold_items", "test")]["figures"]["data_rows"] == [22]
    assert found[("cold_users", "test")]["rows"] == [{"id": "u7"}]
    assert found[("cold_users", "test")]["figures"]["data_rows"] == [23]
    assert found[("duplicate_interactions", "train")]["figures"]["data_rows"] == [21]
    assert found[("duplicates_across", "test")]["figures"]["data_rows"] == [24]
    assert found[("duplicates_across", "val")]["figures"]["data_rows"] == [25]


def test_time_order_of_the_split(tmp_path):
    inter, _ = synthetic_log(num_users=30, num_items=20, per_user=10)
    inter.to_csv(tmp_path / "log.csv", index=False)
    temporal = inspect_datamodule(InteractionDataModule(path=str(tmp_path / "log.csv"), split="temporal"))
    assert not [f for f in temporal["findings"] if f["kind"] in ("time_order", "duplicates_across",
                                                                     "duplicate_interactions", "cold_users")]
    assert temporal["figures"]["time_order"]["test"]["before_users_last_train"] == 0.0
    random = inspect_datamodule(InteractionDataModule(path=str(tmp_path / "log.csv"), split="random"))
    order = [f for f in random["findings"] if f["kind"] == "time_order"]
    assert order and order[0]["severity"] == "info" and order[0]["figures"]["data_rows"]
