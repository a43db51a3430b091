import numpy as np
import pytest

from cgan_export.errors import VocabularyError
from cgan_export.vocabulary import Vocabulary

from .conftest import OBJECTS, REAL_DATA


def test_order_matches_objects_json(vocabulary):
    assert vocabulary.names[:3] == ("gray cube", "red cube", "blue cube")
    assert vocabulary.names[8] == "gray sphere" and vocabulary.names[23] == "yellow cylinder"
    assert vocabulary.to_mapping() == OBJECTS


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="real i-CLEVR data not at ../shared/iclevr")
def test_real_objects_json_gives_the_same_vocabulary(vocabulary):
    assert Vocabulary.from_objects_json(REAL_DATA / "objects.json") == vocabulary


def test_parsing_forgives_case_and_spacing(vocabulary):
    assert vocabulary.index("Red  Cube") == 1
    assert vocabulary.index("  BLUE cylinder ") == 18


def test_encode_multi_hot_round_trip(vocabulary):
    hot = vocabulary.encode(["red cube", "blue cylinder"])
    assert hot.dtype == np.float32 and hot.shape == (24,)
    assert np.flatnonzero(hot).tolist() == [1, 18]
    assert vocabulary.decode(hot) == ["red cube", "blue cylinder"]


def test_encode_batch_shape(vocabulary):
    batch = vocabulary.encode_batch([["red cube"], ["gray sphere", "cyan cube", "yellow cylinder"]])
    assert batch.shape == (2, 24) and batch.sum(1).tolist() == [1, 3]


@pytest.mark.parametrize("bad, suggestion", [("pink cube", "cube"), ("red cubes", "red cube"), ("cube red", "red cube")])
def test_unknown_name_suggests_closest(vocabulary, bad, suggestion):
    with pytest.raises(VocabularyError) as err:
        vocabulary.encode([bad])
    message = str(err.value)
    assert bad in message and suggestion in message and "\n" not in message


def test_duplicate_object_rejected(vocabulary):
    with pytest.raises(VocabularyError, match="duplicate"):
        vocabulary.encode(["red cube", "Red Cube"])


def test_empty_condition_rejected(vocabulary):
    with pytest.raises(VocabularyError, match="empty"):
        vocabulary.encode([])


def test_too_many_objects_rejected_by_model_maximum(vocabulary):
    four = ["red cube", "blue cube", "gray cube", "green cube"]
    with pytest.raises(VocabularyError, match="at most 3"):
        vocabulary.encode(four)
    assert Vocabulary(vocabulary.names, max_objects=4).encode(four).sum() == 4
