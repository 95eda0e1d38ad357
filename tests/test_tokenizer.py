import numpy as np
import pytest
import torch

from dnahnet import tokenizer as tok


def test_ids_are_the_shared_interface():
    assert (tok.A_ID, tok.C_ID, tok.G_ID, tok.T_ID, tok.N_ID) == (0, 1, 2, 3, 4)
    assert (tok.PAD_ID, tok.BOS_ID, tok.EOS_ID, tok.VOCAB_SIZE) == (5, 6, 7, 8)
    assert tok.encode("ACGTN").tolist() == [0, 1, 2, 3, 4]
    assert tok.encode("ACGT").dtype == torch.long


def test_round_trip_random_sequences():
    rng = np.random.default_rng(0)
    for n in (0, 1, 17, 5000):
        seq = "".join(rng.choice(list("ACGTN"), size=n))
        assert tok.decode(tok.encode(seq)) == seq
        ids = torch.from_numpy(rng.integers(0, 5, size=n))
        assert torch.equal(tok.encode(tok.decode(ids)), ids)


def test_lower_case_and_iupac_fold():
    assert tok.decode(tok.encode("acgtn")) == "ACGTN"
    for code in "RYSWKMBDHVN":
        assert tok.encode(code).tolist() == [tok.N_ID], code
        assert tok.encode(code.lower()).tolist() == [tok.N_ID], code
    assert tok.decode(tok.encode("aCrYgT")) == "ACNNGT"


@pytest.mark.parametrize("bad, index", [("ACGU", 3), ("AC-GT", 2), ("A1", 1), ("AC GT", 2), ("ACé", 2), ("*", 0)])
def test_invalid_character_is_named_with_its_position(bad, index):
    with pytest.raises(ValueError) as e:
        tok.encode(bad)
    assert repr(bad[index]) in str(e.value) and f"index {index}" in str(e.value)


def test_numpy_path_matches_torch_path():
    seq = "ACGTNacgtnRYSWKMBDHV" * 50
    fast = tok.encode_bytes(seq.encode())
    assert fast.dtype == np.uint8
    assert fast.tolist() == tok.encode(seq).tolist()
    assert tok.ENCODE_LUT.shape == (256,) and tok.ENCODE_LUT.dtype == np.uint8
    assert tok.first_invalid(np.frombuffer(b"ACGTX", np.uint8)) == 4
    assert tok.first_invalid(np.frombuffer(b"ACGT", np.uint8)) == -1


def test_reverse_complement_hand_example():
    assert tok.decode(tok.reverse_complement(tok.encode("AACGTN"))) == "NACGTT"
    assert tok.decode(tok.reverse_complement(tok.encode("GATTACA"))) == "TGTAATC"
    assert tok.reverse_complement_str("GATTACAn") == "nTGTAATC"
    assert tok.reverse_complement_str("ARYK") == "MRYT"  # IUPAC complements: R<->Y, K<->M
    with pytest.raises(ValueError, match="'U' at index 1"):
        tok.reverse_complement_str("AU")


def test_reverse_complement_is_an_involution_and_works_on_batches():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, tok.VOCAB_SIZE, (3, 100), generator=g)
    rc = tok.reverse_complement(ids)
    assert torch.equal(tok.reverse_complement(rc), ids)
    for row in range(3):  # batch rows are independent: equal to the 1-D result
        assert torch.equal(rc[row], tok.reverse_complement(ids[row]))
    # specials and N are their own complement; a naive per-position reference
    comp = {0: 3, 1: 2, 2: 1, 3: 0, 4: 4, 5: 5, 6: 6, 7: 7}
    ref = torch.tensor([[comp[int(x)] for x in reversed(r)] for r in ids])
    assert torch.equal(rc, ref)
    assert np.array_equal(tok.reverse_complement_np(ids.numpy().astype(np.uint8)), ref.numpy())


def test_decode_special_tokens_and_errors():
    assert tok.decode(torch.tensor([6, 0, 1, 7, 5])) == "<bos>AC<eos><pad>"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode(torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))


def test_reverse_complement_str_matches_biopython_on_every_code():
    # The one string reverse complement (the evaluations use it too), against Biopython's IUPAC table.
    from Bio.Seq import reverse_complement as bio_reverse_complement

    alphabet = "ACGTN" + "RYSWKMBDHV"
    seq = alphabet + alphabet.lower() + "".join(np.random.default_rng(0).choice(list(alphabet), 200))
    assert tok.reverse_complement_str(seq) == bio_reverse_complement(seq)
